"""Ingester storage: an in-memory head, a write-ahead log, immutable blocks on disk, retention.

Conventions (the HTTP layer follows them):

* A **series** is a tenant plus a label set (``Mapping[str, str]``). The label ``__name__`` holds the
  application name *including* its profile-type suffix, exactly as pushed and as written in FlameQL
  (``myapp.cpu``, i.e. :attr:`pyro_core.server.names.ParsedName.app`); the other labels are the tags.
  :meth:`Storage.apps` lists the ``__name__`` values; a :class:`~pyro_core.server.flameql.Query`
  selects series whose ``__name__`` equals ``query.app_name`` and whose labels satisfy its matchers.
  :meth:`Storage.label_names` includes ``__name__``.
* Time is in seconds (float). A sample at ``t`` lands in the bucket starting at
  ``floor(t / bucket_seconds) * bucket_seconds``. ``query(…, start, end)`` merges every bucket that
  overlaps ``[start, end)`` (``bucket < end and bucket + bucket_seconds > start``).
* Nothing reads a clock: ``now`` is always an argument. Call :meth:`Storage.tick` periodically
  (it flushes every ``flush_interval`` seconds and enforces retention).
* Tenants are separate namespaces everywhere: head, blocks, deduplication, label listings.

Durability. :meth:`Storage.ingest` appends the sample to the WAL and returns only once it is fsynced
(concurrent ingests share one fsync: the WAL's group commit), so a return may be acknowledged.
:meth:`Storage.flush` commits in this order:

1. rotate the WAL to a new segment ``S`` (everything ingested so far lives in segments < ``S``);
2. write the block ``blocks/<S>.block`` (temp file, fsync, rename, fsync directory);
3. write ``checkpoint.<S>`` — the head buckets that stay in memory plus the recent profile ids — the
   same way; its rename is the commit point;
4. delete WAL segments < ``S`` and older checkpoints.

:meth:`Storage.open` loads the newest checkpoint ``C``, deletes blocks with an id above ``C`` (written
by a flush that never committed: their data is still in the WAL), loads the other blocks' indexes and
replays WAL segments >= ``C``. Each acknowledged sample is therefore counted exactly once after a crash
at any point. A block that fails its checks is skipped, logged and listed in
:attr:`Storage.corrupt_blocks`; it does not stop ``open()``.

Stacks are kept flat: each (series, bucket) holds ``{b"root;…;leaf": value}``. Merging flat maps costs
one dict operation per distinct stack (a tree merge costs one per node), so a query over an hour of
data stays fast; a :class:`StackTree` is built once, from the merged result.

Block file, version 2 (little-endian; version 1, with ``StackTree.to_bytes()`` blobs, is still read)::

    b"PYBK" u8 version=2 3×pad  u64 block_id  i64 min_t  i64 max_t  u32 index_len
    index: msgpack [[tenant, {labels}, [[bucket, offset, length, total], …]], …]  (version 1: no total)
    data: one msgpack [[stack, value], …] blob per bucket (offsets relative to the end of the index)
    u32 crc32 of everything before it

``min_t`` is the earliest bucket start and ``max_t`` the latest bucket end; retention deletes a block
once ``max_t <= now - retention``.

WAL record payload: msgpack ``[1, tenant, {labels}, bucket, [[stack, value], …], profile_id|None]``.
Checkpoint file: ``b"PYCK" u8 version=2``, msgpack ``{"ids": {tenant: [id, …]}, "series": [[tenant,
{labels}, bucket, [[stack, value], …]], …]}``, ``u32 crc32`` of everything before it (version 1, with
tree bytes in place of the pairs, is still read).
"""

from __future__ import annotations

import logging
import math
import os
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import msgpack

from pyro_core.server.flameql import Query
from pyro_core.server.tree import StackTree
from pyro_core.server.wal import DEFAULT_SEGMENT_BYTES, WAL, Position

__all__ = [
    "APP_LABEL",
    "BlockCorruptionError",
    "Head",
    "Storage",
    "StorageCorruptionError",
    "series_key",
]

log = logging.getLogger(__name__)

#: The label holding the application name (with its profile-type suffix).
APP_LABEL = "__name__"

