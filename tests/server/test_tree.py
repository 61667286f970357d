from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_core.server.tree import OTHER, StackTree, TreeFormatError, split_children

STACKS = {b"a;b;c": 10, b"a;b": 5, b"a;d": 3, b"e": 2}


def node(tree: StackTree, *path: bytes):  # type: ignore[no-untyped-def]
    n = tree.root
    for p in path:
        n = n.children[p]
    return n


def test_build_totals_and_self() -> None:
    t = StackTree(STACKS)
    assert t.total == 20
    assert (node(t, b"a").total, node(t, b"a").self_value) == (18, 0)
    assert (node(t, b"a", b"b").total, node(t, b"a", b"b").self_value) == (15, 5)
    assert (node(t, b"a", b"b", b"c").total, node(t, b"a", b"b", b"c").self_value) == (10, 10)
    assert (node(t, b"a", b"d").total, node(t, b"e").total) == (3, 2)
    assert t.node_count() == 6
    assert t.to_dict() == STACKS


def test_pairs_and_str_input() -> None:
    t = StackTree([((b"a", b"b", b"c"), 10), (["a", "b"], 5), (("a", "d"), 3), ((b"e",), 2)])
    assert t == StackTree(STACKS)
    t2 = StackTree({"a;b;c": 10, "a;b": 5, "a;d": 3, "e": 2})
    assert t2 == t
    t3 = StackTree()
    t3.add("a;b;c", 4)
    t3.add(b"a;b;c", 6)
    t3.add([b"a", b"b"], 5)
    t3.add("a;d", 3)
    t3.add("e", 2)
    t3.add("zero", 0)
    assert t3 == t


def test_bad_values() -> None:
    with pytest.raises(ValueError):
        StackTree({b"a": -1})
    with pytest.raises(ValueError):
        StackTree([((), 1)])


def test_merge() -> None:
    a = StackTree({b"a;b": 1, b"c": 2})
    b = StackTree({b"a;b": 3, b"a;x": 4})
    assert a.merge(b) is a
    assert a.to_dict() == {b"a;b": 4, b"c": 2, b"a;x": 4}
    assert a.total == 10 and node(a, b"a").total == 8
    assert b.to_dict() == {b"a;b": 3, b"a;x": 4}  # untouched
    a.merge(a)
    assert a.to_dict() == {b"a;b": 8, b"c": 4, b"a;x": 8} and a.total == 20


def test_collapsed() -> None:
    t = StackTree(STACKS)
    assert t.to_collapsed() == b"a;b 5\na;b;c 10\na;d 3\ne 2\n"
    assert StackTree.from_collapsed(t.to_collapsed()) == t
    assert StackTree().to_collapsed() == b""
    # split at the last space, lines without a space skipped, CRLF tolerated, duplicates summed
    t2 = StackTree.from_collapsed(b"foo bar;baz 3\r\nnospace\n\nfoo bar;baz 1\n")
    assert t2.to_dict() == {b"foo bar;baz": 4}
    for bad in (b"a x\n", b"a -1\n", b"a 1.5\n", b"a \n"):
        with pytest.raises(TreeFormatError):
            StackTree.from_collapsed(bad)


def test_bytes_round_trip() -> None:
    t = StackTree(STACKS)
    data = t.to_bytes()
    assert data[:4] == b"PYST" and data[4] == 1
    t2 = StackTree.from_bytes(data)
    assert t2 == t
    assert node(t2, b"a", b"b").total == 15
    assert StackTree.from_bytes(StackTree().to_bytes()) == StackTree()
    assert t.to_bytes() == StackTree(dict(reversed(list(STACKS.items())))).to_bytes()  # deterministic
    big = StackTree({b"x": 2**64 - 1})
    assert StackTree.from_bytes(big.to_bytes()).total == 2**64 - 1
    with pytest.raises(ValueError):
        StackTree({b"x": 2**64}).to_bytes()


def _reframe(body: bytes) -> bytes:
    out = b"PYST\x01\x01" + zlib.compress(body)
    return out + struct.pack("<I", zlib.crc32(out))


