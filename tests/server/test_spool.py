# The durable spool on its own: order, acks and commits, crash recovery (reopening the directory without
# closing, as after kill -9), torn tails, damage, the byte bound, segment rotation and deletion.
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest

from pyro_core.server import spool as spool_module
from pyro_core.server.spool import Spool


def records(n: int, size: int = 100, start: int = 0) -> list[bytes]:
    return [f"record-{i:06d}-".encode().ljust(size, b"x") for i in range(start, start + n)]


def take_all(spool: Spool) -> list[bytes]:
    out = []
    while (entry := spool.next_unread()) is not None:
        out.append(spool.read(entry))
        spool.ack(entry)
    return out


def segments(path: Path) -> list[Path]:
    return sorted(path.glob("*.seg"))


@pytest.mark.parametrize("cache_bytes", [0, 1 << 20], ids=["from-disk", "from-memory"])
def test_records_come_out_in_order_and_once(tmp_path: Path, cache_bytes: int) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, cache_bytes=cache_bytes)
    data = records(50)
    for r in data:
        assert spool.append(r)
    assert spool.pending_entries == 50 and spool.pending_bytes == 5000
    assert take_all(spool) == data
    assert spool.pending_entries == 0 and spool.next_unread() is None
    spool.close()


def test_crash_without_close_redelivers_exactly_the_unacked_records(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    data = records(20)
    for r in data:
        spool.append(r)
    for _ in range(8):
        entry = spool.next_unread()
        assert entry is not None
        spool.ack(entry)
    spool.commit()
    for _ in range(2):  # in delivery when the process dies
        assert spool.next_unread() is not None
    # kill -9: no close, no sync; a new process opens the same directory.
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert again.stats().recovered == 12
    assert take_all(again) == data[8:]
    again.close()
    assert take_all(Spool(tmp_path, max_bytes=1 << 20)) == []


def test_acks_out_of_order_commit_only_the_delivered_prefix(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    data = records(5)
    for r in data:
        spool.append(r)
    entries = [spool.next_unread() for _ in range(5)]
    for i in (0, 2, 3):
        e = entries[i]
        assert e is not None
        spool.ack(e)
    spool.commit()
    # At least once: 1 is not delivered, so 1..4 come back (2 and 3 again, duplicates by design).
    assert take_all(Spool(tmp_path, max_bytes=1 << 20)) == data[1:]


def test_torn_tail_is_cut_off_and_the_spool_keeps_working(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    data = records(10)
    for r in data:
        spool.append(r)
    (seg,) = segments(tmp_path)
    size = seg.stat().st_size
    with open(seg, "r+b") as f:  # the last record was half written when the power went
        f.truncate(size - 30)
    again = Spool(tmp_path, max_bytes=1 << 20)
    st = again.stats()
    assert (st.torn_tails, st.recovered) == (1, 9)
    assert st.truncated_bytes == 108 - 30  # header (8) + payload (100), minus what was cut
    more = records(3, start=100)
    for r in more:
        again.append(r)
    assert take_all(Spool(tmp_path, max_bytes=1 << 20)) == data[:9] + more


@pytest.mark.parametrize("garbage", [b"\x00" * 64, b"\x00\x00\x00\x10\xde\xad\xbe\xefpartial", b"\x01"])
def test_garbage_tail_is_repaired(tmp_path: Path, garbage: bytes) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    data = records(4)
    for r in data:
        spool.append(r)
    with open(segments(tmp_path)[-1], "ab") as f:
        f.write(garbage)
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert again.stats().torn_tails == 1
    assert take_all(again) == data


def test_checksum_mismatch_in_the_tail_is_cut_off(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    data = records(4)
    for r in data:
        spool.append(r)
    (seg,) = segments(tmp_path)
    with open(seg, "r+b") as f:
        f.seek(3 * 108 + 8 + 50)
        f.write(b"X")
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert again.stats().torn_tails == 1
    assert take_all(again) == data[:3]


def test_damage_in_an_earlier_segment_skips_its_rest_but_keeps_later_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=500)  # four 108-byte records per segment
    data = records(12)
    for r in data:
        spool.append(r)
    segs = segments(tmp_path)
    assert len(segs) == 3
    with open(segs[0], "r+b") as f:
        f.seek(2 * 108 + 8)
        f.write(b"Y")
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=500)
    assert again.stats().corrupt_records == 1
    assert take_all(again) == data[:2] + data[4:]


def test_full_spool_drops_the_oldest_unread_and_counts_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000)  # room for ten 100-byte payloads
    data = records(10)
    for r in data:
        spool.append(r)
    held = spool.next_unread()  # in delivery: never dropped
    assert held is not None
    for r in records(4, start=10):
        assert spool.append(r)
    st = spool.stats()
    assert (st.dropped, st.dropped_bytes, st.entries, st.bytes) == (4, 400, 10, 1000)
    assert spool.read(held) == data[0]
    spool.ack(held)
    assert take_all(spool) == data[5:] + records(4, start=10)


def test_a_record_larger_than_the_bound_is_refused_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    spool.append(b"small")
    assert not spool.append(b"z" * 1001)
    assert spool.stats().dropped == 1
    assert take_all(spool) == [b"small"]


def test_full_spool_survives_a_crash_with_its_drops_applied(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000, segment_bytes=300)
    for r in records(25):
        spool.append(r)
    assert spool.stats().dropped == 15
    spool.commit()
    again = Spool(tmp_path, max_bytes=1000, segment_bytes=300)
    assert take_all(again) == records(10, start=15)


def test_delivered_segments_are_deleted_after_commit(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=500)
    for r in records(20):
        spool.append(r)
    assert len(segments(tmp_path)) == 5
    for _ in range(10):
        e = spool.next_unread()
        assert e is not None
        spool.ack(e)
    assert spool.commit()
    assert not spool.commit()  # nothing moved
    assert [p.name for p in segments(tmp_path)] == [f"{i:016d}.seg" for i in (3, 4, 5)]
    take_all(spool)
    spool.commit()
    assert len(segments(tmp_path)) == 1  # the segment being written stays
    assert spool.stats().disk_bytes == 4 * 108
    spool.close()
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=500)
    assert again.pending_entries == 0
    again.append(b"next")
    assert take_all(again) == [b"next"]