DEFAULT_BUCKET_SECONDS = 10
DEFAULT_RETENTION = 7 * 86400.0
DEFAULT_MAX_PROFILE_IDS = 100_000

_WAL_RECORD_VERSION = 1
_BLOCK_MAGIC = b"PYBK"
_BLOCK_VERSION = 2
_BLOCK_VERSIONS = (1, 2)
_BLOCK_HEAD = struct.Struct("<4sB3xQqqI")
_CKPT_MAGIC = b"PYCK"
_CKPT_VERSION = 2
_CRC = struct.Struct("<I")

SeriesKey = tuple[tuple[str, str], ...]
Stacks = Mapping[bytes, int] | Mapping[str, int]
#: One series' samples in one bucket: ``b"root;…;leaf"`` → value (> 0).
FlatStacks = dict[bytes, int]


def clean_stacks(stacks: Stacks | Iterable[tuple[bytes | str, int]]) -> FlatStacks:
    """``stacks`` as a flat map with bytes keys (zero values dropped, repeated keys added up); a
    negative or non-integer value raises ValueError/TypeError."""
    items = stacks.items() if isinstance(stacks, Mapping) else stacks
    out: FlatStacks = {}
    for k, v in items:
        key = k.encode() if isinstance(k, str) else k
        if not isinstance(key, bytes):
            raise TypeError(f"stack keys must be bytes or str, got {type(k).__name__}")
        if isinstance(v, bool) or not isinstance(v, int):
            v = int(v)
        if v < 0:
            raise ValueError(f"negative sample value {v} for stack {key[:80]!r}")
        if v:
            out[key] = out.get(key, 0) + v
    return out


def merge_stacks(into: FlatStacks, other: Mapping[bytes, int]) -> None:
    """Add ``other``'s values into ``into`` (in place)."""
    if not into:
        into.update(other)
        return
    get = into.get
    for k, v in other.items():
        into[k] = get(k, 0) + v


def pack_stacks(stacks: Mapping[bytes, int]) -> bytes:
    out: bytes = msgpack.packb(list(stacks.items()), use_bin_type=True)
    return out


def unpack_stacks(blob: bytes) -> FlatStacks:
    return {bytes(k): int(v) for k, v in msgpack.unpackb(blob, raw=False)}


class StorageCorruptionError(Exception):
    """Storage state that cannot be recovered automatically (e.g. a damaged checkpoint)."""


class BlockCorruptionError(StorageCorruptionError):
    """A block file that fails its format or checksum checks."""


def series_key(labels: Mapping[str, str]) -> SeriesKey:
    """The canonical key of a label set (sorted pairs)."""
    return tuple(sorted(labels.items()))


def _check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    out = dict(labels)
    for k, v in out.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError("labels must map str to str")
    return out


def _selects(query: Query, labels: Mapping[str, str]) -> bool:
    return labels.get(APP_LABEL) == query.app_name and query.matches(labels)


def _write_atomic(path: Path, data: bytes, fsync: bool) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if fsync:
        _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- head ---------------------------------------------------------------------------------------


@dataclass
class _Series:
    labels: dict[str, str]
    buckets: dict[int, FlatStacks] = field(default_factory=dict)


