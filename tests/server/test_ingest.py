# Legacy ingest bodies: every format from hand-built fixtures, aggregation, format detection order,
# and hostile input (only ParseError or a result, never another exception, never a hang).
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_core.server.ingest import (
    FORMATS,
    MAX_VALUE,
    ParseError,
    detect_format,
    parse_folded,
    parse_lines,
    parse_stacks,
    parse_tree,
    parse_trie,
)


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def node(label: bytes, value: int, children: int) -> bytes:
    return uvarint(len(label)) + label + uvarint(value) + uvarint(children)


Nested = tuple[bytes, int, list["Nested"]]


def serialize(root: Nested) -> bytes:
    """Pre-order serialization of (label, value, children) — the layout both trie and tree use."""
    label, value, children = root
    return node(label, value, len(children)) + b"".join(serialize(c) for c in children)


# --- format detection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("format_param", "content_type", "expected"),
    [
        ("trie", None, "trie"),
        (None, "binary/octet-stream+trie", "trie"),
        ("tree", None, "tree"),
        (None, "binary/octet-stream+tree", "tree"),
        ("lines", None, "lines"),
        ("jfr", None, "jfr"),
        ("pprof", None, "pprof"),
        ("speedscope", None, "speedscope"),
        (None, "multipart/form-data; boundary=xyz", "pprof-form"),
        (None, None, "folded"),
        ("groups", None, "folded"),
        ("folded", None, "folded"),
        ("nonsense", "text/plain", "folded"),
        ("", "binary/octet-stream", "folded"),
        # The order: trie beats tree beats lines ... beats multipart.
        ("tree", "binary/octet-stream+trie", "trie"),
        ("trie", "binary/octet-stream+tree", "trie"),
        ("lines", "binary/octet-stream+tree", "tree"),
        ("pprof", "multipart/form-data; boundary=b", "pprof"),
        ("jfr", "multipart/form-data", "jfr"),
        ("groups", "multipart/form-data", "pprof-form"),
        # Content types compare by media type, case-insensitively, parameters ignored.
        (None, "Binary/Octet-Stream+Trie; charset=x", "trie"),
    ],
)
def test_detect_format_follows_pyroscope_order(
    format_param: str | None, content_type: str | None, expected: str
) -> None:
    assert detect_format(format_param, content_type) == expected
    assert expected in FORMATS


# --- folded --------------------------------------------------------------------------------------


def test_folded_splits_at_last_space_and_sums_identical_stacks() -> None:
    body = b"a;b;c 10\nfoo bar;baz 3\na;b;c 5\nx 1\n"
    assert parse_folded(body) == [(b"a;b;c", 15), (b"foo bar;baz", 3), (b"x", 1)]


def test_folded_tolerates_crlf_and_missing_final_newline() -> None:
    assert parse_folded(b"a;b 1\r\nc 2") == [(b"a;b", 1), (b"c", 2)]


def test_folded_skips_lines_without_space_and_empty_stacks() -> None:
    assert parse_folded(b"nospace\n\n 7\na 2\n") == [(b"a", 2)]


def test_folded_empty_body_is_empty() -> None:
    assert parse_folded(b"") == []
    assert parse_folded(b"\n\n") == []


def test_folded_zero_totals_are_dropped() -> None:
    assert parse_folded(b"a 0\nb 1\n") == [(b"b", 1)]


@pytest.mark.parametrize(
    "line",
    [b"a;b x", b"a;b -1", b"a;b +1", b"a;b 1.5", b"a;b ", b"a;b 1_000", b"a 1e3", b"a \xd9\xa3"],
)
def test_folded_count_that_is_not_a_non_negative_integer_is_a_parse_error(line: bytes) -> None:
    with pytest.raises(ParseError):
        parse_folded(b"ok 1\n" + line + b"\n")


def test_folded_count_range_is_int64() -> None:
    assert parse_folded(b"a %d\n" % MAX_VALUE) == [(b"a", MAX_VALUE)]
    assert parse_folded(b"a 0000000000000000000000001\n") == [(b"a", 1)]
    with pytest.raises(ParseError):
        parse_folded(b"a %d\n" % (MAX_VALUE + 1))
    with pytest.raises(ParseError):
        parse_folded(b"a " + b"9" * 100_000 + b"\n")
    with pytest.raises(ParseError):  # the sum overflows
        parse_folded(b"a %d\na 1\n" % MAX_VALUE)


# --- lines ---------------------------------------------------------------------------------------


def test_lines_counts_identical_lines() -> None:
    body = b"a;b;c\nx;y\r\na;b;c\n\na;b;c"
    assert parse_lines(body) == [(b"a;b;c", 3), (b"x;y", 1)]


