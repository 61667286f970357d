# Test helper: `pyro-core member` as real OS processes, observed through their logs.
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

EVENT = re.compile(r"member (join|leave|update): (\S+) at (\S+) \((\w+)\)")


class MemberProcess:
    """One `python -m pyro_core member` process; ``view`` is its latest state of every member."""

    def __init__(self, name: str, port: int, join: list[int], extra: list[str] | None = None) -> None:
        self.name = name
        self.port = port
        args = [
            sys.executable, "-m", "pyro_core", "member",
            f"-memberlist.nodename={name}",
            "-memberlist.bind-addr=127.0.0.1",
            f"-memberlist.bind-port={port}",
            "-memberlist.gossip-interval=100ms",
            "-memberlist.pullpush-interval=2s",
            "-memberlist.probe-interval=500ms",
            "-memberlist.probe-timeout=200ms",
            *[f"-memberlist.join=127.0.0.1:{p}" for p in join],
            *(extra or []),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tempfile.gettempdir()
        )
        self.lines: list[str] = []
        self.view: dict[str, str] = {}
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip())
                m = EVENT.search(line)
                if m:
                    self.view[m.group(2)] = m.group(4)

    def states(self) -> dict[str, str]:
        with self._lock:
            return dict(self.view)

    def alive(self) -> set[str]:
        return {n for n, s in self.states().items() if s == "alive"}

    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_for(self, predicate: Callable[[MemberProcess], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            if self.proc.poll() is not None:
                return predicate(self)
            time.sleep(0.05)
        return predicate(self)

    def terminate(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(2)
        return self.proc.returncode

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._reader.join(2)