class Head:
    """In-memory series per tenant: ``(tenant, series key) → {bucket start: flat stacks}``, plus a bounded
    per-tenant set of recently seen profile ids for deduplication. Not thread-safe."""

    def __init__(
        self,
        bucket_seconds: int = DEFAULT_BUCKET_SECONDS,
        max_profile_ids: int = DEFAULT_MAX_PROFILE_IDS,
    ) -> None:
        if bucket_seconds <= 0:
            raise ValueError("bucket_seconds must be positive")
        self.bucket_seconds = int(bucket_seconds)
        self.max_profile_ids = max_profile_ids
        self._tenants: dict[str, dict[SeriesKey, _Series]] = {}
        self._ids: dict[str, OrderedDict[str, None]] = {}

    def bucket_of(self, timestamp: float) -> int:
        bs = self.bucket_seconds
        return math.floor(timestamp / bs) * bs

    # -- deduplication ----------------------------------------------------------------------------

    def seen(self, tenant: str, profile_id: str | None) -> bool:
        if profile_id is None:
            return False
        ids = self._ids.get(tenant)
        return ids is not None and profile_id in ids

    def remember(self, tenant: str, profile_id: str | None) -> None:
        if profile_id is None or self.max_profile_ids <= 0:
            return
        ids = self._ids.setdefault(tenant, OrderedDict())
        ids[profile_id] = None
        ids.move_to_end(profile_id)
        while len(ids) > self.max_profile_ids:
            ids.popitem(last=False)

    def recent_ids(self) -> dict[str, list[str]]:
        return {t: list(ids) for t, ids in self._ids.items() if ids}

    # -- writing ----------------------------------------------------------------------------------

    def add_stacks(
        self, tenant: str, labels: Mapping[str, str], bucket: int, stacks: Mapping[bytes, int]
    ) -> None:
        """Add clean flat ``stacks`` into one bucket of one series (no deduplication)."""
        series = self._tenants.setdefault(tenant, {})
        key = series_key(labels)
        s = series.get(key)
        if s is None:
            s = series[key] = _Series(dict(labels))
        existing = s.buckets.get(bucket)
        if existing is None:
            s.buckets[bucket] = dict(stacks)
        else:
            merge_stacks(existing, stacks)

    def add_tree(self, tenant: str, labels: Mapping[str, str], bucket: int, tree: StackTree) -> None:
        """Merge ``tree``'s samples into one bucket of one series (no deduplication)."""
        self.add_stacks(tenant, labels, bucket, tree.to_dict())

    def ingest(
        self,
        tenant: str,
        labels: Mapping[str, str],
        timestamp: float,
        stacks: Stacks,
        profile_id: str | None = None,
    ) -> bool:
        """Add a profile; ``False`` (and nothing added) when ``profile_id`` was seen recently."""
        if self.seen(tenant, profile_id):
            return False
        self.add_stacks(tenant, _check_labels(labels), self.bucket_of(timestamp), clean_stacks(stacks))
        self.remember(tenant, profile_id)
        return True

    # -- reading ----------------------------------------------------------------------------------

    def series(self, tenant: str) -> Iterator[dict[str, str]]:
        for s in self._tenants.get(tenant, {}).values():
            yield s.labels

    def items(self) -> Iterator[tuple[str, dict[str, str], int, FlatStacks]]:
        """``(tenant, labels, bucket, tree)`` for every bucket held."""
        for tenant, series in self._tenants.items():
            for s in series.values():
                for b, tree in s.buckets.items():
                    yield tenant, s.labels, b, tree

    def overlaps(self, bucket: int, start: float, end: float) -> bool:
        return bucket < end and bucket + self.bucket_seconds > start

    def query_into(self, out: FlatStacks, tenant: str, query: Query, start: float, end: float) -> None:
        for s in self._tenants.get(tenant, {}).values():
            if not _selects(query, s.labels):
                continue
            for b, stacks in s.buckets.items():
                if self.overlaps(b, start, end):
                    merge_stacks(out, stacks)

    def query(self, tenant: str, query: Query, start: float, end: float) -> StackTree:
        out: FlatStacks = {}
        self.query_into(out, tenant, query, start, end)
        return StackTree(out)

    def label_names(self, tenant: str) -> list[str]:
        return sorted({k for labels in self.series(tenant) for k in labels})

    def label_values(self, tenant: str, name: str) -> list[str]:
        return sorted({labels[name] for labels in self.series(tenant) if name in labels})

    def apps(self, tenant: str) -> list[str]:
        return self.label_values(tenant, APP_LABEL)

    def bucket_count(self) -> int:
        return sum(len(s.buckets) for series in self._tenants.values() for s in series.values())

    # -- flushing ---------------------------------------------------------------------------------

    def closed_before(self, cutoff: float) -> list[tuple[str, SeriesKey, int]]:
        """``(tenant, series key, bucket)`` of every bucket that ends at or before ``cutoff``."""
        bs = self.bucket_seconds
        return [
            (tenant, key, b)
            for tenant, series in self._tenants.items()
            for key, s in series.items()
            for b in s.buckets
            if b + bs <= cutoff
        ]

    def get(self, tenant: str, key: SeriesKey) -> _Series:
        return self._tenants[tenant][key]

    def remove(self, entries: Iterable[tuple[str, SeriesKey, int]]) -> None:
        for tenant, key, b in entries:
            series = self._tenants.get(tenant)
            if series is None or key not in series:
                continue
            s = series[key]
            s.buckets.pop(b, None)
            if not s.buckets:
                del series[key]
                if not series:
                    del self._tenants[tenant]