def test_lines_empty_body_is_empty() -> None:
    assert parse_lines(b"") == []


# --- trie ----------------------------------------------------------------------------------------


def test_trie_key_is_plain_concatenation_of_label_fragments() -> None:
    # The keys "foo;bar" (3), "foo;baz" (2) and "foo" (1), prefix-shared at byte boundaries.
    body = serialize((b"", 0, [(b"foo", 1, [(b";ba", 0, [(b"r", 3, []), (b"z", 2, [])])])]))
    assert parse_trie(body) == [(b"foo", 1), (b"foo;bar", 3), (b"foo;baz", 2)]


def test_trie_sums_identical_keys_and_accepts_several_roots() -> None:
    body = serialize((b"a;", 0, [(b"b", 1, [])])) + serialize((b"a;b", 4, []))
    assert parse_trie(body) == [(b"a;b", 5)]


def test_trie_root_value_is_emitted_like_any_node() -> None:
    assert parse_trie(node(b"main", 7, 0)) == [(b"main", 7)]


def test_trie_empty_body_is_empty() -> None:
    assert parse_trie(b"") == []


def test_trie_deep_chain_uses_no_recursion() -> None:
    depth = 50_000
    body = b"".join(node(b"f;", 0, 1) for _ in range(depth)) + node(b"leaf", 1, 0)
    assert parse_trie(body) == [(b"f;" * depth + b"leaf", 1)]


def test_trie_multibyte_varints() -> None:
    label = b"x" * 300  # length 300 needs two varint bytes
    assert parse_trie(node(label, 2**40, 0)) == [(label, 2**40)]


# --- tree ----------------------------------------------------------------------------------------


def test_tree_key_is_frames_below_root_joined_by_semicolon() -> None:
    body = serialize(
        (b"", 0, [(b"main", 1, [(b"work", 5, [(b"io", 2, [])]), (b"idle", 3, [])]), (b"gc", 4, [])])
    )
    assert parse_tree(body) == [
        (b"main", 1),
        (b"main;work", 5),
        (b"main;work;io", 2),
        (b"main;idle", 3),
        (b"gc", 4),
    ]


def test_tree_root_self_value_is_not_a_stack() -> None:
    assert parse_tree(serialize((b"", 9, [(b"a", 1, [])]))) == [(b"a", 1)]


def test_tree_sums_sibling_duplicates() -> None:
    body = serialize((b"", 0, [(b"a", 1, [(b"b", 2, [])]), (b"a", 3, [(b"b", 4, [])])]))
    assert parse_tree(body) == [(b"a", 4), (b"a;b", 6)]


def test_tree_bytes_after_the_tree_are_a_parse_error() -> None:
    with pytest.raises(ParseError, match="after the end"):
        parse_tree(serialize((b"", 0, [(b"a", 1, [])])) + node(b"b", 1, 0))


def test_tree_empty_body_is_empty() -> None:
    assert parse_tree(b"") == []


# --- hostile binary input ------------------------------------------------------------------------


@pytest.mark.parametrize("parse", [parse_trie, parse_tree])
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x80", "truncated varint"),
        (b"\x01a\x01\xff", "truncated varint"),
        (b"\xff" * 11, "longer than 10 bytes"),
        (b"\xff" * 9 + b"\x7f", "overflows 64 bits"),
        (uvarint(100 << 20) + b"abc", "past the body end"),
        (node(b"a", 1, 2**60), "more than fit"),
        (node(b"a", 1, 2) + node(b"bbbbbbbb", 1, 0), "missing"),
        (node(b"a", 2**63, 0), "exceeds"),
    ],
)
def test_binary_hostile_input_is_a_parse_error(
    parse: Callable[..., list[tuple[bytes, int]]], body: bytes, message: str
) -> None:
    with pytest.raises(ParseError, match=message):
        parse(body)


@pytest.mark.parametrize("parse", [parse_trie, parse_tree])
def test_binary_key_expansion_is_capped(parse: Callable[..., list[tuple[bytes, int]]]) -> None:
    body = b"".join(node(b"abcdefgh", 1, 1) for _ in range(2000)) + node(b"z", 1, 0)
    with pytest.raises(ParseError, match="expand"):
        parse(body, max_key_bytes=1 << 20)
    assert len(parse(body)) == 2001  # within the default cap


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_give_only_parse_error_or_stacks(body: bytes) -> None:
    for fmt in ("folded", "lines", "trie", "tree"):
        try:
            stacks = parse_stacks(fmt, body)
        except ParseError:
            continue
        assert all(isinstance(k, bytes) and isinstance(v, int) and v > 0 for k, v in stacks)
        assert len({k for k, _ in stacks}) == len(stacks)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=0, max_size=4), st.integers(0, 5), st.integers(0, 3))))
