from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyro_core.server.flameql import parse
from pyro_core.server.storage import Head, Storage, StorageCorruptionError
from pyro_core.server.tree import StackTree
from pyro_core.server.wal import WAL

CPU = {"__name__": "app.cpu", "env": "prod"}
CPU_DEV = {"__name__": "app.cpu", "env": "dev"}
MEM = {"__name__": "app.alloc", "env": "prod"}


def _open(d: Path, **kw: object) -> Storage:
    return Storage(d, fsync=False, **kw).open()  # type: ignore[arg-type]


def _q(s: Storage, text: str, tenant: str = "t1", start: float = 0, end: float = 1e9) -> dict[bytes, int]:
    return s.query(tenant, parse(text), start, end).to_dict()


def test_head_basics() -> None:
    h = Head(bucket_seconds=10)
    assert h.bucket_of(19.9) == 10
    assert h.bucket_of(-0.5) == -10
    assert h.ingest("t", CPU, 5, {b"a;b": 1}, "p1")
    assert not h.ingest("t", CPU, 5, {b"a;b": 1}, "p1")
    assert h.query("t", parse("app.cpu"), 0, 10).to_dict() == {b"a;b": 1}
    assert h.apps("t") == ["app.cpu"]


def test_ingest_query(tmp_path: Path) -> None:
    s = _open(tmp_path)
    assert s.ingest("t1", CPU, 100.0, {b"main;work": 3, b"main": 1})
    assert s.ingest("t1", CPU_DEV, 101.0, {b"main;work": 5})
    assert s.ingest("t1", MEM, 102.0, {b"main;alloc": 7})
    assert s.ingest("t1", CPU, 200.0, {"main;later": 2})
    assert _q(s, "app.cpu") == {b"main;work": 8, b"main": 1, b"main;later": 2}
    assert _q(s, 'app.cpu{env="prod"}') == {b"main;work": 3, b"main": 1, b"main;later": 2}
    assert _q(s, 'app.cpu{env=~"d.*"}') == {b"main;work": 5}
    assert _q(s, "app.alloc") == {b"main;alloc": 7}
    assert _q(s, "other") == {}
    # buckets overlapping [start, end)
    assert _q(s, 'app.cpu{env="prod"}', start=105, end=110) == {b"main;work": 3, b"main": 1}
    assert _q(s, 'app.cpu{env="prod"}', start=110, end=200) == {}
    assert _q(s, 'app.cpu{env="prod"}', start=110, end=201) == {b"main;later": 2}
    assert s.apps("t1") == ["app.alloc", "app.cpu"]
    assert s.label_names("t1") == ["__name__", "env"]
    assert s.label_values("t1", "env") == ["dev", "prod"]
    with pytest.raises(ValueError):
        s.ingest("t1", CPU, 1, {b"a": -1})
    s.close()


def test_dedup_by_profile_id(tmp_path: Path) -> None:
    s = _open(tmp_path)
    assert s.ingest("t1", CPU, 1, {b"a": 1}, "p1")
    assert not s.ingest("t1", CPU, 1, {b"a": 1}, "p1")
    assert s.ingest("t2", CPU, 1, {b"a": 1}, "p1")  # per tenant
    assert s.ingest("t1", CPU, 1, {b"a": 1})  # no id: never deduplicated
    assert s.ingest("t1", CPU, 1, {b"a": 1})
    assert _q(s, "app.cpu") == {b"a": 3}
    s.close()


def test_dedup_set_is_bounded(tmp_path: Path) -> None:
    s = _open(tmp_path, max_profile_ids=2)
    for pid in ("p1", "p2", "p3"):
        assert s.ingest("t1", CPU, 1, {b"a": 1}, pid)
    assert not s.ingest("t1", CPU, 1, {b"a": 1}, "p3")
    assert s.ingest("t1", CPU, 1, {b"a": 1}, "p1")  # evicted
    s.close()


