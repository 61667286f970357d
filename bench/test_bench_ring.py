# Benchmarks of the ring's hot paths beside their peers, via pytest-benchmark (not tests: nothing here
# asserts on wall-clock time).
# Owns: the groups "get-rf1", "get-rf3", "get-many", "shuffle-shard", "merge" and "tokens" — each
# pyro-core figure (compiled kernels and their pure-Python twins) next to its peer in the same run
# (uhashring 2.5, a naive bisect ring, numpy searchsorted) or the target / dskit's published
# figure. Every benchmark records in ``extra_info`` what one round is (``ops``, ``unit``), who it is
# (``label``, ``impl``, ``kernel`` pairs compiled with pure, ``baseline`` marks the group's peer) and
# the target; bench/report.py turns a ``--benchmark-json`` file into Markdown tables.
# Run: python -m pytest bench --benchmark-only --benchmark-json=bench/results.json
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import xxhash

import pyro_core
from pyro_core import InstanceDesc, RingDesc, _impl, generate_tokens
from pyro_core.ring.merge import has_token_conflicts, merge_into

NOW = 1_700_000_000
TENANT = "tenant-1"

# Published dskit (Go) figures for uncached ShuffleShard on 50 instances (spec ring.md §7).
DSKIT_SHARD_SIZE3_NS = 18_000  # 16–20 µs, one zone
DSKIT_SHARD_SIZE3_ZONES_NS = 42_000  # three zones


# -- helpers ----------------------------------------------------------------------------------------
def _describe(
    benchmark: Any,
    *,
    label: str,
    ops: int,
    unit: str,
    impl: str,
    kernel: str | None = None,
    baseline: bool = False,
    target: str | None = None,
    target_ratio: float | None = None,
    target_ns: float | None = None,
    target_ops_per_s: float | None = None,
    reference: tuple[str, float] | None = None,
) -> None:
    info: dict[str, Any] = {"label": label, "ops": ops, "unit": unit, "impl": impl, "baseline": baseline}
    if kernel is not None:
        info["kernel"] = kernel
    if target is not None:
        info["target"] = target
    if target_ratio is not None:
        info["target_ratio"] = target_ratio
    if target_ns is not None:
        info["target_ns_per_op"] = target_ns
    if target_ops_per_s is not None:
        info["target_ops_per_s"] = target_ops_per_s
    if reference is not None:
        info["reference_label"], info["reference_ns_per_op"] = reference
    benchmark.extra_info.update(info)


def _record_throughput(benchmark: Any) -> None:
    """Add ns/op and ops/s (from the median round) to extra_info once the benchmark has run."""
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable
        return
    ops = benchmark.extra_info["ops"]
    median = stats.stats.median
    benchmark.extra_info["ns_per_op"] = median / ops * 1e9
    benchmark.extra_info["ops_per_s"] = ops / median if median > 0 else float("inf")


def run(benchmark: Any, fn: Callable[[], object], **info: Any) -> None:
    _describe(benchmark, **info)
    benchmark(fn)
    _record_throughput(benchmark)


def run_pedantic(
    benchmark: Any,
    fn: Callable[..., object],
    setup: Callable[[], tuple[tuple[Any, ...], dict[str, Any]]],
    rounds: int,
    **info: Any,
) -> None:
    """A benchmark whose every round needs fresh, untimed state (``setup`` returns ``(args, kwargs)``)."""
    _describe(benchmark, **info)
    min_rounds = benchmark._min_rounds if isinstance(getattr(benchmark, "_min_rounds", None), int) else 1
    benchmark.pedantic(fn, setup=setup, rounds=max(rounds, min_rounds), warmup_rounds=1)
    _record_throughput(benchmark)


# ====================================================================================================
# get-rf1: single lookups, replication factor 1, 10,000 keys per round
# ====================================================================================================
@pytest.mark.benchmark(group="get-rf1")
def test_get_rf1_compiled(
    benchmark: Any, ring_cls_compiled: type, ring_desc_50: RingDesc, lookup_keys: list[int]
):
    get = ring_cls_compiled(ring_desc_50).get

    def loop() -> None:
        for k in lookup_keys:
            get(k)

    run(
        benchmark,
        loop,
        label="pyro-core compiled get(key)",
        ops=len(lookup_keys),
        unit="lookup",
        impl="compiled",
        kernel="get RF=1",
        target="≥ 10× uhashring get_node",
        target_ratio=10,
    )


