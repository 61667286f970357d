# The ring-state CRDT (dskit Desc.Merge): each law of merge_test.go, the local-CAS rules, token
# conflict resolution, the delta it returns, and the compiled and pure kernels agreeing.
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_core import InstanceDesc, InstanceState, InvalidRingError, RingDesc
from pyro_core.ring.merge import merge_into

from .helpers import inst, random_desc, ring_of

S = InstanceState


def merged(a: RingDesc, b: RingDesc, kernels: SimpleNamespace | None = None) -> RingDesc:
    out = a.copy()
    merge_into(out, b, kernels=kernels)
    return out


def test_newer_heartbeat_wins_and_older_is_ignored(impl: SimpleNamespace) -> None:
    a = ring_of(inst("x", [1, 2], ts=100))
    b = ring_of(inst("x", [1, 2], ts=200, state=S.LEAVING))
    delta = merge_into(a, b, kernels=impl)
    assert delta is not None and list(delta) == ["x"] and a["x"].state == S.LEAVING
    assert merge_into(a, ring_of(inst("x", [1, 2], ts=150)), kernels=impl) is None
    assert a["x"].timestamp == 200


def test_merging_twice_is_idempotent(impl: SimpleNamespace) -> None:
    a = random_desc(10, 16, seed=1)
    b = random_desc(10, 16, seed=2, now=2000)
    assert merge_into(a, b, kernels=impl) is not None
    assert merge_into(a, b, kernels=impl) is None


def test_left_wins_at_equal_timestamp_and_only_left(impl: SimpleNamespace) -> None:
    a = ring_of(inst("x", [1], ts=100))
    assert merge_into(a, ring_of(inst("x", [7], ts=100, state=S.LEAVING)), kernels=impl) is None
    delta = merge_into(a, ring_of(inst("x", [1], ts=100, state=S.LEFT)), kernels=impl)
    assert delta is not None and a["x"].state == S.LEFT and len(a["x"].tokens) == 0


def test_left_at_timestamp_zero_is_accepted_for_unknown_instance(impl: SimpleNamespace) -> None:
    a = RingDesc()
    delta = merge_into(a, ring_of(inst("x", [], ts=0, state=S.LEFT)), kernels=impl)
    assert delta is not None and a["x"].state == S.LEFT


def test_incoming_tombstones_are_normalised_to_hold_no_tokens(impl: SimpleNamespace) -> None:
    a = ring_of(inst("y", [5]))
    merge_into(a, ring_of(inst("x", [1, 2, 3], ts=2000, state=S.LEFT)), kernels=impl)
    assert a["x"].tokens.tolist() == []


def test_unsorted_incoming_tokens_are_normalised(impl: SimpleNamespace) -> None:
    a = RingDesc()
    merge_into(a, RingDesc({"x": InstanceDesc(id="x", tokens=[9, 3, 3, 1], timestamp=5)}), kernels=impl)
    assert a["x"].tokens.tolist() == [1, 3, 9]


def test_local_cas_marks_missing_instances_left_at_now(impl: SimpleNamespace) -> None:
    a = ring_of(inst("x", [1], ts=100), inst("y", [2], ts=100), inst("z", [], ts=50, state=S.LEFT))
    new_state = ring_of(inst("x", [1], ts=100))
    delta = merge_into(a, new_state, local_cas=True, now=5000, kernels=impl)
    assert delta is not None and sorted(delta) == ["y"]
    assert a["y"].state == S.LEFT and a["y"].timestamp == 5000 and len(a["y"].tokens) == 0
    assert a["z"].timestamp == 50  # an existing tombstone is left alone


def test_local_cas_needs_now() -> None:
    with pytest.raises(InvalidRingError, match="now"):
        RingDesc().merge(RingDesc(), local_cas=True)


def test_plain_merge_does_not_delete_missing_instances(impl: SimpleNamespace) -> None:
    a = ring_of(inst("x", [1]), inst("y", [2]))
    assert merge_into(a, ring_of(inst("x", [1])), kernels=impl) is None
    assert sorted(a) == ["x", "y"]


def test_token_conflict_goes_to_lower_id(impl: SimpleNamespace) -> None:
    a = ring_of(inst("b", [10, 20], ts=100))
    delta = merge_into(a, ring_of(inst("a", [20, 30], ts=200)), kernels=impl)
    assert a["a"].tokens.tolist() == [20, 30]
    assert a["b"].tokens.tolist() == [10]
    # the delta holds only the updated instance; b's lost token is not gossiped by this change
    assert delta is not None and list(delta) == ["a"]


def test_token_conflict_leaving_holder_loses(impl: SimpleNamespace) -> None:
    a = ring_of(inst("a", [10, 20], ts=100, state=S.LEAVING))
    merge_into(a, ring_of(inst("b", [20, 30], ts=200)), kernels=impl)
    assert a["a"].tokens.tolist() == [10]
    assert a["b"].tokens.tolist() == [20, 30]


