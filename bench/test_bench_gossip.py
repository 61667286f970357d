# How fast a change spreads through pyro-core's SWIM core, beside Serf's published convergence model,
# via pytest-benchmark (not tests: nothing here asserts on wall-clock or simulated time).
# Owns: the group "gossip-convergence" — in pyro_core.memberlist.simulation (virtual clock, seeded
# lossy network, memberlist LAN defaults: gossip every 200 ms to 3 nodes, retransmit mult 4), a
# converged cluster of N members (30, 100, 1000), an update injected at one member, and the simulated
# time until 99.99% of the other members hold it; per N and loss the median and p99 over the trials,
# beside Serf's model (bench/gossip_model.py), Serf's published figure, a first-principles mean-field
# push model with and without memberlist's retransmit limit, and a Monte Carlo of the bare push process
# with the limit (per-node tick phases as memberlist has them, ``mc_push_staggered_*``, and
# synchronous rounds, ``mc_push_rounds_*``). Also the idle load of a member (UDP packets and bytes
# sent per second, and the push/pull stream load) for N = 30 and 100.
#
# The update is what a ring change rides on: a broadcast queued at one member and gossiped. A false
# suspicion of member X is delivered to X, X refutes (bumps its incarnation, queues an alive broadcast),
# and the spread is over when the members hold the new incarnation. The "join" rows instead add a new
# member through one seed and wait until everyone sees it alive.
# Each benchmark is one round (pedantic): the timed quantity is the wall time of the simulation; the
# measured figures are simulated seconds in extra_info (``sim_median_s``, ``sim_p99_s``, ``model_s``,
# ``published_s``, ...). Membership is polled every POLL seconds of virtual time, so a figure can be
# late by up to POLL.
# Run: python -m pytest bench/test_bench_gossip.py --benchmark-only --benchmark-json=bench/results.json
from __future__ import annotations

import functools
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gossip_model as model
import pytest

from pyro_core.memberlist import wire
from pyro_core.memberlist.config import default_lan_config
from pyro_core.memberlist.simulation import Faults, Simulation
from pyro_core.memberlist.state import NodeStateType

GROUP = "gossip-convergence"
TARGET = 0.9999  # the fraction of the other members that must know the update
POLL = 0.005  # seconds of virtual time between membership checks
FANOUT = default_lan_config("x").gossip_nodes
INTERVAL = default_lan_config("x").gossip_interval
MULT = default_lan_config("x").retransmit_mult


# -- building and driving a cluster ------------------------------------------------------------------
def build_by_joining(n: int, seed: int) -> Simulation:
    """n members, each joining through one random earlier member, run until all see all alive."""
    sim = Simulation(seed=seed)
    sim.add_member("m0")
    for i in range(1, n):
        sim.add_member(f"m{i}", join=[f"m{sim.rng.randrange(i)}"])
    sim.run_while(lambda: not sim.all_see_alive(), limit=300.0, step=0.5)
    if not sim.all_see_alive():
        raise RuntimeError(f"{n} members did not converge")
    return sim


def build_preseeded(n: int, seed: int) -> Simulation:
    """n members whose views are pre-seeded with everyone's alive state (the state a converged cluster
    ends in) instead of n joins: building a 1,000-member cluster by joins takes minutes in pure Python.
    Each view is filled through the public push/pull merge; the merge queues an alive broadcast about
    every member, a backlog a real cluster would have gossiped away long ago, so it is emptied
    (bench-only reach into the member's queue)."""
    sim = Simulation(seed=seed)
    for i in range(n):
        sim.add_member(f"m{i}")
    states = [
        wire.decode_push_pull(s.member.push_pull_request(False)).states[0] for s in sim.members.values()
    ]
    for s in sim.members.values():
        s.member.merge_remote_state(states, b"", False, sim.now)
        s.member._broadcasts.reset()
    return sim


def queued(sim: Simulation) -> int:
    return sum(s.member.queued_broadcasts() for s in sim.members.values() if s.alive)


def quiesce(sim: Simulation, limit: float) -> None:
    """Run until no member has anything left to gossip (or ``limit`` seconds have passed)."""
    sim.run_while(lambda: queued(sim) > 0, limit=sim.now + limit, step=0.2)


