from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_core.server.flamebearer import decode_levels, render, timeline
from pyro_core.server.tree import StackTree

STACKS = {b"a;b;c": 10, b"a;b": 5, b"a;d": 3, b"e": 2}


def fb(tree: StackTree, max_nodes: int = 8192) -> dict:  # type: ignore[type-arg]
    doc = render(
        tree,
        max_nodes=max_nodes,
        name="app.cpu",
        spy_name="pyspy",
        sample_rate=100,
        units="samples",
        start_time=1000,
        end_time=2000,
        query='app.cpu{env="prod"}',
    )
    return doc["flamebearer"]  # type: ignore[no-any-return]


def test_hand_worked_tree() -> None:
    f = fb(StackTree(STACKS))
    assert f["names"] == ["total", "a", "b", "c", "d", "e"]
    assert f["levels"] == [
        [0, 20, 0, 0],
        [0, 18, 0, 1, 0, 2, 2, 5],
        [0, 15, 5, 2, 0, 3, 3, 4],
        [5, 10, 10, 3],  # c sits right of b's self part: x = 0 + 5
    ]
    assert f["numTicks"] == 20 and f["maxSelf"] == 10


def test_delta_encoding_with_gaps() -> None:
    # a: self 4 then child b; c: self 1 then child d
    f = fb(StackTree({b"a": 4, b"a;b": 3, b"c;d": 5, b"c": 1}))
    assert f["names"] == ["total", "a", "b", "c", "d"]
    assert f["levels"] == [
        [0, 13, 0, 0],
        [0, 7, 4, 1, 0, 6, 1, 3],
        [4, 3, 3, 2, 1, 5, 5, 4],  # b at 4; d at 7 + 1 = 8 → delta 8 - (4 + 3) = 1
    ]
    assert decode_levels(f["levels"])[2] == [(4, 3, 3, 2), (8, 5, 5, 4)]
    assert f["numTicks"] == 13 and f["maxSelf"] == 5


def test_children_sorted_by_name_and_names_shared() -> None:
    f = fb(StackTree({b"z;x": 1, b"b;x": 2, b"m": 3}))
    assert f["names"] == ["total", "b", "x", "m", "z"]
    assert f["levels"] == [[0, 6, 0, 0], [0, 2, 0, 1, 0, 3, 3, 3, 0, 1, 0, 4], [0, 2, 2, 2, 3, 1, 1, 2]]


def test_other_collapsing() -> None:
    t = StackTree(STACKS)  # totals 20, 18, 15, 10, 3, 2; max_nodes=4 → threshold 10
    f = fb(t, max_nodes=4)
    assert f["names"] == ["total", "a", "b", "c", "other"]
    assert f["levels"] == [
        [0, 20, 0, 0],
        [0, 18, 0, 1, 0, 2, 2, 4],  # e → "other" under the root
        [0, 15, 5, 2, 0, 3, 3, 4],  # d → "other" under a
        [5, 10, 10, 3],
    ]
    assert f["numTicks"] == 20 and f["maxSelf"] == 10
    # Pyroscope's example: a=1, b=2, c=3, maxNodes=3 keeps b and c
    f = fb(StackTree({b"a": 1, b"b": 2, b"c": 3}), max_nodes=3)
    assert f["names"] == ["total", "b", "c", "other"]
    assert f["levels"] == [[0, 6, 0, 0], [0, 2, 2, 1, 0, 3, 3, 2, 0, 1, 1, 3]]
    # max_nodes=1: only the root survives, everything else is one "other"
    f = fb(t, max_nodes=1)
    assert f["levels"] == [[0, 20, 0, 0], [0, 20, 20, 1]] and f["names"] == ["total", "other"]
    assert f["maxSelf"] == 20
    # max_nodes <= 0: no truncation
    assert fb(t, max_nodes=0) == fb(t)


def test_empty_tree() -> None:
    f = fb(StackTree())
    assert f == {"names": ["total"], "levels": [[0, 0, 0, 0]], "numTicks": 0, "maxSelf": 0}


