# Shuffle sharding (spec ring.md §5): what a tenant's shard is, and the properties dskit proves of it —
# stability, consistency under ring changes, growth as a superset, zone independence, shuffling
# (tenant overlap vs theory), the read-only and lookback rules, the shard caches, and compiled/pure
# twin equivalence. Every test that touches a Ring runs against both implementations (``impl``).
# Expected shards come from dskit's own scenarios (tokens placed just after the tenant's PRNG draws)
# or from a small reference walk written from the spec (``reference_shard``).
from __future__ import annotations

import functools
import math
from bisect import bisect_right
from collections import Counter
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyro_core import InstanceDesc, InstanceState, InvalidRingError, RingDesc, _impl
from pyro_core.ring.ring import ring_class
from pyro_core.ring.shard import overlap_probabilities, shard_combinations, shuffle_shard_seed

NOW = 1_700_000_000
MINUTE = 60
HOUR = 3600
UINT32_MAX = 2**32 - 1

_GoRand = _impl.kernels("compiled").gorand.GoRand  # checked against Go's vectors in test_gorand.py


# -- building rings -------------------------------------------------------------------------------
def make_ring(impl: SimpleNamespace, desc: RingDesc, zone_awareness: bool = True) -> Any:
    return ring_class(impl)(desc, zone_awareness=zone_awareness, heartbeat_timeout=float(HOUR))


def fresh_tokens(rng: np.random.Generator, count: int, taken: set[int]) -> np.ndarray:
    """``count`` distinct uint32 tokens not in ``taken`` (which is updated)."""
    out: list[int] = []
    while len(out) < count:
        for t in rng.integers(0, 2**32, size=count - len(out), dtype=np.uint64).tolist():
            if t not in taken:
                taken.add(t)
                out.append(t)
    return np.array(out, dtype=np.uint32)


def instance(
    id: str, zone: str, tokens: Any, registered: int = NOW - 2 * HOUR, **kw: Any
) -> InstanceDesc:
    return InstanceDesc(
        id=id, addr=id, zone=zone, tokens=tokens, timestamp=NOW, registered_timestamp=registered, **kw
    )


def random_desc(
    rng: np.random.Generator,
    n: int,
    zones: int,
    tokens: int = 128,
    *,
    first: int = 1,
    registered: int = NOW - 2 * HOUR,
    taken: set[int] | None = None,
) -> RingDesc:
    """dskit's generateRingInstances: ``instance-i`` in ``zone-(i % zones)`` with random tokens."""
    taken = set() if taken is None else taken
    return RingDesc.from_instances(
        instance(f"instance-{i}", f"zone-{i % zones}", fresh_tokens(rng, tokens, taken), registered)
        for i in range(first, first + n)
    )


def all_tokens(desc: RingDesc) -> set[int]:
    return set(desc.tokens().tolist())