def spread_times(sim: Simulation, subject: str, knows: Callable[[Any], bool], limit: float) -> list[float]:
    """Seconds after now at which each other live member first satisfies ``knows(member)``, sorted;
    members that did not within ``limit`` are left out."""
    pending = {name: s.member for name, s in sim.members.items() if s.alive and name != subject}
    t0 = sim.now
    times: list[float] = []
    while pending and sim.now < t0 + limit:
        sim.run_until(sim.now + POLL)
        done = [name for name, m in pending.items() if knows(m)]
        for name in done:
            del pending[name]
            times.append(sim.now - t0)
    return sorted(times)


@dataclass
class Trial:
    times: list[float]
    n_others: int

    def at(self, fraction: float) -> float | None:
        k = math.ceil(fraction * self.n_others - 1e-9)
        return self.times[k - 1] if k <= len(self.times) else None

    @property
    def converged(self) -> float | None:
        return self.at(TARGET)


def refute_trial(sim: Simulation, subject: str, limit: float) -> Trial:
    """Deliver a false suspicion of ``subject`` to itself; time the spread of its refutation."""
    me = sim.members[subject].member
    before = me.local_node.incarnation
    accuser = next(name for name in sim.members if name != subject)
    packet = wire.encode_packet(
        wire.encode_message(wire.Suspect(incarnation=before, node=subject, from_=accuser))
    )
    # The refutation only queues a broadcast: no packet leaves until the member's next gossip tick or
    # probe, which the simulation has already scheduled.
    me.receive_packet(packet, sim.members[accuser].address, sim.now)
    new = me.local_node.incarnation
    assert new > before, "the member did not refute"

    def knows(m: Any) -> bool:
        node = m.node(subject)
        return node is not None and node.incarnation >= new

    times = spread_times(sim, subject, knows, limit)
    return Trial(times, sum(1 for s in sim.members.values() if s.alive) - 1)


def join_trial(sim: Simulation, name: str, limit: float) -> Trial:
    """Add ``name`` through one random seed; time until the others see it alive."""
    seed = sim.rng.choice(sorted(sim.members))
    n_others = sum(1 for s in sim.members.values() if s.alive)
    sim.add_member(name, join=[seed])

    def knows(m: Any) -> bool:
        node = m.node(name)
        return node is not None and node.state == NodeStateType.ALIVE

    return Trial(spread_times(sim, name, knows, limit), n_others)


