"""A durable FIFO of one remote-write target's undelivered records, in a directory of segment files.

Owns: the on-disk layout, appends, recovery after a crash (torn tails repaired), the bound in bytes
(oldest undelivered records dropped first, and counted), the delivered ("committed") offset saved
atomically, and deleting segments nobody needs any more.
Must not know: HTTP, targets, what a record means (remote_write.py encodes RelayItems), trio (every
method is synchronous; the caller decides which ones run in a worker thread).

Layout of ``<directory>``::

    0000000000000001.seg, 0000000000000002.seg, ...   records, appended in order
    commit                                             where delivery stands (atomically replaced)

A record is ``u32 BE length | u32 BE crc32(payload) | payload`` (1 <= length <= MAX_RECORD_BYTES). The
commit file is ``b"PCSPOOL1" | u64 BE segment id | u64 BE offset | u32 BE crc32(the 16 bytes before)``:
every record before that position was delivered (or given up on); every record from it on is
delivered again after a restart. Delivery is therefore at least once: records acked out of order, or
acked after the last commit, come back after a crash (the relay sends a profile id with each, so a
pyro-core target drops the duplicates).

Life of a record. :meth:`Spool.append` writes it with one ``os.write`` (so after ``append`` returns it
survives ``kill -9``: the page cache outlives the process) and, when over the bound, drops the oldest
records nobody is delivering. :meth:`Spool.sync` fsyncs what was appended (group commit: the caller
batches). :meth:`Spool.next_unread` hands the oldest unread record to a deliverer, :meth:`Spool.read`
fetches its bytes (``os.pread``: safe in a worker thread), :meth:`Spool.ack` marks it done. The
payloads appended by this process stay in memory until done, within ``cache_bytes``
(:meth:`Spool.cached`), so a spool that keeps up is never read back from disk: only records recovered
at open, or appended past the cache during an outage, are.
:meth:`Spool.commit` saves the position of the oldest record not done and deletes the segments before
it.

Damage. A crash can only tear the last segment, so there anything from the first bad record on is cut
off (truncated, counted in ``torn_tails`` / ``truncated_bytes``). A bad record in an earlier segment is
real damage: the rest of that segment is skipped and counted in ``corrupt_records`` (logged), and the
spool keeps going: a relay must not refuse to start over one bad file.

The bound: ``max_bytes`` caps the bytes of records not yet done (unread + in delivery). When an append
goes over it, unread records are dropped oldest first (``dropped`` / ``dropped_bytes``). Records in
delivery are never dropped, so the bound may be exceeded by at most what the deliverers hold. A record
larger than ``max_bytes`` is refused (and counted as dropped). On disk, a segment lives until every
record in it is done and committed, so the files can hold up to one segment plus the records acked out
of order more than the bound.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pyro_core.server.wal import MAX_RECORD_BYTES, RECORD_HEADER, fsync_dir, scan_records

__all__ = ["DEFAULT_CACHE_BYTES", "MAX_RECORD_BYTES", "Spool", "SpoolEntry", "SpoolStats"]

log = logging.getLogger(__name__)

_HEADER: Final = RECORD_HEADER
_COMMIT: Final = struct.Struct(">QQ")
_COMMIT_MAGIC: Final = b"PCSPOOL1"
_COMMIT_NAME: Final = "commit"
_SUFFIX: Final = ".seg"
DEFAULT_CACHE_BYTES: Final = 32 << 20  # payloads kept in memory from append to done (see read)

# Entry states.
_UNREAD: Final = 0
_READING: Final = 1
_DONE: Final = 2


@dataclass(eq=False, slots=True)
class SpoolEntry:
    """One record: where it is and how far delivery got. Handed out by next_unread, given back to ack."""

    segment: int  # segment id
    offset: int  # of the record header in the segment
    length: int  # payload bytes
    state: int = _UNREAD
    payload: bytes | None = None  # kept in memory since the append (within cache_bytes), until done

    @property
    def end(self) -> int:
        return self.offset + _HEADER.size + self.length


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """A snapshot of a spool's counters."""

    entries: int  # records not yet done (unread + in delivery)
    bytes: int  # their payload bytes
    disk_bytes: int  # size of the segment files
    segments: int
    dropped: int  # records dropped because the spool was full (or too large to fit)
    dropped_bytes: int
    torn_tails: int  # torn tails repaired on open
    truncated_bytes: int
    corrupt_records: int  # records lost to damage in a non-last segment (a lower bound)
    recovered: int  # records found undelivered on open


def _segment_name(segment_id: int) -> str:
    return f"{segment_id:016d}{_SUFFIX}"


