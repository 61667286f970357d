# The gossip plan's bandwidth model checked by measurement: a cluster of real KV stores and real
# lifecyclers, heartbeating the ring through the deterministic SWIM simulation.
# Owns: ``simulate_ring_gossip`` (build n members with dskit's memberlist settings, each carrying a real
# ``KVStore`` and a ``Lifecycler`` that registers 128 tokens and heartbeats every period; let it settle;
# then measure, per member and second, the UDP bytes and packets sent, the ring deltas sent (local and
# forwarded), the push/pull bytes, and how stale each member's copy of every heartbeat is) and the
# ``SimulatedGossip`` figures it returns.
# Must not know: the model (pyro_core.plan.gossip computes it; callers compare), argparse, printing,
# wall clocks (all time is the simulation's virtual clock; the result depends only on the seed).
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pyro_core.kv.lifecycler import Lifecycler
from pyro_core.kv.store import RING_DESC_CODEC, KVStore
from pyro_core.memberlist.config import dskit_config
from pyro_core.memberlist.simulation import Faults, Simulation
from pyro_core.plan.gossip import GossipSettings
from pyro_core.ring.model import RingDesc

__all__ = ["SimulatedGossip", "simulate_ring_gossip"]

EPOCH = 1_700_000_000.0  # unix seconds at simulated t = 0 (ring timestamps are whole unix seconds)
RING_KEY = "collectors/ingester"  # Pyroscope's ingester ring key


