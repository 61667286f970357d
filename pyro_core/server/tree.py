"""Stack trees: aggregate call stacks into a prefix tree (sans-I/O).

A :class:`StackTree` holds a root (the flame graph's "total") whose descendants are call frames, root-most
caller first — the order of a folded line ``a;b;c 10`` (``a`` called ``b`` called ``c``). Every node keeps
its ``self_value`` (samples that ended in it) and its ``total`` (its own plus all descendants').

Frames are ``bytes``; ``str`` frames are accepted and encoded as UTF-8. Children are kept in insertion
order and sorted by name (byte order, which is also code-point order for UTF-8) wherever an order is
visible: the flamebearer, the collapsed output and the serialized bytes.

Serialization (:meth:`StackTree.to_bytes`), version 1, little-endian::

    b"PYST"  u8 version=1  u8 codec=1 (zlib)  zlib(body)  u32 crc32(everything before it)
    body:  u32 n_names  u32 n_nodes (the root included)  u64 root_self
           u32 name_len[n_names]  name bytes, concatenated
           u32 name_idx[n_nodes-1]  u64 self[n_nodes-1]      (non-root nodes, pre-order)
           u32 child_count[n_nodes]                          (root first, then pre-order)

Totals are not stored; they are recomputed on load. Anything malformed raises :class:`TreeFormatError`
(a ``ValueError``).
"""

from __future__ import annotations

import heapq
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np

__all__ = ["OTHER", "StackTree", "TreeFormatError", "TreeNode", "split_children"]

#: Name of the node that collects children below the truncation threshold.
OTHER = b"other"

_MAGIC = b"PYST"
_VERSION = 1
_CODEC_ZLIB = 1
_HEAD = struct.Struct("<4sBB")
_BODY_HEAD = struct.Struct("<IIQ")
_U64_MAX = (1 << 64) - 1

StackInput = (
    Mapping[bytes, int] | Mapping[str, int] | Iterable[tuple[Sequence[bytes | str] | bytes | str, int]]
)


class TreeFormatError(ValueError):
    """Bytes or collapsed text that do not decode to a stack tree."""


class TreeNode:
    """One node of a :class:`StackTree`; treat as read-only outside this module."""

    __slots__ = ("children", "name", "self_value", "total")

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.self_value = 0
        self.total = 0
        self.children: dict[bytes, TreeNode] = {}

    def sorted_children(self) -> list[TreeNode]:
        ch = self.children
        if len(ch) < 2:
            return list(ch.values())
        return [ch[k] for k in sorted(ch)]

    def __repr__(self) -> str:
        return (
            f"TreeNode({self.name!r}, self={self.self_value}, total={self.total}, "
            f"children={len(self.children)})"
        )


def split_children(node: TreeNode, threshold: int) -> tuple[list[TreeNode], int]:
    """The children of ``node`` whose total is ``>= threshold``, sorted by name, and the summed total
    of the others (which a renderer shows as one ``other`` node after the kept ones)."""
    if threshold <= 0:
        return node.sorted_children(), 0
    kept: list[TreeNode] = []
    other = 0
    for name in sorted(node.children):
        child = node.children[name]
        if child.total >= threshold:
            kept.append(child)
        else:
            other += child.total
    return kept, other


def _frames_of(frames: Sequence[bytes | str]) -> list[bytes]:
    out = [f.encode() if isinstance(f, str) else bytes(f) for f in frames]
    if not out:
        raise ValueError("a stack needs at least one frame")
    return out


