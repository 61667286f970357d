"""Test helper: run real Go memberlist nodes (tests/interop/mlnode, hashicorp/memberlist 0.2.2 from Debian).

``build_mlnode(tmp_path_factory)`` builds the program once per test session; ``GoNode`` runs one node as a
subprocess and follows its JSON lines (see tests/interop/mlnode/README.md for the line format)::

    binary = build_mlnode(tmp_path_factory)
    with GoNode(binary, "go-a") as a, GoNode(binary, "go-b", join=[a.addr]) as b:
        assert b.wait_for(lambda n: n.members() == {"go-a": "alive", "go-b": "alive"}, timeout=10)
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

MLNODE_DIR = Path(__file__).resolve().parents[1] / "interop" / "mlnode"
GO_APT_PACKAGES = "golang-go golang-github-hashicorp-memberlist-dev"
GO_PATH = "/usr/share/gocode"
MEMBERLIST_SRC = Path(GO_PATH) / "src" / "github.com" / "hashicorp" / "memberlist"
LIVE_STATES = frozenset({"alive", "suspect"})

_built: dict[int, Path] = {}


def build_mlnode(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build tests/interop/mlnode (GOPATH mode, no network) once per session; return the binary's path.

    A missing Go toolchain or memberlist package fails the test (it is not skipped): CI installs them.
    """
    cached = _built.get(id(tmp_path_factory))
    if cached is not None and cached.exists():
        return cached
    install = f"apt-get install -y --no-install-recommends {GO_APT_PACKAGES}"
    go = shutil.which("go")
    if go is None:
        pytest.fail(f"the Go toolchain is missing (needed for the Go memberlist node): {install}")
    if not (MEMBERLIST_SRC / "memberlist.go").exists():
        pytest.fail(f"hashicorp/memberlist sources are missing under {MEMBERLIST_SRC}: {install}")
    from gobuild import build_go_program  # tests/ is on sys.path under pytest (bench imports free_port only)

    binary = build_go_program(tmp_path_factory, "mlnode", GO_APT_PACKAGES, "main.go")
    _built[id(tmp_path_factory)] = binary
    return binary


