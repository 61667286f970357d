# `pyro-core bench`: measure this machine and write the per-instance capacity `pyro-core plan` reads.
# Owns: the micro-measurements (ring lookups single and batch, shuffle-shard selection, merges, codec
# rates), each beside a peer measured in the same run (numpy / bisect floors, the pure-Python twins,
# the dskit codec), and the ingest measurement of a real local node: `python -m pyro_core server` in a
# subprocess on free ports and a temporary data path, driven by `wrk` when it is on PATH, else by a
# built-in load generator (httpx2 AsyncClient under trio). The capacity JSON: instance_capacity_mb_s
# (accepted ingest bytes per second of one node) plus every figure and the machine.
# Must not know: planning (plan.py reads the JSON); the figures are reported, never asserted.
from __future__ import annotations

import bisect
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pyro_core import _impl
from pyro_core.plan.load import build_ring_desc
from pyro_core.ring.model import RingDesc
from pyro_core.ring.ring import ring_class

Log = Callable[[str], None]
FORMAT_VERSION = 1


class BenchError(Exception):
    """A measurement could not be made (the server did not start, the load generator failed)."""


def _rate(fn: Callable[[], int], min_time: float) -> float:
    """Operations per second of ``fn`` (which returns how many it did), best of repeated rounds."""
    fn()  # warm up
    best = 0.0
    spent = 0.0
    rounds = 0
    while spent < min_time or rounds < 3:
        t = time.perf_counter()
        ops = fn()
        dt = time.perf_counter() - t
        spent += dt
        rounds += 1
        if dt > 0:
            best = max(best, ops / dt)
    return best


def _figure(name: str, unit: str, value: float, peer: str, peer_value: float | None) -> dict[str, Any]:
    return {
        "name": name,
        "unit": unit,
        "value": value,
        "peer": peer,
        "peer_value": peer_value,
        "ratio": (value / peer_value) if peer_value else None,
    }


def micro_benchmarks(quick: bool, log: Log) -> list[dict[str, Any]]:
    t = 0.2 if quick else 1.0
    n_inst = 50 if quick else 600
    desc = build_ring_desc(n_inst, 1, 128, 1)
    compiled = ring_class()
    pure = ring_class(_impl.kernels("pure"))
    ring3 = compiled(desc, replication_factor=3)
    pure3 = pure(desc, replication_factor=3)
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 2**32, 10_000, dtype=np.uint32)
    key_list = keys.tolist()
    tokens = desc.tokens().tolist()
    out = []

    log("ring lookups ...")

    def single() -> int:
        get = ring3.get
        for k in key_list:
            get(k)
        return len(key_list)

    def bisect_floor() -> int:
        br = bisect.bisect_right
        for k in key_list:
            br(tokens, k)
        return len(key_list)

    out.append(
        _figure(
            "ring.get RF=3",
            "lookups/s",
            _rate(single, t),
            "Python bisect (RF=1 floor)",
            _rate(bisect_floor, t),
        )
    )
    batch_keys = rng.integers(0, 2**32, 1_000_000 if not quick else 200_000, dtype=np.uint32)
    sorted_tokens = np.sort(desc.tokens())

    def batch() -> int:
        ring3.get_many(batch_keys)
        return len(batch_keys)

    def searchsorted() -> int:
        np.searchsorted(sorted_tokens, batch_keys, side="right")
        return len(batch_keys)

    out.append(
        _figure(
            "get_many RF=3",
            "keys/s",
            _rate(batch, t),
            "numpy searchsorted (RF=1 floor)",
            _rate(searchsorted, t),
        )
    )

    log("shuffle shards ...")
    counter = [0]

    def shard_uncached(ring: Any) -> Callable[[], int]:
        def run() -> int:
            base = counter[0]
            counter[0] += 2000
            for i in range(base, base + 2000):
                ring.shuffle_shard(f"bench-tenant-{i}", 4)
            return 2000

        return run

    out.append(
        _figure(
            "shuffle_shard size 4, uncached",
            "shards/s",
            _rate(shard_uncached(ring3), t),
            "pure-Python twin",
            _rate(shard_uncached(pure3), t),
        )
    )

    log("merges and codecs ...")
    base = desc.copy()
    one = next(iter(base))
    beat = [base[one].timestamp]

    def merge_once(d: RingDesc) -> Callable[[], int]:
        def run() -> int:
            for _ in range(200):
                beat[0] += 1
                delta = RingDesc({one: d[one].replace(timestamp=beat[0])})
                d.merge(delta)
            return 200

        return run

    out.append(_figure("merge of a heartbeat delta", "merges/s", _rate(merge_once(base), t), "—", None))
    native = desc.to_bytes()
    dskit = desc.to_dskit()

    def native_roundtrip() -> int:
        RingDesc.from_bytes(desc.to_bytes())
        return len(native)

    def dskit_roundtrip() -> int:
        RingDesc.from_dskit(desc.to_dskit())
        return len(dskit)

    out.append(
        _figure(
            f"codec roundtrip {n_inst}x128, native",
            "bytes/s",
            _rate(native_roundtrip, t),
            "dskit protobuf + snappy",
            _rate(dskit_roundtrip, t),
        )
    )
    return out