@pytest.mark.benchmark(group="get-rf1")
def test_get_rf1_compiled_hashing_str_key(
    benchmark: Any, ring_cls_compiled: type, ring_desc_50: RingDesc, str_keys: list[str]
):
    """End to end from the same str keys uhashring gets: xxh32 of the key, then get."""
    get = ring_cls_compiled(ring_desc_50).get
    h = xxhash.xxh32_intdigest

    def loop() -> None:
        for k in str_keys:
            get(h(k.encode()))

    run(
        benchmark,
        loop,
        label="pyro-core compiled get(xxh32(str key))",
        ops=len(str_keys),
        unit="lookup",
        impl="compiled",
    )


@pytest.mark.benchmark(group="get-rf1")
def test_get_rf1_pure(benchmark: Any, ring_cls_pure: type, ring_desc_50: RingDesc, lookup_keys: list[int]):
    get = ring_cls_pure(ring_desc_50).get

    def loop() -> None:
        for k in lookup_keys:
            get(k)

    run(
        benchmark,
        loop,
        label="pyro-core pure twin get(key)",
        ops=len(lookup_keys),
        unit="lookup",
        impl="pure",
        kernel="get RF=1",
    )


@pytest.mark.benchmark(group="get-rf1")
def test_get_rf1_uhashring(benchmark: Any, uhash_ring: Any, str_keys: list[str]):
    get_node = uhash_ring.get_node

    def loop() -> None:
        for k in str_keys:
            get_node(k)

    run(
        benchmark,
        loop,
        label="uhashring 2.5 get_node(str key)",
        ops=len(str_keys),
        unit="lookup",
        impl="peer",
        baseline=True,
    )


@pytest.mark.benchmark(group="get-rf1")
def test_get_rf1_bisect(benchmark: Any, bisect_ring: Any, lookup_keys: list[int]):
    get = bisect_ring.get

    def loop() -> None:
        for k in lookup_keys:
            get(k)

    run(benchmark, loop, label="naive bisect ring get(key)", ops=len(lookup_keys), unit="lookup", impl="peer")


# ====================================================================================================
# get-rf3: single lookups, replication factor 3, 10,000 keys per round
# ====================================================================================================
@pytest.mark.benchmark(group="get-rf3")
def test_get_rf3_compiled(
    benchmark: Any, ring_cls_compiled: type, ring_desc_50: RingDesc, lookup_keys: list[int]
):
    get = ring_cls_compiled(ring_desc_50, replication_factor=3).get

    def loop() -> None:
        for k in lookup_keys:
            get(k)

    run(
        benchmark,
        loop,
        label="pyro-core compiled get(key) RF=3",
        ops=len(lookup_keys),
        unit="lookup",
        impl="compiled",
        kernel="get RF=3",
        target="≥ 20× uhashring range(key, 3)",
        target_ratio=20,
    )


@pytest.mark.benchmark(group="get-rf3")
def test_get_rf3_compiled_zone_aware(
    benchmark: Any, ring_cls_compiled: type, ring_desc_50_zones: RingDesc, lookup_keys: list[int]
):
    get = ring_cls_compiled(ring_desc_50_zones, replication_factor=3, zone_awareness=True).get

    def loop() -> None:
        for k in lookup_keys:
            get(k)

    run(
        benchmark,
        loop,
        label="pyro-core compiled get(key) RF=3, 3 zones, zone-aware",
        ops=len(lookup_keys),
        unit="lookup",
        impl="compiled",
        kernel="get RF=3 zone-aware",
    )


@pytest.mark.benchmark(group="get-rf3")
def test_get_rf3_pure(benchmark: Any, ring_cls_pure: type, ring_desc_50: RingDesc, lookup_keys: list[int]):
    get = ring_cls_pure(ring_desc_50, replication_factor=3).get

    def loop() -> None:
        for k in lookup_keys:
            get(k)

    run(
        benchmark,
        loop,
        label="pyro-core pure twin get(key) RF=3",
        ops=len(lookup_keys),
        unit="lookup",
        impl="pure",
        kernel="get RF=3",
    )