def test_corrupted_bytes() -> None:
    data = StackTree(STACKS).to_bytes()
    cases = [
        b"",
        data[:5],
        b"XXXX" + data[4:],
        data[:4] + b"\x02" + data[5:],
        data[:5] + b"\x07" + data[6:],
        data[:-1],
        data[:10] + bytes([data[10] ^ 0xFF]) + data[11:],
        data + b"\x00",
    ]
    for bad in cases:
        with pytest.raises(TreeFormatError):
            StackTree.from_bytes(bad)

    # structurally wrong bodies with a valid checksum
    def make_body(
        n_names: int, n_nodes: int, names: bytes, idx: list[int], selfs: list[int], kids: list[int]
    ) -> bytes:
        return (
            struct.pack("<IIQ", n_names, n_nodes, 0)
            + struct.pack(f"<{n_names}I", *[1] * n_names)
            + names
            + struct.pack(f"<{len(idx)}I", *idx)
            + struct.pack(f"<{len(selfs)}Q", *selfs)
            + struct.pack(f"<{len(kids)}I", *kids)
        )

    good = make_body(1, 2, b"a", [0], [5], [1, 0])
    assert StackTree.from_bytes(_reframe(good)).to_dict() == {b"a": 5}
    bad_bodies = [
        good[:-1],  # truncated
        good + b"\x00",  # trailing bytes
        make_body(1, 2, b"a", [7], [5], [1, 0]),  # name index out of range
        make_body(1, 2, b"a", [0], [5], [2, 0]),  # child counts promise more nodes
        make_body(1, 2, b"a", [0], [5], [0, 0]),  # ... or fewer
        make_body(1, 2, b"a", [0], [0], [1, 0]),  # empty leaf
        make_body(1, 0, b"a", [], [], []),  # no root
        make_body(1, 3, b"a", [0, 0], [1, 1], [2, 0, 0]),  # duplicate siblings
    ]
    for bad_body in bad_bodies:
        with pytest.raises(TreeFormatError):
            StackTree.from_bytes(_reframe(bad_body))
    assert issubclass(TreeFormatError, ValueError)


def test_min_value_and_truncate() -> None:
    # Pyroscope's own example: a=1, b=2, c=3, maxNodes=3 → threshold 2 (totals 6, 3, 2), "a" dropped
    t = StackTree({b"a": 1, b"b": 2, b"c": 3})
    assert t.min_value(3) == 2
    assert t.truncate(3).to_dict() == {b"b": 2, b"c": 3, OTHER: 1}
    assert t.min_value(4) == 1 and t.min_value(5) == 0 and t.min_value(0) == 0
    assert t.truncate(100) == t
    kept, other = split_children(t.root, 2)
    assert [k.name for k in kept] == [b"b", b"c"] and other == 1
    # ties at the threshold are all kept
    t2 = StackTree({b"a": 1, b"b": 1, b"c": 1})
    assert t2.min_value(2) == 1 and t2.truncate(2) == t2
    # per-parent "other" nodes; merge into a kept real "other"
    t3 = StackTree({b"x;p": 10, b"x;q": 1, b"y;r": 9, b"y;s": 1, b"other": 50})
    tr = t3.truncate(6)  # totals: 71, 50, 11, 10, 10, 9 → threshold 9
    assert tr.to_dict() == {b"x;p": 10, b"x;other": 1, b"y;r": 9, b"y;other": 1, b"other": 50}
    assert tr.total == t3.total
    t4 = StackTree({b"other": 50, b"a": 1, b"b": 40})
    assert t4.truncate(3).to_dict() == {b"other": 51, b"b": 40}


stacks_st = st.dictionaries(
    st.lists(st.sampled_from([b"a", b"b", b"c", b"d", "é".encode()]), min_size=1, max_size=5).map(b";".join),
    st.integers(0, 1000),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(stacks_st, stacks_st)
def test_properties(s1: dict[bytes, int], s2: dict[bytes, int]) -> None:
    t1, t2 = StackTree(s1), StackTree(s2)
    assert t1.total == sum(s1.values())
    assert StackTree.from_bytes(t1.to_bytes()) == t1
    assert StackTree.from_collapsed(t1.to_collapsed()) == t1
    merged = t1.copy().merge(t2)
    assert merged == StackTree([*s1.items(), *s2.items()])
    assert merged.total == t1.total + t2.total
    for n in (1, 2, 5):
        tr = t1.truncate(n)
        assert tr.total == t1.total
        for nd in tr.iter_nodes():
            assert nd.total == nd.self_value + sum(c.total for c in nd.children.values())