def test_tenant_isolation(tmp_path: Path) -> None:
    s = _open(tmp_path)
    s.ingest("t1", CPU, 1, {b"secret1": 1})
    s.ingest("t2", {"__name__": "other.cpu", "team": "x"}, 1, {b"secret2": 1})
    assert _q(s, "app.cpu", tenant="t1") == {b"secret1": 1}
    assert _q(s, "app.cpu", tenant="t2") == {}
    assert s.apps("t2") == ["other.cpu"]
    assert s.label_names("t1") == ["__name__", "env"]
    assert s.label_values("t1", "team") == []
    s.flush(1000, force=True)
    assert _q(s, "app.cpu", tenant="t2") == {}
    assert _q(s, "other.cpu", tenant="t1") == {}
    assert s.apps("t1") == ["app.cpu"]
    s.close()


def test_flush_to_blocks(tmp_path: Path) -> None:
    s = _open(tmp_path, flush_interval=60)
    s.ingest("t1", CPU, 100, {b"old": 1})
    s.ingest("t1", CPU, 195, {b"new": 1})
    assert s.flush(150) is None  # cutoff 90: nothing has ended yet
    # cutoff 140: only the bucket [100, 110) is due
    bid = s.flush(200)
    assert bid is not None
    assert list(s.blocks) == [bid]
    assert (tmp_path / "blocks" / f"{bid:016d}.block").exists()
    assert s.head.bucket_count() == 1
    assert _q(s, "app.cpu") == {b"old": 1, b"new": 1}
    assert _q(s, "app.cpu", start=100, end=110) == {b"old": 1}
    # WAL segments before the block are gone
    assert min(s.wal.segments()) >= bid
    s.ingest("t1", CPU, 105, {b"old": 1})  # late sample for a flushed bucket
    assert _q(s, "app.cpu", start=100, end=110) == {b"old": 2}
    s.close()
    s2 = _open(tmp_path)
    assert _q(s2, "app.cpu") == {b"old": 2, b"new": 1}
    assert s2.apps("t1") == ["app.cpu"]
    s2.close()


def test_reopen_after_crash_exactly_once(tmp_path: Path) -> None:
    expected: dict[bytes, int] = {}
    s = _open(tmp_path, flush_interval=10)
    for i in range(200):
        key = b"main;f%d" % (i % 7)
        s.ingest("t1", CPU, float(i), {key: i + 1}, f"id{i}")
        expected[key] = expected.get(key, 0) + i + 1
        if i % 50 == 49:
            s.flush(float(i))
    # "kill -9": no close(), no final flush
    s2 = _open(tmp_path)
    assert _q(s2, "app.cpu") == expected
    # retries of acknowledged profiles are still recognised after the restart
    assert not s2.ingest("t1", CPU, 0.0, {b"x": 1}, "id0")
    assert not s2.ingest("t1", CPU, 199.0, {b"x": 1}, "id199")
    s3 = _open(tmp_path)  # crash again
    assert _q(s3, "app.cpu") == expected


def test_crash_with_real_fsync(tmp_path: Path) -> None:
    s = Storage(tmp_path).open()
    s.ingest("t1", CPU, 1, {b"a": 1}, "p")
    s2 = Storage(tmp_path).open()
    assert _q(s2, "app.cpu") == {b"a": 1}
    assert s2.replayed_records == 1


def test_crash_between_block_and_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = _open(tmp_path)
    s.ingest("t1", CPU, 1, {b"a": 1})
    s.ingest("t1", CPU, 500, {b"b": 1})
    import pyro_core.server.storage as mod

    real = mod._write_atomic

    def fail_on_checkpoint(path: Path, data: bytes, fsync: bool) -> None:
        if path.name.startswith("checkpoint"):
            raise OSError("disk full")
        real(path, data, fsync)

    monkeypatch.setattr(mod, "_write_atomic", fail_on_checkpoint)
    with pytest.raises(OSError):
        s.flush(100)
    assert _q(s, "app.cpu") == {b"a": 1, b"b": 1}
    monkeypatch.setattr(mod, "_write_atomic", real)
    s2 = _open(tmp_path)
    assert _q(s2, "app.cpu") == {b"a": 1, b"b": 1}
    assert s2.flush(100) is not None
    s3 = _open(tmp_path)
    assert _q(s3, "app.cpu") == {b"a": 1, b"b": 1}


def test_uncommitted_block_is_discarded(tmp_path: Path) -> None:
    s = _open(tmp_path)
    s.ingest("t1", CPU, 1, {b"a": 1})
    bid = s.flush(1000)
    assert bid is not None
    s.ingest("t1", CPU, 2000, {b"b": 1})
    # simulate a crash after a block was renamed into place but before its checkpoint
    blk = tmp_path / "blocks" / f"{bid:016d}.block"
    stray = tmp_path / "blocks" / f"{bid + 5:016d}.block"
    stray.write_bytes(blk.read_bytes())
    s2 = _open(tmp_path)
    assert not stray.exists()
    assert _q(s2, "app.cpu") == {b"a": 1, b"b": 1}


def test_retention(tmp_path: Path) -> None:
    s = _open(tmp_path, retention=3600)
    s.ingest("t1", CPU, 100, {b"a": 1})
    b1 = s.flush(1000)
    s.ingest("t1", CPU, 5000, {b"b": 1})
    b2 = s.flush(6000)
    assert b1 is not None and b2 is not None
    assert s.enforce_retention(110 + 3600 - 1) == []
    assert s.enforce_retention(110 + 3600) == [b1]
    assert not (tmp_path / "blocks" / f"{b1:016d}.block").exists()
    assert _q(s, "app.cpu") == {b"b": 1}
    s.close()
    s2 = _open(tmp_path, retention=3600)
    assert list(s2.blocks) == [b2]
    assert _q(s2, "app.cpu") == {b"b": 1}
    s2.tick(10_000_000)
    assert s2.blocks == {}
    assert _q(s2, "app.cpu") == {}


def test_corrupted_block_is_skipped(tmp_path: Path) -> None:
    s = _open(tmp_path)
    s.ingest("t1", CPU, 100, {b"a": 1})
    b1 = s.flush(1000)
    s.ingest("t1", CPU, 2000, {b"b": 1})
    b2 = s.flush(3000)
    s.ingest("t1", CPU, 5000, {b"c": 1})
    s.close()
    assert b1 is not None and b2 is not None
    p = tmp_path / "blocks" / f"{b1:016d}.block"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    s2 = _open(tmp_path)
    assert [c[0] for c in s2.corrupt_blocks] == [p]
    assert "checksum" in s2.corrupt_blocks[0][1]
    assert list(s2.blocks) == [b2]
    assert _q(s2, "app.cpu") == {b"b": 1, b"c": 1}
    # truncated and garbage files too
    p.write_bytes(b"PYBK")
    (tmp_path / "blocks" / f"{b1 - 1:016d}.block").write_bytes(os.urandom(100))
    s3 = _open(tmp_path)
    assert len(s3.corrupt_blocks) == 2
    assert _q(s3, "app.cpu") == {b"b": 1, b"c": 1}


def test_corrupted_checkpoint_raises_clearly(tmp_path: Path) -> None:
    s = _open(tmp_path)
    s.ingest("t1", CPU, 100, {b"a": 1})
    s.ingest("t1", CPU, 5000, {b"b": 1})
    bid = s.flush(1000)
    s.close()
    ck = tmp_path / f"checkpoint.{bid:016d}"
    ck.write_bytes(ck.read_bytes()[:-1] + b"\0")
    with pytest.raises(StorageCorruptionError, match="checkpoint"):
        _open(tmp_path)