@pytest.mark.benchmark(group="get-rf3")
def test_get_rf3_pure_zone_aware(
    benchmark: Any, ring_cls_pure: type, ring_desc_50_zones: RingDesc, lookup_keys: list[int]
):
    get = ring_cls_pure(ring_desc_50_zones, replication_factor=3, zone_awareness=True).get
    keys = lookup_keys[:2_000]

    def loop() -> None:
        for k in keys:
            get(k)

    run(
        benchmark,
        loop,
        label="pyro-core pure twin get(key) RF=3, 3 zones, zone-aware",
        ops=len(keys),
        unit="lookup",
        impl="pure",
        kernel="get RF=3 zone-aware",
    )


@pytest.mark.benchmark(group="get-rf3")
def test_get_rf3_uhashring(benchmark: Any, uhash_ring: Any, str_keys: list[str]):
    # HashRing.range is a generator (no caching between calls: every call hashes the key, bisects
    # and walks; it also copies the tail of the point list): consume it to get the 3 distinct nodes.
    # The first 2,000 keys only, so that rounds stay short and numerous.
    rng = uhash_ring.range
    keys = str_keys[:2_000]

    def loop() -> None:
        for k in keys:
            list(rng(k, 3, True))

    run(
        benchmark,
        loop,
        label="uhashring 2.5 range(str key, 3, unique=True)",
        ops=len(keys),
        unit="lookup",
        impl="peer",
        baseline=True,
    )


@pytest.mark.benchmark(group="get-rf3")
def test_get_rf3_bisect(benchmark: Any, bisect_ring: Any, lookup_keys: list[int]):
    get_n = bisect_ring.get_n

    def loop() -> None:
        for k in lookup_keys:
            get_n(k, 3)

    run(
        benchmark,
        loop,
        label="naive bisect ring, 3 distinct owners",
        ops=len(lookup_keys),
        unit="lookup",
        impl="peer",
    )


# ====================================================================================================
# get-many: batch lookups of a uint32 array
# ====================================================================================================
@pytest.mark.benchmark(group="get-many")
def test_get_many_rf3_compiled(
    benchmark: Any, ring_cls_compiled: type, ring_desc_50: RingDesc, batch_keys: Any
):
    ring = ring_cls_compiled(ring_desc_50, replication_factor=3)
    run(
        benchmark,
        lambda: ring.get_many(batch_keys),
        label="pyro-core compiled get_many RF=3 (1e6 keys)",
        ops=len(batch_keys),
        unit="key",
        impl="compiled",
        kernel="get_many RF=3",
        target="≥ 20 M keys/s",
        target_ops_per_s=20e6,
    )


@pytest.mark.benchmark(group="get-many")
def test_get_many_rf3_zone_aware_compiled(
    benchmark: Any, ring_cls_compiled: type, ring_desc_50_zones: RingDesc, batch_keys: Any
):
    ring = ring_cls_compiled(ring_desc_50_zones, replication_factor=3, zone_awareness=True)
    run(
        benchmark,
        lambda: ring.get_many(batch_keys),
        label="pyro-core compiled get_many RF=3, 3 zones, zone-aware (1e6 keys)",
        ops=len(batch_keys),
        unit="key",
        impl="compiled",
    )


@pytest.mark.benchmark(group="get-many")
def test_get_many_rf1_compiled(
    benchmark: Any, ring_cls_compiled: type, ring_desc_50: RingDesc, batch_keys: Any
):
    ring = ring_cls_compiled(ring_desc_50)
    run(
        benchmark,
        lambda: ring.get_many(batch_keys),
        label="pyro-core compiled get_many RF=1 (1e6 keys)",
        ops=len(batch_keys),
        unit="key",
        impl="compiled",
        kernel="get_many RF=1",
    )


@pytest.mark.benchmark(group="get-many")
def test_get_many_rf1_sorted_compiled(
    benchmark: Any, ring_cls_compiled: type, ring_desc_50: RingDesc, batch_keys_sorted: Any
):
    ring = ring_cls_compiled(ring_desc_50)
    run(
        benchmark,
        lambda: ring.get_many(batch_keys_sorted),
        label="pyro-core compiled get_many RF=1 (1e6 pre-sorted keys)",
        ops=len(batch_keys_sorted),
        unit="key",
        impl="compiled",
    )


