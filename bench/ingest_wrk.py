#!/usr/bin/env python
# Ingest throughput of one `pyro-core server` process, measured with wrk (Debian's /usr/bin/wrk) beside
# its ceiling in the same run: hypercorn's trio worker serving a trivial ASGI app that reads the body
# and answers 200 (the HTTP shell pyro-core runs on, with nothing behind it).
# Owns: the workloads (seeded folded and pprof bodies), the ceiling server (`ceiling-server` sub-command),
# starting/stopping the servers, the wrk Lua script (POST a body from a file, print a JSON summary),
# the scenarios and their Markdown table. bench/test_bench_ingest.py drives it under pytest-benchmark.
# Must not know: pyro-core's internals beyond its command line and HTTP API.
#
# Scenarios (each one wrk run of --duration seconds, after a short warm-up run):
#   ceiling-small   trivial ASGI app, ~1 KiB POSTs                       (the ceiling)
#   folded-small    POST /ingest?name=benchapp.cpu{env=bench}&format=folded, ~1 KiB folded
#   pprof-small     POST /ingest?...&format=pprof, gzipped pprof (~1 KiB), Content-Encoding: gzip
#   ceiling-large   trivial ASGI app, the large folded body
#   folded-large    POST /ingest ... format=folded, 8 MiB of folded text (MB/s of folded text parsed)
# Figures: req/s, MB/s of request bodies, wrk's p50/p99 latency, non-2xx/socket errors, ratio to the
# ceiling of the same body size. wrk shares the 2 cores with the server: a loaded-machine figure.
#
# Run:  python bench/ingest_wrk.py [--duration 10] [--json out.json]
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # pyro_core from this checkout when run as a script
    sys.path.insert(0, str(ROOT))

WRK = shutil.which("wrk") or "/usr/bin/wrk"
HOST = "127.0.0.1"
APP_QUERY = "name=benchapp.cpu%7Benv%3Dbench%7D"  # benchapp.cpu{env=bench}, URL-encoded
SMALL_BYTES = 1024
LARGE_BYTES = 8 << 20
# The per-tenant limits of Pyroscope's defaults (4 MiB/s, burst 2 MiB, 4 MiB profiles, 16,000 samples)
# would answer most benchmark requests with 429/400: lifted, so that the figures measure ingest itself.
UNLIMITED = (
    "-distributor.ingestion-rate-limit-mb=1000000",
    "-distributor.ingestion-burst-size-mb=1000000",
    "-validation.max-profile-size-bytes=0",
    "-validation.max-profile-stacktrace-samples=0",
)
SMALL_CONNECTIONS = 32
LARGE_CONNECTIONS = 2

# The wrk script: POST the file named by the first argument after `--`; each further argument is a
# header "Name: value". done() prints one line "WRK_JSON {...}" with the summary.
LUA = r"""
local body_path
init = function(args)
  body_path = args[1]
  local f = assert(io.open(body_path, "rb"))
  wrk.body = f:read("*all")
  f:close()
  wrk.method = "POST"
  for i = 2, #args do
    local name, value = args[i]:match("^([^:]+):%s*(.*)$")
    wrk.headers[name] = value
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes_read":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
"""

# -- workloads ---------------------------------------------------------------------------------------

_MODULES = ("app", "net", "db", "io", "http", "json", "sched", "cache", "auth", "orm", "queue", "util")


def _frame(rng: random.Random) -> str:
    module = rng.choice(_MODULES)
    return f"{module}/{rng.choice(_MODULES)}.py:{module}_{rng.randrange(400)}"


