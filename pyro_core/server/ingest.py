# The bodies of legacy ingest (`POST /ingest`): which format a request carries and how its stacks
# are read. Bytes in, `[(stack key, value), ...]` out, identical stacks summed, first-seen order.
# Owns: detect_format, parse_folded, parse_lines, parse_trie, parse_tree, parse_stacks, ParseError.
# Must not know: HTTP, query parameters other than `format`, names/tenants (names.py), pprof / JFR /
# speedscope decoding (other modules), storage.
#
# Every malformed body raises ParseError (→ 422) — never another exception type, never a hang. Binary
# formats are decoded with an explicit stack (no recursion), every node consumes at least 3 bytes so
# the node count is bounded by the body size, a child count or label length that could not fit in the
# rest of the body is rejected at once, and the bytes of emitted keys are capped (`max_key_bytes`).
# An empty body is [] in every format; an entry whose total is 0 is not returned.
#
# Formats (Pyroscope, og branch `pkg/convert` + `pkg/structs/transporttrie` + `pkg/storage/tree`):
# - folded ("groups"): `frame;frame;frame <count>` per line, split at the LAST space; a line with no
#   space is skipped; the count must be ASCII digits (else ParseError); `\r\n` ends lines too; a line
#   whose stack is empty (" 5") is skipped.
# - lines: each non-empty line is one stack with value 1.
# - trie: nodes in depth-first pre-order, each `uvarint(len(label)) label uvarint(value)
#   uvarint(child_count)` (LEB128, at most 64 bits). Labels are key *fragments* (the trie shares
#   prefixes at any byte, not at frame boundaries), so a node's key is the plain concatenation of the
#   labels from the root down — no separator is added; the `;` between frames is part of the labels.
#   Every node with value > 0 emits (key, value). Several root nodes may follow one another (Pyroscope
#   reads until EOF). Stricter than Pyroscope: a body ending while declared children are missing is a
#   ParseError (Pyroscope silently stops at any node boundary).
# - tree: the same node layout, but one tree with one root, and labels are whole frames. Pyroscope
#   (`tree.DeserializeNoDict` + `ParseTreeNoDict`) makes the first node the root, builds for each node
#   the key `";" + label0 + ";" + label1 + ...` down from the root and emits key[2:] when that key is
#   longer than 2 bytes and the node's own (self) value is not 0. With the usual empty root label the
#   key is `label1;label2;...`: the frames below the root joined by ";". This file does exactly that.
#   Stricter than Pyroscope: bytes after the tree are a ParseError (Pyroscope ignores them).
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

__all__ = [
    "FORMATS",
    "ParseError",
    "detect_format",
    "parse_folded",
    "parse_lines",
    "parse_stacks",
    "parse_tree",
    "parse_trie",
]

Stacks = list[tuple[bytes, int]]

#: Every format detect_format can return.
FORMATS: Final = ("trie", "tree", "lines", "jfr", "pprof", "speedscope", "pprof-form", "folded")

TRIE_CONTENT_TYPE: Final = "binary/octet-stream+trie"
TREE_CONTENT_TYPE: Final = "binary/octet-stream+tree"

#: The largest value a stack may carry (Go's int64), per line and after summing.
MAX_VALUE: Final = (1 << 63) - 1
_MAX_COUNT_DIGITS: Final = len(str(MAX_VALUE))  # 19
_MAX_UVARINT_BYTES: Final = 10  # a uint64 needs at most 10 LEB128 bytes
_MIN_NODE_BYTES: Final = 3  # label length, value, child count: one byte each at least
#: The default cap on emitted key bytes of a trie/tree body: this many times the body size...
KEY_EXPANSION_FACTOR: Final = 64
#: ...but never less than this (a prefix-shared trie legitimately expands its keys).
MIN_KEY_BYTES_CAP: Final = 64 << 20


class ParseError(ValueError):
    """The body is not valid in its format (→ HTTP 422)."""


def detect_format(format_param: str | None, content_type: str | None) -> str:
    """The body format of a request, decided in Pyroscope's order; anything unknown is "folded".

    `format_param` is compared trimmed and lower-cased; `content_type` by its media type (the part
    before any `;`), lower-cased.
    """
    fmt = (format_param or "").strip().lower()
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if fmt == "trie" or media_type == TRIE_CONTENT_TYPE:
        return "trie"
    if fmt == "tree" or media_type == TREE_CONTENT_TYPE:
        return "tree"
    if fmt in ("lines", "jfr", "pprof", "speedscope"):
        return fmt
    if media_type == "multipart/form-data":
        return "pprof-form"
    return "folded"


def _aggregated(totals: dict[bytes, int]) -> Stacks:
    """The entries of ``totals`` (values never negative) whose value is not 0; ParseError when one
    exceeds MAX_VALUE. Built-in calls over the values: no Python-level loop unless a value is 0."""
    if not totals:
        return []
    values = totals.values()
    if max(values) > MAX_VALUE:
        raise ParseError(f"a stack's total exceeds {MAX_VALUE}")
    if 0 in values:
        return [(k, v) for k, v in totals.items() if v]
    return list(totals.items())


def _checked_count(count: bytes, line: bytes) -> bytes:
    """The slow path of a folded count: not plain digits, or long (int() of huge text is slow)."""
    if not count.isdigit():
        raise ParseError(f"bad count {count[:32]!r} in folded line {line[:64]!r}")
    significant = count.lstrip(b"0") or b"0"
    if len(significant) > _MAX_COUNT_DIGITS:
        raise ParseError(f"count {count[:32]!r} in folded line {line[:64]!r} exceeds {MAX_VALUE}")
    return significant


