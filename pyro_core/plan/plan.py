# The whole plan: one scenario in, every figure out (load, overlap, blast radius, churn, gossip,
# recommendation), as plain data the CLI prints, dumps as JSON or renders as a report.
# Owns: the order of the analyses, their sizes (pairs, samples, trials), the gossip message sizes taken
# from a real dskit KV store (pyro_core.kv.store), the optional gossip simulation (gossip_sim.py), and
# the wall time of each step (reported, never asserted).
# Must not know: argparse, terminals, files; progress display is a factory the caller passes.
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from pyro_core.kv.store import RING_DESC_CODEC, KVStore
from pyro_core.plan.blast import blast_radius, zone_blast
from pyro_core.plan.churn import churn
from pyro_core.plan.gossip import plan_gossip
from pyro_core.plan.load import (
    Placement,
    build_ring_desc,
    make_ring,
    nested_ring_desc,
    place_tenants,
    summarize_load,
)
from pyro_core.plan.overlap import simulate_overlap
from pyro_core.plan.recommend import Evaluate, SampleLoads
from pyro_core.plan.recommend import recommend as recommend_capacity
from pyro_core.plan.scenario import Scenario, Tenant
from pyro_core.ring.model import RingDesc

KV_KEY = "collectors/ingester"  # Pyroscope's ingester ring key
_SIZING_EPOCH = 1_700_000_000.0  # any unix time: the sizes do not depend on it
# the recommendation's search (recommend.py "Bounded work"): evaluations, and token ranges walked per
# candidate (above it, the candidate is estimated on a sample) and for the final verification
RECOMMEND_MAX_EVALUATIONS = 40
RECOMMEND_ROW_BUDGET = 2_000_000
RECOMMEND_VERIFY_BUDGET = 24_000_000


class Bar(Protocol):
    def update(self, n: int = 1) -> Any: ...


ProgressFactory = Callable[[str, int], AbstractContextManager[Bar]]


class _NoBar:
    def update(self, n: int = 1) -> None:
        return None


def no_progress(desc: str, total: int) -> AbstractContextManager[Bar]:
    return contextlib.nullcontext(_NoBar())


def gossip_sizes(desc: RingDesc) -> tuple[int, int, int]:
    """(one heartbeat delta, one token-changing delta, the whole ring) in bytes, as a real dskit KV store
    (protobuf + snappy, KeyValuePair) queues and pushes them: the deltas are what ``local_cas`` merges
    compute, so each holds the one changed instance with all its tokens."""
    store: KVStore[RingDesc] = KVStore(
        [RING_DESC_CODEC], retransmit_mult=4, num_members=lambda: len(desc), clock=lambda: _SIZING_EPOCH
    )
    store.cas(KV_KEY, lambda _: (desc.copy(), False), _SIZING_EPOCH)
    while store.get_broadcasts(0, 1 << 62):  # drain the initial write
        pass
    one = next(iter(desc))

    def heartbeat(current: RingDesc | None) -> tuple[RingDesc | None, bool]:
        assert current is not None
        inst = current.instances[one]
        current.instances[one] = inst.replace(timestamp=inst.timestamp + 5)
        return current, False

    def new_tokens(current: RingDesc | None) -> tuple[RingDesc | None, bool]:
        assert current is not None
        inst = current.instances[one]
        current.instances[one] = inst.replace(
            timestamp=inst.timestamp + 10,
            tokens=np.sort((inst.tokens.astype(np.uint64) + 1) % 2**32).astype(np.uint32),
        )
        return current, False

    sizes = []
    for f in (heartbeat, new_tokens):
        store.cas(KV_KEY, f, _SIZING_EPOCH)
        sizes.append(sum(len(m) for m in store.get_broadcasts(0, 1 << 62)))
    return sizes[0], sizes[1], len(store.local_state(False))


OnPlace = Callable[[int, int, Sequence[Tenant]], object]  # (instances, shard size, tenants placed)