def test_wal_is_durable_before_head(tmp_path: Path) -> None:
    s = _open(tmp_path)
    s.ingest("t1", CPU, 1, {b"a": 1}, "p1")
    with WAL(tmp_path / "wal") as w:
        assert len(list(w.replay())) == 1
    s.close()


def test_query_results_are_copies(tmp_path: Path) -> None:
    s = _open(tmp_path)
    s.ingest("t1", CPU, 1, {b"a": 1})
    t = s.query("t1", parse("app.cpu"), 0, 10)
    t.merge(StackTree({b"a": 5}))
    assert _q(s, "app.cpu") == {b"a": 1}
    s.close()


def test_not_open(tmp_path: Path) -> None:
    s = Storage(tmp_path)
    with pytest.raises(RuntimeError):
        s.ingest("t1", CPU, 1, {b"a": 1})


def test_version_1_blocks_and_checkpoints_are_still_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Version 1 stored serialized trees; version 2 stores flat [stack, value] pairs. Both load.
    import struct
    import zlib

    import msgpack

    import pyro_core.server.storage as storage

    with monkeypatch.context() as m:
        m.setattr(storage, "_BLOCK_VERSION", 1)
        m.setattr(storage, "pack_stacks", lambda stacks: StackTree(stacks).to_bytes())
        s = _open(tmp_path)
        s.ingest("t1", CPU, 100.0, {b"main;old": 4})
        s.flush(1e9, force=True)
        s.close()
    # a version-1 checkpoint holding one head bucket as tree bytes
    ckpts = sorted(tmp_path.glob("checkpoint.*"))
    body = msgpack.packb(
        {"ids": {}, "series": [["t1", CPU, 300, StackTree({b"main;head": 2}).to_bytes()]]}, use_bin_type=True
    )
    data = b"PYCK" + bytes([1]) + body
    ckpts[-1].write_bytes(data + struct.pack("<I", zlib.crc32(data)))
    s = _open(tmp_path)
    assert not s.corrupt_blocks
    assert _q(s, "app.cpu") == {b"main;old": 4, b"main;head": 2}
    assert s.query_series("t1", parse("app.cpu"), 0, 1e9)[(tuple(sorted(CPU.items())), 100)][1] == {b"main;old": 4}
    s.ingest("t1", CPU, 100.0, {b"main;old": 1})  # the same bucket again, in the head
    assert _q(s, "app.cpu")[b"main;old"] == 5
    s.flush(1e9, force=True)  # a version-2 block beside the version-1 one
    s.close()
    s = _open(tmp_path)
    assert _q(s, "app.cpu") == {b"main;old": 5, b"main;head": 2}
    s.close()


def test_ingest_batch_validates_everything_before_writing_and_reports_its_position(tmp_path: Path) -> None:
    s = Storage(tmp_path, fsync=True).open()
    with pytest.raises(ValueError):
        s.ingest_batch("t1", [(CPU, 100.0, {b"a": 1}, "p1"), (CPU, 100.0, {b"b": -1}, "p2")])
    assert _q(s, "app.cpu") == {}  # nothing of the batch was stored
    stored, position = s.ingest_batch("t1", [(CPU, 100.0, {b"a": 1}, "p1"), (CPU, 100.0, {b"a": 2}, "p1")])
    assert stored == 1  # the repeated id counts once
    assert not s.is_synced(position)
    s.sync_to(position)
    assert s.is_synced(position)
    s.close()
    s = Storage(tmp_path, fsync=True).open()
    assert _q(s, "app.cpu") == {b"a": 1}
    s.close()


def test_a_non_blocking_batch_gives_way_to_a_flush_in_progress(tmp_path: Path) -> None:
    import threading

    s = _open(tmp_path)
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with s._lock:
            holding.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    holding.wait(10)
    assert s.ingest_batch("t1", [(CPU, 100.0, {b"a": 1}, None)], blocking=False) is None
    release.set()
    t.join()
    assert s.ingest_batch("t1", [(CPU, 100.0, {b"a": 1}, None)], blocking=False) is not None
    s.close()
