# Benchmarks of a live pyro-core cluster on real sockets (127.0.0.1 only), via pytest-benchmark (not
# tests: nothing here asserts on wall-clock time).
# Owns: the group "cluster".
#   - Ring-change propagation (``test_ring_change_propagation[tcp|udp]``): 5 ClusterMembers in one
#     trio run (a background thread) over real DskitTCPTransports (dskit's TCP transport, Pyroscope's)
#     or NetTransports (memberlist's UDP + TCP), dskit_config defaults (gossip every 200 ms to 3
#     nodes, retransmit mult 4, probe 5 s, push/pull 30 s), joined through the first member, each
#     registered in the ring by its lifecycler (128 tokens, heartbeat every 5 s). Once settled, one
#     round = one ring change at one member (a CAS adding a new 128-token instance, at a different
#     member each round) until every other member's store shows it; ``watch_key`` callbacks record
#     ``trio.current_time()`` when each store merges it. The timed round is that wait (plus a thread
#     hop), so the report's time per round is the propagation time; the trio-clock figures (median
#     and max over the rounds, first member to see it) are in extra_info beside Serf's convergence
#     model for 5 nodes (bench/gossip_model.py, when present: the report's "vs reference" column) and
#     the staggered push Monte Carlo. Before the rounds, an idle window records the packets and bytes
#     each member sends per second (MemberlistNode.core.stats) and the process CPU of the 5 members.
#   - Idle CPU per member (``test_idle_cpu_per_member[tcp|udp]``): 5 ``python -m pyro_core member``
#     processes (tests/net/procs.py) with -ring.register and the default dskit intervals, settled 5 s,
#     then each process's CPU time (utime + stime from /proc/<pid>/stat) over a 20 s window. The timed
#     round is the window itself; the figures (CPU % per member, mean and max) are in extra_info and
#     in the row's label, which is written after the run.
# Under --benchmark-disable every benchmark runs a shortened pass (one round, short settle and
# windows) so that the file still checks that everything works. Every thread and process started
# here is stopped in a ``finally``.
# Run: python -m pytest bench/test_bench_cluster.py --benchmark-only --benchmark-json=bench/results.json
from __future__ import annotations

import math
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio

from pyro_core import RingDesc, generate_tokens
from pyro_core.memberlist.config import dskit_config
from pyro_core.net.cluster import DEFAULT_RING_KEY, ClusterMember, RingRegistration
from pyro_core.net.dskit_tcp import DskitTCPTransport
from pyro_core.net.transport import Transport
from pyro_core.net.udp import NetTransport

try:  # written by another engineer; leave the model figures out when it is missing
    import gossip_model
except ImportError:  # pragma: no cover - depends on the checkout
    gossip_model = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests/net's helpers, when pytest was not started from the repo root
    sys.path.append(str(ROOT))
from tests.net.golang import free_port  # noqa: E402
from tests.net.procs import MemberProcess  # noqa: E402

GROUP = "cluster"
HOST = "127.0.0.1"
N_MEMBERS = 5
TRANSPORTS = ("tcp", "udp")
TRANSPORT_NAMES = {"tcp": "dskit TCP", "udp": "memberlist UDP"}
PROBE_TOKENS = 128  # tokens of the instance each ring change adds
ROUNDS = 10  # ring changes per transport
ROUND_TIMEOUT = 10.0  # seconds to wait for one change to reach every member
CONVERGE_TIMEOUT = 30.0  # seconds for a cluster to form (every member sees every member and instance)
# Full pass / shortened pass (--benchmark-disable).
SETTLE = {True: 2.0, False: 0.5}  # in-process cluster: seconds after it converged
IDLE_WINDOW = {True: 5.0, False: 1.0}  # in-process cluster: the packets-per-second window
PROC_SETTLE = {True: 5.0, False: 1.0}  # processes: seconds after they converged
PROC_WINDOW = {True: 20.0, False: 2.0}  # processes: the CPU window
PAUSE = (0.3, 0.8)  # untimed pause before each ring change (random, so the gossip tick phase varies)
# The dskit intervals (MemberProcess sets fast test intervals first; the last flag wins).
DSKIT_INTERVALS = [
    "-memberlist.gossip-interval=200ms",
    "-memberlist.pullpush-interval=30s",
    "-memberlist.probe-interval=5s",
    "-memberlist.probe-timeout=2s",
]
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- helpers (extra_info conventions of bench/test_bench_ring.py, read by bench/report.py) ----------
def describe(benchmark: Any, *, label: str, unit: str, impl: str = "pyro-core", **extra: Any) -> None:
    benchmark.extra_info.update(
        {"label": label, "ops": 1, "unit": unit, "impl": impl, "baseline": False, **extra}
    )


def record_throughput(benchmark: Any) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable
        return
    median = stats.stats.median
    benchmark.extra_info["ns_per_op"] = median * 1e9
    benchmark.extra_info["ops_per_s"] = 1 / median if median > 0 else float("inf")


def full_pass(benchmark: Any) -> bool:
    """False under --benchmark-disable: run a shortened pass."""
    return not getattr(benchmark, "disabled", False)


def model_figures(n: int) -> dict[str, Any]:
    """Serf's model and the staggered push Monte Carlo for an update to reach all n members."""
    if gossip_model is None:
        return {}
    out: dict[str, Any] = {}
    config = dskit_config("x")
    serf = getattr(gossip_model, "serf_convergence_time", None)
    if serf is not None:
        seconds = float(serf(n, fanout=config.gossip_nodes, interval=config.gossip_interval))
        out["model_serf_s"] = seconds
        out["reference_label"] = f"Serf's model, {n} nodes"
        out["reference_ns_per_op"] = seconds * 1e9
    trials = getattr(gossip_model, "push_gossip_trials", None)
    limit = getattr(gossip_model, "retransmit_limit", None)
    if trials is not None and limit is not None:
        times = trials(
            n,
            fanout=config.gossip_nodes,
            interval=config.gossip_interval,
            transmit_limit=limit(n, config.retransmit_mult),
            staggered=True,
            trials=400,
            seed=1,
        )
        reached = [t for t in times if t is not None]
        if reached:
            out["model_push_mc_median_s"] = statistics.median(reached)
            out["model_push_mc_max_s"] = max(reached)
            out["model_push_mc_missed"] = len(times) - len(reached)
    return out


def summary(values: list[float]) -> tuple[float, float]:
    return (statistics.fmean(values), max(values)) if values else (math.nan, math.nan)


# ====================================================================================================
# Ring-change propagation: 5 ClusterMembers in one trio run
# ====================================================================================================
@dataclass
class Round:
    origin: int
    started: float  # trio clock, just before the CAS
    seen: dict[int, float] = field(default_factory=dict)  # member index -> trio clock when merged

    @property
    def complete(self) -> bool:
        return len(self.seen) == N_MEMBERS - 1

    @property
    def all_s(self) -> float:
        return max(self.seen.values()) - self.started if self.complete else math.inf

    @property
    def first_s(self) -> float:
        return min(self.seen.values()) - self.started if self.seen else math.inf


class InProcessCluster:
    """N ClusterMembers on 127.0.0.1 in a trio run of their own thread; driven from the caller's."""

    def __init__(self, transport: str, *, settle: float, idle_window: float) -> None:
        self.transport = transport
        self.settle = settle
        self.idle_window = idle_window
        self.members: list[ClusterMember] = []
        self.idle: dict[str, Any] = {}
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._thread_main, name=f"bench-cluster-{transport}", daemon=True
        )
        self._rng = np.random.default_rng(7)

    # -- the trio side ---------------------------------------------------------------------------------
    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the caller by start()
            self._error = exc
        finally:
            self._ready.set()

    def _make_transport(self) -> Transport:
        if self.transport == "udp":
            return NetTransport(HOST, 0)
        return DskitTCPTransport(HOST, 0)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._cancel = nursery.cancel_scope
            for i in range(N_MEMBERS):
                member = ClusterMember(
                    dskit_config(f"bench-{i}", bind_addr=HOST, bind_port=0),
                    self._make_transport(),
                    registration=RingRegistration(f"ingester-{i}"),
                    seed=i,
                )
                await nursery.start(member.run)
                self.members.append(member)
            seed_addr = self.members[0].address
            for member in self.members[1:]:
                await member.node.join([seed_addr])
            for member in self.members:
                await member.register()
            with trio.fail_after(CONVERGE_TIMEOUT):
                while not self._converged():
                    await trio.sleep(0.05)
            await trio.sleep(self.settle)
            await self._measure_idle()
            self._ready.set()
            await trio.sleep_forever()

    def _converged(self) -> bool:
        ids = {f"ingester-{i}" for i in range(N_MEMBERS)}
        for member in self.members:
            core = member.node.core
            ring = member.ring()
            if core is None or core.num_members() != N_MEMBERS or ring is None or not ids <= set(ring):
                return False
        return True

    async def _measure_idle(self) -> None:
        """Packets and bytes each member sends per second while nothing changes (heartbeats aside)."""
        cores = [m.node.core for m in self.members]
        assert all(c is not None for c in cores)
        before = [(c.stats.packets_sent, c.stats.bytes_sent) for c in cores]  # type: ignore[union-attr]
        cpu0, t0 = time.process_time(), trio.current_time()
        await trio.sleep(self.idle_window)
        cpu1, t1 = time.process_time(), trio.current_time()
        after = [(c.stats.packets_sent, c.stats.bytes_sent) for c in cores]  # type: ignore[union-attr]
        span = t1 - t0
        packets = [(a[0] - b[0]) / span for a, b in zip(after, before, strict=True)]
        nbytes = [(a[1] - b[1]) / span for a, b in zip(after, before, strict=True)]
        self.idle = {
            "idle_window_s": span,
            "idle_packets_sent_per_s_per_member": statistics.fmean(packets),
            "idle_packets_sent_per_s_max": max(packets),
            "idle_bytes_sent_per_s_per_member": statistics.fmean(nbytes),
            "idle_bytes_sent_per_s_max": max(nbytes),
            # the whole process (5 members + the idle benchmark thread), split evenly
            "idle_cpu_pct_per_member_in_process": (cpu1 - cpu0) / span * 100 / N_MEMBERS,
        }

    async def _change(self, index: int) -> Round:
        """One ring change at member ``index % N``; wait until every other member's store shows it."""
        origin = index % N_MEMBERS
        probe = f"probe-{index}"
        done = trio.Event()
        rnd = Round(origin, 0.0)
        cancels = []
        for j, member in enumerate(self.members):
            if j == origin:
                continue

            def seen(value: RingDesc | None, j: int = j) -> bool:
                if value is None or probe not in value:
                    return True
                rnd.seen.setdefault(j, trio.current_time())
                if rnd.complete:
                    done.set()
                return False

            cancels.append(member.store.watch_key(DEFAULT_RING_KEY, seen))

        def add_probe(current: RingDesc | None) -> tuple[RingDesc | None, bool]:
            ring = current if current is not None else RingDesc()
            tokens = generate_tokens(PROBE_TOKENS, ring.tokens(), self._rng)
            ring.add_instance(
                probe, f"10.9.0.{index % 250 + 1}:9095", tokens=tokens, now=math.floor(time.time())
            )
            return ring, False

        member = self.members[origin]
        rnd.started = trio.current_time()
        result = member.store.cas(DEFAULT_RING_KEY, add_probe, time.time())
        member.node.wake()
        if not result.ok:
            raise RuntimeError(f"the ring change failed: {result}")
        with trio.move_on_after(ROUND_TIMEOUT):
            await done.wait()
        for cancel in cancels:
            cancel()
        return rnd

    # -- the caller's side -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(CONVERGE_TIMEOUT + self.settle + self.idle_window + 30):
            raise RuntimeError(f"the {self.transport} cluster did not start")
        if self._error is not None:
            raise RuntimeError(f"the {self.transport} cluster failed to start") from self._error

    def change(self, index: int) -> Round:
        assert self._token is not None
        return trio.from_thread.run(self._change, index, trio_token=self._token)

    def stop(self) -> None:
        if self._token is not None and self._cancel is not None:
            with suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
        if self._thread.is_alive():
            self._thread.join(30)


@contextmanager
def in_process_cluster(transport: str, *, full: bool) -> Iterator[InProcessCluster]:
    cluster = InProcessCluster(transport, settle=SETTLE[full], idle_window=IDLE_WINDOW[full])
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ring_change_propagation(benchmark: Any, transport: str) -> None:
    full = full_pass(benchmark)
    name = TRANSPORT_NAMES[transport]
    rounds: list[Round] = []
    pauses = random.Random(11)
    counter = iter(range(10_000))
    with in_process_cluster(transport, full=full) as cluster:

        def pause() -> tuple[tuple[int], dict[str, Any]]:
            time.sleep(pauses.uniform(*PAUSE))
            return (next(counter),), {}

        def one_change(index: int) -> None:
            rounds.append(cluster.change(index))

        describe(
            benchmark,
            label=f"ring change seen by all {N_MEMBERS - 1} other members, {N_MEMBERS} members, {name}",
            unit="ring change",
            members=N_MEMBERS,
            transport=name,
            **model_figures(N_MEMBERS),
        )
        benchmark.pedantic(one_change, setup=pause, rounds=ROUNDS, warmup_rounds=1)
        idle = cluster.idle
    timed = rounds[1:] if full else rounds  # the first is the warm-up round
    if not timed:
        return
    complete = [r.all_s for r in timed if r.complete]
    missed = len(timed) - len(complete)
    median_s = statistics.median(complete) if complete else math.inf
    max_s = max(complete) if complete else math.inf
    benchmark.extra_info.update(
        {
            "prop_median_s": median_s,
            "prop_max_s": max_s,
            "prop_min_s": min(complete) if complete else math.inf,
            "prop_first_member_median_s": statistics.median(r.first_s for r in timed),
            "prop_rounds_s": [round(r.all_s, 4) for r in timed],
            "prop_missed_rounds": missed,
            **idle,
        }
    )
    benchmark.extra_info["label"] = (
        f"ring change seen by all {N_MEMBERS - 1} other members, {N_MEMBERS} members, {name} "
        f"(trio clock: median {median_s * 1e3:.0f} ms, max {max_s * 1e3:.0f} ms"
        + (f", {missed} of {len(timed)} rounds timed out" if missed else "")
        + ")"
    )
    record_throughput(benchmark)