def recommend_evaluators(
    sc: Scenario, tenants: Sequence[Tenant], on_place: OnPlace | None = None
) -> tuple[Evaluate, SampleLoads]:
    """The recommendation's evaluators on the real placement (nested rings, load.py): the peak with
    all tenants, and per-group loads of a sample (recommend.py's ``SampleLoads``)."""

    def placed_at(n: int, size: int, overrides: dict[str, int], some: Sequence[Tenant]) -> Placement:
        r = make_ring(nested_ring_desc(n, sc.zones, sc.tokens, sc.seed), sc.replication_factor, sc.zones)
        sized = [Tenant(t.name, t.rate, overrides.get(t.name, t.shard_size)) for t in some]
        placed = place_tenants(r, sized, size, with_sets=False)
        if on_place is not None:
            on_place(n, size, sized)
        return placed

    def evaluate(n: int, size: int, overrides: dict[str, int]) -> float:
        return float(placed_at(n, size, overrides, tenants).instance_load().max())

    def sample(
        n: int, size: int, overrides: dict[str, int], some: Sequence[Tenant], groups: Sequence[int]
    ) -> npt.NDArray[np.float64]:
        placed = placed_at(n, size, overrides, some)
        group = np.asarray(groups, dtype=np.int64)
        out = np.zeros((3, n))
        for g in range(3):
            rate = np.where(group == g, placed.rates, 0.0)
            per_shard = np.bincount(placed.shard_of, weights=rate, minlength=len(placed.shards))
            for s, v in zip(placed.shards, per_shard.tolist(), strict=True):
                if v:
                    out[g, s.members] += v * s.share
        return out

    return evaluate, sample


def run(
    scenario: Scenario,
    *,
    progress: ProgressFactory = no_progress,
    overlap_pairs: int = 20_000,
    blast_samples: int = 2000,
    gossip_trials: int = 100,
    gossip_simulate: float = 0.0,
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
    update_bytes, token_bytes, state_bytes = gossip_sizes(desc)
    gossip = plan_gossip(
        sc.instances,
        sc.gossip,
        update_bytes,
        state_bytes,
        token_update_bytes=token_bytes,
        seed=sc.seed,
        trials=gossip_trials,
    )
    timings["gossip_s"] = clock() - t0
    simulated: dict[str, Any] | None = None
    if gossip_simulate > 0 and sc.instances > 1:
        from pyro_core.plan.gossip_sim import simulate_ring_gossip

        t0 = clock()
        with progress(f"simulating {sc.instances} members for {gossip_simulate:g} s", 1) as bar:
            simulated = simulate_ring_gossip(
                sc.instances, sc.gossip, tokens=sc.tokens, seconds=gossip_simulate, seed=sc.seed
            ).to_dict()
            bar.update(1)
        timings["gossip_simulation_s"] = clock() - t0

    recommendation: dict[str, Any] | None = None
    if recommend and sc.instance_capacity:
        t0 = clock()

        search_bar: list[Bar] = []
        evaluate, sample = recommend_evaluators(
            sc, tenants, lambda n, s, some: [b.update(1) for b in search_bar]
        )

        # at most MAX_EVALUATIONS in step 2, a few more in steps 3-4 and the verification
        with progress("recommendation search", RECOMMEND_MAX_EVALUATIONS + 40) as bar:
            search_bar.append(bar)
            recommendation = recommend_capacity(
                evaluate,
                tenants,
                rf=sc.replication_factor,
                zones=sc.zones,
                configured_shard_size=sc.shard_size,
                capacity=sc.instance_capacity,
                headroom=sc.headroom,
                max_evaluations=RECOMMEND_MAX_EVALUATIONS,
                sample=sample,
                tokens=sc.tokens,
                row_budget=RECOMMEND_ROW_BUDGET,
                verify_budget=RECOMMEND_VERIFY_BUDGET,
                seed=sc.seed,
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
                "heartbeat_timeout_s": sc.gossip.heartbeat_timeout,
                "probe_interval_s": sc.gossip.probe_interval,
                "push_pull_interval_s": sc.gossip.push_pull_interval,
            },
        },
        "load": summary.to_dict() | {"per_instance_mb_s": [float(x) for x in load]},
        "overlap": overlap.to_dict(),
        "blast_radius": [b.to_dict() for b in blasts],
        "zone_failure": [z.to_dict() for z in zones],
        "churn": [c.to_dict() for c in churns],
        "gossip": gossip.to_dict(),
        "gossip_simulated": simulated,
        "recommendation": recommendation,
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }
