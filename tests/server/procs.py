# Real `pyro-core server` processes for tests: start, wait until ready, stop, kill -9, query.
# Owns: Server (one process; its ports and data directory survive restarts; an optional YAML config
# written next to its data), start_all, the `servers` fixture body (stop_all), http, eventually and
# collapsed. Must not know: what a test proves.
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.net.golang import free_port

T = TypeVar("T")


# -- processes ---------------------------------------------------------------------------------------


@dataclass
class Server:
    """One `pyro-core server` process; ports and data directory stay the same across restarts."""

    name: str
    data: Path
    extra: list[str] = field(default_factory=list)
    config: dict[str, Any] | None = None  # written to <data>.yaml and passed as -config.file
    http: int = field(default_factory=free_port)
    ml: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)  # credentials for its API
    tokens: int = 8
    join: int | None = None  # memberlist port of a member to join
    env: dict[str, str] = field(default_factory=dict)  # added to the test's environment

    def argv(self) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "pyro_core",
            "server",
            f"-server.http-listen-port={self.http}",
            "-server.http-listen-address=127.0.0.1",
            f"-pyroscopedb.data-path={self.data}",
            "-log.level=warn",
            f"-memberlist.nodename={self.name}",
            "-memberlist.bind-addr=127.0.0.1",
            f"-memberlist.bind-port={self.ml}",
            "-memberlist.leave-timeout=5s",
            "-ingester.heartbeat-period=1s",
            f"-ingester.num-tokens={self.tokens}",
            *self.extra,
        ]
        if self.join is not None:
            argv.append(f"-memberlist.join=127.0.0.1:{self.join}")
        if self.config is not None:
            path = self.data.with_suffix(".yaml")
            path.write_text(yaml.safe_dump(self.config))
            argv.append(f"-config.file={path}")
        return argv

    def start(self) -> Server:
        self.proc = subprocess.Popen(
            self.argv(),
            cwd=tempfile.gettempdir(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, **self.env},
        )
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http}{path}"

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            err = self.proc.stderr.read() if self.proc.stderr else b""
            raise AssertionError(
                f"{self.name} exited with {self.proc.returncode}: {err.decode(errors='replace')}"
            )

    def wait_ready(self, timeout: float = 60.0) -> Server:
        def ready() -> bool:
            self.check_alive()
            try:
                return http("GET", self.url("/ready"), timeout=2)[0] == 200
            except OSError:
                return False

        eventually(ready, timeout, f"{self.name} never became ready")
        return self

    def kill(self) -> None:
        """SIGKILL: no drain, no flush, no commit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def signal(self, signum: int) -> None:
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(signum)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)  # in case a test left it frozen
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_all(*servers: Server) -> None:
    """Start the processes together (they import in parallel), then wait until each is ready."""
    for s in servers:
        s.start()
    for s in servers:
        s.wait_ready()


def stop_all(started: list[Server]) -> None:
    """SIGTERM every process first (they drain and leave in parallel), then wait for each."""
    for s in started:  # SIGTERM to every process first: they drain and leave in parallel
        if s.proc is not None and s.proc.poll() is None:
            s.proc.send_signal(signal.SIGCONT)  # in case a test left it frozen
            s.proc.send_signal(signal.SIGTERM)
    for s in started:
        s.stop()
        if s.proc is not None and s.proc.stderr is not None:
            s.proc.stderr.close()


# -- HTTP --------------------------------------------------------------------------------------------


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, bytes(exc.read())


def eventually(check: Callable[[], T], timeout: float, message: str | Callable[[], str]) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(0.1)


def collapsed(server: Server, query: str, tenant: str | None = None) -> dict[str, int]:
    """The server's merged stacks for ``query`` over the last hour (``/render format=collapsed``)."""
    headers = dict(server.headers)
    if tenant is not None:
        headers["X-Scope-OrgID"] = tenant
    q = urllib.parse.urlencode(
        {"query": query, "from": "now-1h", "until": "now+1h", "format": "collapsed", "maxNodes": "0"}
    )
    status, body = http("GET", server.url(f"/render?{q}"), headers=headers)
    assert status == 200, (server.name, status, body)
    out: dict[str, int] = {}
    for line in body.decode().splitlines():
        stack, _, value = line.rpartition(" ")
        out[stack] = int(value)
    return out