# ====================================================================================================
# Idle CPU per member: 5 `python -m pyro_core member` processes
# ====================================================================================================
def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()  # fields from 3 (state) on; comm may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def stop_all(procs: list[MemberProcess], timeout: float = 5.0) -> None:
    """SIGTERM every process at once (they leave in parallel), then wait; kill what is left.

    When the whole cluster stops at once, the last member still counts the others alive when it
    broadcasts its leave, and nobody is left to take the broadcast: it waits out
    -memberlist.leave-timeout (20 s), as memberlist's Leave does. Nothing is measured here, so ``timeout``
    cuts that short."""
    for p in procs:
        if p.proc.poll() is None:
            p.proc.terminate()
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.proc.wait(max(0.1, deadline - time.monotonic()))
        except Exception:  # TimeoutExpired
            p.proc.kill()
            p.proc.wait()
        p.terminate()  # the process has exited: only joins the log reader


@contextmanager
def member_processes(transport: str) -> Iterator[list[MemberProcess]]:
    ports = [free_port(HOST) for _ in range(N_MEMBERS)]
    flags = [f"-memberlist.transport={transport}", *DSKIT_INTERVALS, "-ring.register"]
    procs: list[MemberProcess] = []
    try:
        seed = MemberProcess("cpu-0", ports[0], [], flags)
        procs.append(seed)
        if not seed.wait_for(lambda p: "up at" in p.output(), 30):
            raise RuntimeError(f"the seed member did not start:\n{seed.output()}")
        for i in range(1, N_MEMBERS):
            procs.append(MemberProcess(f"cpu-{i}", ports[i], [ports[0]], flags))
        names = {p.name for p in procs}
        for p in procs:
            if not p.wait_for(lambda p: names <= p.alive(), CONVERGE_TIMEOUT):
                raise RuntimeError(f"{p.name} did not see every member alive:\n{p.output()}")
        yield procs
    finally:
        stop_all(procs)


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_idle_cpu_per_member(benchmark: Any, transport: str) -> None:
    full = full_pass(benchmark)
    name = TRANSPORT_NAMES[transport]
    window = PROC_WINDOW[full]
    result: dict[str, Any] = {}
    with member_processes(transport) as procs:
        time.sleep(PROC_SETTLE[full])

        def measure() -> None:
            pids = [p.proc.pid for p in procs]
            before = [cpu_seconds(pid) for pid in pids]
            t0 = time.monotonic()
            time.sleep(window)
            after = [cpu_seconds(pid) for pid in pids]
            span = time.monotonic() - t0
            result["pct"] = [(a - b) / span * 100 for a, b in zip(after, before, strict=True)]
            result["span"] = span

        describe(
            benchmark,
            label=f"idle CPU per member, {N_MEMBERS} member processes, {name} ({window:.0f} s window)",
            unit=f"{window:.0f} s window",
            members=N_MEMBERS,
            transport=name,
        )
        benchmark.pedantic(measure, rounds=1, iterations=1)
        dead = [p.name for p in procs if p.proc.poll() is not None]
        if dead:
            raise RuntimeError(f"member processes exited during the window: {dead}")
    pct = result["pct"]
    mean, peak = summary(pct)
    benchmark.extra_info.update(
        {
            "cpu_pct_per_member": [round(x, 3) for x in pct],
            "cpu_pct_mean": mean,
            "cpu_pct_max": peak,
            "window_s": result["span"],
            "settle_s": PROC_SETTLE[full],
            "clk_tck": CLK_TCK,
        }
    )
    benchmark.extra_info["label"] = (
        f"idle CPU per member, {N_MEMBERS} member processes, {name}: mean {mean:.2f}%, max {peak:.2f}% "
        f"({result['span']:.0f} s window)"
    )
    record_throughput(benchmark)
