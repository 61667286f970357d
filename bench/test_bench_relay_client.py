# CPU per POST of the remote-write HTTP clients, via pytest-benchmark (not tests: nothing here asserts
# on time).
# Owns: the group "relay-client". One raw trio socket server on 127.0.0.1, in a background thread of
# this process, answers every request with a fixed ``200`` (Content-Length framing, keep-alive). In the
# main thread, each client POSTs the same relay request (the headers build_request makes, a 1 KiB
# body) one after another, on one kept connection: httpx2.AsyncClient (what https:// targets use, the
# group's baseline) and the client of http:// targets (remote_write._Http1Client: our request head,
# httptools' response parser, non-blocking sockets). The figure is
# the client thread's CPU time (``time.thread_time``) per POST, the server's thread excluded, after 20
# untimed POSTs and a gc.collect (httpx2's garbage otherwise slows the next client's rounds); it is in
# extra_info["cpu_ns_per_post"] and in the row's label, written after the run. The report's time
# column is wall time per POST, which includes waiting for the server thread.
# Under --benchmark-disable each client makes a shortened pass (a few POSTs) so the file still checks
# that everything works. The server thread is stopped in the fixture's teardown.
# Run: python -m pytest bench/test_bench_relay_client.py --benchmark-only
from __future__ import annotations

import gc
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import httpx2
import pytest
import trio

from pyro_core.server.remote_write import PROFILE_ID_HEADER, _Http1Client

GROUP = "relay-client"
HOST = "127.0.0.1"
BODY = bytes(range(256)) * 4  # 1 KiB
HEADERS = [
    ("X-Scope-OrgID", "tenant-1"),
    (PROFILE_ID_HEADER, "0123456789abcdef0123456789abcdef"),
    ("Content-Type", "binary/octet-stream+lines"),
]
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
POSTS = {True: 2000, False: 5}  # per round: full pass / shortened pass (--benchmark-disable)
ROUNDS = {True: 5, False: 1}
WARMUP = 20  # untimed POSTs before each round (opens the connection, warms caches)
_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


# -- the target: a raw trio server in a background thread ---------------------------------------------


async def _serve_conn(stream: trio.SocketStream) -> None:
    buf = b""
    async with stream:
        while True:
            while (end := buf.find(b"\r\n\r\n")) < 0:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
            m = _LENGTH.search(buf, 0, end + 2)
            total = end + 4 + (int(m.group(1)) if m else 0)
            while len(buf) < total:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
            buf = buf[total:]
            await stream.send_all(ANSWER)


class ServerThread:
    def __init__(self) -> None:
        self.port = 0
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        with trio.CancelScope() as scope:
            self._scope, self._token = scope, trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(partial(trio.serve_tcp, _serve_conn, 0, host=HOST))
                self.port = int(listeners[0].socket.getsockname()[1])
                self._ready.set()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the target server did not start")

    def stop(self) -> None:
        if self._token is not None and self._scope is not None:
            self._token.run_sync_soon(self._scope.cancel)
        self._thread.join(10)


@pytest.fixture(scope="module")
def target_url() -> Iterator[str]:
    server = ServerThread()
    server.start()
    try:
        yield f"http://{HOST}:{server.port}/ingest?name=app.cpu%7Bregion%3Deu%7D&from=1700000000&until=1700000010"
    finally:
        server.stop()


# -- the clients ----------------------------------------------------------------------------------------


class _Httpx2:
    def __init__(self) -> None:
        limits = httpx2.Limits(max_connections=1, max_keepalive_connections=1)
        self.client = httpx2.AsyncClient(timeout=10.0, limits=limits)

    async def post(self, url: str) -> int:
        return (await self.client.post(url, content=BODY, headers=HEADERS)).status_code

    async def aclose(self) -> None:
        await self.client.aclose()


class _Lean:
    def __init__(self, url: str) -> None:
        self.client = _Http1Client(url.split("/ingest", 1)[0], max_idle=1)

    async def post(self, url: str) -> int:
        return (await self.client.post(url, content=BODY, headers=HEADERS)).status_code

    async def aclose(self) -> None:
        await self.client.aclose()


CLIENTS: dict[str, Callable[[str], Any]] = {
    "httpx2": lambda url: _Httpx2(),
    "lean": _Lean,
}
LABELS = {
    "httpx2": "httpx2.AsyncClient POST (https:// targets)",
    "lean": "_Http1Client POST, httptools parser (http:// targets)",
}


def full_pass(benchmark: Any) -> bool:
    return not getattr(benchmark, "disabled", False)


@pytest.mark.parametrize("name", list(CLIENTS))
def test_cpu_per_post(benchmark: Any, target_url: str, name: str) -> None:
    full = full_pass(benchmark)
    n = POSTS[full]
    cpu: list[float] = []

    async def one_round() -> None:
        client = CLIENTS[name](target_url)
        try:
            for _ in range(WARMUP):
                assert await client.post(target_url) == 200
            gc.collect()
            t0 = time.thread_time()
            for _ in range(n):
                await client.post(target_url)
            cpu.append((time.thread_time() - t0) / n)
        finally:
            await client.aclose()

    benchmark.group = GROUP
    benchmark.extra_info.update(
        {"ops": n, "unit": "POST (1 KiB body)", "impl": name, "baseline": name == "httpx2"}
    )
    benchmark.pedantic(trio.run, args=(one_round,), rounds=ROUNDS[full], iterations=1)
    per_post = statistics.median(cpu)
    benchmark.extra_info["cpu_ns_per_post"] = per_post * 1e9
    benchmark.extra_info["cpu_ns_per_post_min"] = min(cpu) * 1e9
    benchmark.extra_info["label"] = f"{LABELS[name]}: {per_post * 1e6:.0f} µs CPU per POST"
    print(f"\n{name}: {per_post * 1e6:.1f} µs CPU per POST (median of {len(cpu)} rounds of {n})")