_handed_out: set[int] = set()
_port_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free for both TCP and UDP on ``host`` (never the same one twice in a process)."""
    with _port_lock:
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                tcp.bind((host, 0))
                port = int(tcp.getsockname()[1])
                if port in _handed_out:
                    continue
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    try:
                        udp.bind((host, port))
                    except OSError:
                        continue
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no port free for both TCP and UDP on {host}")


class GoNode:
    """One Go memberlist node (tests/interop/mlnode) running as a subprocess.

    The constructor starts the process and, with ``wait_ready``, waits for its ``ready`` line (raising
    ``RuntimeError`` with its output if it exits or does not get ready). ``lines`` holds every parsed
    stdout line (non-JSON output as ``{"event": "raw", "text": ...}``); ``stderr_lines`` holds
    memberlist's log. ``port=None`` picks a free port.
    """

    def __init__(
        self,
        binary: Path | str,
        name: str,
        port: int | None = None,
        *,
        bind: str = "127.0.0.1",
        join: Iterable[str] = (),
        seconds: float = 0,
        compression: bool = True,
        key: bytes | str | None = None,
        probe_interval_ms: int | None = None,
        gossip_interval_ms: int | None = None,
        push_pull_interval_ms: int | None = None,
        extra_args: Iterable[str] = (),
        wait_ready: bool = True,
        ready_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.bind = bind
        self.port = free_port(bind) if port is None else port
        self.lines: list[dict[str, Any]] = []
        self.stderr_lines: list[str] = []
        self._cond = threading.Condition(threading.RLock())
        self._eof = False
        args = [str(binary), "-name", name, "-bind", bind, "-port", str(self.port),
                "-join", ",".join(join), "-seconds", str(seconds),
                f"-compression={'true' if compression else 'false'}"]  # fmt: skip
        if key is not None:
            args += ["-key", key.hex() if isinstance(key, bytes) else key]
        for flag, value in (("-probe-interval", probe_interval_ms), ("-gossip-interval", gossip_interval_ms),
                            ("-push-pull-interval", push_pull_interval_ms)):  # fmt: skip
            if value is not None:
                args += [flag, str(value)]
        args += list(extra_args)
        self.args = args
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)  # fmt: skip
        self._threads = [threading.Thread(target=self._read_stdout, daemon=True, name=f"mlnode-{name}-out"),
                         threading.Thread(target=self._read_stderr, daemon=True, name=f"mlnode-{name}-err")]  # fmt: skip
        for thread in self._threads:
            thread.start()
        if wait_ready and not self.wait_for(lambda n: bool(n.events("ready")), ready_timeout):
            self.stop()
            raise RuntimeError(
                f"Go node {name} did not get ready (exit {self.proc.returncode}):\n{self.output()}"
            )

    # -- reader threads ------------------------------------------------------------------------------------
    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                line = {"event": "raw", "text": raw.rstrip("\n")}
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._cond:
                self.stderr_lines.append(raw.rstrip("\n"))

    # -- views ---------------------------------------------------------------------------------------------
    @property
    def addr(self) -> str:
        """``host:port`` to pass to ``join``."""
        return f"{self.bind}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def snapshot(self) -> dict[str, Any]:
        """The latest line that carries a member list (``{}`` before the first)."""
        with self._cond:
            for line in reversed(self.lines):
                if "members" in line:
                    return line
        return {}

    def members(self) -> dict[str, str]:
        """Latest view: member name -> "alive" | "suspect" | "dead" | "left" (this node included)."""
        return {m["name"]: m["state"] for m in self.snapshot().get("members", [])}

    def member_addrs(self) -> dict[str, str]:
        """Latest view: member name -> ``ip:port``."""
        return {m["name"]: m["addr"] for m in self.snapshot().get("members", [])}

    def live_members(self) -> set[str]:
        """Names memberlist's Members() would return now (alive or suspect)."""
        return {name for name, state in self.members().items() if state in LIVE_STATES}

    def num_members(self) -> int:
        return int(self.snapshot().get("num_members", 0))

    def events(self, *kinds: str) -> list[dict[str, Any]]:
        """Lines whose ``event`` is one of ``kinds`` (all lines if none given)."""
        with self._cond:
            return [line for line in self.lines if not kinds or line.get("event") in kinds]

    def errors(self) -> list[str]:
        return [line.get("error", "") for line in self.events("error")]

    def output(self) -> str:
        """stdout and stderr so far, for assertion messages."""
        with self._cond:
            out = [json.dumps(line) for line in self.lines[-20:]]
            return "\n".join(
                ["-- stdout (last 20) --", *out, "-- stderr (last 40) --", *self.stderr_lines[-40:]]
            )

    # -- waiting -------------------------------------------------------------------------------------------
    def wait_for(self, predicate: Callable[[GoNode], bool], timeout: float) -> bool:
        """Wait until ``predicate(self)`` holds (checked on every new line); False on timeout or exit."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if predicate(self):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    return False
                self._cond.wait(remaining)

    def wait_members(self, expected: dict[str, str], timeout: float) -> bool:
        """Wait until every name in ``expected`` has that state (a state of None means "absent")."""
        return self.wait_for(lambda n: all(n.members().get(k) == v for k, v in expected.items()), timeout)

    # -- stopping ------------------------------------------------------------------------------------------
    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (the node leaves gracefully), wait, SIGKILL on timeout; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._join_readers()
        return self.proc.returncode

    def kill(self) -> int:
        """SIGKILL: the node vanishes without leaving."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._join_readers()
        return self.proc.returncode

    def _join_readers(self) -> None:
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> GoNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"GoNode({self.name!r}, {self.addr}, pid={self.proc.pid}, returncode={self.proc.poll()})"