def test_token_conflict_between_two_leaving_goes_to_lower_id(impl: SimpleNamespace) -> None:
    a = ring_of(inst("a", [10, 20], ts=100, state=S.LEAVING))
    merge_into(a, ring_of(inst("b", [20], ts=200, state=S.LEAVING)), kernels=impl)
    assert a["a"].tokens.tolist() == [10, 20] and a["b"].tokens.tolist() == []


def test_delta_reflects_conflict_resolution_of_updated_instances(impl: SimpleNamespace) -> None:
    a = ring_of(inst("a", [20], ts=100))
    delta = merge_into(a, ring_of(inst("b", [20, 30], ts=200)), kernels=impl)
    assert delta is not None and delta["b"].tokens.tolist() == [30]


# -- the laws, on random histories ------------------------------------------------------------
@st.composite
def histories(draw: st.DrawFn) -> list[RingDesc]:
    """Three ring states drawn from one history: per instance, versions with increasing
    timestamps; two states never hold different content for the same (id, timestamp), except
    that a LEFT tombstone may share the timestamp of a live version (dskit's tie rule)."""
    n_ids = draw(st.integers(1, 6))
    versions: dict[str, list[InstanceDesc]] = {}
    for i in range(n_ids):
        vs: list[InstanceDesc] = []
        ts = 0
        for v in range(draw(st.integers(1, 4))):
            ts += draw(st.integers(1, 3))
            state = draw(st.sampled_from([S.ACTIVE, S.LEAVING, S.JOINING, S.LEFT]))
            # disjoint token ranges per id: conflicts are covered by the dedicated tests
            toks = [] if state == S.LEFT else [i * 1000 + v * 10 + k for k in range(draw(st.integers(0, 3)))]
            vs.append(InstanceDesc(id=f"i{i}", addr=f"a{i}", tokens=toks, state=state, timestamp=ts))
            if state != S.LEFT and draw(st.booleans()):
                vs.append(vs[-1].replace(state=S.LEFT, tokens=[]))  # same-timestamp tombstone
        versions[f"i{i}"] = vs
    states = []
    for _ in range(3):
        picked = {}
        for key, vs in versions.items():
            j = draw(st.integers(-1, len(vs) - 1))
            if j >= 0:
                picked[key] = vs[j]
        states.append(RingDesc(picked))
    return states


@settings(max_examples=200, deadline=None)
@given(histories())
def test_merge_is_commutative_associative_and_idempotent(states: list[RingDesc]) -> None:
    a, b, c = states
    assert merged(a, b) == merged(b, a)
    assert merged(merged(a, b), c) == merged(a, merged(b, c))
    ab = merged(a, b)
    assert merge_into(ab.copy(), b) is None and merge_into(ab.copy(), a) is None


@settings(max_examples=200, deadline=None)
@given(histories())
def test_applying_the_delta_reproduces_the_merge(states: list[RingDesc]) -> None:
    a, b, _ = states
    before = a.copy()
    after = a.copy()
    delta = merge_into(after, b)
    if delta is None:
        assert after == before
    else:
        assert merged(before, delta) == after


@st.composite
def conflicting_pairs(draw: st.DrawFn) -> tuple[RingDesc, RingDesc, bool, int]:
    def one() -> RingDesc:
        out = {}
        for i in range(draw(st.integers(0, 6))):
            out[f"i{i}"] = InstanceDesc(
                id=f"i{i}",
                tokens=draw(st.lists(st.integers(0, 40), max_size=8)),
                state=draw(st.sampled_from(list(S))),
                timestamp=draw(st.integers(0, 4)),
            )
        return RingDesc(out)

    return one(), one(), draw(st.booleans()), draw(st.integers(0, 10))


@settings(max_examples=300, deadline=None)
@given(conflicting_pairs())
def test_compiled_and_pure_merges_agree(case: tuple[RingDesc, RingDesc, bool, int]) -> None:
    from pyro_core import _impl

    a, b, local_cas, now = case
    results = []
    for name in ("compiled", "pure"):
        this = a.copy()
        delta = merge_into(this, b.copy(), local_cas=local_cas, now=now, kernels=_impl.kernels(name))
        results.append((this, delta))
    assert results[0] == results[1]


def test_merge_kernels_agree_on_large_random_conflicts(
    compiled: SimpleNamespace, pure: SimpleNamespace
) -> None:
    rng = np.random.default_rng(3)
    arrays = [np.unique(rng.integers(0, 5000, 300).astype(np.uint32)) for _ in range(20)]
    assert compiled.merge.has_duplicate_tokens(arrays) == pure.merge.has_duplicate_tokens(arrays) is True
    for x, y in zip(
        compiled.merge.resolve_conflicts(arrays), pure.merge.resolve_conflicts(arrays), strict=True
    ):
        assert x.tolist() == y.tolist()
    disjoint = [np.arange(i * 10, i * 10 + 10, dtype=np.uint32) for i in range(50)]
    assert compiled.merge.has_duplicate_tokens(disjoint) is pure.merge.has_duplicate_tokens(disjoint) is False
    edge = [np.array([0, 2**32 - 1], dtype=np.uint32), np.array([2**32 - 1], dtype=np.uint32)]
    assert compiled.merge.has_duplicate_tokens(edge) and pure.merge.has_duplicate_tokens(edge)


