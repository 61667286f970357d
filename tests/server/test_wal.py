from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest

from pyro_core.server.wal import WAL, WALCorruptionError


def _records(n: int) -> list[bytes]:
    return [f"record-{i}".encode() * (i % 5 + 1) for i in range(n)]


def test_round_trip(tmp_path: Path) -> None:
    recs = _records(20)
    with WAL(tmp_path) as w:
        for r in recs:
            w.append(r)
        assert list(w.replay()) == recs
    with WAL(tmp_path) as w:
        assert list(w.replay()) == recs
        w.append(b"more")
        assert list(w.replay()) == [*recs, b"more"]


def test_framing_is_length_crc_payload(tmp_path: Path) -> None:
    with WAL(tmp_path) as w:
        w.append(b"hello")
        seg = w.current_segment
    data = (tmp_path / f"{seg:016d}.seg").read_bytes()
    assert data == struct.pack(">II", 5, zlib.crc32(b"hello")) + b"hello"


def test_empty_record_refused(tmp_path: Path) -> None:
    with WAL(tmp_path) as w, pytest.raises(ValueError):
        w.append(b"")


def test_segments_rotate_by_size(tmp_path: Path) -> None:
    recs = _records(50)
    with WAL(tmp_path, segment_bytes=128) as w:
        for r in recs:
            w.append(r)
        assert len(w.segments()) > 3
        assert list(w.replay()) == recs
    with WAL(tmp_path, segment_bytes=128) as w:
        assert list(w.replay()) == recs


def test_truncate_before_and_checkpoint(tmp_path: Path) -> None:
    with WAL(tmp_path) as w:
        w.append(b"a")
        s2 = w.rotate()
        w.append(b"b")
        s3 = w.rotate()
        w.append(b"c")
        assert w.truncate_before(s2) == [s2 - 1]
        assert list(w.replay()) == [b"b", b"c"]
        assert w.checkpoint(s2) == [s2]
        assert list(w.replay()) == [b"c"]
        # the current segment is never deleted
        assert w.truncate_before(s3 + 10) == []
        assert list(w.replay()) == [b"c"]
        assert list(w.replay(from_segment=s3 + 1)) == []


def test_first_segment_hint(tmp_path: Path) -> None:
    with WAL(tmp_path, first_segment=7) as w:
        assert w.current_segment == 7
        w.append(b"x")
    with WAL(tmp_path, first_segment=3) as w:
        assert w.current_segment == 7
        assert list(w.replay()) == [b"x"]


def test_torn_tail_at_every_offset(tmp_path: Path) -> None:
    recs = _records(5)
    base = tmp_path / "base"
    with WAL(base) as w:
        for r in recs[:-1]:
            w.append(r)
        w.rotate()
        for r in recs[:-1]:
            w.append(r)
        good = w.current_segment
        seg_path = base / f"{good:016d}.seg"
        good_len = seg_path.stat().st_size
        w.append(recs[-1])
    full = seg_path.read_bytes()
    prefix = full[:good_len]
    for cut in range(good_len, len(full)):
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        for p in base.iterdir():
            (d / p.name).write_bytes(p.read_bytes())
        (d / seg_path.name).write_bytes(full[:cut])
        with WAL(d) as w:
            assert list(w.replay()) == recs[:-1] + recs[:-1]
            assert w.torn_tails == (1 if cut > good_len else 0)
            assert w.truncated_bytes == cut - good_len
            assert (d / seg_path.name).read_bytes() == prefix
            # appends after the repair land on a clean boundary
            w.append(b"after")
        with WAL(d) as w:
            assert list(w.replay()) == [*recs[:-1], *recs[:-1], b"after"]
            assert w.torn_tails == 0


def test_bad_crc_in_last_segment_is_truncated(tmp_path: Path) -> None:
    with WAL(tmp_path) as w:
        w.append(b"one")
        w.append(b"two")
        seg = tmp_path / f"{w.current_segment:016d}.seg"
    data = bytearray(seg.read_bytes())
    data[-1] ^= 0xFF
    seg.write_bytes(bytes(data))
    with WAL(tmp_path) as w:
        assert list(w.replay()) == [b"one"]
        assert w.torn_tails == 1


def test_zero_filled_tail_is_truncated(tmp_path: Path) -> None:
    with WAL(tmp_path) as w:
        w.append(b"one")
        seg = tmp_path / f"{w.current_segment:016d}.seg"
    with open(seg, "ab") as f:
        f.write(b"\0" * 64)
    with WAL(tmp_path) as w:
        assert list(w.replay()) == [b"one"]
        assert w.truncated_bytes == 64


def test_bad_crc_in_earlier_segment_raises(tmp_path: Path) -> None:
    with WAL(tmp_path) as w:
        w.append(b"first")
        w.append(b"second")
        first = tmp_path / f"{w.current_segment:016d}.seg"
        w.rotate()
        w.append(b"third")
    data = bytearray(first.read_bytes())
    data[8] ^= 0x01  # first payload byte of the first record
    first.write_bytes(bytes(data))
    with WAL(tmp_path) as w, pytest.raises(WALCorruptionError, match="checksum"):
        list(w.replay())


def test_truncated_earlier_segment_raises(tmp_path: Path) -> None:
    with WAL(tmp_path) as w:
        w.append(b"first")
        first = tmp_path / f"{w.current_segment:016d}.seg"
        w.rotate()
        w.append(b"second")
    first.write_bytes(first.read_bytes()[:-2])
    with WAL(tmp_path) as w, pytest.raises(WALCorruptionError, match="partial"):
        list(w.replay())


def test_append_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    with WAL(tmp_path) as w:
        before = len(calls)
        for i in range(5):
            w.append(b"x%d" % i)
            assert len(calls) == before + i + 1
    calls.clear()
    with WAL(tmp_path, fsync=False) as w:
        w.append(b"y")
    assert calls == []


def test_group_commit_shares_fsyncs_between_concurrent_appends(tmp_path: Path) -> None:
    import threading

    wal = WAL(tmp_path / "wal", fsync=True)
    positions: list[tuple[int, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def writer(k: int) -> None:
        start.wait()
        for i in range(25):
            pos = wal.append(f"{k}-{i}".encode())  # sync=True: durable on return
            assert pos <= wal._synced
            with lock:
                positions.append(pos)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(positions) == 200 and len(set(positions)) == 200
    assert wal.fsyncs <= 200  # never more than one per append; usually far fewer under contention
    wal.close()
    records = list(WAL(tmp_path / "wal").replay())
    assert sorted(records) == sorted(f"{k}-{i}".encode() for k in range(8) for i in range(25))


def test_unsynced_appends_become_durable_with_sync_and_on_rotation(tmp_path: Path) -> None:
    wal = WAL(tmp_path / "wal", fsync=True)
    p1 = wal.append(b"a", sync=False)
    p2 = wal.append(b"b", sync=False)
    assert wal._synced < p1 < p2
    before = wal.fsyncs
    wal.sync(p2)
    assert wal.fsyncs == before + 1 and wal._synced >= p2
    wal.sync(p1)  # already covered: no second fsync
    assert wal.fsyncs == before + 1
    p3 = wal.append(b"c", sync=False)
    wal.rotate()  # a sealed segment is fsynced first
    assert wal._synced >= p3
    wal.close()
    assert list(WAL(tmp_path / "wal").replay()) == [b"a", b"b", b"c"]