class StackTree:
    """A prefix tree of call stacks with sample counts."""

    __slots__ = ("_root",)

    def __init__(self, stacks: StackInput | None = None) -> None:
        self._root = TreeNode(b"total")
        if stacks is not None:
            self.add_stacks(stacks)

    # -- building ---------------------------------------------------------------------------------

    @property
    def root(self) -> TreeNode:
        return self._root

    @property
    def total(self) -> int:
        return self._root.total

    def add(self, frames: Sequence[bytes | str] | bytes | str, value: int) -> None:
        """Add ``value`` samples of one stack: a ``;``-joined key or a sequence of frames (root first).
        Zero values are ignored; negative ones raise ``ValueError``."""
        if isinstance(frames, str):
            frames = frames.encode()
        seq = frames.split(b";") if isinstance(frames, bytes) else _frames_of(frames)
        self._insert(seq, int(value))

    def add_stacks(self, stacks: StackInput) -> None:
        """Add a ``{b"a;b;c": value}`` mapping or an iterable of ``(frames, value)`` pairs, ``frames``
        being a ``;``-joined key or a sequence of frames."""
        if isinstance(stacks, Mapping):
            insert = self._insert
            for key, value in stacks.items():
                k = key.encode() if isinstance(key, str) else key
                insert(k.split(b";"), int(value))
        else:
            # aggregate identical stacks first: a profile of many single samples inserts each once
            agg: dict[tuple[bytes, ...], int] = {}
            get = agg.get
            for frames, value in stacks:
                if isinstance(frames, str):
                    frames = frames.encode()
                key = tuple(frames.split(b";")) if isinstance(frames, bytes) else tuple(_frames_of(frames))
                v = int(value)
                if v < 0:
                    raise ValueError(f"negative sample value {v}")
                agg[key] = get(key, 0) + v
            insert = self._insert
            for key, v in agg.items():
                insert(key, v)

    def _insert(self, frames: Iterable[bytes], value: int) -> None:
        if value <= 0:
            if value < 0:
                raise ValueError(f"negative sample value {value}")
            return
        node = self._root
        node.total += value
        for f in frames:
            child = node.children.get(f)
            if child is None:
                child = TreeNode(f)
                node.children[f] = child
            child.total += value
            node = child
        node.self_value += value

    def merge(self, other: StackTree) -> StackTree:
        """Add every sample of ``other`` into this tree (in place); returns ``self``."""
        src_root = other.copy()._root if other is self else other._root
        work = [(self._root, src_root)]
        while work:
            dst, src = work.pop()
            dst.total += src.total
            dst.self_value += src.self_value
            dch = dst.children
            for name, sc in src.children.items():
                dc = dch.get(name)
                if dc is None:
                    dc = TreeNode(name)
                    dch[name] = dc
                work.append((dc, sc))
        return self

    def copy(self) -> StackTree:
        return StackTree().merge(self)

    # -- inspection -------------------------------------------------------------------------------

    def iter_nodes(self) -> Iterator[TreeNode]:
        """All nodes, the root first, depth-first (children in insertion order)."""
        work = [self._root]
        while work:
            node = work.pop()
            yield node
            work.extend(node.children.values())

    def node_count(self) -> int:
        """Number of nodes, the root included."""
        return sum(1 for _ in self.iter_nodes())

    def stacks(self) -> Iterator[tuple[bytes, int]]:
        """``(b"a;b;c", self_value)`` for every node with samples of its own (unordered)."""
        work: list[tuple[TreeNode, bytes]] = [(c, c.name) for c in self._root.children.values()]
        while work:
            node, key = work.pop()
            if node.self_value:
                yield key, node.self_value
            for c in node.children.values():
                work.append((c, key + b";" + c.name))

    def to_dict(self) -> dict[bytes, int]:
        return dict(self.stacks())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StackTree):
            return NotImplemented
        return self.total == other.total and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StackTree(total={self.total}, stacks={sum(1 for _ in self.stacks())})"

    # -- collapsed (folded) text ------------------------------------------------------------------

    def to_collapsed(self) -> bytes:
        """The ``format=collapsed`` body: one ``a;b;c 10\\n`` line per stack, sorted by stack bytes.
        Frame names containing ``;`` or a newline do not survive a round trip through this format."""
        items = sorted(self.stacks())
        return b"".join(b"%s %d\n" % kv for kv in items)

    @classmethod
    def from_collapsed(cls, data: bytes) -> StackTree:
        """Parse collapsed text: each line split at its last space; lines without a space are skipped;
        a count that is not a non-negative decimal integer raises :class:`TreeFormatError`."""
        tree = cls()
        insert = tree._insert
        for lineno, raw in enumerate(data.split(b"\n"), 1):
            line = raw[:-1] if raw.endswith(b"\r") else raw
            key, sep, count = line.rpartition(b" ")
            if not sep:
                continue
            if not count.isdigit():
                raise TreeFormatError(f"line {lineno}: bad sample count {count[:32]!r}")
            insert(key.split(b";"), int(count))
        return tree

    # -- binary serialization ---------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """A compact, versioned, checksummed encoding (see the module docstring)."""
        name_ids: dict[bytes, int] = {}
        names: list[bytes] = []
        name_idx: list[int] = []
        selfs: list[int] = []
        nchild: list[int] = []
        root = self._root
        nchild.append(len(root.children))
        work = root.sorted_children()
        work.reverse()
        while work:
            node = work.pop()
            i = name_ids.get(node.name)
            if i is None:
                i = name_ids[node.name] = len(names)
                names.append(node.name)
            name_idx.append(i)
            selfs.append(node.self_value)
            children = node.sorted_children()
            nchild.append(len(children))
            children.reverse()
            work.extend(children)
        if root.self_value > _U64_MAX or (selfs and max(selfs) > _U64_MAX):
            raise ValueError("sample values above 2**64-1 cannot be serialized")
        parts = [
            _BODY_HEAD.pack(len(names), len(nchild), root.self_value),
            np.fromiter((len(n) for n in names), dtype="<u4", count=len(names)).tobytes(),
            b"".join(names),
            np.array(name_idx, dtype="<u4").tobytes(),
            np.array(selfs, dtype="<u8").tobytes(),
            np.array(nchild, dtype="<u4").tobytes(),
        ]
        out = _HEAD.pack(_MAGIC, _VERSION, _CODEC_ZLIB) + zlib.compress(b"".join(parts), 6)
        return out + struct.pack("<I", zlib.crc32(out))

    @classmethod
    def from_bytes(cls, data: bytes) -> StackTree:
        """Decode :meth:`to_bytes` output; raises :class:`TreeFormatError` on anything malformed."""
        data = bytes(data)
        if len(data) < _HEAD.size + 4:
            raise TreeFormatError("stack tree bytes truncated")
        magic, version, codec = _HEAD.unpack_from(data)
        if magic != _MAGIC:
            raise TreeFormatError("not a stack tree (bad magic)")
        if version != _VERSION:
            raise TreeFormatError(f"unsupported stack tree version {version}")
        if codec != _CODEC_ZLIB:
            raise TreeFormatError(f"unknown stack tree codec {codec}")
        (crc,) = struct.unpack_from("<I", data, len(data) - 4)
        if zlib.crc32(data[:-4]) != crc:
            raise TreeFormatError("stack tree checksum mismatch")
        try:
            body = zlib.decompress(data[_HEAD.size : -4])
        except zlib.error as e:
            raise TreeFormatError(f"stack tree body does not decompress: {e}") from None
        return cls._decode_body(body)

    @classmethod
    def _decode_body(cls, body: bytes) -> StackTree:
        if len(body) < _BODY_HEAD.size:
            raise TreeFormatError("stack tree body truncated")
        n_names, n_nodes, root_self = _BODY_HEAD.unpack_from(body)
        if n_nodes < 1:
            raise TreeFormatError("stack tree has no root")
        pos = _BODY_HEAD.size
        n = n_nodes - 1

        def take(count: int, dtype: str) -> np.ndarray:
            nonlocal pos
            size = count * np.dtype(dtype).itemsize
            if pos + size > len(body):
                raise TreeFormatError("stack tree body truncated")
            arr = np.frombuffer(body, dtype=dtype, count=count, offset=pos)
            pos += size
            return arr

        lens = take(n_names, "<u4").tolist()
        blob_len = sum(lens)
        if pos + blob_len > len(body):
            raise TreeFormatError("stack tree body truncated")
        names: list[bytes] = []
        for ln in lens:
            names.append(body[pos : pos + ln])
            pos += ln
        name_idx = take(n, "<u4")
        selfs = take(n, "<u8").tolist()
        nchild = take(n_nodes, "<u4").tolist()
        if pos != len(body):
            raise TreeFormatError("stack tree body has trailing bytes")
        if n and int(name_idx.max()) >= n_names:
            raise TreeFormatError("stack tree name index out of range")
        idx = name_idx.tolist()

        tree = cls()
        root = tree._root
        root.self_value = root_self
        order: list[TreeNode] = [root]
        parents: list[int] = [-1]
        # (node position in `order`, children still to read)
        work: list[list[int]] = [[0, nchild[0]]]
        for i in range(n):
            while work and work[-1][1] == 0:
                work.pop()
            if not work:
                raise TreeFormatError("stack tree node counts are inconsistent")
            top = work[-1]
            top[1] -= 1
            parent = order[top[0]]
            name = names[idx[i]]
            if name in parent.children:
                raise TreeFormatError("stack tree has duplicate sibling frames")
            node = TreeNode(name)
            node.self_value = selfs[i]
            parent.children[name] = node
            order.append(node)
            parents.append(top[0])
            kids = nchild[i + 1]
            if kids:
                work.append([len(order) - 1, kids])
            elif not node.self_value:
                raise TreeFormatError("stack tree has an empty leaf")
        if any(w[1] for w in work):
            raise TreeFormatError("stack tree node counts are inconsistent")
        for node in order:
            node.total = node.self_value
        for j in range(len(order) - 1, 0, -1):
            order[parents[j]].total += order[j].total
        return tree

    # -- truncation -------------------------------------------------------------------------------

    def min_value(self, max_nodes: int) -> int:
        """Pyroscope's truncation threshold: the ``max_nodes``-th largest node total (the root counts),
        or 0 (keep everything) when the tree has fewer nodes or ``max_nodes <= 0``. Nodes whose total
        is at least the threshold are kept — ties at the threshold are all kept, so a few more than
        ``max_nodes`` nodes may survive."""
        if max_nodes <= 0:
            return 0
        totals = [node.total for node in self.iter_nodes()]
        if len(totals) < max_nodes:
            return 0
        try:
            arr = np.array(totals, dtype=np.uint64)
        except OverflowError:
            return heapq.nlargest(max_nodes, totals)[-1]
        k = len(arr) - max_nodes
        return int(np.partition(arr, k)[k])

    def truncate(self, max_nodes: int) -> StackTree:
        """A new tree keeping the nodes with ``total >= min_value(max_nodes)``; under each parent the
        dropped children become one leaf named ``other`` (merged into a kept real child of that name)."""
        threshold = self.min_value(max_nodes)
        out = StackTree()
        work = [(self._root, out._root)]
        while work:
            src, dst = work.pop()
            dst.self_value += src.self_value
            kept, other = split_children(src, threshold)
            for c in kept:
                d = dst.children.get(c.name)
                if d is None:
                    d = dst.children[c.name] = TreeNode(c.name)
                work.append((c, d))
            if other:
                o = dst.children.get(OTHER)
                if o is None:
                    o = dst.children[OTHER] = TreeNode(OTHER)
                o.self_value += other
        _fix_totals(out._root)
        return out


def _fix_totals(root: TreeNode) -> None:
    order: list[TreeNode] = []
    work = [root]
    while work:
        node = work.pop()
        order.append(node)
        work.extend(node.children.values())
    for node in reversed(order):
        node.total = node.self_value + sum(c.total for c in node.children.values())