def linear_tokens(i: int, n: int, k: int) -> np.ndarray:
    """dskit's generateTokensLinear: evenly spread tokens, instance i offset by i * step / n."""
    step = UINT32_MAX // k
    offset = (step // n) * i
    return np.arange(offset, UINT32_MAX + 1, step, dtype=np.int64).astype(np.uint32)


def user_token(user: str, zone: str, skip: int) -> int:
    """dskit's userToken: the (skip+1)-th PRNG draw of a tenant's shard walk in ``zone``."""
    rnd = _GoRand(shuffle_shard_seed(user, zone))
    for _ in range(skip):
        rnd.uint32()
    return int(rnd.uint32())


def ids(ring: Any) -> set[str]:
    return set(ring.instance_ids())


def per_zone(ring: Any) -> dict[str, int]:
    return dict(Counter(i.zone for i in ring.instances))


def writable(desc: RingDesc) -> set[str]:
    return {k for k, i in desc.instances.items() if not i.read_only}


# -- the reference walk (ring.md §5, straight from the pseudo-code) ----------------------------------
def reference_shard(
    desc: RingDesc, identifier: str, size: int, zone_aware: bool, lookback: float = 0, now: float = 0
) -> set[str]:
    insts = desc.instances
    until = math.floor(now - lookback)
    with_lookback = lookback > 0

    def keep(i: InstanceDesc) -> bool:
        if not i.read_only:
            return True
        if not with_lookback:
            return False
        return not (0 < i.read_only_updated_timestamp < until)

    if size == 0:
        return {k for k, i in insts.items() if keep(i)}
    regs = [i.registered_timestamp for i in insts.values()]
    if with_lookback and regs and min(regs) > 0 and min(regs) >= until:
        return set(insts)
    owner: dict[int, str] = {}
    for k in sorted(insts):  # a token held twice belongs to the lowest id
        for t in insts[k].tokens.tolist():
            owner.setdefault(t, k)
    zones = sorted({i.zone for i in insts.values()}) if zone_aware else [""]
    if not zones:
        return set()
    n_pick = -(-size // len(zones)) if zone_aware else size
    shard: set[str] = set()
    for zone in zones:
        if zone_aware:
            members = [k for k, i in insts.items() if i.zone == zone]
            if n_pick >= len(members):
                shard.update(k for k in members if keep(insts[k]))
                continue
            toks = sorted(t for t, k in owner.items() if insts[k].zone == zone)
        else:
            toks = sorted(owner)
        rnd = _GoRand(shuffle_shard_seed(identifier, zone))
        for _ in range(n_pick):
            start = bisect_right(toks, int(rnd.uint32()))
            found = False
            for step in range(len(toks)):
                k = owner[toks[(start + step) % len(toks)]]
                i = insts[k]
                if k in shard or not keep(i):
                    continue
                shard.add(k)
                if with_lookback and (
                    i.registered_timestamp >= until or i.read_only or i.read_only_updated_timestamp >= until
                ):
                    continue
                found = True
                break
            if not found:
                break
    return shard


# -- shape: sizes, zones, edge cases (dskit TestRing_ShuffleShard) -----------------------------------
# (instances as zone letters, "!" = read-only), size, zone-aware, expected size, expected per zone
SHAPE_CASES = {
    "empty ring": ("", 2, True, 0, {}),
    "empty ring, size 0": ("", 0, True, 0, {}),
    "single zone, size > instances": ("aa", 3, True, 2, {"zone-a": 2}),
    "single zone, size < instances": ("aaa", 2, True, 2, {"zone-a": 2}),
    "single zone, read-only, size 3": ("aa!a", 3, True, 2, {"zone-a": 2}),
    "single zone, read-only, size 0": ("aa!a", 0, True, 2, {"zone-a": 2}),
    "size < zones": ("abc", 2, True, 3, {"zone-a": 1, "zone-b": 1, "zone-c": 1}),
    "size divisible by zones": ("aabbcc", 3, True, 3, {"zone-a": 1, "zone-b": 1, "zone-c": 1}),
    "size not divisible by zones": ("aabbcc", 4, True, 6, {"zone-a": 2, "zone-b": 2, "zone-c": 2}),
    "size not divisible, zone awareness off": ("aabbcc", 4, False, 4, None),
    "multi zone, read-only, size 3": ("ab!c", 3, True, 2, {"zone-a": 1, "zone-b": 1}),
    "multi zone, read-only, size 0": ("aa!bbc!c", 0, True, 4, {"zone-a": 2, "zone-b": 1, "zone-c": 1}),
    "size == instances, balanced": ("aabbcc", 6, True, 6, {"zone-a": 2, "zone-b": 2, "zone-c": 2}),
    "size == instances, unbalanced": ("aaabbc", 6, True, 5, {"zone-a": 2, "zone-b": 2, "zone-c": 1}),
    "size > instances, balanced": ("abc", 6, True, 3, {"zone-a": 1, "zone-b": 1, "zone-c": 1}),
    "size > instances, unbalanced": ("aaabbc", 9, True, 6, {"zone-a": 3, "zone-b": 2, "zone-c": 1}),
    "size 0, unbalanced": ("aaabbc", 0, True, 6, {"zone-a": 3, "zone-b": 2, "zone-c": 1}),
}


def desc_from_layout(layout: str, seed: int = 7) -> RingDesc:
    rng = np.random.default_rng(seed)
    taken: set[int] = set()
    out, read_only = [], False
    for ch in layout:
        if ch == "!":
            read_only = True
            continue
        k = len(out) + 1
        out.append(
            instance(f"instance-{k}", f"zone-{ch}", fresh_tokens(rng, 128, taken),
                     read_only=read_only, read_only_updated_timestamp=NOW if read_only else 0)
        )
        read_only = False
    return RingDesc.from_instances(out)


@pytest.mark.parametrize("case", list(SHAPE_CASES), ids=list(SHAPE_CASES))
def test_shuffle_shard_size_and_zone_balance_match_dskit_cases(impl: SimpleNamespace, case: str) -> None:
    layout, size, zone_aware, expected_size, expected_zones = SHAPE_CASES[case]
    desc = desc_from_layout(layout)
    shard = make_ring(impl, desc, zone_aware).shuffle_shard("tenant-id", size)
    assert len(shard) == expected_size
    if expected_zones is not None:
        assert per_zone(shard) == expected_zones
    assert not any(i.read_only for i in shard.instances)
    assert ids(shard) == reference_shard(desc, "tenant-id", size, zone_aware)


@pytest.mark.parametrize("zone_aware", [True, False])
def test_shuffle_shard_size_zero_is_every_instance_except_read_only(impl: SimpleNamespace, zone_aware: bool) -> None:
    desc = random_desc(np.random.default_rng(11), 12, 3, 16)
    ring = make_ring(impl, desc, zone_aware)
    assert ring.shuffle_shard("t", 0) is ring  # nothing to filter: the ring itself
    ro = desc.copy()
    for k in ("instance-2", "instance-7"):
        ro.instances[k] = ro.instances[k].replace(read_only=True, read_only_updated_timestamp=NOW)
    shard = make_ring(impl, ro, zone_aware).shuffle_shard("t", 0)
    assert ids(shard) == set(desc.instances) - {"instance-2", "instance-7"}


@pytest.mark.parametrize("zone_aware", [True, False])
def test_shuffle_shard_at_least_instance_count_is_every_writable_instance(
    impl: SimpleNamespace, zone_aware: bool
) -> None:
    desc = random_desc(np.random.default_rng(12), 9, 3, 32)
    desc.instances["instance-4"] = desc.instances["instance-4"].replace(read_only=True)
    ring = make_ring(impl, desc, zone_aware)
    for size in (9, 10, 27, 1000, 2**31 - 1):
        assert ids(ring.shuffle_shard("tenant", size)) == writable(desc), size


@pytest.mark.parametrize("zone_aware", [True, False])
@pytest.mark.parametrize("size", [2**31, 2**40, 2**63 - 1])
def test_shuffle_shard_accepts_sizes_beyond_int32(impl: SimpleNamespace, zone_aware: bool, size: int) -> None:
    # dskit's size is a Go int (64-bit): any size >= the instance count means every writable instance.
    desc = random_desc(np.random.default_rng(12), 9, 3, 32)
    ring = make_ring(impl, desc, zone_aware)
    assert ids(ring.shuffle_shard("tenant", size)) == set(desc.instances)
    assert ids(ring.shuffle_shard_with_lookback("tenant", size, HOUR, NOW)) == set(desc.instances)


@pytest.mark.parametrize("size", [-1, -(2**40), 1.5, 3.0, "3", None, True, np.float64(2.0)])
def test_shuffle_shard_rejects_negative_or_non_integer_size(impl: SimpleNamespace, size: Any) -> None:
    ring = make_ring(impl, random_desc(np.random.default_rng(13), 6, 3, 8))
    with pytest.raises(InvalidRingError):
        ring.shuffle_shard("tenant", size)
    with pytest.raises(InvalidRingError):
        ring.shuffle_shard_with_lookback("tenant", size, HOUR, NOW)


def test_shuffle_shard_size_validation_does_not_depend_on_the_cache(impl: SimpleNamespace) -> None:
    # True == 1 and 1.0 == 1 hash alike: a cached (tenant, 1) shard must not let them through.
    ring = make_ring(impl, random_desc(np.random.default_rng(13), 6, 3, 8))
    ring.shuffle_shard("tenant", 1)
    for bad in (True, 1.0, np.float64(1.0)):
        with pytest.raises(InvalidRingError):
            ring.shuffle_shard("tenant", bad)


def test_shuffle_shard_rejects_unhashable_size_with_invalid_ring_error(impl: SimpleNamespace) -> None:
    ring = make_ring(impl, random_desc(np.random.default_rng(13), 6, 3, 8))
    with pytest.raises(InvalidRingError):
        ring.shuffle_shard("tenant", [3])


@pytest.mark.parametrize("identifier", [123, b"tenant", None])
def test_shuffle_shard_rejects_non_string_identifier(impl: SimpleNamespace, identifier: Any) -> None:
    ring = make_ring(impl, random_desc(np.random.default_rng(13), 6, 3, 8))
    with pytest.raises(InvalidRingError):
        ring.shuffle_shard(identifier, 3)
    with pytest.raises(InvalidRingError):
        ring.shuffle_shard_with_lookback(identifier, 3, HOUR, NOW)


@pytest.mark.parametrize("zone_aware", [True, False])
def test_shuffle_shard_of_an_empty_ring_is_empty(impl: SimpleNamespace, zone_aware: bool) -> None:
    ring = make_ring(impl, RingDesc(), zone_aware)
    for size in (0, 1, 5):
        assert len(ring.shuffle_shard("t", size)) == 0
        assert len(ring.shuffle_shard_with_lookback("t", size, HOUR, NOW)) == 0
    tokenless = RingDesc.from_instances([instance("a", "zone-a", [])])
    assert ring_class(impl)(tokenless).shuffle_shard("t", 1).instance_ids() == []  # nothing to walk


def test_zone_aware_shard_takes_ceil_size_over_zones_from_each_zone(impl: SimpleNamespace) -> None:
    rng = np.random.default_rng(14)
    taken: set[int] = set()
    sizes = {"zone-a": 10, "zone-b": 7, "zone-c": 4}
    desc = RingDesc.from_instances(
        instance(f"{z}-{k}", z, fresh_tokens(rng, 64, taken)) for z, n in sizes.items() for k in range(n)
    )
    ring = make_ring(impl, desc)
    for size in range(1, 34):
        for tenant in ("a", "b", "c"):
            shard = ring.shuffle_shard(tenant, size)
            want = math.ceil(size / 3)
            assert per_zone(shard) == {z: min(want, n) for z, n in sizes.items()}, (size, tenant)


def test_zone_aware_shard_takes_a_whole_zone_without_walking_it(impl: SimpleNamespace) -> None:
    # per-zone count >= zone size: the zone is taken whole, instances without tokens included
    # (dskit filters ringDesc's instances by zone); otherwise a tokenless instance is never picked.
    rng = np.random.default_rng(15)
    taken: set[int] = set()
    desc = RingDesc.from_instances(
        [
            instance("a-1", "zone-a", fresh_tokens(rng, 32, taken)),
            instance("a-2", "zone-a", []),
            instance("b-1", "zone-b", fresh_tokens(rng, 32, taken)),
            instance("b-2", "zone-b", fresh_tokens(rng, 32, taken)),
            instance("b-3", "zone-b", fresh_tokens(rng, 32, taken)),
        ]
    )
    shard = make_ring(impl, desc).shuffle_shard("tenant", 4)  # 2 per zone
    assert {"a-1", "a-2"} <= ids(shard)
    assert per_zone(shard) == {"zone-a": 2, "zone-b": 2}
    for tenant in map(str, range(50)):
        assert "a-2" not in ids(make_ring(impl, desc, zone_awareness=False).shuffle_shard(tenant, 5))


@pytest.mark.parametrize("zone_aware", [True, False])
def test_shuffle_shard_matches_the_reference_walk(impl: SimpleNamespace, zone_aware: bool) -> None:
    rng = np.random.default_rng(16)
    for n, zones, k in ((7, 1, 4), (20, 3, 16), (31, 4, 2), (12, 2, 1)):
        desc = random_desc(rng, n, zones, k)
        ring = make_ring(impl, desc, zone_aware)
        for tenant in ("tenant-1", "user-1", "", "Ω-tenant"):
            for size in (1, 2, 3, 5, 8, 13):
                assert ids(ring.shuffle_shard(tenant, size)) == reference_shard(desc, tenant, size, zone_aware)


# -- stability -----------------------------------------------------------------------------------
def test_shuffle_shard_is_stable_across_calls_and_ring_copies(impl: SimpleNamespace) -> None:
    desc = random_desc(np.random.default_rng(17), 50, 3, 128)
    ring = make_ring(impl, desc)
    copy = make_ring(impl, desc.copy())
    reordered = make_ring(impl, RingDesc(dict(reversed(list(desc.instances.items())))))
    for tenant in map(str, range(1, 101)):
        for size in (3, 6, 9, 12, 15):
            first = ring.shuffle_shard(tenant, size)
            expected = first.instance_ids()
            assert len(expected) == size
            for _ in range(10):
                again = ring.shuffle_shard(tenant, size)
                assert again is first
                assert again.instance_ids() == expected
            assert copy.shuffle_shard(tenant, size).instance_ids() == expected
            if int(tenant) % 4 == 0:
                assert reordered.shuffle_shard(tenant, size).instance_ids() == expected


# -- consistency ---------------------------------------------------------------------------------
CONSISTENCY_SIZES = (3, 6, 9, 12, 15)
CONSISTENCY_CHANGES = ("add", "remove", "read-only", "read-write")


@functools.cache
def _consistency_base(impl_name: str, n: int) -> tuple[RingDesc, frozenset[int], dict[tuple[int, int], set[str]]]:
    """A ring of n instances in 3 zones (128 random tokens, one in eight read-only) and the shards
    of 100 tenants at each size; shared by the four kinds of change."""
    rng = np.random.default_rng(1000 + n)
    taken: set[int] = set()
    desc = random_desc(rng, n, 3, 128, taken=taken)
    for k in rng.choice(sorted(desc.instances), size=math.ceil(n / 8), replace=False).tolist():
        desc.instances[k] = desc.instances[k].replace(read_only=True, read_only_updated_timestamp=NOW)
    ring = make_ring(_impl.kernels(impl_name), desc)
    before = {(t, s): ids(ring.shuffle_shard(str(t), s)) for t in range(100) for s in CONSISTENCY_SIZES}
    return desc, frozenset(taken), before


def _consistency(impl: SimpleNamespace, n: int, change: str) -> None:
    """dskit TestRing_ShuffleShard_Consistency: one ring change moves each shard by <= 1 in, <= 1 out."""
    desc, taken, before = _consistency_base(impl.name, n)
    rng = np.random.default_rng(2000 + 10 * n + CONSISTENCY_CHANGES.index(change))
    ring = make_ring(impl, desc)
    changed = desc.copy()
    if change == "add":
        k = f"instance-{n + 1}"
        changed.instances[k] = instance(k, "zone-0", fresh_tokens(rng, 128, set(taken)))
    elif change == "remove":
        del changed.instances[str(rng.choice(sorted(writable(desc))))]
    elif change == "read-only":
        k = str(rng.choice(sorted(writable(desc))))
        changed.instances[k] = changed.instances[k].replace(read_only=True, read_only_updated_timestamp=NOW + 1)
    else:  # back to read-write
        k = str(rng.choice(sorted(set(desc.instances) - writable(desc))))
        changed.instances[k] = changed.instances[k].replace(read_only=False, read_only_updated_timestamp=NOW + 1)
    ring.shuffle_shard("0", 3)  # something cached, to be wiped by the update
    assert ring.update(changed) is True

    moved = 0
    for (t, s), old in before.items():
        new = ids(ring.shuffle_shard(str(t), s))
        assert len(new - old) <= 1 and len(old - new) <= 1, (t, s, old ^ new)
        assert not any(changed.instances[k].read_only for k in new)
        moved += new != old
    assert moved > 0  # the change did reach some shards


@pytest.mark.slow
@pytest.mark.parametrize("n", [20, 35, 50])
def test_shuffle_shard_consistency_on_instance_added(impl: SimpleNamespace, n: int) -> None:
    _consistency(impl, n, "add")


@pytest.mark.slow
@pytest.mark.parametrize("n", [20, 35, 50])
def test_shuffle_shard_consistency_on_instance_removed(impl: SimpleNamespace, n: int) -> None:
    _consistency(impl, n, "remove")


@pytest.mark.slow
@pytest.mark.parametrize("n", [20, 50])
def test_shuffle_shard_consistency_on_instance_made_read_only(impl: SimpleNamespace, n: int) -> None:
    _consistency(impl, n, "read-only")


@pytest.mark.slow
@pytest.mark.parametrize("n", [20, 50])
def test_shuffle_shard_consistency_on_instance_made_writable(impl: SimpleNamespace, n: int) -> None:
    _consistency(impl, n, "read-write")


def test_shuffle_shard_grows_as_superset_when_size_increases(impl: SimpleNamespace) -> None:
    # dskit TestRing_ShuffleShard_ConsistencyOnShardSizeChanged: 30 instances, 3 zones.
    desc = random_desc(np.random.default_rng(18), 30, 3, 128, first=0)
    ring = make_ring(impl, desc)
    s3, s6, s9 = (ids(ring.shuffle_shard("tenant-id", s)) for s in (3, 6, 9))
    assert (len(s3), len(s6), len(s9)) == (3, 6, 9)
    assert s3 <= s6 <= s9
    assert ids(ring.shuffle_shard("tenant-id", 6)) == s6
    assert ids(ring.shuffle_shard("tenant-id", 3)) == s3
    # Each size is a prefix of the next: with and without zones, one size at a time.
    for zone_aware in (True, False):
        ring = make_ring(impl, desc, zone_aware)
        for tenant in ("a", "b", "c", "d"):
            prev: set[str] = set()
            for size in range(1, 31):
                cur = ids(ring.shuffle_shard(tenant, size))
                assert prev <= cur, (zone_aware, tenant, size)
                prev = cur
            assert prev == set(desc.instances)


def test_shuffle_shard_keeps_earlier_zones_when_a_zone_is_added(impl: SimpleNamespace) -> None:
    # dskit TestRing_ShuffleShard_ConsistencyOnZonesChanged: 20 instances in 2 zones, then a third.
    rng = np.random.default_rng(19)
    taken: set[int] = set()
    desc = random_desc(rng, 20, 2, 128, first=0, taken=taken)
    ring = make_ring(impl, desc)
    s2, s4 = ids(ring.shuffle_shard("tenant-id", 2)), ids(ring.shuffle_shard("tenant-id", 4))
    assert (len(s2), len(s4)) == (2, 4) and s2 <= s4
    grown = desc.copy()
    for i in range(20, 30):
        grown.instances[f"instance-{i}"] = instance(f"instance-{i}", "zone-2", fresh_tokens(rng, 128, taken))
    assert ring.update(grown) is True
    s6, s9 = ids(ring.shuffle_shard("tenant-id", 6)), ids(ring.shuffle_shard("tenant-id", 9))
    assert (len(s6), len(s9)) == (6, 9)
    assert s4 <= s6 <= s9
    # The new zone changes nothing in the old ones: each zone walks its own PRNG stream.
    old = make_ring(impl, desc)
    for m in (1, 2, 3, 4):
        for tenant in map(str, range(20)):
            before = ids(old.shuffle_shard(tenant, 2 * m))
            after = ring.shuffle_shard(tenant, 3 * m)
            assert {i.id for i in after.instances if i.zone != "zone-2"} == before, (m, tenant)
            assert per_zone(after)["zone-2"] == m


# -- shuffling: tenant overlap vs theory -----------------------------------------------------------
def pairwise_overlap_percent(shards: list[set[str]], universe: list[str], max_k: int) -> list[float]:
    """Share of ordered pairs of distinct tenants whose shards share exactly k instances."""
    col = {k: j for j, k in enumerate(universe)}
    m = np.zeros((len(shards), len(universe)), dtype=np.int32)
    for row, shard in enumerate(shards):
        m[row, [col[k] for k in shard]] = 1
    overlap = m @ m.T
    off = overlap[~np.eye(len(shards), dtype=bool)]
    counts = np.bincount(off, minlength=max_k + 1)
    return (counts / off.size * 100).tolist()


@pytest.mark.slow
def test_shuffle_shard_pairwise_overlap_matches_dskit_theory(impl: SimpleNamespace) -> None:
    # dskit TestRing_ShuffleShard_Shuffling: 90 instances, 3 zones, linear tokens, size 3, 1000 tenants.
    n = 90
    desc = RingDesc.from_instances(
        instance(f"instance-{i}", f"zone-{i % 3}", linear_tokens(i, n, 128)) for i in range(n)
    )
    ring = make_ring(impl, desc)
    shards = [ids(ring.shuffle_shard(str(t), 3)) for t in range(1, 1001)]
    assert all(len(s) == 3 for s in shards)
    measured = pairwise_overlap_percent(shards, sorted(desc.instances), 3)
    print(f"\n[{impl.name}] overlap 90/3 zones/size 3: " + ", ".join(f"{k}: {p:.5f}%" for k, p in enumerate(measured)))
    theory = {0: 90.2239, 1: 9.55312, 2: 0.22217, 3: 0.00085}
    for k, p in theory.items():
        tolerance = min(1.0, max(0.2, p * 0.1))  # dskit: 10% of the figure, clamped to [0.2, 1] points
        assert abs(measured[k] - p) <= tolerance, (k, measured[k], p)


def test_overlap_probabilities_match_the_seed_document_table() -> None:
    assert shard_combinations(50, 4) == math.comb(50, 4) == 230_300
    exact = [math.comb(4, k) * math.comb(46, 4 - k) / 230_300 for k in range(5)]
    assert overlap_probabilities(50, 4) == pytest.approx(exact, rel=1e-12)
    assert [round(p * 100, 2) for p in overlap_probabilities(50, 4)[:4]] == [70.86, 26.37, 2.70, 0.08]
    assert round(overlap_probabilities(50, 4)[4] * 100, 4) == 0.0004
    assert sum(overlap_probabilities(50, 4)) == pytest.approx(1.0)


@pytest.mark.slow
def test_shuffle_shard_overlap_matches_seed_document_table(impl: SimpleNamespace) -> None:
    # The seed document's example: 50 instances, shard size 4, no zones; 2000 tenants.
    desc = random_desc(np.random.default_rng(20), 50, 1, 128, first=0)
    ring = make_ring(impl, desc, zone_awareness=False)
    shards = [ids(ring.shuffle_shard(f"tenant-{t}", 4)) for t in range(2000)]
    assert all(len(s) == 4 for s in shards)
    measured = pairwise_overlap_percent(shards, sorted(desc.instances), 4)
    print(f"\n[{impl.name}] overlap 50/size 4: " + ", ".join(f"{k}: {p:.4f}%" for k, p in enumerate(measured)))
    for k, p in enumerate(overlap_probabilities(50, 4)):
        assert abs(measured[k] - p * 100) <= 1.0, (k, measured[k], p * 100)


# -- read-only instances ---------------------------------------------------------------------------
def test_shuffle_shard_excludes_read_only_instances_and_still_fills_the_shard(impl: SimpleNamespace) -> None:
    rng = np.random.default_rng(21)
    desc = random_desc(rng, 30, 3, 64)
    for k in ("instance-1", "instance-2", "instance-3", "instance-10", "instance-20"):
        desc.instances[k] = desc.instances[k].replace(read_only=True, read_only_updated_timestamp=NOW - HOUR)
    ring = make_ring(impl, desc)
    left = Counter(i.zone for i in desc.instances.values() if not i.read_only)
    for tenant in map(str, range(60)):
        for size in (3, 6, 9, 21):
            shard = ring.shuffle_shard(tenant, size)
            assert not any(i.read_only for i in shard.instances)
            assert per_zone(shard) == {z: min(math.ceil(size / 3), n) for z, n in left.items()}
            assert ids(shard) == reference_shard(desc, tenant, size, True)


@pytest.mark.parametrize("size", [0, 2])
def test_lookback_keeps_read_only_instances_unless_read_only_since_before_the_window(
    impl: SimpleNamespace, size: int
) -> None:
    # One zone, 3 instances placed on the tenant's first three draws; instance-2 read-only.
    until = NOW - HOUR
    expected_by_ro_time = {
        until - 1: {"instance-1", "instance-3"},  # read-only since before the window: dropped
        until - 2 * HOUR: {"instance-1", "instance-3"},
        until: {"instance-1", "instance-2", "instance-3"},  # at the boundary: still within
        NOW: {"instance-1", "instance-2", "instance-3"},
        0: {"instance-1", "instance-2", "instance-3"},  # unknown: kept (and extends the walk)
    }
    for ro_time, expected in expected_by_ro_time.items():
        desc = RingDesc.from_instances(
            instance(f"instance-{k + 1}", "zone-a", [user_token("user-1", "zone-a", k) + 1],
                     read_only=k == 1, read_only_updated_timestamp=ro_time if k == 1 else 0)
            for k in range(3)
        )
        ring = make_ring(impl, desc)
        assert ids(ring.shuffle_shard_with_lookback("user-1", size, HOUR, NOW)) == expected, ro_time
        assert ids(ring.shuffle_shard("user-1", size)) == {"instance-1", "instance-3"}


def test_lookback_read_only_instance_met_in_the_walk_extends_the_shard(impl: SimpleNamespace) -> None:
    # size 1: the first draw lands on read-only instance-1 (still within the window), so the walk
    # goes on to instance-2; instance-3 stays out.
    desc = RingDesc.from_instances(
        [
            instance("instance-1", "zone-a", [user_token("u", "zone-a", 0) + 1],
                     read_only=True, read_only_updated_timestamp=NOW - MINUTE),
            instance("instance-2", "zone-a", [user_token("u", "zone-a", 0) + 2]),
            instance("instance-3", "zone-a", [user_token("u", "zone-a", 0) + 3]),
        ]
    )
    ring = make_ring(impl, desc)
    assert ids(ring.shuffle_shard_with_lookback("u", 1, HOUR, NOW)) == {"instance-1", "instance-2"}
    assert ids(ring.shuffle_shard("u", 1)) == {"instance-2"}
    # A read-write switch within the window extends the walk too.
    back = desc.copy()
    back.instances["instance-1"] = back.instances["instance-1"].replace(read_only=False)
    ring = make_ring(impl, back)
    assert ids(ring.shuffle_shard_with_lookback("u", 1, HOUR, NOW)) == {"instance-1", "instance-2"}
    assert ids(ring.shuffle_shard_with_lookback("u", 1, HOUR, NOW + 2 * HOUR)) == {"instance-1"}


# -- lookback: dskit TestRing_ShuffleShardWithLookback timelines -----------------------------------
# events: ("add", id, zone, skip, delta, registered (offset from NOW or None = unknown),
#          read-only time offset or None (not read-only) or "unknown"), ("remove", id),
#         ("test", size, expected ids)
L = HOUR


def _add(k: int, zone: str, skip: int, delta: int = 1, reg: int | None = -2 * L, ro: Any = None) -> tuple:
    return ("add", f"instance-{k}", f"zone-{zone}", skip, delta, reg, ro)


def _test(size: int, *expected: int) -> tuple:
    return ("test", size, {f"instance-{k}" for k in expected})


def _rm(k: int) -> tuple:
    return ("remove", f"instance-{k}")


TIMELINES: dict[str, list[tuple]] = {
    "single zone, size 1, recently bootstrapped": [
        _add(1, "a", 0, reg=-MINUTE), _add(2, "a", 1, reg=-MINUTE), _add(3, "a", 2, reg=-MINUTE), _test(1, 1, 2, 3)],
    "single zone, size 0, recently bootstrapped": [
        _add(1, "a", 0, reg=-MINUTE), _add(2, "a", 1, reg=-MINUTE), _add(3, "a", 2, reg=-MINUTE), _test(0, 1, 2, 3)],
    "single zone, size 1, scale up": [
        _add(1, "a", 0, 3), _add(2, "a", 1), _add(3, "a", 2), _test(1, 1),
        _add(4, "a", 0, 2, reg=-10 * MINUTE), _test(1, 4, 1),
        _add(5, "a", 0, 1, reg=-5 * MINUTE), _test(1, 5, 4, 1)],
    "single zone, size 1, scale down": [
        _add(1, "a", 0), _add(2, "a", 1), _add(3, "a", 2), _test(1, 1),
        _rm(3), _test(1, 1), _rm(1), _test(1, 2)],
    "single zone, size 1, rollout": [
        _add(1, "a", 0), _add(2, "a", 1), _add(3, "a", 2), _test(1, 1),
        _rm(3), _test(1, 1), _add(3, "a", 2, reg=0), _test(1, 1),
        _rm(2), _test(1, 1), _add(2, "a", 1, reg=0), _test(1, 1),
        _rm(1), _test(1, 2, 3), _add(1, "a", 0, reg=0), _test(1, 1, 2, 3)],
    "single zone, size 2, rollout": [
        _add(1, "a", 0), _add(2, "a", 1), _add(3, "a", 2), _add(4, "a", 3), _test(2, 1, 2),
        _rm(4), _test(2, 1, 2), _add(4, "a", 3, reg=0), _test(2, 1, 2),
        _rm(3), _test(2, 1, 2), _add(3, "a", 2, reg=0), _test(2, 1, 2),
        _rm(2), _test(2, 1, 3, 4), _add(2, "a", 1, reg=0), _test(2, 1, 2, 3, 4),
        _rm(1), _test(2, 2, 3, 4), _add(1, "a", 0, reg=0), _test(2, 1, 2, 3, 4)],
    "single zone, increase shard size": [
        _add(1, "a", 0), _add(2, "a", 1), _add(3, "a", 2),
        _test(1, 1), _test(2, 1, 2), _test(3, 1, 2, 3), _test(4, 1, 2, 3)],
    "single zone, read-only within lookback": [
        _add(1, "a", 0), _add(2, "a", 1, ro=L // 2), _add(3, "a", 2), _test(2, 1, 2, 3), _test(0, 1, 2, 3)],
    "single zone, read-only before lookback": [
        _add(1, "a", 0), _add(2, "a", 1, ro=-2 * L), _add(3, "a", 2), _test(2, 1, 3), _test(0, 1, 3)],
    "single zone, read-only at lookback boundary": [
        _add(1, "a", 0), _add(2, "a", 1, ro=L), _add(3, "a", 2), _test(2, 1, 2, 3), _test(0, 1, 2, 3)],
    "single zone, read-only with unknown time": [
        _add(1, "a", 0), _add(2, "a", 1, ro="unknown"), _add(3, "a", 2), _test(2, 1, 2, 3), _test(0, 1, 2, 3)],
    "multi zone, size 3, recently bootstrapped": [
        _add(1, "a", 0, reg=-MINUTE), _add(2, "b", 1, reg=-MINUTE), _add(3, "c", 2, reg=-MINUTE),
        _add(4, "a", 3, reg=-MINUTE), _add(5, "b", 4, reg=-MINUTE), _add(6, "c", 5, reg=-MINUTE),
        _test(3, 1, 2, 3, 4, 5, 6)],
    "multi zone, size 3, scale up": [
        _add(1, "a", 0, 2), _add(2, "b", 1, 2), _add(3, "c", 2, 2),
        _add(4, "a", 0, 3), _add(5, "b", 1, 3), _add(6, "c", 2, 3), _test(3, 1, 2, 3),
        _add(7, "a", 0, 1, reg=0), _test(3, 7, 2, 3, 1),
        _add(8, "b", 1, 1, reg=0), _test(3, 7, 8, 3, 1, 2),
        _add(9, "c", 2, 1, reg=0), _test(3, 7, 8, 9, 1, 2, 3)],
    "multi zone, size 3, scale down": [
        _add(1, "a", 0, 1), _add(2, "b", 1, 1), _add(3, "c", 2, 1),
        _add(4, "a", 0, 3), _add(5, "b", 1, 3), _add(6, "c", 2, 3),
        _add(7, "a", 0, 2), _add(8, "b", 1, 2), _add(9, "c", 2, 2), _test(3, 1, 2, 3),
        _rm(1), _test(3, 7, 2, 3), _rm(2), _test(3, 7, 8, 3), _rm(3), _test(3, 7, 8, 9)],
    "multi zone, increase shard size": [
        _add(1, "a", 0, 1), _add(2, "b", 1, 1), _add(3, "c", 2, 1),
        _add(4, "a", 0, 3), _add(5, "b", 1, 3), _add(6, "c", 2, 3),
        _add(7, "a", 0, 2), _add(8, "b", 1, 2), _add(9, "c", 2, 2),
        _test(3, 1, 2, 3), _test(6, 1, 2, 3, 7, 8, 9)],
    "multi zone, size 3, instances without registered timestamp": [
        _add(1, "a", 0, reg=None), _add(2, "b", 0, reg=None), _add(3, "c", 0, reg=None),
        _add(4, "a", 1, reg=None), _add(5, "b", 1, reg=None), _add(6, "c", 1, reg=None), _test(3, 1, 2, 3),
        _rm(1), _rm(2), _rm(3),
        _add(1, "a", 0, reg=-MINUTE), _add(2, "b", 0, reg=-MINUTE), _add(3, "c", 0, reg=-MINUTE),
        _test(3, 1, 2, 3, 4, 5, 6),
        _rm(4), _rm(5), _rm(6),
        _add(4, "a", 1, reg=-MINUTE), _add(5, "b", 1, reg=-MINUTE), _add(6, "c", 1, reg=-MINUTE),
        _test(3, 1, 2, 3, 4, 5, 6)],
    "multi zone, read-only within lookback": [
        _add(1, "a", 0), _add(2, "b", 1, ro=L // 2), _add(3, "b", 2),
        _add(4, "c", 3), _add(5, "c", 4), _add(6, "c", 5, ro=L // 2),
        _test(3, 1, 2, 3, 4, 6), _test(0, 1, 2, 3, 4, 5, 6)],
    "multi zone, read-only at lookback boundary": [
        _add(1, "a", 0), _add(2, "b", 1, ro=L), _add(3, "b", 2),
        _add(4, "c", 3), _add(5, "c", 4), _add(6, "c", 5),
        _test(3, 1, 2, 3, 6), _test(0, 1, 2, 3, 4, 5, 6)],
    "multi zone, read-only before lookback": [
        _add(1, "a", 0), _add(2, "b", 1, ro=-2 * L), _add(3, "b", 2),
        _add(4, "c", 3), _add(5, "c", 4), _add(6, "c", 5),
        _test(3, 1, 3, 6), _test(0, 1, 3, 4, 5, 6)],
    "multi zone, read-only with unknown time": [
        _add(1, "a", 0), _add(2, "b", 1, ro="unknown"), _add(3, "b", 2),
        _add(4, "c", 3), _add(5, "c", 4), _add(6, "c", 5, ro="unknown"),
        _test(3, 1, 2, 3, 4, 6), _test(0, 1, 2, 3, 4, 5, 6)],
}


@pytest.mark.parametrize("name", list(TIMELINES), ids=list(TIMELINES))
def test_shuffle_shard_with_lookback_follows_dskit_timelines(impl: SimpleNamespace, name: str) -> None:
    user = "user-1"
    desc = RingDesc()
    live = make_ring(impl, desc)  # one ring kept up to date with update(), caches and all
    for step, event in enumerate(TIMELINES[name]):
        if event[0] == "add":
            _, k, zone, skip, delta, reg, ro = event
            desc = desc.copy()
            desc.instances[k] = instance(
                k, zone, [user_token(user, zone, skip) + delta],
                registered=0 if reg is None else NOW + reg,
                read_only=ro is not None,
                read_only_updated_timestamp=0 if ro in (None, "unknown") else NOW + ro,
            )
            live.update(desc)
        elif event[0] == "remove":
            desc = desc.copy()
            del desc.instances[event[1]]
            live.update(desc)
        else:
            _, size, expected = event
            got = ids(live.shuffle_shard_with_lookback(user, size, HOUR, NOW))
            assert got == expected, (step, sorted(got))
            assert ids(make_ring(impl, desc).shuffle_shard_with_lookback(user, size, HOUR, NOW)) == expected
            assert reference_shard(desc, user, size, True, HOUR, NOW) == expected


def test_lookback_returns_the_whole_ring_when_every_instance_registered_within_the_window(
    impl: SimpleNamespace,
) -> None:
    rng = np.random.default_rng(22)
    desc = random_desc(rng, 12, 3, 16, registered=NOW - 10 * MINUTE)
    ring = make_ring(impl, desc)
    assert ring.shuffle_shard_with_lookback("t", 3, HOUR, NOW) is ring
    assert ring.shuffle_shard_with_lookback("t", 3, 10 * MINUTE, NOW) is ring  # registered == until
    assert ids(ring.shuffle_shard_with_lookback("t", 3, 10 * MINUTE - 1, NOW)) == ids(ring.shuffle_shard("t", 3))
    # One unknown registration time (0) disables the shortcut: the walk decides.
    unknown = desc.copy()
    unknown.instances["instance-5"] = unknown.instances["instance-5"].replace(registered_timestamp=0)
    ring = make_ring(impl, unknown)
    got = ring.shuffle_shard_with_lookback("t", 3, HOUR, NOW)
    assert got is not ring
    assert ids(got) == reference_shard(unknown, "t", 3, True, HOUR, NOW)


def test_lookback_extends_the_walk_for_instances_registered_at_or_after_the_window_start(
    impl: SimpleNamespace,
) -> None:
    until = NOW - HOUR
    for reg, expected in ((until - 1, {"instance-1"}), (until, {"instance-1", "instance-2"}),
                          (NOW + HOUR, {"instance-1", "instance-2"})):
        desc = RingDesc.from_instances(
            [
                instance("instance-1", "zone-a", [user_token("u", "zone-a", 0) + 2], registered=reg),
                instance("instance-2", "zone-a", [user_token("u", "zone-a", 0) + 3], registered=until - L),
                instance("instance-3", "zone-a", [user_token("u", "zone-a", 0) + 4], registered=until - L),
            ]
        )
        ring = make_ring(impl, desc)
        assert ids(ring.shuffle_shard_with_lookback("u", 1, HOUR, NOW)) == expected, reg
        # ``now`` is floored to whole seconds (Go's Time.Unix()).
        assert ids(ring.shuffle_shard_with_lookback("u", 1, HOUR, NOW + 0.999)) == expected, reg


def test_lookback_zero_is_the_plain_shuffle_shard(impl: SimpleNamespace) -> None:
    desc = random_desc(np.random.default_rng(23), 12, 3, 16, registered=NOW)
    desc.instances["instance-3"] = desc.instances["instance-3"].replace(read_only=True)
    ring = make_ring(impl, desc)
    for size in (0, 3, 6):
        assert ring.shuffle_shard_with_lookback("t", size, 0, NOW) is ring.shuffle_shard("t", size)


@pytest.mark.parametrize("lookback", [-1, -0.5, "1h", None])
def test_lookback_rejects_negative_or_non_numeric_lookback(impl: SimpleNamespace, lookback: Any) -> None:
    ring = make_ring(impl, random_desc(np.random.default_rng(24), 6, 3, 8))
    with pytest.raises(InvalidRingError):
        ring.shuffle_shard_with_lookback("t", 3, lookback, NOW)


@pytest.mark.parametrize(("lookback", "now"), [(math.nan, NOW), (math.inf, NOW), (HOUR, math.nan), (HOUR, math.inf)])
def test_lookback_rejects_non_finite_lookback_or_now(impl: SimpleNamespace, lookback: float, now: float) -> None:
    ring = make_ring(impl, random_desc(np.random.default_rng(24), 6, 3, 8))
    with pytest.raises(InvalidRingError):
        ring.shuffle_shard_with_lookback("t", 3, lookback, now)


def test_lookback_twins_agree_for_now_beyond_int64(compiled: SimpleNamespace, pure: SimpleNamespace) -> None:
    # Either both implementations answer the same or both reject the time as invalid.
    desc = random_desc(np.random.default_rng(25), 6, 3, 8)
    outcomes = []
    for impl in (compiled, pure):
        try:
            outcomes.append(make_ring(impl, desc).shuffle_shard_with_lookback("t", 3, 10, 1e19).instance_ids())
        except InvalidRingError:
            outcomes.append("invalid")
    assert outcomes[0] == outcomes[1]


def _event_desc(seed: int) -> RingDesc:
    """A ring whose registration and read-only times are spread around NOW."""
    rng = np.random.default_rng(seed)
    desc = random_desc(rng, 24, 3, 8)
    times = [NOW - 3 * HOUR, NOW - 2 * HOUR, NOW - 90 * MINUTE, NOW - HOUR, NOW - 30 * MINUTE, NOW]
    for j, k in enumerate(sorted(desc.instances)):
        reg = times[j % len(times)] - (j % 3)
        ro = j % 5 == 0
        desc.instances[k] = desc.instances[k].replace(
            registered_timestamp=reg,
            read_only=ro,
            read_only_updated_timestamp=(times[(j + 2) % len(times)] + 7) if j % 5 in (0, 1) else 0,
        )
    return desc


def test_lookback_cache_stays_correct_as_now_moves(impl: SimpleNamespace) -> None:
    desc = _event_desc(26)
    ring = make_ring(impl, desc)
    events = sorted({i.registered_timestamp for i in desc.instances.values()}
                    | {i.read_only_updated_timestamp for i in desc.instances.values()} - {0})
    nows = sorted({e + HOUR + d for e in events for d in (-1, 0, 1)} | {NOW - 5 * HOUR, NOW + 5 * HOUR})
    # Sweeps up, down, at random, and hopping across each event time (a result cached at one side
    # of an event must not answer for the other side).
    hops = [e + HOUR + d for e in events for d in (0, 1, 0, -1, 0, 2, -2)]
    order = nows + nows[::-1] + list(np.random.default_rng(27).permutation(nows).tolist()) + hops
    for now in order:
        for tenant, size in (("a", 3), ("b", 6), ("a", 0)):
            got = ids(ring.shuffle_shard_with_lookback(tenant, size, HOUR, now))
            fresh = ids(make_ring(impl, desc).shuffle_shard_with_lookback(tenant, size, HOUR, now))
            assert got == fresh == reference_shard(desc, tenant, size, True, HOUR, now), (now, tenant, size)
            frac = ids(ring.shuffle_shard_with_lookback(tenant, size, HOUR, now + 0.5))
            assert frac == got  # same whole second


def test_lookback_shard_includes_every_shard_of_the_window(impl: SimpleNamespace) -> None:
    # dskit TestRing_ShuffleShardWithLookback_CorrectnessWithFuzzy (scaled down): random scale-ups,
    # scale-downs, read-only switches and shard-size increases every 5 minutes; the lookback shard
    # must hold every instance of every plain shard of the past hour that is still in the ring.
    for n, zones in ((9, 1), (9, 3), (30, 3)):
        rng = np.random.default_rng(28 + n + zones)
        taken: set[int] = set()
        desc = random_desc(rng, n, zones, 32, registered=NOW - 2 * HOUR, taken=taken)
        ring = make_ring(impl, desc)
        size = zones
        t = NOW
        history = [(t, ids(ring.shuffle_shard("user-1", size)))]
        next_id = n + 1
        for _ in range(60):
            t += 5 * MINUTE
            desc = desc.copy()
            r = int(rng.integers(100))
            if r < 60:
                k = f"instance-{next_id}"
                desc.instances[k] = instance(k, f"zone-{next_id % zones}", fresh_tokens(rng, 32, taken), registered=t)
                next_id += 1
            elif r < 70:
                k = str(rng.choice(sorted(desc.instances)))
                zone = desc.instances[k].zone
                if sum(i.zone == zone for i in desc.instances.values()) > 1:
                    del desc.instances[k]
                    history = [(ht, s - {k}) for ht, s in history]
            elif r < 80:
                k = str(rng.choice(sorted(desc.instances)))
                if not desc.instances[k].read_only:
                    desc.instances[k] = desc.instances[k].replace(read_only=True, read_only_updated_timestamp=t)
            elif r < 90:
                ro = sorted(k for k, i in desc.instances.items() if i.read_only)
                if ro:
                    k = str(rng.choice(ro))
                    desc.instances[k] = desc.instances[k].replace(read_only=False, read_only_updated_timestamp=t)
            else:
                size += zones
            ring.update(desc)
            history.append((t, ids(ring.shuffle_shard("user-1", size))))
            history = [(ht, s) for ht, s in history if ht >= t - HOUR]
            with_lookback = ids(ring.shuffle_shard_with_lookback("user-1", size, HOUR, t))
            for ht, s in history:
                assert s <= with_lookback, (n, zones, t - NOW, ht - NOW, s - with_lookback)


# -- caching ---------------------------------------------------------------------------------------
def _dskit_six(delta: int = 1) -> RingDesc:
    """dskit's caching tests: two instances per zone, just after the tenant's first two draws."""
    return RingDesc.from_instances(
        instance(f"instance-{2 * z + j + 1}", zone, [user_token("user-1", zone, j) + delta])
        for z, zone in enumerate(("zone-a", "zone-b", "zone-c"))
        for j in range(2)
    )


def test_shuffle_shard_returns_the_cached_object_for_repeated_calls(impl: SimpleNamespace) -> None:
    ring = make_ring(impl, _dskit_six())
    first = ring.shuffle_shard("user-1", 3)
    assert ring.shuffle_shard("user-1", 3) is first
    assert ids(first) == {"instance-1", "instance-3", "instance-5"}
    assert ring.shuffle_shard("user-1", 4) is not first
    assert ring.shuffle_shard("user-2", 3) is not first
    lb = ring.shuffle_shard_with_lookback("user-1", 3, HOUR, NOW)
    assert ring.shuffle_shard_with_lookback("user-1", 3, HOUR, NOW) is lb
    assert ring.shuffle_shard_with_lookback("user-1", 3, HOUR, NOW + 1) is lb  # nothing happened in between
    assert ids(lb) == {"instance-1", "instance-3", "instance-5"}
    assert per_zone(lb) == {"zone-a": 1, "zone-b": 1, "zone-c": 1}
    assert ring.shuffle_shard_with_lookback("user-1", 4, HOUR, NOW) is not lb


def test_shuffle_shard_is_recomputed_after_a_topology_change(impl: SimpleNamespace) -> None:
    desc = _dskit_six(delta=2)
    ring = make_ring(impl, desc)
    first = ring.shuffle_shard("user-1", 3)
    lb = ring.shuffle_shard_with_lookback("user-1", 3, HOUR, NOW)
    # instance-1 leaves (dskit CachingAfterTopologyChange).
    gone = desc.copy()
    del gone.instances["instance-1"]
    assert ring.update(gone) is True
    second = ring.shuffle_shard("user-1", 3)
    assert second is not first and ids(second) == {"instance-2", "instance-3", "instance-5"}
    lb2 = ring.shuffle_shard_with_lookback("user-1", 3, HOUR, NOW)
    assert lb2 is not lb and ids(lb2) == {"instance-2", "instance-3", "instance-5"}
    # A newcomer placed just after the tenant's zone-b draw takes over that zone's pick.
    added = gone.copy()
    added.instances["instance-7"] = instance("instance-7", "zone-b", [user_token("user-1", "zone-b", 0) + 1],
                                             registered=NOW)
    assert ring.update(added) is True
    assert ids(ring.shuffle_shard("user-1", 3)) == {"instance-2", "instance-7", "instance-5"}
    assert ids(ring.shuffle_shard_with_lookback("user-1", 3, HOUR, NOW)) == {
        "instance-2", "instance-7", "instance-3", "instance-5"
    }
    # Read-only switches are topology changes too (dskit CachingAfterReadOnlyChange).
    ring = make_ring(impl, desc)
    first = ring.shuffle_shard("user-1", 3)
    lb = ring.shuffle_shard_with_lookback("user-1", 3, HOUR, NOW)
    ro = desc.copy()
    for k in ("instance-1", "instance-5"):
        ro.instances[k] = ro.instances[k].replace(read_only=True, read_only_updated_timestamp=NOW)
    assert ring.update(ro) is True
    assert ids(ring.shuffle_shard("user-1", 3)) == {"instance-2", "instance-3", "instance-6"}
    lb2 = ring.shuffle_shard_with_lookback("user-1", 3, HOUR, NOW)
    assert lb2 is not lb
    assert ids(lb2) == {"instance-1", "instance-2", "instance-3", "instance-5", "instance-6"}
    assert per_zone(lb2) == {"zone-a": 2, "zone-b": 1, "zone-c": 2}


def test_cached_shard_carries_new_states_after_a_heartbeat_update(impl: SimpleNamespace) -> None:
    # dskit CachingAfterHeartbeatOrStateChange: same shard object, fresh timestamps and states.
    desc = _dskit_six()
    ring = make_ring(impl, desc)
    first = ring.shuffle_shard("user-1", 3)
    lb = ring.shuffle_shard_with_lookback("user-1", 3, HOUR, NOW)
    beat = desc.copy()
    beat.instances["instance-1"] = beat.instances["instance-1"].replace(timestamp=NOW + 32 * MINUTE)
    beat.instances["instance-3"] = beat.instances["instance-3"].replace(state=InstanceState.LEAVING)
    assert ring.update(beat) is False
    for shard in (ring.shuffle_shard("user-1", 3), ring.shuffle_shard_with_lookback("user-1", 3, HOUR, NOW)):
        assert ids(shard) == {"instance-1", "instance-3", "instance-5"}
        by_id = {i.id: i for i in shard.instances}
        assert by_id["instance-1"].timestamp == NOW + 32 * MINUTE
        assert by_id["instance-3"].state == InstanceState.LEAVING
        assert by_id["instance-5"] == desc.instances["instance-5"]
    assert ring.shuffle_shard("user-1", 3) is first
    assert ring.shuffle_shard_with_lookback("user-1", 3, HOUR, NOW) is lb
    # Another heartbeat later: still the same objects, still fresh.
    beat2 = beat.copy()
    beat2.instances["instance-5"] = beat2.instances["instance-5"].replace(timestamp=NOW + HOUR)
    assert ring.update(beat2) is False
    assert ring.shuffle_shard("user-1", 3) is first
    assert {i.id: i.timestamp for i in first.instances}["instance-5"] == NOW + HOUR
    assert {i.id: i.timestamp for i in first.instances}["instance-1"] == NOW + 32 * MINUTE


# -- twin equivalence and cache coherence (hypothesis) ----------------------------------------------
@st.composite
def shard_rings(draw: st.DrawFn) -> RingDesc:
    n = draw(st.integers(1, 60))
    n_zones = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    token_counts = draw(st.lists(st.sampled_from([0, 1, 1, 2, 3, 5, 16]), min_size=n, max_size=n))
    token_space = draw(st.sampled_from([2**32, 2**32, 64]))  # 64: many tokens held twice
    ro_share = draw(st.sampled_from([0.0, 0.2, 0.6]))
    rng = np.random.default_rng(seed)
    times = [0, NOW - 3 * HOUR, NOW - HOUR - 1, NOW - HOUR, NOW - 10 * MINUTE, NOW]
    instances = []
    for i in range(n):
        toks = rng.integers(0, token_space, size=token_counts[i], dtype=np.uint64)
        instances.append(
            InstanceDesc(
                id=f"i{i:02d}",
                addr=f"10.0.0.{i}:9095",
                tokens=toks,
                zone=f"z{rng.integers(n_zones)}" if n_zones > 1 or rng.random() < 0.5 else "",
                timestamp=NOW,
                registered_timestamp=times[int(rng.integers(len(times)))],
                read_only=bool(rng.random() < ro_share),
                read_only_updated_timestamp=times[int(rng.integers(len(times)))],
            )
        )
    return RingDesc.from_instances(instances)


queries = st.lists(
    st.tuples(
        st.text(min_size=0, max_size=8),
        st.integers(0, 70),
        st.sampled_from([0, 1, 60, 1.5, HOUR, 2 * HOUR]),
        st.sampled_from([NOW, NOW + 0.5, NOW - HOUR, NOW + HOUR, NOW + 3 * HOUR]),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(desc=shard_rings(), zone_aware=st.booleans(), qs=queries)
def test_compiled_and_pure_shuffle_shards_are_identical(
    compiled: SimpleNamespace, pure: SimpleNamespace, desc: RingDesc, zone_aware: bool, qs: list[tuple]
) -> None:
    rc, rp = make_ring(compiled, desc, zone_aware), make_ring(pure, desc, zone_aware)
    for tenant, size, lookback, now in qs:
        plain_c = rc.shuffle_shard(tenant, size).instance_ids()
        assert plain_c == rp.shuffle_shard(tenant, size).instance_ids()
        assert set(plain_c) == reference_shard(desc, tenant, size, zone_aware)
        lb_c = rc.shuffle_shard_with_lookback(tenant, size, lookback, now).instance_ids()
        assert lb_c == rp.shuffle_shard_with_lookback(tenant, size, lookback, now).instance_ids()
        assert set(lb_c) == reference_shard(desc, tenant, size, zone_aware, lookback, now)
        assert set(plain_c) <= set(lb_c)  # the lookback shard holds the plain one


ring_changes = st.lists(
    st.one_of(
        st.tuples(st.just("query"), st.text(max_size=3), st.integers(0, 12), st.sampled_from([0, HOUR]),
                  st.integers(-3 * HOUR, 3 * HOUR)),
        st.tuples(st.just("heartbeat"), st.integers(0, 59), st.sampled_from(list(InstanceState))),
        st.tuples(st.just("remove"), st.integers(0, 59)),
        st.tuples(st.just("add"), st.integers(0, 2**32 - 1), st.integers(-2 * HOUR, HOUR)),
        st.tuples(st.just("read-only"), st.integers(0, 59), st.integers(-2 * HOUR, HOUR)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(desc=shard_rings(), zone_aware=st.booleans(), steps=ring_changes)
def test_cached_shards_always_equal_a_fresh_computation(
    impl: SimpleNamespace, desc: RingDesc, zone_aware: bool, steps: list[tuple]
) -> None:
    ring = make_ring(impl, desc, zone_aware)
    added = 0
    for step in steps:
        keys = sorted(desc.instances)
        if step[0] == "query":
            _, tenant, size, lookback, offset = step
            now = NOW + offset
            for got, want in (
                (ring.shuffle_shard(tenant, size), make_ring(impl, desc, zone_aware).shuffle_shard(tenant, size)),
                (ring.shuffle_shard_with_lookback(tenant, size, lookback, now),
                 make_ring(impl, desc, zone_aware).shuffle_shard_with_lookback(tenant, size, lookback, now)),
            ):
                assert got.instance_ids() == want.instance_ids()
                assert [(i.state, i.timestamp) for i in got.instances] == [
                    (desc.instances[i.id].state, desc.instances[i.id].timestamp) for i in got.instances
                ]
            continue
        desc = desc.copy()
        if step[0] == "heartbeat" and keys:
            k = keys[step[1] % len(keys)]
            desc.instances[k] = desc.instances[k].replace(state=step[2], timestamp=desc.instances[k].timestamp + 1)
        elif step[0] == "remove" and keys:
            del desc.instances[keys[step[1] % len(keys)]]
        elif step[0] == "add":
            added += 1
            toks = np.random.default_rng(step[1]).integers(0, 2**32, size=4, dtype=np.uint64)
            desc.instances[f"new-{added}"] = instance(f"new-{added}", "z0", toks, registered=NOW + step[2])
        elif step[0] == "read-only" and keys:
            k = keys[step[1] % len(keys)]
            i = desc.instances[k]
            desc.instances[k] = i.replace(read_only=not i.read_only, read_only_updated_timestamp=NOW + step[2])
        ring.update(desc)
