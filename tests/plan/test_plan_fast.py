# The fast paths against the exact methods they replace, and the recommendation's search on cases
# worked by hand and on the real placement.
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from pyro_core.plan.blast import blast_radius
from pyro_core.plan.load import build_ring_desc, make_ring, nested_ring_desc, place_tenants
from pyro_core.plan.plan import recommend_evaluators, run
from pyro_core.plan.recommend import recommend, shard_overrides, tenant_min_shard_size
from pyro_core.plan.scenario import Scenario, Tenant, TenantMix


def _scenarios(count: int) -> list[tuple[int, int, int, int, int]]:
    """(instances, zones, rf, shard size, seed), seeded and valid (zone-aware: rf ≤ zones)."""
    rng = np.random.default_rng(2024)
    out = []
    while len(out) < count:
        zones = int(rng.choice([1, 1, 2, 3, 4]))
        n = int(rng.integers(max(zones, 2), 16))
        rf = int(rng.integers(1, (zones if zones > 1 else min(n, 5)) + 1))
        size = int(rng.integers(0, n + 1))
        out.append((n, zones, rf, size, len(out)))
    return out


@pytest.mark.parametrize("batch", range(4))
def test_fast_walk_gives_the_exact_walks_numbers_bit_for_bit(batch: int) -> None:
    for n, zones, rf, size, seed in _scenarios(300)[batch::4]:
        ring = make_ring(build_ring_desc(n, zones, int(4 + seed % 13), seed), rf, zones)
        tenants = [
            Tenant(f"s{seed}-t{i}", 1.0 + i % 7, (size + i) % (n + 1) if i % 4 == 0 else None)
            for i in range(25)
        ]
        exact = place_tenants(ring, tenants, size, exact=True)
        fast = place_tenants(ring, tenants, size)
        assert exact.shard_of.tolist() == fast.shard_of.tolist()
        for a, b in zip(exact.shards, fast.shards, strict=True):
            assert a.members.tolist() == b.members.tolist()
            assert np.array_equal(a.share, b.share)
            assert np.array_equal(a.sets, b.sets)
            assert np.array_equal(a.set_weight, b.set_weight)
        assert np.array_equal(exact.instance_load(), fast.instance_load())
        for k in (1, 2):
            if k > n:
                continue
            dense = blast_radius(fast, k, seed, samples=200, exact_limit=40, dense=True)
            sparse = blast_radius(fast, k, seed, samples=200, exact_limit=40)
            assert (dense.lose_quorum_share, dense.lose_quorum_worst) == (
                sparse.lose_quorum_share,
                sparse.lose_quorum_worst,
            )
            assert sparse.lose_quorum_rate_share == pytest.approx(dense.lose_quorum_rate_share, abs=1e-12)


def test_nested_rings_grow_by_one_instance() -> None:
    small, large = nested_ring_desc(7, 3, 16, 5), nested_ring_desc(8, 3, 16, 5)
    assert all(np.array_equal(small[k].tokens, large[k].tokens) for k in small)
    assert len(np.unique(large.tokens())) == 8 * 16


def test_tenant_minimum_shard_size_by_hand() -> None:
    # 50 MB/s × RF 3 = 150 MB/s over instances of 14 usable: ceil(150 / 14) = 11, whole zones: 12
    assert tenant_min_shard_size(50.0, 3, 3, 14.0) == 12
    assert tenant_min_shard_size(0.1, 3, 3, 14.0) == 3  # never below RF
    tenants = [Tenant("huge", 50.0), Tenant("small", 0.1), Tenant("own", 50.0, 15)]
    assert shard_overrides(tenants, 6, 3, 3, 14.0) == {"huge": 12}


def test_uniform_tenants_on_every_instance_meet_the_perfect_balance_bound() -> None:
    # hand model: the whole ring balances perfectly (peak = total / n); any smaller shard costs 50%
    tenants = [Tenant(f"t{i}", 1.0) for i in range(30)]  # 30 MB/s × RF 3 = 90 MB/s
    seen: list[tuple[int, int]] = []

    def evaluate(n: int, size: int, overrides: dict[str, int]) -> float:
        seen.append((n, size))
        return 90.0 / n * (1.0 if size == 0 else 1.5)

    rec = recommend(evaluate, tenants, rf=3, zones=3, configured_shard_size=3, capacity=10.0, headroom=0.1)
    assert rec.lower_bound == 10 and rec.instances == 10 and rec.shard_size == 0  # 90 / 9 usable
    assert rec.imbalance_cost == 0.0 and rec.fits
    assert rec.configured_instances == 15  # 1.5 × 90 / 9
    assert all(n >= 10 for n, _ in seen)


