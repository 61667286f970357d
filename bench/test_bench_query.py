# Query latency of a real cluster: /render merging one hour of one app's data, on three `pyro-core
# server` processes with replication factor 3 (every query fans out to three ingesters and counts the
# replicas once) beside one single node holding the same data (the peer: no fan-out, no dedup).
# Owns: the group "query". Not a test: nothing asserts on wall-clock time.
#   - Data: one app ("bench.cpu") with 3 series (host=h0..h2), one profile per series every 10 s over
#     the last hour (1,080 profiles), each 300 stacks of depth 5-25 drawn (seeded) from 400 function
#     names, ingested through /ingest (folded) before the rounds.
#   - Timed round: one GET /render?query=bench.cpu&from=now-1h&format=json (flamebearer, maxNodes 8192)
#     through one node. extra_info adds wrk's latency distribution (p50, p99 and requests/s, 2
#     connections for 10 s) when wrk is installed.
# Under --benchmark-disable the data is 10 minutes instead of an hour and wrk is skipped.
# Run: python -m pytest bench/test_bench_query.py --benchmark-only --benchmark-json=/tmp/q.json
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROOT = str(Path(__file__).resolve().parent.parent)  # the servers import this checkout
APP = "bench.cpu"
SERIES = 3
STEP = 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 60) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, bytes(exc.read())


def _start(name: str, http: int, ml: int, data: Path, rf: int, join: int | None) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-m", "pyro_core", "server",
        f"-server.http-listen-port={http}", "-server.http-listen-address=127.0.0.1",
        f"-pyroscopedb.data-path={data}", "-log.level=warn",
        f"-memberlist.nodename={name}", "-memberlist.bind-addr=127.0.0.1", f"-memberlist.bind-port={ml}",
        "-memberlist.pullpush-interval=1s", "-ingester.heartbeat-period=1s", "-ingester.num-tokens=32",
        f"-distributor.replication-factor={rf}",
        # an hour of backfilled data at full speed: no ingestion window, no rate limit
        "-validation.reject-older-than=0", "-distributor.ingestion-rate-limit-mb=100000",
        "-distributor.ingestion-burst-size-mb=100000",
    ]  # fmt: skip
    if join is not None:
        argv.append(f"-memberlist.join=127.0.0.1:{join}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.Popen(
        argv, cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )


def _wait_active(ports: list[int], n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ok = 0
        for p in ports:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{p}/ring", headers={"Accept": "application/json"})
                with urllib.request.urlopen(req, timeout=5) as resp:
                    inst = json.loads(resp.read())["instances"]
                ok += sum(i["state"] == "ACTIVE" for i in inst) == n and _get(f"http://127.0.0.1:{p}/ready")[0] == 200
            except (OSError, ValueError):
                pass
        if ok == len(ports):
            return
        time.sleep(0.2)
    raise RuntimeError("the cluster never became ready")


class Cluster:
    def __init__(self, size: int, rf: int, root: Path) -> None:
        self.http = [_free_port() for _ in range(size)]
        ml = [_free_port() for _ in range(size)]
        self.procs = [_start("q-0", self.http[0], ml[0], root / "n0", rf, None)]
        _wait_active(self.http[:1], 1)
        for i in range(1, size):
            self.procs.append(_start(f"q-{i}", self.http[i], ml[i], root / f"n{i}", rf, ml[0]))
        _wait_active(self.http, size)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _profiles(seconds: int, seed: int = 7) -> Iterator[tuple[int, int, bytes]]:
    """(series, timestamp, folded body) for every series every STEP seconds over ``seconds``."""
    rng = random.Random(seed)
    names = [f"pkg{i % 40}.func_{i}" for i in range(400)]
    stacks = [";".join(rng.choice(names) for _ in range(rng.randint(5, 25))) for _ in range(1500)]
    now = int(time.time())
    for t in range(now - seconds, now, STEP):
        for s in range(SERIES):
            lines = [f"{stacks[rng.randrange(len(stacks))]} {rng.randint(1, 50)}" for _ in range(300)]
            yield s, t, ("\n".join(lines) + "\n").encode()


def _ingest(port: int, seconds: int) -> int:
    def one(item: tuple[int, int, bytes]) -> int:
        s, t, body = item
        url = f"http://127.0.0.1:{port}/ingest?name={APP}{{host=h{s}}}&from={t}&until={t + STEP}"
        req = urllib.request.Request(url, data=body, method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(one, _profiles(seconds)))
    assert all(s == 200 for s in statuses)
    return len(statuses)


def _wrk(url: str) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        return {}
    out = subprocess.run(
        [wrk, "-t1", "-c2", "-d10s", "--timeout", "30s", "--latency", url], capture_output=True, text=True, check=True
    ).stdout
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}

    def ms(label: str) -> float | None:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * unit[m.group(2)] if m else None

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return {"wrk_p50_ms": ms("50%"), "wrk_p99_ms": ms("99%"), "wrk_req_per_s": float(rps.group(1)) if rps else None}


@pytest.fixture(scope="module")
def clusters(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    disabled = request.config.getoption("benchmark_disable", False)
    seconds = 600 if disabled else 3600
    root = tmp_path_factory.mktemp("query")
    made: dict[str, Any] = {}
    try:
        made["3 nodes, RF=3"] = Cluster(3, 3, root / "c3")
        made["1 node"] = Cluster(1, 1, root / "c1")
        for c in made.values():
            c.profiles = _ingest(c.http[0], seconds)
        yield {"clusters": made, "seconds": seconds, "disabled": disabled}
    finally:
        for c in made.values():
            c.stop()


@pytest.mark.parametrize("which", ["3 nodes, RF=3", "1 node"])
def test_render_one_hour_of_one_app(benchmark: Any, clusters: dict[str, Any], which: str) -> None:
    benchmark.group = "query"
    cluster = clusters["clusters"][which]
    port = cluster.http[-1]  # ingested through the first node, queried through the last
    url = f"http://127.0.0.1:{port}/render?query={APP}&from=now-1h&until=now&format=json"
    status, body = _get(url)
    assert status == 200, body
    ticks = json.loads(body)["flamebearer"]["numTicks"]
    benchmark.extra_info.update(
        {"profiles": cluster.profiles, "seconds_of_data": clusters["seconds"], "num_ticks": ticks}
    )
    benchmark.pedantic(lambda: _get(url), rounds=5, iterations=1)
    if not clusters["disabled"]:
        benchmark.extra_info.update(_wrk(url))