def parse_folded(body: bytes) -> Stacks:
    """`a;b;c 10` lines → [(b"a;b;c", 10)], identical stacks summed."""
    totals: dict[bytes, int] = {}
    get = totals.get
    for line in body.splitlines():
        stack, space, count = line.rpartition(b" ")
        if not space or not stack:
            continue
        if not count.isdigit() or len(count) > _MAX_COUNT_DIGITS:
            count = _checked_count(count, line)
        totals[stack] = get(stack, 0) + int(count)
    return _aggregated(totals)


def parse_lines(body: bytes) -> Stacks:
    """One stack per line → [(stack, number of identical lines)]."""
    totals: dict[bytes, int] = {}
    get = totals.get
    for line in body.splitlines():
        if line:
            totals[line] = get(line, 0) + 1
    return list(totals.items())


def _key_cap(body: bytes, max_key_bytes: int | None) -> int:
    if max_key_bytes is not None:
        return max_key_bytes
    return max(MIN_KEY_BYTES_CAP, KEY_EXPANSION_FACTOR * len(body))


def _parse_nodes(body: bytes, *, tree: bool, key_cap: int) -> Stacks:
    """The node walk shared by trie and tree; see the header for the two key rules."""
    what = "tree" if tree else "trie"
    end = len(body)
    pos = 0
    key = bytearray()
    # One entry per open node with children: [children still to read, bytes it added to `key`].
    open_nodes: list[list[int]] = []
    totals: dict[bytes, int] = {}
    get = totals.get
    emitted = 0

    def uvarint() -> int:
        nonlocal pos
        result = 0
        shift = 0
        for i in range(pos, min(pos + _MAX_UVARINT_BYTES, end)):
            byte = body[i]
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                if result >> 64:
                    raise ParseError(f"{what}: varint at byte {pos} overflows 64 bits")
                pos = i + 1
                return result
            shift += 7
        if pos + _MAX_UVARINT_BYTES <= end:
            raise ParseError(f"{what}: varint at byte {pos} is longer than 10 bytes")
        raise ParseError(f"{what}: truncated varint at byte {pos}")

    while pos < end:
        if tree and not open_nodes and pos > 0:
            raise ParseError(f"tree: {end - pos} bytes after the end of the tree")
        start = pos
        # Single-byte varints (< 128) are the common case: read those inline.
        label_len = body[pos]
        if label_len < 0x80:
            pos += 1
        else:
            label_len = uvarint()
        if label_len > end - pos:
            raise ParseError(f"{what}: label of {label_len} bytes at byte {start} runs past the body end")
        label = body[pos : pos + label_len]
        pos += label_len
        if pos < end and body[pos] < 0x80:  # most values are 0 (inner nodes) or small
            value = body[pos]
            pos += 1
        else:
            value = uvarint()
        if pos < end and body[pos] < 0x80:
            child_count = body[pos]
            pos += 1
        else:
            child_count = uvarint()
        if child_count > (end - pos) // _MIN_NODE_BYTES:
            raise ParseError(f"{what}: node at byte {start} claims {child_count} children, more than fit")
        if value > MAX_VALUE:
            raise ParseError(f"{what}: value {value} at byte {start} exceeds {MAX_VALUE}")
        if tree:
            key += b";"
            added = label_len + 1
        else:
            added = label_len
        key += label
        if value:
            if tree:
                if len(key) > 2:
                    k = bytes(key[2:])
                    emitted += len(k)
                    totals[k] = get(k, 0) + value
            else:
                k = bytes(key)
                emitted += len(k)
                totals[k] = get(k, 0) + value
            if emitted > key_cap:
                raise ParseError(f"{what}: keys expand past {key_cap} bytes")
        if child_count:
            open_nodes.append([child_count, added])
            continue
        # A leaf: drop its label, then close every ancestor whose last child this was.
        del key[len(key) - added :]
        while open_nodes:
            top = open_nodes[-1]
            top[0] -= 1
            if top[0]:
                break
            open_nodes.pop()
            del key[len(key) - top[1] :]
    if open_nodes:
        missing = sum(n for n, _ in open_nodes)
        raise ParseError(f"{what}: body ends with at least {missing} declared child nodes missing")
    return _aggregated(totals)


def parse_trie(body: bytes, *, max_key_bytes: int | None = None) -> Stacks:
    """A serialized transport trie → [(concatenated labels, value)] for every node with a value.

    `max_key_bytes` caps the total bytes of emitted keys (default: 64 x the body size, at least
    64 MiB), so a small body of deep nodes cannot expand into gigabytes of keys.
    """
    return _parse_nodes(body, tree=False, key_cap=_key_cap(body, max_key_bytes))


def parse_tree(body: bytes, *, max_key_bytes: int | None = None) -> Stacks:
    """A serialized Pyroscope tree (no dictionary) → [(frames below the root joined by ";", self)]."""
    return _parse_nodes(body, tree=True, key_cap=_key_cap(body, max_key_bytes))


#: The parsers of the formats this module decodes, by detect_format's name.
PARSERS: Final[Mapping[str, Callable[[bytes], Stacks]]] = {
    "folded": parse_folded,
    "lines": parse_lines,
    "trie": parse_trie,
    "tree": parse_tree,
}


def parse_stacks(fmt: str, body: bytes) -> Stacks:
    """Parse `body` in format `fmt` (folded, lines, trie or tree); other formats raise ParseError."""
    parser = PARSERS.get(fmt)
    if parser is None:
        raise ParseError(f"format {fmt!r} is not a stack format this parser reads")
    return parser(body)