def folded_body(size: int, *, depth: tuple[int, int] = (8, 32), distinct: int = 2000, seed: int = 1) -> bytes:
    """About ``size`` bytes of folded text: lines drawn from ``distinct`` random stacks of ``depth``
    frames (realistic: a profile repeats its hot stacks), counts 1..1000."""
    rng = random.Random(seed)
    stacks = [";".join(_frame(rng) for _ in range(rng.randint(*depth))).encode() for _ in range(distinct)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(stacks) + b" %d\n" % rng.randint(1, 1000)
    return bytes(out)


def pprof_body(target: int = SMALL_BYTES, seed: int = 2) -> bytes:
    """A gzipped cpu pprof (as pyroscope-io sends) of about ``target`` bytes once gzipped."""
    from pyro_core.server.pprof import StackSample, encode_profile

    rng = random.Random(seed)
    samples: list[StackSample] = []
    body = b""
    while len(body) < target:
        for _ in range(4):
            stack = [_frame(rng) for _ in range(rng.randint(6, 20))]
            samples.append(StackSample(stack, [rng.randint(1, 50) * 10_000_000], {"env": "bench"}))
        body = encode_profile(
            samples, time_nanos=time.time_ns(), duration_nanos=10_000_000_000, compress=True
        )
    return body


# -- servers -----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else b""
            raise RuntimeError(f"server exited with {proc.returncode}: {out.decode(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout} s")


@contextmanager
def running(argv: list[str], ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    paths = [str(ROOT), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    proc = subprocess.Popen(
        argv, cwd=tempfile.gettempdir(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_ready(proc, ready_url)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def ceiling_server() -> Iterator[str]:
    """The trivial ASGI app on hypercorn's trio worker; yields its base URL."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    with running([sys.executable, str(Path(__file__).resolve()), "ceiling-server", str(port)], url + "/"):
        yield url


def server_argv(data: Path, port: int, *extra: str) -> list[str]:
    """The command line of one single-node `pyro-core server` on ``port`` (limits lifted), plus ``extra``."""
    return [
        sys.executable,
        "-m",
        "pyro_core",
        "server",
        f"-server.http-listen-port={port}",
        f"-server.http-listen-address={HOST}",
        f"-pyroscopedb.data-path={data}",
        f"-memberlist.bind-addr={HOST}",
        f"-memberlist.bind-port={free_port()}",
        "-log.level=warn",
        *UNLIMITED,
        *extra,
    ]


@contextmanager
def pyro_server(data: Path) -> Iterator[str]:
    """One `pyro-core server` process (single node, data under ``data``); yields its base URL."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    with running(server_argv(data, port), url + "/ready"):
        yield url


def serve_ceiling(port: int) -> None:
    """`ingest_wrk.py ceiling-server PORT`: read the whole body, answer 200 with an empty body."""
    import trio
    from hypercorn.config import Config
    from hypercorn.trio import serve

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    config = Config()
    config.bind = [f"{HOST}:{port}"]
    config.accesslog = None
    trio.run(partial(serve, cast(Any, app), config))


# -- wrk ---------------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    scenario: str
    body_bytes: int
    connections: int
    duration_s: float
    requests: int
    errors: int  # socket errors + non-2xx answers
    req_per_s: float
    mb_per_s: float  # request body megabytes (1e6 B) per second
    p50_ms: float
    p99_ms: float
    ratio_to_ceiling: float | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def run_wrk(
    scenario: str,
    url: str,
    body: bytes,
    *,
    headers: dict[str, str] | None = None,
    duration: float = 10.0,
    connections: int = SMALL_CONNECTIONS,
    threads: int = 1,
    workdir: Path,
) -> WrkResult:
    body_path = workdir / f"{scenario}.body"
    body_path.write_bytes(body)
    lua = workdir / "post.lua"
    lua.write_text(LUA)
    hdrs = [f"{k}: {v}" for k, v in (headers or {}).items()]
    argv = [
        WRK,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "60s",
        "-s",
        str(lua),
        url,
        "--",
        str(body_path),
        *hdrs,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    seconds = raw["duration_us"] / 1e6
    requests = raw["requests"]
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["status"] + raw["timeout"]
    ok = requests - raw["status"]
    return WrkResult(
        scenario=scenario,
        body_bytes=len(body),
        connections=connections,
        duration_s=seconds,
        requests=requests,
        errors=errors,
        req_per_s=ok / seconds,
        mb_per_s=ok * len(body) / seconds / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        raw=raw,
    )


# -- scenarios ---------------------------------------------------------------------------------------


def run_all(
    duration: float = 10.0, *, large_bytes: int = LARGE_BYTES, warmup: float = 2.0
) -> list[WrkResult]:
    """Every scenario of the header, in one run; ratios against the ceiling of the same body size."""
    small_folded = folded_body(SMALL_BYTES, depth=(4, 8), distinct=200)
    small_pprof = pprof_body(SMALL_BYTES)
    large_folded = folded_body(large_bytes)
    gz = {"Content-Type": "binary/octet-stream", "Content-Encoding": "gzip"}
    folded_path = f"/ingest?{APP_QUERY}&format=folded"
    pprof_path = f"/ingest?{APP_QUERY}&format=pprof&spyName=pyspy&sampleRate=100"
    results: list[WrkResult] = []
    with tempfile.TemporaryDirectory(prefix="pyro-ingest-bench-") as tmp:
        work = Path(tmp)

        def measure(
            name: str, url: str, body: bytes, conns: int, headers: dict[str, str] | None = None
        ) -> None:
            if warmup > 0:
                run_wrk(name, url, body, headers=headers, duration=warmup, connections=conns, workdir=work)
            res = run_wrk(
                name, url, body, headers=headers, duration=duration, connections=conns, workdir=work
            )
            if res.errors:
                raise RuntimeError(f"{name}: {res.errors} errors ({res.raw})")
            results.append(res)

        with ceiling_server() as url:
            measure("ceiling-small", url + "/ingest", small_folded, SMALL_CONNECTIONS)
            measure("ceiling-large", url + "/ingest", large_folded, LARGE_CONNECTIONS)
        with pyro_server(work / "data") as url:
            measure("folded-small", url + folded_path, small_folded, SMALL_CONNECTIONS)
            measure("pprof-small", url + pprof_path, small_pprof, SMALL_CONNECTIONS, gz)
            measure("folded-large", url + folded_path, large_folded, LARGE_CONNECTIONS)
    ceiling = {r.body_bytes: r for r in results if r.scenario.startswith("ceiling")}
    small_ceiling = ceiling[len(small_folded)]
    for r in results:
        if r.scenario.startswith("ceiling"):
            continue
        base = ceiling.get(r.body_bytes, small_ceiling)
        r.ratio_to_ceiling = r.req_per_s / base.req_per_s
    return results


def markdown(results: list[WrkResult]) -> str:
    lines = [
        "| scenario | body | conns | req/s | MB/s of bodies | p50 | p99 | vs ceiling |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = f"{r.ratio_to_ceiling:.2f}×" if r.ratio_to_ceiling is not None else "(ceiling)"
        size = f"{r.body_bytes / (1 << 20):.1f} MiB" if r.body_bytes >= 1 << 20 else f"{r.body_bytes:,} B"
        lines.append(
            f"| {r.scenario} | {size} | {r.connections} | {r.req_per_s:,.0f} | {r.mb_per_s:,.1f} "
            f"| {r.p50_ms:.2f} ms | {r.p99_ms:.2f} ms | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command")
    ceiling = sub.add_parser("ceiling-server", help="serve the trivial ASGI app (used by the scenarios)")
    ceiling.add_argument("port", type=int)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--large-mib", type=float, default=LARGE_BYTES / (1 << 20))
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.command == "ceiling-server":
        serve_ceiling(args.port)
        return 0
    results = run_all(args.duration, large_bytes=int(args.large_mib * (1 << 20)))
    print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