class Spool:
    """The durable queue of one target (see the module docstring). Not thread-safe, except ``read``,
    ``sync`` and ``commit``'s I/O halves as documented: call everything else from one thread."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        segment_bytes: int = 16 << 20,
        fsync: bool = True,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        if max_bytes <= 0 or segment_bytes <= 0 or cache_bytes < 0:
            raise ValueError("max_bytes and segment_bytes must be positive, cache_bytes not negative")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.cache_bytes = cache_bytes
        self._cached_bytes = 0  # payload bytes of the entries holding their payload in memory
        self._entries: deque[SpoolEntry] = deque()  # every record from the commit point on, in order
        self._unread: deque[SpoolEntry] = deque()  # the unread ones, in order (a suffix of _entries)
        self._pending_bytes = 0  # payload bytes of records not done
        self._pending_entries = 0
        self._segment_sizes: dict[int, int] = {}  # segment id -> bytes on disk
        self._read_fds: dict[int, int] = {}
        self._read_lock = threading.Lock()  # guards _read_fds against concurrent reads
        self._write_lock = threading.Lock()  # guards _write_fd / _new_segment / _unsynced against sync
        self._write_fd = -1
        self._write_segment = 0
        self._unsynced = False  # appended since the last sync
        self._new_segment = False  # a segment file was created since the last sync (fsync the dir)
        self._committed: tuple[int, int] = (0, 0)  # the position last saved
        self.dropped = 0
        self.dropped_bytes = 0
        self.torn_tails = 0
        self.truncated_bytes = 0
        self.corrupt_records = 0
        self.recovered = 0
        self._closed = False
        self._open()

    # -- opening and recovery ---------------------------------------------------------------------

    def _read_commit(self) -> tuple[int, int]:
        path = self.directory / _COMMIT_NAME
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return (0, 0)
        body = data[len(_COMMIT_MAGIC) : len(_COMMIT_MAGIC) + _COMMIT.size]
        if (
            len(data) != len(_COMMIT_MAGIC) + _COMMIT.size + 4
            or not data.startswith(_COMMIT_MAGIC)
            or struct.unpack(">I", data[-4:])[0] != zlib.crc32(body)
        ):
            log.warning("spool %s: damaged commit file, delivering every record again", self.directory)
            return (0, 0)
        segment, offset = _COMMIT.unpack(body)
        return (segment, offset)

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (self.directory / (_COMMIT_NAME + ".tmp")).unlink()
        commit_segment, commit_offset = self._read_commit()
        self._committed = (commit_segment, commit_offset)
        ids = sorted(
            int(p.name[: -len(_SUFFIX)])
            for p in self.directory.iterdir()
            if p.name.endswith(_SUFFIX) and p.name[: -len(_SUFFIX)].isdigit()
        )
        for segment_id in ids:
            if segment_id < commit_segment:  # fully delivered; a crash came before it was deleted
                (self.directory / _segment_name(segment_id)).unlink()
        ids = [i for i in ids if i >= commit_segment]
        for index, segment_id in enumerate(ids):
            last = index == len(ids) - 1
            path = self.directory / _segment_name(segment_id)
            data = path.read_bytes()
            start = commit_offset if segment_id == commit_segment else 0
            if start > len(data):
                log.warning(
                    "spool %s: commit offset beyond segment %d, starting over", self.directory, segment_id
                )
                start = 0
            records, end, problem = scan_records(data, start)
            if problem is not None:
                if last:
                    self.torn_tails += 1
                    self.truncated_bytes += len(data) - end
                    log.warning(
                        "spool %s: torn tail in %s (%s): %d bytes cut off",
                        self.directory,
                        path.name,
                        problem,
                        len(data) - end,
                    )
                    with open(path, "r+b") as f:
                        f.truncate(end)
                        if self.fsync:
                            os.fsync(f.fileno())
                    data = data[:end]
                else:
                    self.corrupt_records += 1
                    log.error(
                        "spool %s: damaged record in %s at %d (%s): the rest of the segment is skipped",
                        self.directory,
                        path.name,
                        end,
                        problem,
                    )
            self._segment_sizes[segment_id] = len(data)
            for offset, length in records:
                entry = SpoolEntry(segment_id, offset, length)
                self._entries.append(entry)
                self._unread.append(entry)
                self._pending_bytes += length
                self._pending_entries += 1
        self.recovered = self._pending_entries
        if ids:
            self._write_segment = ids[-1]
            self._write_fd = os.open(self.directory / _segment_name(ids[-1]), os.O_WRONLY | os.O_APPEND)
        else:
            self._start_segment(max(commit_segment, 1))
        if self.recovered:
            log.info("spool %s: %d undelivered records recovered", self.directory, self.recovered)
        self._enforce_bound(0)

    def _start_segment(self, segment_id: int) -> None:
        if self._write_fd >= 0 and self.fsync:
            os.fsync(self._write_fd)  # a sealed segment is complete on disk before its successor
        path = self.directory / _segment_name(segment_id)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        with self._write_lock:  # sync (a worker thread) sees the old descriptor and flag, or the new
            old, self._write_fd = self._write_fd, fd
            self._new_segment = True
        if old >= 0:
            os.close(old)
        self._write_segment = segment_id
        self._segment_sizes.setdefault(segment_id, 0)

    # -- appending ---------------------------------------------------------------------------------

    def append(self, payload: bytes) -> SpoolEntry | None:
        """Write one record; its entry if it is in the spool, None if it was refused (larger than the
        bound: counted as dropped). May drop the oldest unread records to stay within the bound.
        Raises OSError when the write fails (disk full): the record is then not in the spool."""
        if self._closed:
            raise ValueError("spool is closed")
        length = len(payload)
        if length == 0:
            raise ValueError("empty records are not allowed")
        if length > self.max_bytes or length > MAX_RECORD_BYTES:
            self.dropped += 1
            self.dropped_bytes += length
            return None
        self._enforce_bound(length)
        size = self._segment_sizes[self._write_segment]
        if size > 0 and size + _HEADER.size + length > self.segment_bytes:
            self._start_segment(self._write_segment + 1)
            size = 0
        record = _HEADER.pack(length, zlib.crc32(payload)) + payload
        view = memoryview(record)
        written = 0
        try:
            while written < len(record):
                written += os.write(self._write_fd, view[written:])
        except OSError:
            if written:  # never leave half a record behind: it would read as a torn tail mid-file
                os.ftruncate(self._write_fd, size)
            raise
        entry = SpoolEntry(self._write_segment, size, length)
        if self._cached_bytes + length <= self.cache_bytes:
            entry.payload = payload
            self._cached_bytes += length
        self._segment_sizes[self._write_segment] = size + len(record)
        self._entries.append(entry)
        self._unread.append(entry)
        self._pending_bytes += length
        self._pending_entries += 1
        self._unsynced = True
        return entry

    def _enforce_bound(self, incoming: int) -> None:
        while self._unread and self._pending_bytes + incoming > self.max_bytes:
            entry = self._unread.popleft()
            self.dropped += 1
            self.dropped_bytes += entry.length
            self._finish(entry)

    # -- delivering --------------------------------------------------------------------------------

    def next_unread(self) -> SpoolEntry | None:
        """The oldest record nobody is delivering (now marked as in delivery), or None."""
        if not self._unread:
            return None
        entry = self._unread.popleft()
        entry.state = _READING
        return entry

    def cached(self, entry: SpoolEntry) -> bytes | None:
        """The payload of ``entry`` if it is still in memory (appended by this process, within
        ``cache_bytes``): no I/O, so the caller needs no worker thread. None: call :meth:`read`."""
        return entry.payload

    def read(self, entry: SpoolEntry) -> bytes:
        """The payload of ``entry`` (an entry in delivery), from memory when cached, else from its
        segment file. Safe in a worker thread."""
        payload = entry.payload
        if payload is not None:
            return payload
        with self._read_lock:  # worker threads read at once: one descriptor per segment, none leaked
            fd = self._read_fds.get(entry.segment)
            if fd is None:
                fd = os.open(self.directory / _segment_name(entry.segment), os.O_RDONLY)
                self._read_fds[entry.segment] = fd
        data = os.pread(fd, _HEADER.size + entry.length, entry.offset)
        if len(data) < _HEADER.size:
            raise OSError(f"spool record at {entry.segment}:{entry.offset} is cut short on disk")
        length, crc = _HEADER.unpack_from(data, 0)
        payload = data[_HEADER.size :]
        if length != entry.length or len(payload) != length or zlib.crc32(payload) != crc:
            raise OSError(f"spool record at {entry.segment}:{entry.offset} changed on disk")
        return payload

    def ack(self, entry: SpoolEntry) -> None:
        """``entry`` is done (delivered, or given up on): it will not be handed out again."""
        if entry.state != _DONE:
            self._finish(entry)

    def requeue(self, entry: SpoolEntry, payload: bytes) -> SpoolEntry | None:
        """Append ``payload`` (the record of ``entry``, an entry in delivery) again at the end and
        finish ``entry``, as one step: the bound counts the record once, so a requeue never drops
        another record to make room for its own copy. The copy (None if the bound refused it) is
        handed out after everything before it. Raises OSError when the append fails; ``entry`` is
        then still in delivery (release it)."""
        if entry.state != _READING:
            raise ValueError("only an entry in delivery can be requeued")
        self._pending_bytes -= entry.length  # leaving: not counted against the copy
        try:
            copy = self.append(payload)
        finally:
            self._pending_bytes += entry.length
        self._finish(entry)
        return copy

    def release(self, entry: SpoolEntry) -> None:
        """Give an entry in delivery back: it is the next one handed out again."""
        if entry.state == _READING:
            entry.state = _UNREAD
            self._unread.appendleft(entry)

    def _finish(self, entry: SpoolEntry) -> None:
        entry.state = _DONE
        if entry.payload is not None:
            self._cached_bytes -= entry.length
            entry.payload = None
        self._pending_bytes -= entry.length
        self._pending_entries -= 1
        entries = self._entries
        while entries and entries[0].state == _DONE:
            entries.popleft()

    # -- durability --------------------------------------------------------------------------------

    @property
    def needs_sync(self) -> bool:
        return self._unsynced or self._new_segment

    def sync(self) -> None:
        """fsync what was appended (and the directory, for a new segment). Blocking: run it in a worker
        thread while the event loop keeps appending; a record appended meanwhile waits for the next sync."""
        with self._write_lock:  # against _start_segment swapping the descriptor on the trio thread
            new_segment = self._new_segment
            self._unsynced = False
            self._new_segment = False
            if not self.fsync or self._write_fd < 0:
                return
            fd = os.dup(self._write_fd)  # stays open even if the segment is sealed meanwhile
        try:
            os.fsync(fd)
            if new_segment:
                fsync_dir(self.directory)
        except OSError:
            with self._write_lock:
                self._new_segment = self._new_segment or new_segment  # the next sync tries again
                self._unsynced = True
            raise
        finally:
            os.close(fd)

    def commit_position(self) -> tuple[int, int]:
        """Where the oldest record not done starts (or the end of the log when every record is done)."""
        if self._entries:
            head = self._entries[0]
            return (head.segment, head.offset)
        return (self._write_segment, self._segment_sizes.get(self._write_segment, 0))

    def commit(self, position: tuple[int, int] | None = None) -> bool:
        """Save the commit position atomically and delete the segments before it; False if it had not
        moved. Blocking I/O: to run it in a worker thread, take ``position`` from
        :meth:`commit_position` in the appending thread first and pass it in."""
        if position is None:
            position = self.commit_position()
        if position == self._committed:
            return False
        body = _COMMIT.pack(*position)
        data = _COMMIT_MAGIC + body + struct.pack(">I", zlib.crc32(body))
        tmp = self.directory / (_COMMIT_NAME + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, self.directory / _COMMIT_NAME)
        if self.fsync:
            fsync_dir(self.directory)
        self._committed = position
        self._delete_before(position[0])
        return True

    def _delete_before(self, segment_id: int) -> None:
        for old in [s for s in list(self._segment_sizes) if s < segment_id]:
            fd = self._read_fds.pop(old, None)
            if fd is not None:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                (self.directory / _segment_name(old)).unlink()
            del self._segment_sizes[old]

    # -- inspection and closing --------------------------------------------------------------------

    @property
    def pending_entries(self) -> int:
        return self._pending_entries

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    @property
    def unread_entries(self) -> int:
        return len(self._unread)

    def stats(self) -> SpoolStats:
        return SpoolStats(
            entries=self._pending_entries,
            bytes=self._pending_bytes,
            disk_bytes=sum(list(self._segment_sizes.values())),
            segments=len(self._segment_sizes),
            dropped=self.dropped,
            dropped_bytes=self.dropped_bytes,
            torn_tails=self.torn_tails,
            truncated_bytes=self.truncated_bytes,
            corrupt_records=self.corrupt_records,
            recovered=self.recovered,
        )

    def close(self) -> None:
        """Sync, commit and close the files (records in delivery are delivered again next time)."""
        if self._closed:
            return
        try:
            self.sync()
            self.commit()
        finally:
            self._closed = True
            for fd in self._read_fds.values():
                os.close(fd)
            self._read_fds.clear()
            with self._write_lock:  # a sync in a worker thread dups it under this lock
                fd, self._write_fd = self._write_fd, -1
            if fd >= 0:
                os.close(fd)