# -- ingest of a real node --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ingest_body(lines: int = 100) -> bytes:
    """A folded-stacks profile of ``lines`` stacks (about 4 KB at 100)."""
    return "".join(f"main;serve;handler{i % 17};work{i};leaf{i % 5} {i + 1}\n" for i in range(lines)).encode()


def start_server(data: Path, log: Log) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "pyro_core",
        "server",
        f"-server.http-listen-port={port}",
        "-server.http-listen-address=127.0.0.1",
        "-memberlist.bind-addr=127.0.0.1",
        f"-memberlist.bind-port={free_port()}",
        f"-pyroscopedb.data-path={data}",
        "-log.level=warn",
        # capacity, not the per-tenant limits: no rate limit, no ingestion window
        "-distributor.ingestion-rate-limit-mb=1000000",
        "-distributor.ingestion-burst-size-mb=1000000",
        "-validation.reject-older-than=0",
    ]
    env = os.environ.copy()
    root = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen(
        cmd, cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise BenchError(f"the server exited with {proc.returncode}: {err.strip()[-500:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as resp:
                if resp.status == 200:
                    log(f"server ready on port {port}")
                    return proc, port
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    proc.kill()
    raise BenchError("the server did not become ready within 30 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_WRK_UNITS = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6}


def run_wrk(url: str, body: bytes, duration: float, connections: int, folder: Path) -> dict[str, Any]:
    script = folder / "ingest.lua"
    text = body.decode().replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = "{text}"\nwrk.headers["Content-Type"] = "text/plain"\n'
    )
    threads = max(1, min(2, connections))
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "-s", str(script), url]
    res = subprocess.run(
        cmd, capture_output=True, text=True, timeout=duration + 60, cwd=tempfile.gettempdir()
    )
    if res.returncode != 0:
        raise BenchError(f"wrk failed: {res.stderr.strip() or res.stdout.strip()}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", res.stdout)
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", res.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", res.stdout)
    latency = re.search(r"Latency\s+([\d.]+)(\w+)", res.stdout)
    if not rps or not total:
        raise BenchError(f"cannot read wrk's output: {res.stdout.strip()[:300]}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
    lat = float(latency.group(1)) * scale.get(latency.group(2), 1.0) if latency else None
    return {
        "generator": "wrk",
        "requests": int(total.group(1)),
        "errors": int(errors.group(1)) if errors else 0,
        "requests_per_s": float(rps.group(1)),
        "mean_latency_s": lat,
    }


def run_builtin(url: str, body: bytes, duration: float, connections: int) -> dict[str, Any]:
    import httpx2
    import trio

    counts = {"ok": 0, "errors": 0}
    latencies: list[float] = []

    async def worker(client: Any, until: float) -> None:
        while trio.current_time() < until:
            t = time.perf_counter()
            try:
                resp = await client.post(url, content=body, headers={"Content-Type": "text/plain"})
                ok = resp.status_code == 200
            except httpx2.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t)
            counts["ok" if ok else "errors"] += 1

    async def main() -> float:
        limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx2.AsyncClient(limits=limits, timeout=30) as client:
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                for _ in range(connections):
                    nursery.start_soon(worker, client, start + duration)
            return float(trio.current_time() - start)

    elapsed = trio.run(main)
    done = counts["ok"] + counts["errors"]
    return {
        "generator": "builtin (httpx2 + trio)",
        "requests": done,
        "errors": counts["errors"],
        "requests_per_s": counts["ok"] / elapsed if elapsed > 0 else 0.0,
        "mean_latency_s": sum(latencies) / len(latencies) if latencies else None,
    }


def ingest_benchmark(duration: float, connections: int, generator: str, log: Log) -> dict[str, Any]:
    use_wrk = generator == "wrk" or (generator == "auto" and shutil.which("wrk") is not None)
    if generator == "wrk" and shutil.which("wrk") is None:
        raise BenchError("wrk is not on PATH (use --load-generator builtin)")
    body = ingest_body()
    with tempfile.TemporaryDirectory(prefix="pyro-bench-") as tmp:
        folder = Path(tmp)
        proc, port = start_server(folder / "data", log)
        try:
            url = f"http://127.0.0.1:{port}/ingest?name=bench.cpu%7Benv%3Dbench%7D&spyName=gospy"
            log(
                f"ingest load for {duration:.0f} s over {connections} connections"
                f" ({'wrk' if use_wrk else 'builtin'}) ..."
            )
            result = (
                run_wrk(url, body, duration, connections, folder)
                if use_wrk
                else run_builtin(url, body, duration, connections)
            )
        finally:
            stop_server(proc)
    if result["requests"] == 0 or result["requests_per_s"] <= 0:
        raise BenchError("the server accepted no ingest request")
    result["body_bytes"] = len(body)
    result["mb_per_s"] = result["requests_per_s"] * len(body) / 1e6
    result["connections"] = connections
    result["duration_s"] = duration
    return result


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "implementation": _impl.kernels().name,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def run_bench_suite(
    *, quick: bool, duration: float | None, connections: int, generator: str, log: Log
) -> dict[str, Any]:
    figures = micro_benchmarks(quick, log)
    ingest = ingest_benchmark(
        duration if duration is not None else (3.0 if quick else 10.0), connections, generator, log
    )
    figures.append(_figure("ingest, one node (folded stacks)", "MB/s", ingest["mb_per_s"], "—", None))
    figures.append(_figure("ingest, one node", "requests/s", ingest["requests_per_s"], "—", None))
    return {
        "version": FORMAT_VERSION,
        "instance_capacity_mb_s": ingest["mb_per_s"],
        "ingest": ingest,
        "figures": figures,
        "machine": machine(),
        "quick": quick,
        "created_unix": int(time.time()),
    }


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale and unit != "MB/s":
            return f"{value / scale:.2f} {prefix}{unit}"
    return f"{value:.2f} {unit}"


def render_bench(result: dict[str, Any]) -> str:
    from pyro_core.plan.cli import table

    m = result["machine"]
    rows = [
        [
            f["name"],
            _fmt(f["value"], f["unit"]),
            f["peer"],
            _fmt(f["peer_value"], f["unit"]) if f["peer_value"] else "—",
            f"{f['ratio']:.1f}×" if f["ratio"] else "—",
        ]
        for f in result["figures"]
    ]
    ing = result["ingest"]
    return "\n".join(
        [
            f"Machine: {m['cpu']}, {m['cores']} cores, CPython {m['python']}, kernels {m['implementation']}",
            "",
            table(["measured", "figure", "peer in the same run", "peer", "ratio"], rows),
            "",
            f"ingest: {ing['generator']}, {ing['requests']:,} requests of {ing['body_bytes']:,} B, "
            f"{ing['errors']} errors, {ing['connections']} connections, {ing['duration_s']:.0f} s",
            f"instance capacity: {result['instance_capacity_mb_s']:.3f} MB/s",
        ]
    )


if __name__ == "__main__":  # pragma: no cover - convenience
    print(json.dumps(machine()))
