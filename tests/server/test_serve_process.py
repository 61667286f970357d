# `python -m pyro_core server` as a real process: ingest over HTTP, survive kill -9, stop on SIGTERM.
from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.server.procs import Server, collapsed, eventually, http, stop_all

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def test_server_process_ingest_crash_restart_sigterm(tmp_path: Path) -> None:
    server = Server("single", tmp_path / "data")
    data = server.data
    try:
        server.start().wait_ready()
        status, body = http("POST", server.url("/ingest?name=procapp.cpu&spyName=gospy"), b"main;work 7\nmain;idle 3\n")
        assert (status, body) == (200, b"")
        assert collapsed(server, "procapp.cpu") == {"main;idle": 3, "main;work": 7}
        status, body = http("GET", server.url(f"/render?query=procapp.cpu&from=now-1h&until={int(time.time()) + 60}"))
        doc = json.loads(body)
        assert doc["flamebearer"]["numTicks"] == 10
        assert doc["flamebearer"]["names"] == ["total", "main", "idle", "work"]
        server.kill()

        server.start().wait_ready()  # same port and data path: the WAL brings the profile back
        assert collapsed(server, "procapp.cpu") == {"main;idle": 3, "main;work": 7}
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
    finally:
        stop_all([server])
    assert list((data / "blocks").glob("*.block"))  # SIGTERM flushed the head into a block


def get_ring(server: Server) -> list[dict[str, object]]:
    status, body = http("GET", server.url("/ring"), headers={"Accept": "application/json"})
    assert status == 200
    instances: list[dict[str, object]] = json.loads(body)["instances"]
    return instances


def test_two_server_processes_share_the_ring(tmp_path: Path) -> None:
    a = Server("srv-a", tmp_path / "a", ["-memberlist.pullpush-interval=1s"], tokens=32)
    b = Server("srv-b", tmp_path / "b", ["-memberlist.pullpush-interval=1s"], tokens=32)
    try:
        a.start().wait_ready()
        b.join = a.ml
        b.start().wait_ready()
        want = {"srv-a": f"127.0.0.1:{a.http}", "srv-b": f"127.0.0.1:{b.http}"}

        def converged() -> bool:
            for s in (a, b):
                s.check_alive()
            rings = [get_ring(s) for s in (a, b)]
            return all({str(i["id"]): i["addr"] for i in r if i["state"] == "ACTIVE"} == want for r in rings)

        eventually(converged, 20, "rings never converged")
        for s in (a, b):
            assert http("GET", s.url("/ready"))[0] == 200
        for s in (a, b):
            assert s.proc is not None
            s.proc.send_signal(signal.SIGTERM)
        for s in (a, b):
            assert s.proc is not None
            rc = s.proc.wait(timeout=30)
            err = s.proc.stderr.read() if s.proc.stderr else b""
            assert rc == 0, err.decode(errors="replace")
    finally:
        stop_all([a, b])
