# The querier's read path: which ingesters are asked, and replicas counted once per series and bucket.
from __future__ import annotations

from pyro_core import InstanceDesc, InstanceState, Ring, RingDesc
from pyro_core.ring.tokens import generate_tokens
from pyro_core.server.querier import assign_replicas, merge_meta, merge_union, query_targets

NOW = 1_700_000_000


def answer(*items: tuple[dict[str, str], int, dict[bytes, int]]) -> dict:
    return {(tuple(sorted(lbl.items())), b): (lbl, dict(st)) for lbl, b, st in items}


def merge_replica_answers(answers: list[dict]) -> dict[bytes, int]:
    """The querier's two steps over in-memory replicas: indexes → assignment → merge of the pieces."""
    ids = [f"ing-{i}" for i in range(len(answers))]
    indexes = [(iid, {k: (lbl, sum(st.values())) for k, (lbl, st) in a.items()}) for iid, a in zip(ids, answers, strict=True)]
    out: dict[bytes, int] = {}
    for iid, pieces in assign_replicas(indexes).items():
        held = answers[ids.index(iid)]
        for key in pieces:
            for stack, v in held[key][1].items():
                out[stack] = out.get(stack, 0) + v
    return out


A = {"__name__": "app.cpu", "host": "a"}
B = {"__name__": "app.cpu", "host": "b"}


def test_a_series_held_by_three_replicas_is_counted_once() -> None:
    same = (A, 0, {b"main;f": 4})
    tree = merge_replica_answers([answer(same), answer(same), answer(same)])
    assert tree == {b"main;f": 4}


def test_the_most_complete_replica_wins_per_bucket() -> None:
    # Replica 1 missed the second profile of bucket 0 (it was down); replica 2 missed bucket 10.
    r1 = answer((A, 0, {b"f": 1}), (A, 10, {b"g": 2}))
    r2 = answer((A, 0, {b"f": 1, b"h": 1}))
    assert merge_replica_answers([r1, r2]) == {b"f": 1, b"g": 2, b"h": 1}
    assert merge_replica_answers([r2, r1]) == {b"f": 1, b"g": 2, b"h": 1}


def test_different_series_and_buckets_add_up() -> None:
    tree = merge_replica_answers([answer((A, 0, {b"f": 1}), (B, 0, {b"f": 2})), answer((A, 10, {b"f": 3}))])
    assert tree == {b"f": 6}


def test_unions_and_metadata() -> None:
    assert merge_union([["b", "a"], ["c", "a"], []]) == ["a", "b", "c"]
    assert merge_meta([{"x": ("gospy", 100, "samples")}, {"x": ("pyspy", 99, "s"), "y": ("j", 1, "u")}]) == {
        "x": ("gospy", 100, "samples"),
        "y": ("j", 1, "u"),
    }


def ring(n: int, *, registered: dict[str, int] | None = None) -> Ring:
    instances = {}
    for i in range(n):
        iid = f"ing-{i}"
        instances[iid] = InstanceDesc(
            id=iid,
            addr=f"10.0.0.{i}:4040",
            timestamp=NOW,
            state=InstanceState.ACTIVE,
            tokens=generate_tokens(16, rng=i),
            registered_timestamp=(registered or {}).get(iid, NOW - 86400),
        )
    return Ring(RingDesc(instances), replication_factor=3)


def test_without_shuffle_sharding_every_healthy_ingester_is_asked() -> None:
    r = ring(6)
    targets = query_targets(r, "t", now=NOW, shard_size=2, shuffle_sharding=False)
    assert {i.id for i in targets.instances} == {f"ing-{i}" for i in range(6)}
    assert targets.max_errors == 1  # RF=3 tolerates one failed ingester


def test_with_shuffle_sharding_only_the_tenant_shard_is_asked() -> None:
    r = ring(6)
    shard = {i.id for i in r.shuffle_shard("t", 3).instances}
    targets = query_targets(r, "t", now=NOW, shard_size=3, shuffle_sharding=True, lookback=3600)
    assert {i.id for i in targets.instances} == shard


def test_the_lookback_keeps_instances_that_joined_the_shard_recently() -> None:
    # An instance registered within the lookback may have taken over part of the shard: it is asked
    # too (dskit ShuffleShardWithLookback), so series written before the change are found.
    base = ring(6)
    newest = {f"ing-{i}": NOW - 60 if i == 5 else NOW - 86400 for i in range(6)}
    r = ring(6, registered=newest)
    plain = {i.id for i in base.shuffle_shard("tenant-x", 2).instances}
    with_lookback = {i.id for i in query_targets(r, "tenant-x", now=NOW, shard_size=2, shuffle_sharding=True, lookback=3600).instances}
    assert plain <= with_lookback
    no_lookback = {i.id for i in query_targets(r, "tenant-x", now=NOW, shard_size=2, shuffle_sharding=True, lookback=0).instances}
    assert no_lookback == plain


def test_equally_complete_replicas_share_the_merging() -> None:
    # Three replicas hold the same 30 pieces: each ingester is asked to merge about a third.
    pieces = {(tuple(sorted(A.items())), b): (A, 10) for b in range(0, 300, 10)}
    assignment = assign_replicas([("x", pieces), ("y", pieces), ("z", pieces)])
    assert sorted(len(v) for v in assignment.values()) == [10, 10, 10]
    assert sorted(k for v in assignment.values() for k in v) == sorted(pieces)


def test_a_piece_goes_to_the_replica_with_the_most_samples() -> None:
    key = (tuple(sorted(A.items())), 0)
    assert assign_replicas([("x", {key: (A, 3)}), ("y", {key: (A, 5)}), ("z", {key: (A, 4)})]) == {"y": [key]}
    assert assign_replicas([("x", {key: (A, 0)})]) == {}  # nothing to merge
