# Benchmarks of remote write (pytest-benchmark; nothing here asserts on wall-clock time).
# Owns: the group "remote-write".
#   - ``test_submit[memory|spool]``: the cost of RemoteWriter.submit per profile (what the ingest
#     path pays) for one target with an in-memory queue, and with a spool (one write per profile, no
#     fsync: that is batched in wait_durable). Peer: ``test_submit_peer_channel``, a bare
#     trio.MemorySendChannel.send_nowait, the floor of any queue handoff.
#   - ``test_wait_durable``: one spool append + the group-commit fsync (what a 200 costs with the
#     spool on, when requests arrive one at a time).
#   - ``test_relay_throughput[memory|spool]``: 400 folded profiles submitted at once to a writer with
#     two targets (hypercorn trio worker on 127.0.0.1, in the same trio run), timed until both targets
#     hold all of them; extra_info has profiles/s. Peer: ``test_direct_post_throughput``, the same 400
#     profiles POSTed straight to one target by an httpx2 client with the same concurrency (what
#     sending them costs without the relay machinery).
# Run: python -m pytest bench/test_bench_remote_write.py --benchmark-only
from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx2
import pytest
import trio
from prometheus_client import CollectorRegistry

from pyro_core.server.remote_write import RelayItem, RemoteWriteConfig, RemoteWriter
from tests.server.test_remote_write import FakeTarget, relaying, serving

N_PROFILES = 400
WORKERS = 16


def make_item(i: int) -> RelayItem:
    return RelayItem(
        kind="ingest",
        tenant="anonymous",
        org_id=None,
        query=urlencode((("name", "bench.cpu{env=prod}"), ("from", "1700000000"), ("until", "1700000010"))),
        content_type="text/plain",
        content_encoding=None,
        body=b"".join(f"main;work;f{j};g{i % 7} {j + 1}\n".encode() for j in range(40)),
        profile_id=uuid.uuid4().hex,
        received_at=1_700_000_000.0,
    )


@pytest.mark.benchmark(group="remote-write")
@pytest.mark.parametrize("mode", ["memory", "spool"])
def test_submit(benchmark: Any, mode: str, tmp_path: Path) -> None:
    target: dict[str, Any] = {"address": "http://127.0.0.1:9", "queue-size": 10_000_000}
    if mode == "spool":
        target["spool"] = {"max-bytes": "1GiB", "fsync": False}
    cfg = RemoteWriteConfig.from_mapping({"enabled": True, "targets": {"t": target}})
    writer = RemoteWriter(cfg, registry=CollectorRegistry(), data_dir=tmp_path)
    items = [make_item(i) for i in range(1000)]
    state = {"i": 0}

    def submit() -> None:
        i = state["i"] = state["i"] + 1
        writer.submit(items[i % 1000])

    benchmark(submit)
    benchmark.extra_info["item_bytes"] = len(items[0].body)


@pytest.mark.benchmark(group="remote-write")
def test_submit_peer_channel(benchmark: Any) -> None:
    send, _receive = trio.open_memory_channel[RelayItem](10_000_000)
    item = make_item(0)
    benchmark(send.send_nowait, item)


@pytest.mark.benchmark(group="remote-write")
def test_wait_durable(benchmark: Any, tmp_path: Path) -> None:
    cfg = RemoteWriteConfig.from_mapping(
        {"enabled": True, "targets": {"t": {"address": "http://127.0.0.1:9", "spool": {"max-bytes": "1GiB"}}}}
    )
    writer = RemoteWriter(cfg, registry=CollectorRegistry(), data_dir=tmp_path)
    items = [make_item(i) for i in range(1000)]

    async def main() -> None:
        n = 0

        def one() -> None:
            nonlocal n
            n += 1
            writer.submit(items[n % 1000])
            trio.from_thread.run(writer.wait_durable)

        await trio.to_thread.run_sync(lambda: benchmark(one))

    trio.run(main)


def _relay(mode: str) -> float:
    items = [make_item(i) for i in range(N_PROFILES)]
    a, b = FakeTarget(), FakeTarget()
    elapsed = 0.0

    async def main() -> None:
        nonlocal elapsed
        with tempfile.TemporaryDirectory() as data_dir:
            async with serving(a), serving(b):
                spool = {"spool": {"max-bytes": "1GiB"}} if mode == "spool" else {}
                targets = {
                    name: {"address": t.url, "queue-size": N_PROFILES, "queue-workers": WORKERS, **spool}
                    for name, t in (("a", a), ("b", b))
                }
                cfg = RemoteWriteConfig.from_mapping({"enabled": True, "targets": targets})
                writer = RemoteWriter(cfg, registry=CollectorRegistry(), data_dir=Path(data_dir))
                async with relaying(writer):
                    start = trio.current_time()
                    for it in items:
                        writer.submit(it)
                    if mode == "spool":
                        await writer.wait_durable()
                    await writer.drain(600)
                    elapsed = trio.current_time() - start
        assert len(a.stored) == len(b.stored) == N_PROFILES

    trio.run(main)
    return elapsed


@pytest.mark.benchmark(group="remote-write")
@pytest.mark.parametrize("mode", ["memory", "spool"])
def test_relay_throughput(benchmark: Any, mode: str) -> None:
    times: list[float] = []
    benchmark.pedantic(lambda: times.append(_relay(mode)), rounds=3, iterations=1)
    benchmark.extra_info["profiles"] = N_PROFILES
    benchmark.extra_info["targets"] = 2
    benchmark.extra_info["profiles_per_s"] = round(N_PROFILES / min(times))


@pytest.mark.benchmark(group="remote-write")
def test_direct_post_throughput(benchmark: Any) -> None:
    items = [make_item(i) for i in range(N_PROFILES)]
    times: list[float] = []

    def once() -> None:
        target = FakeTarget()

        async def main() -> None:
            async with serving(target):
                limits = httpx2.Limits(max_connections=WORKERS)
                async with httpx2.AsyncClient(limits=limits) as client:
                    start = trio.current_time()
                    todo = iter(items)

                    async def worker() -> None:
                        for it in todo:
                            await client.post(
                                f"{target.url}/ingest",
                                params=it.params,
                                content=it.body,
                                headers={
                                    "X-Pyro-Core-Profile-Id": it.profile_id,
                                    "Content-Type": "text/plain",
                                },
                            )

                    async with trio.open_nursery() as nursery:
                        for _ in range(WORKERS):
                            nursery.start_soon(worker)
                    times.append(trio.current_time() - start)

        trio.run(main)
        assert len(target.stored) == N_PROFILES

    benchmark.pedantic(once, rounds=3, iterations=1)
    benchmark.extra_info["profiles"] = N_PROFILES
    benchmark.extra_info["targets"] = 1
    benchmark.extra_info["profiles_per_s"] = round(N_PROFILES / min(times))