@pytest.mark.benchmark(group="get-many")
def test_get_many_numpy_searchsorted(benchmark: Any, ring_desc_50: RingDesc, batch_keys: Any):
    tokens = ring_desc_50.tokens()
    run(
        benchmark,
        lambda: np.searchsorted(tokens, batch_keys, side="right"),
        label="numpy searchsorted (1e6 keys into 6,400 tokens; RF=1 floor)",
        ops=len(batch_keys),
        unit="key",
        impl="peer",
        baseline=True,
    )


@pytest.mark.benchmark(group="get-many")
def test_get_many_numpy_searchsorted_sorted(benchmark: Any, ring_desc_50: RingDesc, batch_keys_sorted: Any):
    tokens = ring_desc_50.tokens()
    run(
        benchmark,
        lambda: np.searchsorted(tokens, batch_keys_sorted, side="right"),
        label="numpy searchsorted (1e6 pre-sorted keys)",
        ops=len(batch_keys_sorted),
        unit="key",
        impl="peer",
    )


@pytest.mark.benchmark(group="get-many")
def test_get_many_rf3_pure(benchmark: Any, ring_cls_pure: type, ring_desc_50: RingDesc, batch_keys: Any):
    ring = ring_cls_pure(ring_desc_50, replication_factor=3)
    keys = batch_keys[:10_000].copy()
    run(
        benchmark,
        lambda: ring.get_many(keys),
        label="pyro-core pure twin get_many RF=3 (1e4 keys)",
        ops=len(keys),
        unit="key",
        impl="pure",
        kernel="get_many RF=3",
    )


@pytest.mark.benchmark(group="get-many")
def test_get_many_rf1_pure(benchmark: Any, ring_cls_pure: type, ring_desc_50: RingDesc, batch_keys: Any):
    ring = ring_cls_pure(ring_desc_50)
    keys = batch_keys[:10_000].copy()
    run(
        benchmark,
        lambda: ring.get_many(keys),
        label="pyro-core pure twin get_many RF=1 (1e4 keys)",
        ops=len(keys),
        unit="key",
        impl="pure",
        kernel="get_many RF=1",
    )


# ====================================================================================================
# shuffle-shard: tenant shards on the 50-instance rings
# ====================================================================================================
N_TENANTS = 500
TENANTS = [f"tenant-{i:05d}" for i in range(N_TENANTS)]


def _uncached(
    ring: Any, size: int, tenants: list[str]
) -> tuple[Callable[[list[str]], None], Callable[..., Any]]:
    """A round of ``shuffle_shard`` over ``tenants`` with an empty cache (cleared, untimed, in setup)."""
    shard = ring.shuffle_shard

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        ring._shard_cache.clear()
        return (tenants,), {}

    def loop(ids: list[str]) -> None:
        for t in ids:
            shard(t, size)

    return loop, setup


@pytest.mark.benchmark(group="shuffle-shard")
@pytest.mark.parametrize("size", [3, 4])
def test_shuffle_shard_uncached_compiled(
    benchmark: Any, ring_cls_compiled: type, ring_desc_50: RingDesc, size: int
):
    loop, setup = _uncached(ring_cls_compiled(ring_desc_50), size, TENANTS)
    run_pedantic(
        benchmark,
        loop,
        setup,
        rounds=40,
        label=f"pyro-core compiled uncached, size {size}",
        ops=N_TENANTS,
        unit="shard",
        impl="compiled",
        kernel=f"shuffle_shard uncached size {size}",
        target="≤ 3 µs (size 4)" if size == 4 else None,
        target_ns=3000 if size == 4 else None,
        reference=("dskit Go uncached size 3 (published)", DSKIT_SHARD_SIZE3_NS),
    )


@pytest.mark.benchmark(group="shuffle-shard")
def test_shuffle_shard_pick_only_compiled(benchmark: Any, ring_cls_compiled: type, ring_desc_50: RingDesc):
    """The walk alone (seed + GoRand + token walk), without building the sub-ring or caching it."""
    pick = ring_cls_compiled(ring_desc_50)._shard_pick

    def loop() -> None:
        for t in TENANTS:
            pick(t, 4, False, 0)

    run(
        benchmark,
        loop,
        label="pyro-core compiled shard walk only (_shard_pick), size 4",
        ops=N_TENANTS,
        unit="shard",
        impl="compiled",
        kernel="shard walk size 4",
    )


