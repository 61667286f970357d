"""An append-only write-ahead log in a directory of segment files.

Segments are named ``<16-digit id>.seg`` with ids increasing from 1. Every record is framed::

    u32 BE length   u32 BE crc32(payload)   payload (length bytes, 1 <= length <= MAX_RECORD_BYTES)

:meth:`WAL.append` writes one record and, unless ``fsync=False``, calls ``os.fsync`` before it
returns: once ``append`` has returned, the record survives ``kill -9`` and a power cut, so the caller
may acknowledge it.

Group commit. ``append(payload, sync=False)`` writes the record and returns its position without
waiting; :meth:`WAL.sync` then makes everything up to that position durable. Threads that sync at the
same time share one ``fsync``: a sync finds its position already covered by another thread's fsync
(which synced everything written before it started) and returns at once. Appends and syncs are
thread-safe; a sealed segment is always fsynced before the log moves on, so positions in it are durable.

Damage handling. A crash can only tear the *last* segment (earlier ones were complete when the log
moved past them), so in the last segment anything from the first bad record on — a partial header, a
partial payload, a zero or absurd length, a CRC mismatch — is cut off (the file is truncated) and
counted in :attr:`WAL.torn_tails` / :attr:`WAL.truncated_bytes` with a logged warning. The same damage
in an earlier segment cannot be a torn write, so :meth:`WAL.replay` raises :class:`WALCorruptionError`.
Zero-length payloads are refused on append, so a zero-filled tail (which some filesystems leave after a
crash) is never mistaken for records.

Dropping data that has reached durable storage elsewhere: :meth:`WAL.rotate` seals the current
segment and returns the id of the new one; :meth:`WAL.truncate_before` (or :meth:`WAL.checkpoint`)
then deletes the sealed segments.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "MAX_RECORD_BYTES",
    "RECORD_HEADER",
    "WAL",
    "Position",
    "WALCorruptionError",
    "fsync_dir",
    "scan_records",
]

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 64 << 20
#: Largest payload accepted; a length field above it is treated as damage.
MAX_RECORD_BYTES = 1 << 30

#: The frame of every record: u32 BE length, u32 BE crc32 of the payload (the spool uses it too).
RECORD_HEADER = struct.Struct(">II")
_HEADER = RECORD_HEADER
_SUFFIX = ".seg"


class WALCorruptionError(Exception):
    """A damaged record in a segment other than the last one (not explainable by a torn write)."""


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def scan_records(data: bytes, start: int = 0) -> tuple[list[tuple[int, int]], int, str | None]:
    """The framed records of a segment from ``start``: ([(record offset, payload length)], end of the
    last good record, the problem that stopped the scan or None)."""
    out: list[tuple[int, int]] = []
    pos = start
    n = len(data)
    while pos < n:
        if n - pos < _HEADER.size:
            return out, pos, "partial record header"
        length, crc = _HEADER.unpack_from(data, pos)
        if length == 0 or length > MAX_RECORD_BYTES:
            return out, pos, f"invalid record length {length}"
        start = pos + _HEADER.size
        if start + length > n:
            return out, pos, "partial record payload"
        if zlib.crc32(data[start : start + length]) != crc:
            return out, pos, "record checksum mismatch"
        out.append((pos, length))
        pos = start + length
    return out, pos, None


def _scan(data: bytes) -> tuple[list[bytes], int, str | None]:
    """Decode the records of one segment: (payloads, end of the last good record, problem or None)."""
    records, end, problem = scan_records(data)
    h = RECORD_HEADER.size
    return [data[off + h : off + h + length] for off, length in records], end, problem


#: A record's position in the log: (segment id, offset of the record's end).
Position = tuple[int, int]


class WAL:
    """A write-ahead log in ``directory`` (created if missing). Thread-safe; replay while nothing
    appends."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: bool = True,
        *,
        first_segment: int = 1,
    ) -> None:
        if segment_bytes <= _HEADER.size:
            raise ValueError("segment_bytes is too small")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        #: Number of torn/corrupted tails cut off the last segment, and the bytes dropped.
        self.torn_tails = 0
        self.truncated_bytes = 0
        self._fh: BinaryIO | None = None
        self._lock = threading.Lock()  # appends, rotation, the file handle
        self._sync_lock = threading.Lock()  # one fsync at a time; others wait and usually find it done
        self._synced: Position = (0, 0)
        #: fsync calls made by append/sync (group commit makes this smaller than the appends).
        self.fsyncs = 0
        segs = self.segments()
        first = max(1, first_segment)
        if not segs or segs[-1] < first:
            self._create(first)
            self._current = first
        else:
            self._current = segs[-1]
            self._repair_tail(self._current)
        self._size = self._path(self._current).stat().st_size
        self._synced = (self._current, self._size)  # what is on disk at open is as durable as it gets

    # -- files ------------------------------------------------------------------------------------

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:016d}{_SUFFIX}"

    def segments(self) -> list[int]:
        """Ids of the segment files on disk, ascending."""
        out: list[int] = []
        for p in self.directory.iterdir():
            if p.suffix == _SUFFIX and p.stem.isdigit():
                out.append(int(p.stem))
        out.sort()
        return out

    @property
    def current_segment(self) -> int:
        """The id of the segment appends go to."""
        return self._current

    def _create(self, segment: int) -> None:
        with open(self._path(segment), "xb") as f:
            if self.fsync:
                os.fsync(f.fileno())
        if self.fsync:
            fsync_dir(self.directory)

    def _truncate_tail(self, segment: int, data_len: int, end: int, problem: str) -> None:
        path = self._path(segment)
        self.torn_tails += 1
        self.truncated_bytes += data_len - end
        log.warning("WAL %s: %s at offset %d; dropping %d tail bytes", path, problem, end, data_len - end)
        with open(path, "r+b") as f:
            f.truncate(end)
            if self.fsync:
                os.fsync(f.fileno())
        if segment == self._current:
            self._size = end

    def _repair_tail(self, segment: int) -> None:
        data = self._path(segment).read_bytes()
        _, end, problem = _scan(data)
        if problem is not None:
            self._truncate_tail(segment, len(data), end, problem)

    # -- writing ----------------------------------------------------------------------------------

    def append(self, payload: bytes, *, sync: bool = True) -> Position:
        """Append one record and return its position; durable (fsynced) when this returns unless
        ``sync=False`` (then call :meth:`sync` with the position before acknowledging it) or the log
        was opened with ``fsync=False``."""
        n = len(payload)
        if n == 0:
            raise ValueError("WAL records must not be empty")
        if n > MAX_RECORD_BYTES:
            raise ValueError(f"WAL record of {n} bytes exceeds {MAX_RECORD_BYTES}")
        record = _HEADER.pack(n, zlib.crc32(payload)) + bytes(payload)
        with self._lock:
            if self._size and self._size + len(record) > self.segment_bytes:
                self._rotate_locked()
            fh = self._fh
            if fh is None:
                fh = self._fh = open(self._path(self._current), "ab")  # noqa: SIM115 - kept open
            try:
                fh.write(record)
                fh.flush()
            except BaseException:
                # leave no partial record behind for later appends to follow
                with contextlib.suppress(OSError):
                    fh.truncate(self._size)
                raise
            self._size += len(record)
            position = (self._current, self._size)
        if sync:
            self.sync(position)
        return position

    def position(self) -> Position:
        """The end of the last record written (sync it to make everything so far durable)."""
        with self._lock:
            return (self._current, self._size)

    def is_synced(self, position: Position) -> bool:
        """Everything up to ``position`` is fsynced (always, when the log does not fsync)."""
        return not self.fsync or position <= self._synced

    def sync(self, position: Position) -> None:
        """Return once every record up to ``position`` is fsynced (at once if it already is)."""
        if not self.fsync or position <= self._synced:
            return
        with self._sync_lock:
            if position <= self._synced:  # another thread's fsync covered it while we waited
                return
            with self._lock:
                target = (self._current, self._size)
                fh = self._fh
                fd = os.dup(fh.fileno()) if fh is not None else -1
            if fd >= 0:
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self.fsyncs += 1
            with self._lock:
                self._synced = max(self._synced, target)

    def rotate(self) -> int:
        """Seal the current segment (fsynced) and start a new (empty, already created) one; returns
        its id. Every record appended before this call lives in a segment with a smaller id."""
        with self._lock:
            return self._rotate_locked()

    def _rotate_locked(self) -> int:
        self._seal_locked()
        new = self._current + 1
        self._create(new)
        self._current = new
        self._size = 0
        self._synced = (new, 0)
        return new

    def _seal_locked(self) -> None:
        """fsync what the current segment holds beyond the synced position, and close it."""
        if self._fh is not None and self.fsync and self._synced < (self._current, self._size):
            os.fsync(self._fh.fileno())
            self.fsyncs += 1
        self._synced = max(self._synced, (self._current, self._size))
        self._close_fh()

    def truncate_before(self, segment: int) -> list[int]:
        """Delete every segment with an id below ``segment`` (never the current one); returns their ids."""
        gone = [s for s in self.segments() if s < segment and s != self._current]
        for s in gone:
            self._path(s).unlink(missing_ok=True)
        if gone and self.fsync:
            fsync_dir(self.directory)
        return gone

    def checkpoint(self, upto_segment: int) -> list[int]:
        """Delete segments up to and including ``upto_segment`` (never the current one)."""
        return self.truncate_before(upto_segment + 1)

    # -- reading ----------------------------------------------------------------------------------

    def replay(self, from_segment: int = 0) -> Iterator[bytes]:
        """Every record of the segments with id >= ``from_segment``, in append order.

        A damaged tail of the last segment is truncated away (counted, logged); damage in an earlier
        segment raises :class:`WALCorruptionError` before any of that segment's records are yielded."""
        segs = [s for s in self.segments() if s >= from_segment]
        for i, seg in enumerate(segs):
            path = self._path(seg)
            if seg == self._current and self._fh is not None:
                self._fh.flush()
            data = path.read_bytes()
            payloads, end, problem = _scan(data)
            if problem is not None:
                if i != len(segs) - 1:
                    raise WALCorruptionError(f"WAL segment {path}: {problem} at offset {end}")
                self._truncate_tail(seg, len(data), end, problem)
            yield from payloads

    # -- lifecycle --------------------------------------------------------------------------------

    def _close_fh(self) -> None:
        if self._fh is not None:
            fh, self._fh = self._fh, None
            fh.close()

    def close(self) -> None:
        with self._lock:
            self._seal_locked()

    def __enter__(self) -> WAL:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