@dataclass(frozen=True, slots=True)
class SimulatedGossip:
    """Per-member averages over the measured window (``seconds`` of simulated time)."""

    nodes: int
    seconds: float
    seed: int
    udp_bytes_per_s: float  # every UDP packet: gossip, probes, acks, with what they piggyback
    udp_packets_per_s: float
    deltas_sent_per_s: float  # ring deltas put into packets (each one a transmit)
    delta_bytes_per_s: float  # their bytes (the KV messages, before compound framing)
    delta_bytes: float  # mean bytes of one ring delta sent
    ring_changes_per_s: float  # heartbeats written by the whole cluster per second
    transmits_per_change: float  # deltas sent per member ÷ ring changes: at most the retransmit limit
    push_pull_bytes_per_s: float  # push/pull states sent (initiated and answered)
    push_pull_state_bytes: float  # mean bytes of one push/pull state
    total_bytes_per_s: float  # UDP + push/pull
    heartbeat_lag_mean_s: float  # how far behind the writer's last heartbeat a member's copy is
    heartbeat_lag_p99_s: float
    heartbeat_lag_max_s: float
    queue_mean: float  # ring deltas waiting in a member's two KV queues (sampled once a second)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def simulate_ring_gossip(
    n: int,
    settings: GossipSettings | None = None,
    *,
    tokens: int = 128,
    seconds: float = 60.0,
    settle: float | None = None,
    seed: int = 0,
) -> SimulatedGossip:
    """Run ``n`` members heartbeating the ring at ``settings`` for ``seconds`` after ``settle`` seconds
    (default: two heartbeat periods plus the push/pull interval, once every member is registered) and
    return what each member sent. Deterministic for a seed."""
    s = settings or GossipSettings()
    if n < 2:
        raise ValueError("the simulation needs at least two members")
    probe_timeout = min(2.0, s.probe_interval / 2)  # dskit: 2 s within a 5 s probe interval
    holder: dict[str, Simulation] = {}
    stores: dict[str, KVStore[RingDesc]] = {}
    state_bytes: dict[str, list[int]] = {}

    def make_store(name: str) -> KVStore[RingDesc]:
        store: KVStore[RingDesc] = KVStore(
            [RING_DESC_CODEC],
            retransmit_mult=s.retransmit_mult,
            num_members=lambda: max(1, holder["sim"].members[name].member.num_members()),
            clock=lambda: EPOCH + holder["sim"].now,
        )
        stores[name] = store
        return store

    def config(name: str) -> Any:
        return dskit_config(
            name,
            gossip_interval=s.interval,
            gossip_nodes=s.nodes,
            retransmit_mult=s.retransmit_mult,
            udp_buffer_size=s.packet_size,
            push_pull_interval=s.push_pull_interval,
            probe_interval=s.probe_interval,
            probe_timeout=probe_timeout,
        )

    sim = Simulation(
        seed=seed, faults=Faults(loss=s.loss), config_factory=config, delegate_factory=make_store
    )
    holder["sim"] = sim
    rng = random.Random(seed)
    names = [f"ingester-{i}" for i in range(n)]
    for i, name in enumerate(names):
        sim.add_member(name, join=[names[rng.randrange(i)]] if i else [])
        state_bytes[name] = []
        member = sim.members[name].member
        original = member.push_pull_request

        def counted(join: bool, _orig: Any = original, _out: list[int] = state_bytes[name]) -> bytes:
            data: bytes = _orig(join)
            _out.append(len(data))
            return data

        member.push_pull_request = counted  # type: ignore[method-assign]

    # Every member registers at its own random moment within one heartbeat period, so heartbeats are
    # spread over the period as in a cluster whose members started at different times.
    lifecyclers: dict[str, Lifecycler] = {}
    start = sim.now
    register_at = sorted((start + rng.random() * s.heartbeat_period, name) for name in names)
    for i, name in enumerate(names):
        lifecyclers[name] = Lifecycler(
            stores[name],
            ring_key=RING_KEY,
            instance_id=name,
            addr=f"10.0.{i // 256}.{i % 256}:9095",
            num_tokens=tokens,
            heartbeat_period=s.heartbeat_period,
            rng=np.random.default_rng([seed, i]),
        )
    if settle is None:
        settle = 2 * s.heartbeat_period + s.push_pull_interval
    measure_from = start + s.heartbeat_period + settle
    end = measure_from + seconds

    def snapshot() -> dict[str, float]:
        out = dict.fromkeys(("udp", "packets", "deltas", "delta_bytes", "pp_bytes", "pp_count", "hb"), 0.0)
        for name, sm in sim.members.items():
            st = stores[name].stats
            out["udp"] += sm.member.stats.bytes_sent
            out["packets"] += sm.member.stats.packets_sent
            out["deltas"] += st.sent_local_broadcasts + st.sent_gossip_broadcasts
            out["delta_bytes"] += st.sent_broadcasts_bytes
            out["pp_bytes"] += sum(state_bytes[name])
            out["pp_count"] += len(state_bytes[name])
            out["hb"] += lifecyclers[name].heartbeats
        return out

    lags: list[float] = []
    queued: list[int] = []

    def sample() -> None:
        latest = {k: lc.instance.timestamp for k, lc in lifecyclers.items() if lc.instance is not None}
        for name, store in stores.items():
            st = store.stats
            queued.append(st.local_queue_length + st.gossip_queue_length)
            desc = store.raw(RING_KEY)
            if desc is None:
                continue
            for inst_id, ts in latest.items():
                if inst_id == name:
                    continue
                seen = desc.get(inst_id)
                lags.append(float(ts - seen.timestamp) if seen is not None else math.inf)

    before: dict[str, float] | None = None
    next_sample = measure_from + 0.5
    while sim.now < end:
        deadlines = [d - EPOCH for lc in lifecyclers.values() if (d := lc.next_deadline()) is not None]
        if register_at:
            deadlines.append(register_at[0][0])
        if before is None:
            deadlines.append(measure_from)
        deadlines.append(next_sample if before is not None else end)
        t = min(min(deadlines), end)
        sim.run_until(t)
        now = sim.now
        while register_at and register_at[0][0] <= now:
            _, name = register_at.pop(0)
            lifecyclers[name].register(EPOCH + now)
            sim.touch(name)
        for name, lc in lifecyclers.items():
            d = lc.next_deadline()
            if d is not None and d <= EPOCH + now:
                lc.handle_timer(EPOCH + now)
                sim.touch(name)
        if before is None and now >= measure_from:
            before = snapshot()
        elif before is not None and now >= next_sample:
            sample()
            next_sample += 1.0
    assert before is not None
    after = snapshot()
    diff = {k: after[k] - before[k] for k in after}
    per = n * seconds
    changes = diff["hb"] / seconds
    finite = sorted(x for x in lags if math.isfinite(x))
    missing = len(lags) - len(finite)
    p99 = finite[min(len(finite) - 1, math.ceil(0.99 * len(finite)) - 1)] if finite else math.inf
    return SimulatedGossip(
        nodes=n,
        seconds=seconds,
        seed=seed,
        udp_bytes_per_s=diff["udp"] / per,
        udp_packets_per_s=diff["packets"] / per,
        deltas_sent_per_s=diff["deltas"] / per,
        delta_bytes_per_s=diff["delta_bytes"] / per,
        delta_bytes=diff["delta_bytes"] / diff["deltas"] if diff["deltas"] else 0.0,
        ring_changes_per_s=changes,
        transmits_per_change=(diff["deltas"] / per) / changes if changes else 0.0,
        push_pull_bytes_per_s=diff["pp_bytes"] / per,
        push_pull_state_bytes=diff["pp_bytes"] / diff["pp_count"] if diff["pp_count"] else 0.0,
        total_bytes_per_s=(diff["udp"] + diff["pp_bytes"]) / per,
        heartbeat_lag_mean_s=sum(finite) / len(finite) if finite and not missing else math.inf,
        heartbeat_lag_p99_s=p99 if not missing else math.inf,
        heartbeat_lag_max_s=finite[-1] if finite and not missing else math.inf,
        queue_mean=sum(queued) / len(queued) if queued else 0.0,
    )
