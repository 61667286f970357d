# The whole plan: one scenario in, every figure out (load, overlap, blast radius, churn, gossip,
# recommendation), as plain data the CLI prints, dumps as JSON or renders as a report.
# Owns: the order of the analyses, their sizes (pairs, samples, trials), the gossip message sizes taken
# from the real dskit codec, and the wall time of each step (reported, never asserted).
# Must not know: argparse, terminals, files; progress display is a factory the caller passes.
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from pyro_core.plan.blast import blast_radius, zone_blast
from pyro_core.plan.churn import churn
from pyro_core.plan.gossip import plan_gossip
from pyro_core.plan.load import (
    build_ring_desc,
    make_ring,
    nested_ring_desc,
    place_tenants,
    summarize_load,
)
from pyro_core.plan.overlap import simulate_overlap
from pyro_core.plan.recommend import recommend as recommend_capacity
from pyro_core.plan.scenario import Scenario, Tenant
from pyro_core.ring.model import RingDesc

KV_KEY = "collectors/ingester"  # Pyroscope's ingester ring key
KV_CODEC = "ringDesc"
KV_ENVELOPE = len(KV_KEY) + len(KV_CODEC) + 8  # KeyValuePair framing + memberlist user-message byte


class Bar(Protocol):
    def update(self, n: int = 1) -> Any: ...


ProgressFactory = Callable[[str, int], AbstractContextManager[Bar]]


class _NoBar:
    def update(self, n: int = 1) -> None:
        return None


def no_progress(desc: str, total: int) -> AbstractContextManager[Bar]:
    return contextlib.nullcontext(_NoBar())


def gossip_sizes(desc: RingDesc) -> tuple[int, int]:
    """(one ring change, the whole ring) in bytes as dskit's KV gossips them (protobuf + snappy)."""
    one = next(iter(desc))
    update = len(RingDesc({one: desc[one]}).to_dskit()) + KV_ENVELOPE
    return update, len(desc.to_dskit()) + KV_ENVELOPE


def run(
    scenario: Scenario,
    *,
    progress: ProgressFactory = no_progress,
    overlap_pairs: int = 20_000,
    blast_samples: int = 2000,
    gossip_trials: int = 100,
    recommend: bool = True,
) -> dict[str, Any]:
    """Every analysis of ``scenario``; a JSON-ready dict (keys documented in pyro_core/plan/cli.py)."""
    sc = scenario
    timings: dict[str, float] = {}
    clock = time.perf_counter
    t0 = clock()
    tenants = sc.all_tenants()
    desc = build_ring_desc(sc.instances, sc.zones, sc.tokens, sc.seed)
    ring = make_ring(desc, sc.replication_factor, sc.zones)
    timings["ring_s"] = clock() - t0

    t0 = clock()
    with progress("placing tenants", len(tenants)) as bar:
        placement = place_tenants(ring, tenants, sc.shard_size, bar.update)
    load = placement.instance_load()
    summary = summarize_load(placement, load, sc.instance_capacity)
    timings["load_s"] = clock() - t0

    t0 = clock()
    overlap = simulate_overlap(ring, sc.shard_size, overlap_pairs, sc.seed)
    timings["overlap_s"] = clock() - t0

    t0 = clock()
    ks = sorted({1, 2, sc.fail_instances} - {0})
    ks = [k for k in ks if k <= sc.instances]
    with progress("blast radius", len(ks)) as bar:
        blasts = []
        for k in ks:
            blasts.append(blast_radius(placement, k, sc.seed, samples=blast_samples))
            bar.update(1)
    zones = zone_blast(placement)
    timings["blast_s"] = clock() - t0

    t0 = clock()
    churns = [
        churn(desc, sc.replication_factor, sc.zones, sc.tokens, tenants, sc.shard_size, change, sc.seed)
        for change in ("add", "remove")
        if change == "add" or sc.instances > max(sc.replication_factor, sc.zones, sc.shard_size)
    ]
    timings["churn_s"] = clock() - t0

    t0 = clock()
    update_bytes, state_bytes = gossip_sizes(desc)
    gossip = plan_gossip(
        sc.instances, sc.gossip, update_bytes, state_bytes, seed=sc.seed, trials=gossip_trials
    )
    timings["gossip_s"] = clock() - t0

    recommendation: dict[str, Any] | None = None
    if recommend and sc.instance_capacity:
        t0 = clock()

        def evaluate(n: int, size: int, overrides: dict[str, int]) -> float:
            r = make_ring(nested_ring_desc(n, sc.zones, sc.tokens, sc.seed), sc.replication_factor, sc.zones)
            sized = [Tenant(t.name, t.rate, overrides.get(t.name, t.shard_size)) for t in tenants]
            with progress(f"trying {n} instances, shard size {size or 'all'}", len(sized)) as bar:
                placed = place_tenants(r, sized, size, bar.update, with_sets=False)
            return float(placed.instance_load().max())

        recommendation = recommend_capacity(
            evaluate,
            tenants,
            rf=sc.replication_factor,
            zones=sc.zones,
            configured_shard_size=sc.shard_size,
            capacity=sc.instance_capacity,
            headroom=sc.headroom,
        ).to_dict()
        timings["recommend_s"] = clock() - t0

    return {
        "scenario": {
            "instances": sc.instances,
            "zones": sc.zones,
            "tokens": sc.tokens,
            "replication_factor": sc.replication_factor,
            "shard_size": sc.shard_size,
            "tenants": len(tenants),
            "instance_capacity_mb_s": sc.instance_capacity,
            "headroom": sc.headroom,
            "fail_instances": sc.fail_instances,
            "seed": sc.seed,
            "gossip": {
                "interval_s": sc.gossip.interval,
                "nodes": sc.gossip.nodes,
                "retransmit_mult": sc.gossip.retransmit_mult,
                "packet_size": sc.gossip.packet_size,
                "loss": sc.gossip.loss,
                "heartbeat_period_s": sc.gossip.heartbeat_period,
            },
        },
        "load": summary.to_dict() | {"per_instance_mb_s": [float(x) for x in load]},
        "overlap": overlap.to_dict(),
        "blast_radius": [b.to_dict() for b in blasts],
        "zone_failure": [z.to_dict() for z in zones],
        "churn": [c.to_dict() for c in churns],
        "gossip": gossip.to_dict(),
        "recommendation": recommendation,
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }
