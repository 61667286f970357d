# `python -m pyro_core server` as a real process: ingest over HTTP, survive kill -9, stop on SIGTERM.
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(port: int, data: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pyro_core",
            "server",
            f"-server.http-listen-port={port}",
            "-server.http-listen-address=127.0.0.1",
            f"-pyroscopedb.data-path={data}",
            "-log.level=warn",
        ],
        cwd=tempfile.gettempdir(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else b""
            raise AssertionError(f"server exited with {proc.returncode}: {out.decode(errors='replace')}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as resp:
                if resp.status == 200:
                    return proc
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not become ready")


def render_collapsed(port: int) -> bytes:
    until = int(time.time()) + 3600
    url = f"http://127.0.0.1:{port}/render?query=procapp.cpu&from=now-1h&until={until}&format=collapsed"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        return bytes(resp.read())


def test_server_process_ingest_crash_restart_sigterm(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    proc = start(port, data)
    try:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/ingest?name=procapp.cpu&spyName=gospy",
            data=b"main;work 7\nmain;idle 3\n",
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
            assert resp.read() == b""
        assert render_collapsed(port) == b"main;idle 3\nmain;work 7\n"
        url = f"http://127.0.0.1:{port}/render?query=procapp.cpu&from=now-1h&until={int(time.time()) + 60}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            doc = json.loads(resp.read())
        assert doc["flamebearer"]["numTicks"] == 10
        assert doc["flamebearer"]["names"] == ["total", "main", "idle", "work"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    proc = start(port, data)  # same port and data path: the WAL brings the profile back
    try:
        assert render_collapsed(port) == b"main;idle 3\nmain;work 7\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert list((data / "blocks").glob("*.block"))  # SIGTERM flushed the head into a block