# -- statistics and reporting -------------------------------------------------------------------------
def nearest_rank(values: list[float], q: float) -> float:
    """The q-quantile by nearest rank (with fewer than 1/(1-q) values, p99 is the maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None or math.isinf(x) else round(x, digits)


@dataclass
class Case:
    n: int
    loss: float
    seeds: tuple[int, ...]
    trials_per_seed: int
    limit: float  # seconds of virtual time to wait for one spread
    build: str = "join"  # "join" or "preseed"
    kind: str = "refute"  # "refute" or "join"
    trials: list[Trial] = field(default_factory=list)
    build_wall: float = 0.0


# Pre-seeded 1,000-member clusters are expensive (about 30 s): the 0% and 10% loss cases share one,
# each running its trials on the quiet cluster the previous case left.
_SHARED: dict[tuple[int, int], Simulation] = {}


def cluster_for(case: Case, seed: int) -> Simulation:
    if case.build != "preseed":
        return build_by_joining(case.n, seed)
    key = (case.n, seed)
    if key not in _SHARED:
        _SHARED[key] = build_preseeded(case.n, seed)
    return _SHARED[key]


def run_case(case: Case) -> None:
    case.trials.clear()
    for seed in case.seeds:
        t = time.perf_counter()
        sim = cluster_for(case, seed)
        quiesce(sim, 30.0)
        sim.faults = Faults(loss=case.loss)
        sim.run_until(sim.now + 2.0)  # let the loss settle in (probes fail, a few refutations)
        quiesce(sim, 10.0)
        case.build_wall += time.perf_counter() - t
        names = sorted(sim.members)
        for i in range(case.trials_per_seed):
            if case.kind == "join":
                case.trials.append(join_trial(sim, f"joiner-{i}", case.limit))
            else:
                subject = names[sim.rng.randrange(len(names))]
                case.trials.append(refute_trial(sim, subject, case.limit))
            quiesce(sim, 10.0)


@functools.cache
def push_model(n: int, loss: float, staggered: bool) -> dict[str, float | None]:
    """Median and p99 of the bare push process (gossip_model.push_gossip_trials) with memberlist's
    retransmit limit, and the share of trials in which gossip alone stopped short."""
    trials = 400 if n <= 30 else 200 if n <= 100 else 40
    times = model.push_gossip_trials(
        n,
        FANOUT,
        INTERVAL,
        loss,
        model.retransmit_limit(n, MULT),
        staggered=staggered,
        trials=trials,
        seed=n,
        target=TARGET,
    )
    done = [t for t in times if t is not None]
    return {
        "median_s": _r(statistics.median(done)) if done else None,
        "p99_s": _r(nearest_rank([math.inf if t is None else t for t in times], 0.99)),
        "stopped_short": round(1 - len(done) / len(times), 4),
        "trials": len(times),
    }


def describe(benchmark: Any, case: Case, label: str) -> None:
    n, p = case.n, case.loss
    lim = model.retransmit_limit(n, MULT)
    reach = model.epidemic_final_reach(n, FANOUT, p, lim)
    benchmark.extra_info.update(
        {
            "label": label,
            "ops": case.trials_per_seed * len(case.seeds),
            "unit": "trial",
            "impl": "sim",
            "baseline": False,
            "nodes": n,
            "loss": p,
            "update": case.kind,
            "cluster_build": case.build,
            "fanout": FANOUT,
            "gossip_interval_s": INTERVAL,
            "retransmit_limit": lim,
            "published_s": model.PUBLISHED.get((n, p)),
            "model_s": model.serf_convergence_time(n, FANOUT, INTERVAL, p, TARGET),
            "model_push_unlimited_s": _r(model.epidemic_time(n, FANOUT, INTERVAL, p, TARGET)),
            "model_push_limited_s": _r(model.epidemic_time(n, FANOUT, INTERVAL, p, TARGET, lim)),
            "model_push_limited_reach": round(reach, 8),
            "model_push_limited_p_someone_missed": round(1 - reach ** (n - 1), 5),
        }
    )
    for name, staggered in (("staggered", True), ("rounds", False)):
        for k, v in push_model(n, p, staggered).items():
            benchmark.extra_info[f"mc_push_{name}_{k}"] = v


def record(benchmark: Any, case: Case, wall: float) -> None:
    done = [t.converged for t in case.trials if t.converged is not None]
    info = benchmark.extra_info
    info["trials"] = len(case.trials)
    info["trials_not_converged"] = len(case.trials) - len(done)
    info["limit_s"] = case.limit
    info["sim_all_s"] = [_r(t.converged) for t in case.trials]
    if done:
        info["sim_median_s"] = _r(statistics.median(done))
        # an unconverged trial counts as the limit (a lower bound) in the p99
        info["sim_p99_s"] = _r(nearest_rank([t.converged or case.limit for t in case.trials], 0.99))
        info["sim_min_s"] = _r(min(done))
    for q in (0.5, 0.9):
        vals = [v for v in (t.at(q) for t in case.trials) if v is not None]
        if vals:
            info[f"sim_median_t{int(q * 100)}_s"] = _r(statistics.median(vals))
    info["wall_s"] = round(wall, 3)
    info["build_wall_s"] = round(case.build_wall, 3)


def run_bench(benchmark: Any, case: Case, label: str) -> None:
    describe(benchmark, case, label)
    started = time.perf_counter()
    benchmark.pedantic(run_case, args=(case,), rounds=1, iterations=1, warmup_rounds=0)
    record(benchmark, case, time.perf_counter() - started)


# -- the convergence benchmarks -----------------------------------------------------------------------
CASES = {
    "n30-loss0": Case(30, 0.0, seeds=(1, 2, 3, 4, 5), trials_per_seed=6, limit=60.0),
    "n30-loss10": Case(30, 0.1, seeds=(11, 12, 13, 14, 15), trials_per_seed=6, limit=60.0),
    "n30-loss50": Case(30, 0.5, seeds=(21, 22, 23, 24, 25), trials_per_seed=6, limit=60.0),
    "n100-loss0": Case(100, 0.0, seeds=(31, 32), trials_per_seed=6, limit=60.0),
    "n100-loss10": Case(100, 0.1, seeds=(41, 42), trials_per_seed=6, limit=60.0),
    "n1000-loss0": Case(1000, 0.0, seeds=(51,), trials_per_seed=3, limit=20.0, build="preseed"),
    "n1000-loss10": Case(1000, 0.1, seeds=(51,), trials_per_seed=2, limit=20.0, build="preseed"),
    "join-n30": Case(30, 0.0, seeds=(71, 72), trials_per_seed=4, limit=60.0, kind="join"),
    "join-n100": Case(100, 0.0, seeds=(81,), trials_per_seed=4, limit=60.0, kind="join"),
}


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("key", list(CASES))
def test_convergence(benchmark: Any, key: str) -> None:
    case = CASES[key]
    what = "join seen alive" if case.kind == "join" else "refutation"
    label = f"{what}, {case.n} members, {case.loss:.0%} loss"
    run_bench(benchmark, case, label)


# -- idle load ------------------------------------------------------------------------------------------
IDLE_WINDOW = 60.0  # seconds of virtual time


def push_pull_interval(n: int) -> float:
    """memberlist's push/pull interval stretched for large clusters: × (ceil(log2 n − 5) + 1) above 32."""
    base = default_lan_config("x").push_pull_interval
    return base if n <= 32 else base * (math.ceil(math.log2(n) - 5) + 1)