def test_a_huge_tenant_forces_its_shard_size_up() -> None:
    tenants = [Tenant("huge", 40.0)] + [Tenant(f"t{i}", 0.5) for i in range(20)]
    got: dict[str, int] = {}

    def evaluate(n: int, size: int, overrides: dict[str, int]) -> float:
        got.update(overrides)
        own = overrides.get("huge", size or n)
        return max(40.0 * 3 / own, 150.0 / n)

    rec = recommend(evaluate, tenants, rf=3, zones=3, configured_shard_size=3, capacity=20.0, headroom=0.3)
    # 40 × 3 / 14 usable → 9 instances at least for the big tenant
    assert got["huge"] == 9 and rec.fits and rec.peak_load <= 14.0


def test_recommendation_on_the_real_placement_meets_the_headroom_above_the_bound() -> None:
    sc = Scenario(
        instances=12,
        zones=3,
        replication_factor=3,
        shard_size=3,
        mix=TenantMix(count=150, mean_rate=0.5),
        instance_capacity=10.0,
        seed=3,
    ).check()
    rec = run(sc, overlap_pairs=100, blast_samples=50, gossip_trials=2)["recommendation"]
    assert rec["fits"] and rec["instances"] >= rec["lower_bound_instances"]
    usable = 10.0 * 0.7
    total = sum(t.rate for t in sc.all_tenants()) * 3
    assert rec["lower_bound_instances"] == max(3, math.ceil(total / usable))
    # re-place the tenants at the recommendation, independently of the search
    ring = make_ring(nested_ring_desc(rec["instances"], 3, 128, 3), 3, 3)
    sized = [Tenant(t.name, t.rate, rec["shard_overrides"].get(t.name)) for t in sc.all_tenants()]
    peak = place_tenants(ring, sized, rec["shard_size"]).instance_load().max()
    assert peak == pytest.approx(rec["peak_load_mb_s"]) and peak <= usable


def _mix_scenario(instances: int, count: int, capacity: float, seed: int) -> Scenario:
    return Scenario(
        instances=instances,
        zones=3,
        replication_factor=3,
        shard_size=3,
        tokens=32,
        mix=TenantMix(count=count, mean_rate=1.0),
        instance_capacity=capacity,
        seed=seed,
    ).check()


def test_recommendation_search_on_a_large_scenario_is_bounded() -> None:
    # 3,000 tenants at ~430 instances: shard sizes in the hundreds would walk millions of token ranges
    # per candidate; with the budget, every placement stays within it and the evaluations are counted
    sc = _mix_scenario(100, 3000, 30.0, 7)
    tenants = sc.all_tenants()
    walked: list[int] = []

    def on_place(n: int, size: int, some: Sequence[Tenant]) -> None:
        own = [size if t.shard_size is None else t.shard_size for t in some]
        walked.append(sum(32 * min(s, n) for s in own if 0 < s < n))  # beside the whole ring's n × 32

    evaluate, sample = recommend_evaluators(sc, tenants, on_place)
    budget = 200_000
    rec = recommend(
        evaluate,
        tenants,
        rf=3,
        zones=3,
        configured_shard_size=3,
        capacity=30.0,
        headroom=0.3,
        sample=sample,
        tokens=32,
        row_budget=budget,
        verify_budget=budget,
        seed=7,
    )
    assert rec.fits and rec.estimated  # large shard sizes were estimated on samples
    assert len(walked) == len(rec.evaluations) <= 40 + 2 * 12 + 14 + 2
    assert max(walked) <= budget
    assert "samples" in rec.method and rec.to_dict()["method"] == rec.method


def test_sampled_recommendation_meets_the_headroom_on_the_full_placement() -> None:
    # a smaller case: search on samples (tiny budget), then the answer verified on every tenant
    sc = _mix_scenario(40, 600, 12.0, 11)
    tenants = sc.all_tenants()
    evaluate, sample = recommend_evaluators(sc, tenants)
    rec = recommend(
        evaluate,
        tenants,
        rf=3,
        zones=3,
        configured_shard_size=3,
        capacity=12.0,
        headroom=0.3,
        sample=sample,
        tokens=32,
        row_budget=20_000,
        verify_budget=10**9,
        seed=11,
    )
    assert rec.estimated and rec.verified and "verified on all tenants" in rec.method
    assert rec.fits and (rec.instances, rec.shard_size) not in rec.estimated
    ring = make_ring(nested_ring_desc(rec.instances, 3, 32, 11), 3, 3)
    sized = [Tenant(t.name, t.rate, rec.shard_overrides.get(t.name)) for t in tenants]
    peak = place_tenants(ring, sized, rec.shard_size).instance_load().max()
    assert peak == pytest.approx(rec.peak_load) and peak <= 12.0 * 0.7
