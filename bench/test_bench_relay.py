# What remote write costs a node's ingest: one `pyro-core server` process taking small folded profiles
# from wrk, alone and as a relay to two targets (issue 5: the relay should cost <= 30% of ingest
# throughput). Not a test: nothing asserts on wall-clock time.
# Owns: the group "relay". Scenarios, each one wrk run (32 connections, ~1 KiB folded bodies, POST
# /ingest; DURATION seconds after a 1 s warm-up), all in the same pytest run:
#   - plain         the server without remote write (the peer: what ingest alone sustains);
#   - memory        the same server relaying every profile to two remote targets through in-memory
#                   queues (queue-size 100000, so that nothing is dropped and every profile is really
#                   sent). The targets stand for instances on other machines: two Go net/http sinks
#                   (tests/interop/sink, built here with Debian's Go) that read each request, count
#                   its profile id and answer 200, so that the targets take little of the 2 cores;
#   - spool         the same, with the durable spool on both targets (each 200 waits for the
#                   batched fsync of the spool);
#   - memory-pyro   in-memory queues to two pyro-core targets on this machine: each target ingests
#                   every profile, so the three servers and wrk share the 2 cores (a loaded-machine
#                   figure, not the relay's own cost).
# Figures in extra_info: req/s, p50/p99, errors, the relay's CPU milliseconds per profile (utime +
# stime of the server process from the warm-up to the end of the drain, over every profile sent:
# independent of what the other processes take from the 2 cores), profiles sent and dropped per
# target, the distinct profile ids each target received (every accepted profile must arrive), drain
# seconds after wrk stops, `cost_vs_plain` = 1 - req/s / req/s of plain, and `cpu_vs_plain` = the
# relay's CPU per profile / plain's. The table is printed at the end (run with -s) and stored in the
# last scenario's extra_info["table"].
# Under --benchmark-disable the runs are 1 s.
# Run: python -m pytest bench/test_bench_relay.py --benchmark-only -s
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import ingest_wrk
from gobuild import build_go_program

GROUP = "relay"
DURATION = 8.0
WARMUP = 1.0
CONNECTIONS = 32
SCENARIOS = ("plain", "memory", "spool", "memory-pyro")
HOST = ingest_wrk.HOST
INGEST_PATH = f"/ingest?{ingest_wrk.APP_QUERY}&format=folded"
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_results: dict[str, dict[str, Any]] = {}

pytestmark = pytest.mark.skipif(
    shutil.which("wrk") is None and not Path(ingest_wrk.WRK).exists(), reason="needs wrk"
)


def server_argv(data: Path, port: int, config: Path | None = None) -> list[str]:
    extra = ["-memberlist.leave-timeout=2s", "-ingester.heartbeat-period=1s"]
    if config is not None:
        extra.append(f"-config.file={config}")
    return ingest_wrk.server_argv(data, port, *extra)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def get_json(url: str) -> Any:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@contextmanager
def go_sink(binary: Path) -> Iterator[str]:
    """One sink process (tests/interop/sink); yields its base URL."""
    proc = subprocess.Popen([str(binary), "-addr", f"{HOST}:0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "listening":
            raise RuntimeError(f"the sink did not start: {line!r}")
        yield f"http://{line[1]}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[str]]]:
    """Two pyro-core targets and two Go sinks, started once for every scenario."""
    work = tmp_path_factory.mktemp("relay-targets")
    sink = build_go_program(tmp_path_factory, "sink", "golang-go")
    with ExitStack() as stack:
        pyro: list[str] = []
        for name in ("a", "b"):
            port = ingest_wrk.free_port()
            url = f"http://{HOST}:{port}"
            stack.enter_context(ingest_wrk.running(server_argv(work / name, port), url + "/ready"))
            pyro.append(url)
        sinks = [stack.enter_context(go_sink(sink)) for _ in range(2)]
        yield {"pyro": pyro, "sink": sinks}


def received(scenario: str, urls: dict[str, list[str]]) -> list[int]:
    """How many distinct profile ids each target of ``scenario`` holds so far."""
    if scenario == "memory-pyro":  # what each pyro-core target stored (it drops a repeated id)
        return [int(sum(metric(u, "pyroscope_ingest_profiles_total"))) for u in urls["pyro"]]
    return [int(get_json(u + "/stats")["distinct_ids"]) for u in urls["sink"]]


def metric(url: str, name: str) -> list[float]:
    """Every sample of ``name`` on ``url``/metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=30) as resp:
        text = resp.read().decode()
    return [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name)]


def relay_config(scenario: str, urls: dict[str, list[str]]) -> dict[str, Any] | None:
    if scenario == "plain":
        return None
    addresses = urls["pyro"] if scenario == "memory-pyro" else urls["sink"]
    target: dict[str, Any] = {"queue-size": 100_000, "min-backoff": "100ms", "max-backoff": "1s"}
    if scenario == "spool":
        target["spool"] = {"enabled": True, "max-bytes": "1GiB"}
    return {
        "remote-write": {
            "enabled": True,
            "targets": {f"t{i}": {"address": a, **target} for i, a in enumerate(addresses)},
        }
    }


def wait_drained(url: str, timeout: float = 300.0) -> list[dict[str, Any]]:
    """Until every target's queue (or spool) is empty, nothing is in flight and the sent counts have
    not moved for 0.5 s (requests that wrk gave up on at its end may still be in the relay's
    handlers); the targets' status."""
    deadline = time.monotonic() + timeout
    last: list[int] | None = None
    while True:
        status = get_json(url + "/remote-write")["targets"]
        busy = [
            t
            for t in status
            if t["queue"]["depth"] or t["in_flight"] or (t["spool"] is not None and t["spool"]["entries"])
        ]
        sent = [t["sent"] for t in status]
        if (not busy and sent == last) or time.monotonic() > deadline:
            return list(status)
        last = None if busy else sent
        time.sleep(0.5 if not busy else 0.05)


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| scenario | req/s | p50 | p99 | relay CPU ms/profile | accepted | received per target | dropped "
        "| drain | req/s cost vs plain | CPU/profile vs plain |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in SCENARIOS:
        r = results.get(name)
        if r is None:
            continue
        cost = r.get("cost_vs_plain")
        cpu = r.get("cpu_vs_plain")
        got = " / ".join(f"{n:,}" for n in r.get("received", [])) or "-"
        lines.append(
            f"| {name} | {r['req_per_s']:,.0f} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms "
            f"| {r['cpu_ms_per_profile']:.3f} | {r['profiles']:,} | {got} | {sum(r.get('dropped', [0]))} "
            f"| {r.get('drain_s', 0.0):.1f} s | {'-' if cost is None else f'{cost:.0%}'} "
            f"| {'-' if cpu is None else f'{cpu:.2f}x'} |"
        )
    return "\n".join(lines)


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_relay_ingest(benchmark: Any, scenario: str, targets: dict[str, list[str]], tmp_path: Path) -> None:
    disabled = bool(getattr(benchmark, "disabled", False))
    duration, warmup = (1.0, 0.0) if disabled else (DURATION, WARMUP)
    body = ingest_wrk.folded_body(ingest_wrk.SMALL_BYTES, depth=(4, 8), distinct=200)
    config = relay_config(scenario, targets)
    config_path: Path | None = None
    if config is not None:
        config_path = tmp_path / "relay.yaml"
        config_path.write_text(yaml.safe_dump(config))
    port = ingest_wrk.free_port()
    url = f"http://{HOST}:{port}"
    argv = server_argv(tmp_path / "data", port, config_path)
    received_before = received(scenario, targets) if config is not None else []
    with ingest_wrk.running(argv, url + "/ready") as proc:
        cpu_before = cpu_seconds(proc.pid)
        runs: list[ingest_wrk.WrkResult] = []

        def run() -> ingest_wrk.WrkResult:
            if warmup > 0:
                runs.append(
                    ingest_wrk.run_wrk(
                        f"{scenario}-warmup",
                        url + INGEST_PATH,
                        body,
                        duration=warmup,
                        connections=CONNECTIONS,
                        workdir=tmp_path,
                    )
                )
            res = ingest_wrk.run_wrk(
                scenario,
                url + INGEST_PATH,
                body,
                duration=duration,
                connections=CONNECTIONS,
                workdir=tmp_path,
            )
            runs.append(res)
            return res

        res = benchmark.pedantic(run, rounds=1, iterations=1)
        stopped = time.monotonic()
        info: dict[str, Any] = {
            "req_per_s": res.req_per_s,
            "requests": res.requests,
            "errors": res.errors,
            "p50_ms": res.p50_ms,
            "p99_ms": res.p99_ms,
            "connections": CONNECTIONS,
            "body_bytes": len(body),
            "duration_s": res.duration_s,
        }
        profiles = sum(r.requests - r.raw["status"] for r in runs)
        if config is not None:
            status = wait_drained(url)
            info["drain_s"] = time.monotonic() - stopped
            info["sent"] = [t["sent"] for t in status]
            info["dropped"] = [t["dropped"] for t in status]
            info["given_up"] = [t["given_up"] + t["permanent_failures"] for t in status]
            info["received"] = [a - b for a, b in zip(received(scenario, targets), received_before, strict=True)]
        info["profiles"] = profiles
        info["cpu_ms_per_profile"] = (cpu_seconds(proc.pid) - cpu_before) * 1000 / max(profiles, 1)
    plain = _results.get("plain")
    if plain is not None and scenario != "plain":
        info["cost_vs_plain"] = 1 - res.req_per_s / plain["req_per_s"]
        info["cpu_vs_plain"] = info["cpu_ms_per_profile"] / plain["cpu_ms_per_profile"]
    _results[scenario] = info
    if scenario == SCENARIOS[-1]:
        table = markdown(_results)
        info["table"] = table
        print("\n" + table)
    benchmark.extra_info.update(info)
    assert res.errors == 0, res.raw
    if config is not None:  # every profile the relay sent arrived, once, at each target
        assert info["received"] == info["sent"], (info["received"], info["sent"])