# --- blocks -------------------------------------------------------------------------------------


@dataclass
class _BlockSeries:
    labels: dict[str, str]
    buckets: list[tuple[int, int, int, int]]  # (bucket, offset from the data start, length, total or -1)


@dataclass
class _Block:
    block_id: int
    path: Path
    min_t: int
    max_t: int
    data_start: int
    tenants: dict[str, list[_BlockSeries]]
    version: int = _BLOCK_VERSION

    def read_stacks(self, blob: bytes) -> FlatStacks:
        """One bucket's samples from its blob (version 1 blobs are serialized trees)."""
        if self.version == 1:
            return StackTree.from_bytes(blob).to_dict()
        return unpack_stacks(blob)


def _encode_block(
    block_id: int, entries: list[tuple[str, dict[str, str], list[tuple[int, bytes, int]]]]
) -> bytes:
    blobs: list[bytes] = []
    index: list[list[Any]] = []
    off = 0
    min_t: int | None = None
    max_t: int | None = None
    for tenant, labels, buckets in entries:
        refs: list[list[int]] = []
        for b, blob, total in buckets:
            refs.append([b, off, len(blob), total] if _BLOCK_VERSION > 1 else [b, off, len(blob)])
            blobs.append(blob)
            off += len(blob)
            min_t = b if min_t is None else min(min_t, b)
            max_t = b if max_t is None else max(max_t, b)
        index.append([tenant, labels, refs])
    packed_index: bytes = msgpack.packb(index, use_bin_type=True)
    head = _BLOCK_HEAD.pack(_BLOCK_MAGIC, _BLOCK_VERSION, block_id, min_t or 0, max_t or 0, len(packed_index))
    body = head + packed_index + b"".join(blobs)
    return body + _CRC.pack(zlib.crc32(body))


def _decode_block(path: Path, data: bytes, bucket_seconds: int) -> _Block:
    def bad(msg: str) -> BlockCorruptionError:
        return BlockCorruptionError(f"block {path}: {msg}")

    if len(data) < _BLOCK_HEAD.size + _CRC.size:
        raise bad("file truncated")
    magic, version, block_id, min_t, max_t, index_len = _BLOCK_HEAD.unpack_from(data)
    if magic != _BLOCK_MAGIC:
        raise bad("bad magic")
    if version not in _BLOCK_VERSIONS:
        raise bad(f"unsupported version {version}")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(data[: -_CRC.size]) != crc:
        raise bad("checksum mismatch")
    data_start = _BLOCK_HEAD.size + index_len
    data_len = len(data) - _CRC.size - data_start
    if data_len < 0:
        raise bad("index length out of range")
    try:
        raw = msgpack.unpackb(data[_BLOCK_HEAD.size : data_start], raw=False)
        tenants: dict[str, list[_BlockSeries]] = {}
        for tenant, labels, refs in raw:
            if not isinstance(tenant, str) or not isinstance(labels, dict):
                raise bad("malformed index entry")
            buckets: list[tuple[int, int, int, int]] = []
            for ref in refs:
                if len(ref) != (3 if version == 1 else 4):
                    raise bad("malformed bucket reference")
                b, off, ln = int(ref[0]), int(ref[1]), int(ref[2])
                total = int(ref[3]) if version > 1 else -1
                if off < 0 or ln < 0 or off + ln > data_len:
                    raise bad("tree offset out of range")
                buckets.append((b, off, ln, total))
            tenants.setdefault(tenant, []).append(_BlockSeries(_check_labels(labels), buckets))
    except BlockCorruptionError:
        raise
    except Exception as e:  # msgpack raises a variety of errors on malformed input
        raise bad(f"malformed index ({type(e).__name__}: {e})") from None
    return _Block(block_id, path, int(min_t), int(max_t) + bucket_seconds, data_start, tenants, version)