def test_random_node_sequences_give_only_parse_error_or_stacks(
    nodes: list[tuple[bytes, int, int]],
) -> None:
    body = b"".join(node(label, value, children) for label, value, children in nodes)
    for parse in (parse_trie, parse_tree):
        with contextlib.suppress(ParseError):
            parse(body)


_frame = st.binary(min_size=1, max_size=6).filter(lambda b: b";" not in b and b"\n" not in b)


@dataclass
class _Frame:
    value: int = 0
    children: dict[bytes, _Frame] = field(default_factory=dict)

    def nested(self, label: bytes, *, trie: bool) -> Nested:
        # In a trie the ";" between frames travels inside the labels (fragment concatenation).
        def child_label(frame: bytes) -> bytes:
            return b";" + frame if trie and label else frame

        kids = [c.nested(child_label(f), trie=trie) for f, c in self.children.items()]
        return (label, self.value, kids)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.lists(_frame, min_size=1, max_size=5).map(tuple), st.integers(1, 1000)))
def test_tree_and_trie_round_trip_stacks_built_into_them(stacks: dict[tuple[bytes, ...], int]) -> None:
    root = _Frame()
    for frames, value in stacks.items():
        at = root
        for frame in frames:
            at = at.children.setdefault(frame, _Frame())
        at.value = value
    expected = {b";".join(frames): value for frames, value in stacks.items()}
    assert dict(parse_tree(serialize(root.nested(b"", trie=False)))) == expected
    # The trie has no root node of its own here: each top-level frame is a root.
    trie_body = b"".join(serialize(c.nested(f, trie=True)) for f, c in root.children.items())
    assert dict(parse_trie(trie_body)) == expected


# --- the parsers against plain reference loops (the straightforward reading of the header's rules) --


def reference_folded(body: bytes) -> list[tuple[bytes, int]]:
    totals: dict[bytes, int] = {}
    for line in body.splitlines():
        stack, space, count = line.rpartition(b" ")
        if not space or not stack:
            continue
        if not count.isdigit() or int(count) > MAX_VALUE:
            raise ParseError("bad count")
        totals[stack] = totals.get(stack, 0) + int(count)
    if any(v > MAX_VALUE for v in totals.values()):
        raise ParseError("total too large")
    return [(k, v) for k, v in totals.items() if v]


def reference_nodes(body: bytes, *, tree: bool) -> list[tuple[bytes, int]]:
    """Recursive walk (bodies here are small): labels concatenated (trie) or joined by ";" (tree)."""
    pos = 0

    def uv() -> int:
        nonlocal pos
        result = shift = 0
        while True:
            byte = body[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return result

    totals: dict[bytes, int] = {}

    def walk(prefix: bytes) -> None:
        nonlocal pos
        n = uv()
        label = body[pos : pos + n]
        pos += n
        value, children = uv(), uv()
        key = prefix + b";" + label if tree else prefix + label
        emitted = key[2:] if tree else key
        if value and (not tree or len(key) > 2):
            totals[emitted] = totals.get(emitted, 0) + value
        for _ in range(children):
            walk(key)

    while pos < len(body):
        walk(b"")
    return [(k, v) for k, v in totals.items() if v]


_folded_text = st.lists(
    st.sampled_from([b"a", b"b;c", b";", b" ", b"  ", b"\n", b"\r\n", b"\r", b"0", b"7", b"42", b"x", b"\t"]),
    max_size=40,
).map(b"".join)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(_folded_text, st.binary(max_size=64)))
def test_folded_matches_the_reference_loop(body: bytes) -> None:
    try:
        expected = reference_folded(body)
    except ParseError:
        with pytest.raises(ParseError):
            parse_folded(body)
        return
    assert parse_folded(body) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.binary(max_size=3), st.sampled_from([0, 0, 1, 127, 128, 300, 1 << 40]), st.integers(0, 2)
        )
    )
)
def test_trie_and_tree_match_the_reference_walk(nodes: list[tuple[bytes, int, int]]) -> None:
    body = b"".join(node(label, value, children) for label, value, children in nodes)
    for parse, tree in ((parse_trie, False), (parse_tree, True)):
        try:
            got = parse(body)
        except ParseError:
            continue  # malformed (the reference walk does not check); the hostile-input tests cover it
        assert got == reference_nodes(body, tree=tree)


def test_parse_stacks_rejects_formats_it_does_not_read() -> None:
    for fmt in ("pprof", "jfr", "speedscope", "pprof-form"):
        with pytest.raises(ParseError, match="not a stack format"):
            parse_stacks(fmt, b"x 1\n")
    assert parse_stacks("folded", b"x 1\n") == [(b"x", 1)]