@pytest.mark.benchmark(group="shuffle-shard")
def test_shuffle_shard_pick_only_pure(benchmark: Any, ring_cls_pure: type, ring_desc_50: RingDesc):
    pick = ring_cls_pure(ring_desc_50)._shard_pick
    tenants = TENANTS[:100]

    def loop() -> None:
        for t in tenants:
            pick(t, 4, False, 0)

    run(
        benchmark,
        loop,
        label="pyro-core pure twin shard walk only (_shard_pick), size 4",
        ops=len(tenants),
        unit="shard",
        impl="pure",
        kernel="shard walk size 4",
    )


@pytest.mark.benchmark(group="shuffle-shard")
def test_shuffle_shard_cached_compiled(benchmark: Any, ring_cls_compiled: type, ring_desc_50: RingDesc):
    ring = ring_cls_compiled(ring_desc_50)
    shard = ring.shuffle_shard
    for t in TENANTS:
        shard(t, 4)

    def loop() -> None:
        for t in TENANTS:
            shard(t, 4)

    run(
        benchmark,
        loop,
        label="pyro-core compiled cached, size 4",
        ops=N_TENANTS,
        unit="shard",
        impl="compiled",
        kernel="shuffle_shard cached size 4",
        target="≤ 150 ns",
        target_ns=150,
    )


@pytest.mark.benchmark(group="shuffle-shard")
def test_shuffle_shard_cached_pure(benchmark: Any, ring_cls_pure: type, ring_desc_50: RingDesc):
    ring = ring_cls_pure(ring_desc_50)
    shard = ring.shuffle_shard
    for t in TENANTS:
        shard(t, 4)

    def loop() -> None:
        for t in TENANTS:
            shard(t, 4)

    run(
        benchmark,
        loop,
        label="pyro-core pure twin cached, size 4",
        ops=N_TENANTS,
        unit="shard",
        impl="pure",
        kernel="shuffle_shard cached size 4",
    )


@pytest.mark.benchmark(group="shuffle-shard")
@pytest.mark.parametrize("size", [3, 6])
def test_shuffle_shard_zone_aware_uncached_compiled(
    benchmark: Any, ring_cls_compiled: type, ring_desc_50_zones: RingDesc, size: int
):
    ring = ring_cls_compiled(ring_desc_50_zones, replication_factor=3, zone_awareness=True)
    loop, setup = _uncached(ring, size, TENANTS)
    run_pedantic(
        benchmark,
        loop,
        setup,
        rounds=40,
        label=f"pyro-core compiled uncached, 3 zones zone-aware, size {size}",
        ops=N_TENANTS,
        unit="shard",
        impl="compiled",
        kernel=f"shuffle_shard zone-aware uncached size {size}",
        reference=("dskit Go uncached 3 zones size 3 (published)", DSKIT_SHARD_SIZE3_ZONES_NS)
        if size == 3
        else None,
    )


@pytest.mark.benchmark(group="shuffle-shard")
@pytest.mark.parametrize("size", [3, 4])
def test_shuffle_shard_uncached_pure(benchmark: Any, ring_cls_pure: type, ring_desc_50: RingDesc, size: int):
    tenants = TENANTS[:100]
    loop, setup = _uncached(ring_cls_pure(ring_desc_50), size, tenants)
    run_pedantic(
        benchmark,
        loop,
        setup,
        rounds=10,
        label=f"pyro-core pure twin uncached, size {size}",
        ops=len(tenants),
        unit="shard",
        impl="pure",
        kernel=f"shuffle_shard uncached size {size}",
    )


@pytest.mark.benchmark(group="shuffle-shard")
@pytest.mark.parametrize("size", [3, 6])
def test_shuffle_shard_zone_aware_uncached_pure(
    benchmark: Any, ring_cls_pure: type, ring_desc_50_zones: RingDesc, size: int
):
    tenants = TENANTS[:100]
    ring = ring_cls_pure(ring_desc_50_zones, replication_factor=3, zone_awareness=True)
    loop, setup = _uncached(ring, size, tenants)
    run_pedantic(
        benchmark,
        loop,
        setup,
        rounds=10,
        label=f"pyro-core pure twin uncached, 3 zones zone-aware, size {size}",
        ops=len(tenants),
        unit="shard",
        impl="pure",
        kernel=f"shuffle_shard zone-aware uncached size {size}",
    )


