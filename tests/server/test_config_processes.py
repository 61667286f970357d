# `pyro-core server` configured by a YAML file and a runtime-config file, as real processes: flags
# override the file, per-tenant overrides change while the server runs, auth is enforced.
from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.net.golang import free_port
from tests.server.procs import http

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def start(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pyro_core", "server", *argv],
        cwd=tempfile.gettempdir(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )


def wait_ready(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else b""
            raise AssertionError(f"server exited with {proc.returncode}: {out.decode(errors='replace')}")
        try:
            if http("GET", f"http://127.0.0.1:{port}/ready")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("server never became ready")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_yaml_config_runtime_overrides_reloaded_while_running_and_auth(tmp_path: Path) -> None:
    port, ml, unused = free_port(), free_port(), free_port()
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("overrides: {}\n")
    config = tmp_path / "pyro.yaml"
    config.write_text(
        f"""
server:
  http_listen_port: {unused}
  http_listen_address: 127.0.0.1
multitenancy_enabled: true
memberlist:
  bind_addr: [127.0.0.1]
  bind_port: {ml}
pyroscopedb:
  data_path: {tmp_path / "data"}
runtime_config:
  file: {overrides}
  period: 200ms
auth:
  basic_username: ops
"""
    )
    # The flag overrides the file's port; the password comes from a flag only.
    proc = start([f"-config.file={config}", f"-server.http-listen-port={port}", "-auth.basic-password=s3cret"])
    try:
        wait_ready(proc, port)
        auth = "Basic " + base64.b64encode(b"ops:s3cret").decode()
        url = f"http://127.0.0.1:{port}/ingest?name=cfg.cpu"
        body = b"main;f 1\n" * 200  # 1,800 bytes
        assert http("POST", url, body, {"X-Scope-OrgID": "t1"})[0] == 401  # no credentials
        assert http("POST", url, body, {"X-Scope-OrgID": "t1", "Authorization": auth})[0] == 200
        # Tenant t1 gets a 1 KiB/s limit with a 2 KiB burst while the server runs.
        overrides.write_text("overrides:\n  t1:\n    ingestion_rate_mb: 0.0009765625\n    ingestion_burst_size_mb: 0.001953125\n")
        deadline = time.monotonic() + 20
        statuses: list[int] = []
        while time.monotonic() < deadline:
            statuses = [http("POST", url, body, {"X-Scope-OrgID": "t1", "Authorization": auth})[0] for _ in range(3)]
            if 429 in statuses:
                break
            time.sleep(0.3)
        assert 429 in statuses, statuses
        status, out = http("POST", url, body, {"X-Scope-OrgID": "t1", "Authorization": auth})
        assert status == 429 and b"rate limit" in out.lower()
        assert http("POST", url, body, {"X-Scope-OrgID": "t2", "Authorization": auth})[0] == 200  # others unaffected
        # A broken runtime config keeps the last good one (and the server keeps running).
        overrides.write_text("overrides: [not, a, map\n")
        time.sleep(1.0)
        assert http("POST", url, body, {"X-Scope-OrgID": "t1", "Authorization": auth})[0] == 429
        status, metrics = http("GET", f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and b"pyroscope_runtime_config_last_reload_successful 0\n" in metrics
    finally:
        stop(proc)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-server.http-listen-port=notaport"], "http-listen-port"),
        (["-distributor.replication-factor=0"], "replication-factor"),
        (["-no.such-flag=1"], "unrecognized arguments"),
        (["-auth.basic-username=u"], "-auth.basic-username needs -auth.basic-password"),
        (["-runtime-config.file=/nonexistent/overrides.yaml"], "/nonexistent/overrides.yaml"),
    ],
)
def test_bad_flags_fail_at_start_with_a_clear_message(argv: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pyro_core", "server", *argv],
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_taken_http_port_is_a_one_line_error_not_a_traceback(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable, "-m", "pyro_core", "server", f"-server.http-listen-port={port}",
                "-server.http-listen-address=127.0.0.1", f"-memberlist.bind-port={free_port()}",
                "-memberlist.bind-addr=127.0.0.1", f"-pyroscopedb.data-path={tmp_path / 'data'}",
            ],
            cwd=tempfile.gettempdir(), capture_output=True, text=True, timeout=60, env=os.environ.copy(),
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Address already in use" in proc.stderr
    assert "Traceback" not in proc.stderr