# --- storage ------------------------------------------------------------------------------------


class Storage:
    """WAL + head + immutable blocks under ``data_dir``; thread-safe (one lock). Call :meth:`open`
    before use."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        bucket_seconds: int = DEFAULT_BUCKET_SECONDS,
        flush_interval: float = 60.0,
        retention: float | None = DEFAULT_RETENTION,
        max_profile_ids: int = DEFAULT_MAX_PROFILE_IDS,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.bucket_seconds = int(bucket_seconds)
        self.flush_interval = float(flush_interval)
        self.retention = retention
        self.max_profile_ids = max_profile_ids
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.head = Head(self.bucket_seconds, max_profile_ids)
        self.blocks: dict[int, _Block] = {}
        #: ``(path, reason)`` of block files skipped by :meth:`open` because they failed their checks.
        self.corrupt_blocks: list[tuple[Path, str]] = []
        #: WAL records applied by the last :meth:`open`.
        self.replayed_records = 0
        self._wal: WAL | None = None
        self._checkpoint_id = 0
        self._last_flush: float | None = None
        self._lock = threading.RLock()

    @property
    def blocks_dir(self) -> Path:
        return self.data_dir / "blocks"

    @property
    def wal_dir(self) -> Path:
        return self.data_dir / "wal"

    @property
    def wal(self) -> WAL:
        if self._wal is None:
            raise RuntimeError("Storage is not open")
        return self._wal

    # -- lifecycle --------------------------------------------------------------------------------

    def open(self) -> Storage:
        """Load the checkpoint, the blocks' indexes and replay the WAL into the head."""
        with self._lock:
            if self._wal is not None:
                return self
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.blocks_dir.mkdir(exist_ok=True)
            self.head = Head(self.bucket_seconds, self.max_profile_ids)
            self.blocks = {}
            self.corrupt_blocks = []
            ckpt_id = self._load_checkpoint()
            self._checkpoint_id = ckpt_id
            self._load_blocks(ckpt_id)
            wal = WAL(self.wal_dir, self.segment_bytes, self.fsync, first_segment=max(ckpt_id, 1))
            wal.truncate_before(ckpt_id)
            n = 0
            try:
                for payload in wal.replay(from_segment=ckpt_id):
                    self._apply_record(payload)
                    n += 1
            except BaseException:
                wal.close()
                raise
            self.replayed_records = n
            self._wal = wal
            return self

    def close(self) -> None:
        """Close the WAL. Nothing else is needed for durability (the WAL already holds the head)."""
        with self._lock:
            if self._wal is not None:
                self._wal.close()
                self._wal = None

    def __enter__(self) -> Storage:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _checkpoints(self) -> list[tuple[int, Path]]:
        out: list[tuple[int, Path]] = []
        for p in self.data_dir.iterdir():
            name, dot, num = p.name.partition(".")
            if name == "checkpoint" and dot and num.isdigit():
                out.append((int(num), p))
        out.sort()
        return out

    def _load_checkpoint(self) -> int:
        ckpts = self._checkpoints()
        if not ckpts:
            return 0
        ckpt_id, path = ckpts[-1]
        data = path.read_bytes()
        try:
            if len(data) < 5 + _CRC.size or data[:4] != _CKPT_MAGIC:
                raise ValueError("bad magic or truncated")
            version = data[4]
            if version not in (1, _CKPT_VERSION):
                raise ValueError(f"unsupported version {version}")
            (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
            if zlib.crc32(data[: -_CRC.size]) != crc:
                raise ValueError("checksum mismatch")
            body = msgpack.unpackb(data[5 : -_CRC.size], raw=False)
            for tenant, ids in body["ids"].items():
                for pid in ids:
                    self.head.remember(str(tenant), str(pid))
            for tenant, labels, bucket, stacks in body["series"]:
                flat = StackTree.from_bytes(stacks).to_dict() if version == 1 else clean_stacks(stacks)
                self.head.add_stacks(str(tenant), _check_labels(labels), int(bucket), flat)
        except Exception as e:
            raise StorageCorruptionError(f"checkpoint {path} is unreadable: {e}") from e
        for _, older in ckpts[:-1]:
            older.unlink(missing_ok=True)
        return ckpt_id

    def _load_blocks(self, ckpt_id: int) -> None:
        for p in sorted(self.blocks_dir.iterdir()):
            if p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)
                continue
            if p.suffix != ".block" or not p.stem.isdigit():
                continue
            block_id = int(p.stem)
            if block_id > ckpt_id:
                # written by a flush that crashed before committing: the WAL still has its data
                log.warning("removing uncommitted block %s", p)
                p.unlink(missing_ok=True)
                continue
            try:
                block = _decode_block(p, p.read_bytes(), self.bucket_seconds)
                if block.block_id != block_id:
                    raise BlockCorruptionError(f"block {p}: id {block.block_id} does not match its name")
            except (BlockCorruptionError, OSError) as e:
                log.warning("skipping corrupted block: %s", e)
                self.corrupt_blocks.append((p, str(e)))
                continue
            self.blocks[block_id] = block

    def _apply_record(self, payload: bytes) -> None:
        rec = msgpack.unpackb(payload, raw=False)
        version, tenant, labels, bucket, stacks, profile_id = rec
        if version != _WAL_RECORD_VERSION:
            raise StorageCorruptionError(f"unsupported WAL record version {version}")
        if self.head.seen(tenant, profile_id):
            return
        self.head.add_stacks(tenant, labels, int(bucket), clean_stacks(stacks))
        self.head.remember(tenant, profile_id)

    # -- writing ----------------------------------------------------------------------------------

    def ingest(
        self,
        tenant: str,
        labels: Mapping[str, str],
        timestamp: float,
        stacks: Stacks,
        profile_id: str | None = None,
        *,
        sync: bool = True,
    ) -> bool:
        """Store one profile durably. ``False`` when ``profile_id`` was already ingested for this tenant
        (a retry: acknowledge it, nothing is counted twice). Invalid input raises ``ValueError`` /
        ``TypeError`` before anything is written. With ``sync=False`` the profile is durable only once
        :meth:`sync` returns (several profiles, one fsync)."""
        result = self.ingest_batch(tenant, [(labels, timestamp, stacks, profile_id)])
        assert result is not None  # blocking
        stored, position = result
        # Group commit: outside the lock, so that concurrent ingests share one fsync.
        if sync:
            self.wal.sync(position)
        return stored == 1

    def ingest_batch(
        self,
        tenant: str,
        profiles: Sequence[tuple[Mapping[str, str], float, Stacks, str | None]],
        *,
        blocking: bool = True,
    ) -> tuple[int, Position] | None:
        """Add ``(labels, timestamp, stacks, profile_id)`` profiles to the WAL and the head, without
        waiting for the fsync: returns ``(how many were new, WAL position)``; they are durable once
        :meth:`sync_to` (or :meth:`sync`) covers the position. Every profile is validated before any
        is written. With ``blocking=False`` returns None at once when another thread holds the
        storage (e.g. a flush), so an event loop can hand the work to a thread instead of waiting."""
        if not isinstance(tenant, str) or not tenant:
            raise ValueError("tenant is required")
        checked = [
            (_check_labels(labels), timestamp, clean_stacks(stacks), profile_id)  # validates all first
            for labels, timestamp, stacks, profile_id in profiles
        ]
        if not self._lock.acquire(blocking=blocking):
            return None
        try:
            wal = self.wal
            stored = 0
            for clean, timestamp, flat, profile_id in checked:
                if self.head.seen(tenant, profile_id):
                    continue  # a repeat: acknowledged once the first copy's position is synced
                bucket = self.head.bucket_of(timestamp)
                payload: bytes = msgpack.packb(
                    [_WAL_RECORD_VERSION, tenant, clean, bucket, list(flat.items()), profile_id],
                    use_bin_type=True,
                )
                wal.append(payload, sync=False)
                self.head.add_stacks(tenant, clean, bucket, flat)
                self.head.remember(tenant, profile_id)
                stored += 1
            return stored, wal.position()
        finally:
            self._lock.release()

    def is_synced(self, position: Position) -> bool:
        """Everything up to ``position`` is fsynced (or the WAL does not fsync)."""
        return self.wal.is_synced(position)

    def sync_to(self, position: Position) -> None:
        """Return once everything up to ``position`` is fsynced (group commit: see WAL.sync)."""
        self.wal.sync(position)

    def sync(self) -> None:
        """Make everything ingested so far durable (after ``ingest(..., sync=False)`` calls)."""
        wal = self.wal
        wal.sync(wal.position())

    def flush(self, now: float, *, force: bool = False) -> int | None:
        """Move every head bucket that ended at least ``flush_interval`` seconds before ``now`` (all of
        them with ``force``) into a new immutable block; returns its id, or ``None`` if nothing was due."""
        with self._lock:
            wal = self.wal
            self._last_flush = now
            cutoff = math.inf if force else now - self.flush_interval
            due = self.head.closed_before(cutoff)
            if not due:
                return None
            block_id = wal.rotate()
            grouped: dict[tuple[str, SeriesKey], list[tuple[int, bytes, int]]] = {}
            for tenant, key, b in due:
                stacks = self.head.get(tenant, key).buckets[b]
                grouped.setdefault((tenant, key), []).append((b, pack_stacks(stacks), sum(stacks.values())))
            entries = [
                (tenant, self.head.get(tenant, key).labels, sorted(buckets))
                for (tenant, key), buckets in grouped.items()
            ]
            path = self.blocks_dir / f"{block_id:016d}.block"
            _write_atomic(path, _encode_block(block_id, entries), self.fsync)
            due_set = set(due)
            remaining = [
                [tenant, labels, b, list(stacks.items())]
                for tenant, labels, b, stacks in self.head.items()
                if (tenant, series_key(labels), b) not in due_set
            ]
            ckpt = _CKPT_MAGIC + bytes([_CKPT_VERSION])
            ckpt += msgpack.packb({"ids": self.head.recent_ids(), "series": remaining}, use_bin_type=True)
            ckpt += _CRC.pack(zlib.crc32(ckpt))
            try:
                _write_atomic(self.data_dir / f"checkpoint.{block_id:016d}", ckpt, self.fsync)
            except BaseException:
                path.unlink(missing_ok=True)  # uncommitted: the WAL still holds its data
                raise
            # committed
            self.blocks[block_id] = _decode_block(path, path.read_bytes(), self.bucket_seconds)
            self.head.remove(due)
            self._checkpoint_id = block_id
            wal.truncate_before(block_id)
            for cid, p in self._checkpoints():
                if cid < block_id:
                    p.unlink(missing_ok=True)
            return block_id

    def enforce_retention(self, now: float) -> list[int]:
        """Delete blocks whose newest bucket ended at or before ``now - retention``; returns their ids."""
        if self.retention is None:
            return []
        with self._lock:
            horizon = now - self.retention
            gone = sorted(bid for bid, b in self.blocks.items() if b.max_t <= horizon)
            for bid in gone:
                self.blocks.pop(bid).path.unlink(missing_ok=True)
            if gone and self.fsync:
                _fsync_dir(self.blocks_dir)
            return gone

    def tick(self, now: float) -> None:
        """Periodic maintenance: flush when ``flush_interval`` has passed since the last flush (or on the
        first call), then enforce retention."""
        with self._lock:
            if self._last_flush is None or now - self._last_flush >= self.flush_interval:
                self.flush(now)
            self.enforce_retention(now)

    # -- reading ----------------------------------------------------------------------------------

    def _walk(
        self,
        tenant: str,
        query: Query,
        start: float,
        end: float,
        visit: Callable[[dict[str, str], int, int, Callable[[], FlatStacks]], None],
    ) -> None:
        """Call ``visit(labels, bucket, total, read)`` for every selected (series, bucket) piece in
        the head and in the blocks (a bucket may have a piece in each). ``total`` is the piece's sample
        count (-1: unknown, read it), ``read()`` returns its stacks (the head's own map: do not
        modify). Call with the lock held."""
        for s in self.head._tenants.get(tenant, {}).values():
            if _selects(query, s.labels):
                for b, stacks in s.buckets.items():
                    if self.head.overlaps(b, start, end):
                        visit(s.labels, b, sum(stacks.values()), lambda stacks=stacks: stacks)  # type: ignore[misc]
        for block in self.blocks.values():
            if block.min_t >= end or block.max_t <= start:
                continue
            wanted = [
                (s.labels, ref)
                for s in block.tenants.get(tenant, ())
                if _selects(query, s.labels)
                for ref in s.buckets
                if self.head.overlaps(ref[0], start, end)
            ]
            if not wanted:
                continue
            with open(block.path, "rb") as f:
                for labels, (b, off, ln, total) in wanted:

                    def read(off: int = off, ln: int = ln, block: _Block = block) -> FlatStacks:
                        f.seek(block.data_start + off)
                        return block.read_stacks(f.read(ln))

                    visit(labels, b, total, read)

    def query(self, tenant: str, query: Query, start: float, end: float) -> StackTree:
        """Every sample of ``tenant`` matching ``query`` in buckets overlapping ``[start, end)``."""
        return StackTree(self.query_merge(tenant, query, start, end))

    def query_merge(
        self,
        tenant: str,
        query: Query,
        start: float,
        end: float,
        wanted: Collection[tuple[SeriesKey, int]] | None = None,
    ) -> FlatStacks:
        """The merged samples of the selected series in ``[start, end)``, restricted to the
        ``(series key, bucket)`` pairs in ``wanted`` when given (the pieces a querier chose this
        ingester for)."""
        out: FlatStacks = {}

        def visit(labels: dict[str, str], b: int, total: int, read: Callable[[], FlatStacks]) -> None:
            if wanted is None or (series_key(labels), b) in wanted:
                merge_stacks(out, read())

        with self._lock:
            self._walk(tenant, query, start, end, visit)
        return out

    def query_index(
        self, tenant: str, query: Query, start: float, end: float
    ) -> dict[tuple[SeriesKey, int], tuple[dict[str, str], int]]:
        """``(series key, bucket) → (labels, sample count)`` of the selected series: what a querier
        compares across replicas before it asks each ingester to merge its share."""
        out: dict[tuple[SeriesKey, int], tuple[dict[str, str], int]] = {}

        def visit(labels: dict[str, str], b: int, total: int, read: Callable[[], FlatStacks]) -> None:
            if total < 0:
                total = sum(read().values())
            k = (series_key(labels), b)
            have = out.get(k)
            out[k] = (dict(labels), total + (have[1] if have is not None else 0))

        with self._lock:
            self._walk(tenant, query, start, end, visit)
        return out

    def query_series(
        self, tenant: str, query: Query, start: float, end: float
    ) -> dict[tuple[SeriesKey, int], tuple[dict[str, str], FlatStacks]]:
        """Like :meth:`query`, but kept apart per series and bucket: ``(series key, bucket) → (labels,
        stacks)`` (a bucket found both in the head and in blocks is merged)."""
        out: dict[tuple[SeriesKey, int], tuple[dict[str, str], FlatStacks]] = {}

        def visit(labels: dict[str, str], b: int, total: int, read: Callable[[], FlatStacks]) -> None:
            k = (series_key(labels), b)
            have = out.get(k)
            if have is None:
                out[k] = (dict(labels), dict(read()))
            else:
                merge_stacks(have[1], read())

        with self._lock:
            self._walk(tenant, query, start, end, visit)
        return out

    def _all_labels(self, tenant: str) -> Iterator[Mapping[str, str]]:
        yield from self.head.series(tenant)
        for block in self.blocks.values():
            for s in block.tenants.get(tenant, ()):
                yield s.labels

    def label_names(self, tenant: str) -> list[str]:
        """Sorted label names of the tenant's series (``__name__`` included)."""
        with self._lock:
            return sorted({k for labels in self._all_labels(tenant) for k in labels})

    def label_values(self, tenant: str, name: str) -> list[str]:
        with self._lock:
            return sorted({labels[name] for labels in self._all_labels(tenant) if name in labels})

    def apps(self, tenant: str) -> list[str]:
        """The tenant's application names (values of ``__name__``), sorted."""
        return self.label_values(tenant, APP_LABEL)