def test_full_state_merge_of_a_large_ring_converges(impl: SimpleNamespace) -> None:
    full = random_desc(600, 128, seed=5, now=2000)
    empty = RingDesc()
    delta = merge_into(empty, full, kernels=impl)
    assert delta is not None and len(delta) == 600 and empty == full


# -- the incremental conflict check decides exactly like a full check -----------------------------
@st.composite
def merge_scripts(draw: st.DrawFn) -> list[tuple[str, RingDesc | tuple[str, list[int]]]]:
    steps: list[tuple[str, Any]] = []
    ts = 10
    for _ in range(draw(st.integers(1, 12))):
        ts += 1
        kind = draw(st.sampled_from(["merge", "merge", "heartbeat", "mutate"]))
        if kind == "mutate":  # a user edits the map directly, behind the index's back
            steps.append(("mutate", (f"i{draw(st.integers(0, 7))}", draw(st.lists(st.integers(0, 60), max_size=6)))))
            continue
        out = {}
        for i in draw(st.sets(st.integers(0, 7), max_size=4)):
            toks = [] if kind == "heartbeat" else draw(st.lists(st.integers(0, 60), max_size=6))
            out[f"i{i}"] = InstanceDesc(
                id=f"i{i}", tokens=toks, timestamp=ts, state=draw(st.sampled_from([S.ACTIVE, S.LEAVING, S.LEFT]))
            )
        steps.append((kind, RingDesc(out)))
    return steps


@settings(max_examples=300, deadline=None)
@given(merge_scripts())
def test_cached_token_index_decides_like_a_full_conflict_check(steps: list[tuple[str, Any]]) -> None:
    with_index = random_desc(6, 8, seed=9, now=10)
    without = with_index.copy()
    for kind, arg in steps:
        if kind == "mutate":
            key, toks = arg
            for d in (with_index, without):
                d.instances[key] = InstanceDesc(id=key, tokens=toks, timestamp=1)
            continue
        if kind == "heartbeat":  # same tokens, newer timestamp: must keep sharing the array
            arg = RingDesc({k: v.replace(timestamp=v.timestamp + 50) for k, v in with_index.instances.items()})
        without._token_index = None  # the reference: a full check every time
        d1 = merge_into(with_index, arg.copy())
        d2 = merge_into(without, arg.copy())
        assert with_index == without
        assert d1 == d2


def test_changed_instances_kernels_agree(compiled: SimpleNamespace, pure: SimpleNamespace) -> None:
    desc = random_desc(30, 8, seed=2)
    snapshot = {k: v.tokens for k, v in desc.instances.items()}
    desc.instances["instance-3"] = desc["instance-3"].replace(tokens=[1, 2, 3])
    desc.instances["instance-4"] = desc["instance-4"].replace(state=S.LEFT, tokens=[])
    del desc.instances["instance-5"]
    desc.instances["new"] = inst("new", [7])
    desc.instances["empty"] = inst("empty", [])
    expected = ["instance-3", "instance-4", "new", "instance-5"]
    assert compiled.merge.changed_instances(snapshot, desc.instances) == expected
    assert pure.merge.changed_instances(snapshot, desc.instances) == expected


def test_left_instance_tokens_count_as_conflicts_and_are_cleared_like_dskit(impl: SimpleNamespace) -> None:
    # dskit's conflictingTokensExist counts a LEFT instance's tokens; resolveConflicts then leaves
    # every LEFT instance with none (a state reachable from decoded or hand-built descriptions).
    a = RingDesc({"d": InstanceDesc(id="d", tokens=[7, 8, 11], state=S.LEFT, timestamp=5)})
    merge_into(a, ring_of(inst("a", [6, 10, 11], ts=10)), kernels=impl)
    assert a["d"].tokens.tolist() == [] and a["a"].tokens.tolist() == [6, 10, 11]


def test_changed_instances_counts_removed_ids_despite_tokenless_tombstones(
    compiled: SimpleNamespace, pure: SimpleNamespace
) -> None:
    snapshot = {"A": np.array([1], dtype=np.uint32)}
    instances = {f"t{i}": inst(f"t{i}", [], state=S.LEFT) for i in range(3)}
    assert compiled.merge.changed_instances(snapshot, instances) == ["A"]
    assert pure.merge.changed_instances(snapshot, instances) == ["A"]
