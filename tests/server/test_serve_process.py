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
            "-memberlist.bind-addr=127.0.0.1",
            "-memberlist.bind-port=0",  # any free port: the test never joins it
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


def start_clustered(
    name: str, http_port: int, ml_port: int, data: Path, join: int | None = None
) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "pyro_core",
        "server",
        f"-server.http-listen-port={http_port}",
        "-server.http-listen-address=127.0.0.1",
        f"-pyroscopedb.data-path={data}",
        "-log.level=warn",
        f"-memberlist.nodename={name}",
        "-memberlist.bind-addr=127.0.0.1",
        f"-memberlist.bind-port={ml_port}",
        "-memberlist.pullpush-interval=1s",
        "-memberlist.leave-timeout=5s",
        "-ingester.heartbeat-period=1s",
        "-ingester.num-tokens=32",
    ]
    if join is not None:
        argv.append(f"-memberlist.join=127.0.0.1:{join}")
    return subprocess.Popen(
        argv,
        cwd=tempfile.gettempdir(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )


def get_ring(http_port: int) -> list[dict[str, object]]:
    req = urllib.request.Request(f"http://127.0.0.1:{http_port}/ring", headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
        instances: list[dict[str, object]] = json.loads(resp.read())["instances"]
        return instances


def test_two_server_processes_share_the_ring(tmp_path: Path) -> None:
    http = [free_port(), free_port()]
    ml = [free_port(), free_port()]
    procs = [start_clustered("srv-a", http[0], ml[0], tmp_path / "a")]
    try:
        procs.append(start_clustered("srv-b", http[1], ml[1], tmp_path / "b", join=ml[0]))
        want = {"srv-a": f"127.0.0.1:{http[0]}", "srv-b": f"127.0.0.1:{http[1]}"}
        seen: dict[int, list[dict[str, object]]] = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(seen) < 2:
            for p in procs:
                if p.poll() is not None:
                    out = p.stdout.read() if p.stdout else b""
                    raise AssertionError(f"server exited with {p.returncode}: {out.decode(errors='replace')}")
            for port in http:
                try:
                    ring = get_ring(port)
                except (urllib.error.URLError, ConnectionError, OSError):
                    continue
                if {str(i["id"]): i["addr"] for i in ring if i["state"] == "ACTIVE"} == want:
                    seen[port] = ring
            time.sleep(0.2)
        assert len(seen) == 2, f"rings never converged: {seen}"
        for port in http:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as resp:
                assert resp.status == 200
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            rc = p.wait(timeout=30)
            out = p.stdout.read() if p.stdout else b""
            assert rc == 0, out.decode(errors="replace")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
