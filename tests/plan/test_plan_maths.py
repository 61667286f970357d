# The planning figures against exact laws and small cases worked by hand.
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pyro_core.plan.blast import blast_radius, zone_blast
from pyro_core.plan.churn import churn
from pyro_core.plan.load import build_ring_desc, make_ring, place_tenants, summarize_load
from pyro_core.plan.overlap import combinations, exact_overlap, simulate_overlap
from pyro_core.plan.scenario import Tenant
from pyro_core.ring.model import RingDesc

TENANTS = [Tenant(f"t{i}", 1.0) for i in range(20)]


def test_exact_overlap_reproduces_the_seed_table_for_50_instances_size_4() -> None:
    p = exact_overlap([50], 4)
    assert [round(x * 100, 2) for x in p[:3]] == [70.86, 26.37, 2.70]
    assert round(p[3] * 100, 2) == 0.08
    assert round(p[4] * 100, 4) == 0.0004
    assert combinations([50], 4) == 230_300  # the seed's "230,000 combinations"


def test_exact_overlap_with_zones_is_the_convolution_of_per_zone_hypergeometrics() -> None:
    p = exact_overlap([10, 10, 10], 3)  # one pick per zone: each zone shares with prob 1/10
    assert p == pytest.approx([stats.binom.pmf(k, 3, 0.1) for k in range(4)])
    assert sum(p) == pytest.approx(1.0)


@pytest.mark.parametrize(("instances", "zones", "size"), [(50, 1, 4), (30, 3, 6)])
def test_simulated_overlap_matches_the_exact_distribution_within_sampling_error(
    instances: int, zones: int, size: int
) -> None:
    ring = make_ring(build_ring_desc(instances, zones, 128, 3), 1, zones)
    report = simulate_overlap(ring, size, 4000, seed=11)
    assert sum(report.counts) == 4000
    # independent pairs: Pearson chi-square with pooled bins; reject only at the 0.1% level
    assert report.degrees_of_freedom >= 1
    assert stats.chi2.sf(report.chi_square, report.degrees_of_freedom) > 0.001
    for c, p in zip(report.counts, report.exact, strict=True):  # and each bin within 4.5 sigma
        assert abs(c - 4000 * p) <= 4.5 * np.sqrt(4000 * p * (1 - p)) + 1


def test_load_follows_token_ownership_worked_by_hand() -> None:
    desc = RingDesc()
    desc.add_instance("a", "x:1", tokens=np.array([2**30], dtype=np.uint32), now=1)
    desc.add_instance("b", "x:2", tokens=np.array([2**31], dtype=np.uint32), now=1)
    # a: keys [2^31, 2^32) ∪ [0, 2^30) = 3/4 of the space; b: [2^30, 2^31) = 1/4
    ring = make_ring(desc, 1, 1)
    placement = place_tenants(ring, [Tenant("x", 8.0)], 0)
    load = placement.instance_load()
    assert dict(zip(placement.instance_ids, load.tolist(), strict=True)) == pytest.approx(
        {"a": 6.0, "b": 2.0}
    )
    summary = summarize_load(placement, load, capacity=10.0)
    assert summary.imbalance == pytest.approx(6.0 / 4.0)
    assert summary.max_utilisation == pytest.approx(0.6)
    # RF=2: each instance holds every key
    both = place_tenants(make_ring(desc, 2, 1), [Tenant("x", 8.0)], 0).instance_load()
    assert both.tolist() == pytest.approx([8.0, 8.0])


def test_replication_multiplies_total_load_by_the_replication_factor() -> None:
    ring = make_ring(build_ring_desc(12, 3, 64, 1), 3, 3)
    placement = place_tenants(ring, [Tenant(f"t{i}", 1.0 + i) for i in range(30)], 6)
    assert placement.instance_load().sum() == pytest.approx(3 * sum(1.0 + i for i in range(30)))


@pytest.mark.parametrize("zones", [1, 3])
def test_blast_radius_three_instances_rf3_by_hand(zones: int) -> None:
    ring = make_ring(build_ring_desc(3, zones, 16, 0), 3, zones)
    placement = place_tenants(ring, TENANTS, 0)
    one = blast_radius(placement, 1, seed=0)
    assert (one.method, one.failure_sets) == ("exact", 3)
    assert one.lose_quorum_share == 0.0  # 2 of 3 replicas live: quorum 2 holds
    assert one.lose_replica_share == 1.0
    two = blast_radius(placement, 2, seed=0)
    assert two.lose_quorum_share == 1.0  # 1 of 3 live: every tenant below quorum
    if zones == 3:
        assert all(z.lose_quorum_share == 0.0 and z.lose_replica_share == 1.0 for z in zone_blast(placement))


def test_blast_radius_rf1_shard_of_2_in_4_by_hand() -> None:
    # one failure among 4 instances hits a 2-instance shard with probability 2/4; RF=1: quorum lost too
    ring = make_ring(build_ring_desc(4, 1, 32, 0), 1, 1)
    placement = place_tenants(ring, TENANTS, 2)
    b = blast_radius(placement, 1, seed=0)
    assert b.lose_replica_share == pytest.approx(0.5)
    assert b.lose_quorum_share == pytest.approx(0.5)


def test_sampled_blast_radius_agrees_with_the_exact_one() -> None:
    ring = make_ring(build_ring_desc(30, 1, 32, 2), 1, 1)
    placement = place_tenants(ring, [Tenant(f"t{i}", 1.0) for i in range(200)], 3)
    exact = blast_radius(placement, 2, seed=1)
    sampled = blast_radius(placement, 2, seed=1, samples=3000, exact_limit=10)
    assert (exact.method, sampled.method) == ("exact", "sampled")
    assert abs(sampled.lose_quorum_share - exact.lose_quorum_share) < 5 * sampled.lose_quorum_stderr + 1e-9
    # RF=1: losing a replica is losing quorum
    assert exact.lose_quorum_share == pytest.approx(exact.lose_replica_share)


@pytest.mark.parametrize(("zones", "rf", "size"), [(1, 1, 4), (3, 3, 6), (1, 3, 0)])
@pytest.mark.parametrize("change", ["add", "remove"])
def test_churn_moves_each_tenants_shard_by_at_most_one_instance(
    zones: int, rf: int, size: int, change: str
) -> None:
    desc = build_ring_desc(30, zones, 32, 5)
    tenants = [Tenant(f"t{i}", 1.0) for i in range(300)]
    report = churn(desc, rf, zones, 32, tenants, size, change, seed=5)
    assert report.max_instances_changed <= 1
    assert 0 < report.tenants_moved <= 300
    assert 0 < report.key_space_moved < 1