# ====================================================================================================
# merge: RingDesc merges into a 600 x 128 ring (Python merge logic + compiled or pure token kernels)
# ====================================================================================================
def _with_copied_tokens(inst: InstanceDesc, **changes: Any) -> InstanceDesc:
    """The instance as a gossip decode would produce it: equal tokens in a distinct array."""
    tokens = np.array(inst.tokens, dtype=np.uint32)
    return inst.replace(tokens=tokens, **changes)


@pytest.fixture(scope="module")
def merge_inputs(ring_desc_600: RingDesc) -> dict[str, RingDesc]:
    ids = sorted(ring_desc_600.instances)
    one = ring_desc_600.instances[ids[123]]
    heartbeat = RingDesc({one.id: _with_copied_tokens(one, timestamp=NOW + 5)})
    new = RingDesc()
    new.add_instance(
        "ingester-new", "10.0.9.9:9095", tokens=generate_tokens(128, ring_desc_600.tokens(), 11), now=NOW + 5
    )
    full_newer = RingDesc(
        {i: _with_copied_tokens(ring_desc_600.instances[i], timestamp=NOW + 5) for i in ids}
    )
    # A local CAS: the full new state after this node changed it — one heartbeat bumped, one removed.
    # A KV store merges into the same description again and again, so its token index is warm:
    # build it once here (copies share it). The "new_cold" case measures a description's first check.
    for _ in range(2):
        has_token_conflicts(ring_desc_600, _impl.kernels("compiled").merge)
    cas = ring_desc_600.copy()
    cas.instances[ids[7]] = _with_copied_tokens(ring_desc_600.instances[ids[7]], timestamp=NOW + 5)
    del cas.instances[ids[300]]
    return {"heartbeat": heartbeat, "new": new, "full_newer": full_newer, "cas": cas}


MERGE_CASES = {
    # case: (label, copies merged per round, rounds compiled, rounds pure, target, target ns)
    "heartbeat": ("one-instance heartbeat delta into 600×128", 100, 200, 100, "≤ 50 µs", 50_000),
    "new": (
        "one new-instance delta (tokens changed → conflict check) into 600×128",
        1,
        200,
        20,
        "≤ 50 µs",
        50_000,
    ),
    "new_cold": (
        "one new-instance delta into 600×128 whose token index is not built yet (a full scan)",
        1,
        100,
        20,
        "≤ 50 µs",
        50_000,
    ),
    "full_newer": (
        "full 600-instance state, every heartbeat newer, into 600×128",
        1,
        100,
        30,
        "≤ 5 ms",
        5_000_000,
    ),
    "join": (
        "full 600-instance state into an empty ring (join; conflict check)",
        1,
        100,
        20,
        "≤ 5 ms",
        5_000_000,
    ),
    "cas": (
        "local-CAS merge of the full state (1 heartbeat, 1 removed → tombstone)",
        1,
        200,
        100,
        "≤ 5 ms",
        5_000_000,
    ),
}


@pytest.mark.benchmark(group="merge")
@pytest.mark.parametrize("impl", ["compiled", "pure"])
@pytest.mark.parametrize("case", list(MERGE_CASES))
def test_merge(
    benchmark: Any,
    case: str,
    impl: str,
    ring_desc_600: RingDesc,
    merge_inputs: dict[str, RingDesc],
    kernels_compiled: Any,
    kernels_pure: Any,
):
    label, batch, rounds_c, rounds_p, target, target_ns = MERGE_CASES[case]
    kernels = kernels_compiled if impl == "compiled" else kernels_pure
    other = ring_desc_600 if case == "join" else merge_inputs["new" if case == "new_cold" else case]
    local_cas = case == "cas"

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        fresh = [RingDesc() if case == "join" else ring_desc_600.copy() for _ in range(batch)]
        if case == "new_cold":
            for d in fresh:
                d._token_index = None
        return (fresh,), {}

    def merge_all(targets: list[RingDesc]) -> None:
        for this in targets:
            if merge_into(this, other, local_cas=local_cas, now=NOW + 10, kernels=kernels) is None:
                raise AssertionError("the merge changed nothing: the benchmark input is wrong")

    run_pedantic(
        benchmark,
        merge_all,
        setup,
        rounds=rounds_c if impl == "compiled" else rounds_p,
        label=f"{'compiled' if impl == 'compiled' else 'pure twin'} kernels: {label}",
        ops=batch,
        unit="merge",
        impl=impl,
        kernel=f"merge: {case}",
        target=target,
        target_ns=target_ns,
    )