def test_damaged_commit_file_redelivers_everything(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    data = records(5)
    for r in data:
        spool.append(r)
    take_all(spool)
    spool.commit()
    (tmp_path / "commit").write_bytes(b"PCSPOOL1 garbage")
    assert take_all(Spool(tmp_path, max_bytes=1 << 20)) == data  # at least once, never lost


def test_released_entry_is_handed_out_first_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    data = records(3)
    for r in data:
        spool.append(r)
    first = spool.next_unread()
    assert first is not None
    spool.release(first)
    assert take_all(spool) == data


def test_sync_and_fsync_off_work(tmp_path: Path) -> None:
    for fsync in (True, False):
        d = tmp_path / str(fsync)
        spool = Spool(d, max_bytes=1 << 20, fsync=fsync)
        spool.append(b"a")
        assert spool.needs_sync
        spool.sync()
        assert not spool.needs_sync
        spool.close()
        assert not os.path.exists(d / "commit.tmp")
        assert take_all(Spool(d, max_bytes=1 << 20)) == [b"a"]


def test_payloads_stay_in_memory_within_cache_bytes_until_done_and_the_rest_is_read_from_disk(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_bytes=1000, cache_bytes=450)  # room for four 100-byte payloads
    data = records(10)
    entries = []
    for r in data[:6]:
        entry = spool.append(r)
        assert entry
        entries.append(entry)
    assert [spool.cached(e) for e in entries] == [*data[:4], None, None]
    first = spool.next_unread()
    assert first is entries[0] and spool.read(first) == data[0]
    spool.ack(first)
    assert spool.cached(first) is None  # done: the memory is given back ...
    seventh = spool.append(data[6])
    assert seventh and spool.cached(seventh) == data[6]  # ... and used by the next append
    for r in data[7:]:
        spool.append(r)
    st = spool.stats()
    assert (st.dropped, st.entries) == (0, 9)
    for r in records(2, start=10):
        spool.append(r)  # the second goes over max_bytes: the oldest unread (entries[1], cached) goes
    assert spool.stats().dropped == 1 and spool.cached(entries[1]) is None
    assert spool.cached(entries[2]) == data[2]
    assert spool._cached_bytes == sum(e.length for e in spool._entries if e.payload is not None) <= 450
    assert take_all(spool) == data[2:] + records(2, start=10)  # memory and disk agree, in order
    assert spool._cached_bytes == 0
    spool.close()


def _open_segment_fds(directory: Path) -> int:
    """Descriptors of this process open on files of ``directory`` (Linux /proc)."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd).startswith(str(directory)):
                count += 1
    return count


def test_concurrent_reads_open_one_descriptor_per_segment_and_close_leaves_none(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1000)
    data = records(64)
    for r in data:
        spool.append(r)
    spool.close()
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1000)  # recovered: nothing in memory
    entries = [again.next_unread() for _ in range(64)]
    assert all(e is not None and again.cached(e) is None for e in entries)
    barrier = threading.Barrier(16)
    results: dict[int, bytes] = {}

    def reader(k: int) -> None:
        barrier.wait()
        for i in range(k, 64, 16):
            entry = entries[i]
            assert entry is not None
            results[i] = again.read(entry)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(64)] == data
    segments_read = len({e.segment for e in entries if e is not None})
    assert _open_segment_fds(tmp_path) == segments_read + 1  # one per segment read, plus the writer's
    again.close()
    assert _open_segment_fds(tmp_path) == 0


def test_a_record_cut_short_on_disk_reads_as_an_oserror(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    for r in records(3):
        spool.append(r)
    spool.close()
    again = Spool(tmp_path, max_bytes=1 << 20)
    entries = [again.next_unread() for _ in range(3)]
    (seg,) = segments(tmp_path)
    os.truncate(seg, entries[2].offset + 3)  # type: ignore[union-attr]  # from outside, while running
    with pytest.raises(OSError, match="cut short"):
        again.read(entries[2])  # type: ignore[arg-type]
    assert again.read(entries[0]) == records(3)[0]  # type: ignore[arg-type]


def test_sync_and_a_segment_change_on_another_thread_never_lose_the_new_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 30, segment_bytes=300)  # a new segment every 2-3 records
    stop = threading.Event()
    errors: list[BaseException] = []

    def syncer() -> None:
        while not stop.is_set():
            try:
                spool.sync()
            except BaseException as e:
                errors.append(e)
                return

    events: list[str] = []
    start_segment, fsync_dir = Spool._start_segment, spool_module.fsync_dir

    def recording_start(self: Spool, segment_id: int) -> None:
        start_segment(self, segment_id)
        events.append("segment")

    def recording_fsync_dir(directory: Path) -> None:
        events.append("dir")
        fsync_dir(directory)

    monkeypatch.setattr(Spool, "_start_segment", recording_start)
    monkeypatch.setattr(spool_module, "fsync_dir", recording_fsync_dir)
    thread = threading.Thread(target=syncer)
    thread.start()
    try:
        for r in records(600):
            spool.append(r)
    finally:
        stop.set()
        thread.join()
    assert errors == []  # no EBADF from a descriptor closed under the sync
    spool.sync()
    assert not spool.needs_sync
    # Every new segment file was followed by a directory fsync (the flag never got lost).
    last_segment = len(events) - 1 - events[::-1].index("segment")
    assert "dir" in events[last_segment + 1 :] and events.count("segment") > 100
    spool.close()


def test_a_requeue_counts_its_record_once_against_the_bound_and_hands_the_copy_out_last(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=300)  # exactly three 100-byte payloads
    data = records(3)
    for r in data:
        spool.append(r)
    first = spool.next_unread()
    assert first is not None
    copy = spool.requeue(first, spool.read(first))
    assert copy is not None and spool.cached(copy) == data[0]
    st = spool.stats()
    assert (st.dropped, st.entries, st.bytes) == (0, 3, 300)  # nobody dropped to make room for it
    assert take_all(spool) == [data[1], data[2], data[0]]
    with pytest.raises(ValueError):
        spool.requeue(first, data[0])  # finished: not in delivery any more
    spool.close()
    assert take_all(Spool(tmp_path, max_bytes=300)) == []  # the original is committed away too