def idle_load(n: int, seed: int, info: dict[str, Any]) -> None:
    sim = build_by_joining(n, seed)
    quiesce(sim, 30.0)
    sim.run_until(sim.now + 5.0)
    members = [s.member for s in sim.members.values()]
    before = [
        (m.stats.packets_sent, m.stats.bytes_sent, m.stats.packets_received, dict(m.stats.messages))
        for m in members
    ]
    start = sim.now
    sim.run_until(start + IDLE_WINDOW)
    span = sim.now - start
    sent = sum(m.stats.packets_sent - b[0] for m, b in zip(members, before, strict=True))
    sent_bytes = sum(m.stats.bytes_sent - b[1] for m, b in zip(members, before, strict=True))
    received = sum(m.stats.packets_received - b[2] for m, b in zip(members, before, strict=True))
    kinds: dict[str, int] = {}
    for m, b in zip(members, before, strict=True):
        for k, v in m.stats.messages.items():
            kinds[k] = kinds.get(k, 0) + v - b[3].get(k, 0)
    per = n * span
    # Push/pull streams are not packets: each member opens one every (scaled) push/pull interval and
    # answers about one, sending its full state each time (the simulation exchanges them uncompressed;
    # memberlist compresses streams when compression is on).
    state = members[0].push_pull_request(False)
    interval = push_pull_interval(n)
    info.update(
        {
            "nodes": n,
            "window_s": span,
            "udp_packets_sent_per_member_s": round(sent / per, 3),
            "udp_bytes_sent_per_member_s": round(sent_bytes / per, 1),
            "udp_packets_received_per_member_s": round(received / per, 3),
            "udp_bytes_per_packet": round(sent_bytes / sent, 1) if sent else 0,
            "messages_received_per_member_s": {k: round(v / per, 3) for k, v in sorted(kinds.items())},
            "push_pull_interval_s": interval,
            "push_pull_state_bytes": len(state),
            "push_pull_state_bytes_lzw": len(wire.compress_payload(state)),
            "push_pull_bytes_sent_per_member_s": round(2 * len(state) / interval, 1),
            "queued_after": queued(sim),
        }
    )
    info["total_bytes_sent_per_member_s"] = round(
        info["udp_bytes_sent_per_member_s"] + info["push_pull_bytes_sent_per_member_s"], 1
    )


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("n", [30, 100])
def test_idle_load(benchmark: Any, n: int) -> None:
    info: dict[str, Any] = {}
    benchmark.extra_info.update(
        {"label": f"idle load, {n} members, {IDLE_WINDOW:.0f} s", "ops": 1, "unit": "window", "impl": "sim"}
    )
    benchmark.pedantic(idle_load, args=(n, 90 + n, info), rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(info)