# ====================================================================================================
# tokens: series tokens (Pyroscope's FNV-1 32 TokenFor) and the xxhash token, 10,000 label strings
# ====================================================================================================
def _loop_single(fn: Callable[[str, str], int], labels: list[str]) -> Callable[[], None]:
    def loop() -> None:
        for s in labels:
            fn(TENANT, s)

    return loop


@pytest.mark.benchmark(group="tokens")
def test_token_for_public(benchmark: Any, label_strings: list[str]):
    run(
        benchmark,
        _loop_single(pyro_core.token_for, label_strings),
        label=f"token_for (public API, {pyro_core.IMPLEMENTATION})",
        ops=len(label_strings),
        unit="token",
        impl=pyro_core.IMPLEMENTATION,
    )


@pytest.mark.benchmark(group="tokens")
@pytest.mark.parametrize("impl", ["compiled", "pure"])
def test_token_for_kernel(
    benchmark: Any, impl: str, label_strings: list[str], kernels_compiled: Any, kernels_pure: Any
):
    k = kernels_compiled if impl == "compiled" else kernels_pure
    run(
        benchmark,
        _loop_single(k.hashing.token_for, label_strings),
        label=f"token_for kernel, {impl}",
        ops=len(label_strings),
        unit="token",
        impl=impl,
        kernel="token_for (single)",
    )


@pytest.mark.benchmark(group="tokens")
def test_tokens_for_public(benchmark: Any, label_strings: list[str]):
    run(
        benchmark,
        lambda: pyro_core.tokens_for(TENANT, label_strings),
        label=f"tokens_for batch of 10,000 (public API, {pyro_core.IMPLEMENTATION})",
        ops=len(label_strings),
        unit="token",
        impl=pyro_core.IMPLEMENTATION,
    )


@pytest.mark.benchmark(group="tokens")
@pytest.mark.parametrize("impl", ["compiled", "pure"])
def test_tokens_for_kernel(
    benchmark: Any, impl: str, label_strings: list[str], kernels_compiled: Any, kernels_pure: Any
):
    k = kernels_compiled if impl == "compiled" else kernels_pure
    run(
        benchmark,
        lambda: k.hashing.tokens_for(TENANT, label_strings),
        label=f"tokens_for batch of 10,000 kernel, {impl}",
        ops=len(label_strings),
        unit="token",
        impl=impl,
        kernel="tokens_for (batch)",
    )


@pytest.mark.benchmark(group="tokens")
def test_fast_token_for_public(benchmark: Any, label_strings: list[str]):
    run(
        benchmark,
        _loop_single(pyro_core.fast_token_for, label_strings),
        label=f"fast_token_for xxh3 (public API, {pyro_core.IMPLEMENTATION})",
        ops=len(label_strings),
        unit="token",
        impl=pyro_core.IMPLEMENTATION,
    )


@pytest.mark.benchmark(group="tokens")
@pytest.mark.parametrize("impl", ["compiled", "pure"])
def test_xxh_token_kernel(
    benchmark: Any, impl: str, label_strings: list[str], kernels_compiled: Any, kernels_pure: Any
):
    k = kernels_compiled if impl == "compiled" else kernels_pure
    run(
        benchmark,
        _loop_single(k.hashing.xxh_token, label_strings),
        label=f"xxh3 token kernel, {impl}",
        ops=len(label_strings),
        unit="token",
        impl=impl,
        kernel="xxh3 token (single)",
    )


@pytest.mark.benchmark(group="tokens")
@pytest.mark.parametrize("impl", ["compiled", "pure"])
def test_xxh_tokens_kernel(
    benchmark: Any, impl: str, label_strings: list[str], kernels_compiled: Any, kernels_pure: Any
):
    k = kernels_compiled if impl == "compiled" else kernels_pure
    run(
        benchmark,
        lambda: k.hashing.xxh_tokens(TENANT, label_strings),
        label=f"xxh3 tokens batch of 10,000 kernel, {impl}",
        ops=len(label_strings),
        unit="token",
        impl=impl,
        kernel="xxh3 tokens (batch)",
    )