def test_document_shape() -> None:
    tl = timeline([1, 0, 3], 990, 10)
    doc = render(
        StackTree({b"a": 1}),
        name="app.cpu",
        spy_name="pyspy",
        sample_rate=100,
        units="samples",
        start_time=1000,
        end_time=2000,
        query="app.cpu{}",
        timeline=tl,
    )
    assert list(doc) == ["version", "flamebearer", "metadata", "timeline", "groups", "heatmap", "annotations"]
    assert doc["version"] == 1 and doc["groups"] == {} and doc["heatmap"] is None and doc["annotations"] == []
    assert doc["metadata"] == {
        "format": "single",
        "spyName": "pyspy",
        "sampleRate": 100,
        "units": "samples",
        "name": "app.cpu",
        "appName": "app.cpu",
        "startTime": 1000,
        "endTime": 2000,
        "query": "app.cpu{}",
        "maxNodes": 8192,
    }
    assert doc["timeline"] == {"startTime": 990, "samples": [1, 0, 3], "durationDelta": 10, "watermarks": {}}
    json.dumps(doc)  # plain JSON types only
    no_tl = render(
        StackTree(),
        name="x",
        spy_name="s",
        sample_rate=1,
        units="objects",
        start_time=5,
        end_time=6,
        query="x",
        app_name="y",
    )
    assert no_tl["timeline"] == {"startTime": 5, "samples": [], "durationDelta": 10, "watermarks": {}}
    assert no_tl["metadata"]["appName"] == "y"


def test_timeline() -> None:
    import numpy as np

    tl = timeline(np.array([1, 2], dtype=np.uint64), 0, 10)
    assert tl["samples"] == [1, 2] and type(tl["samples"][0]) is int
    with pytest.raises(ValueError):
        timeline([], 0, 0)


def test_non_utf8_frame_names() -> None:
    f = fb(StackTree({b"\xff;\xc3\xa9": 1}))
    assert f["names"] == ["total", "\ufffd", "é"]


stacks_st = st.dictionaries(
    st.lists(st.sampled_from([b"a", b"b", b"c", b"d", b"other"]), min_size=1, max_size=6).map(b";".join),
    st.integers(1, 1000),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(stacks_st, st.integers(0, 30))
def test_levels_decode_and_resum(stacks: dict[bytes, int], max_nodes: int) -> None:
    tree = StackTree(stacks)
    f = fb(tree, max_nodes)
    levels = decode_levels(f["levels"])
    assert f["numTicks"] == tree.total == sum(stacks.values())
    assert levels[0] == [(0, tree.total, 0, 0)]
    # every sample is some node's self, exactly once
    assert sum(s for row in levels for (_, _, s, _) in row) == f["numTicks"]
    assert f["maxSelf"] == max(s for row in levels for (_, _, s, _) in row)
    for d, row in enumerate(levels):
        end = 0
        for x, total, _, idx in row:
            assert (
                x >= end and (total > 0 or tree.total == 0) and 0 <= idx < len(f["names"])
            )  # left to right, no overlap
            end = x + total
        if d == 0:
            continue
        # each node lies inside a parent, after the parent's self part; children + self = total
        for parent in levels[d - 1]:
            px, ptotal, pself, _ = parent
            kids = [n for n in row if px <= n[0] < px + ptotal]
            assert all(n[0] >= px + pself and n[0] + n[1] <= px + ptotal for n in kids)
            deeper = d < len(levels)
            if deeper and kids:
                assert pself + sum(n[1] for n in kids) == ptotal
    threshold = tree.min_value(max_nodes)
    real = [n for row in levels for n in row if f["names"][n[3]] != "other"]
    assert all(n[1] >= threshold for n in real)
    if threshold:
        assert sum(1 for n in real if n[1] > threshold) < max_nodes
    else:
        assert len(real) == tree.node_count() or b"other" in b";".join(stacks)
