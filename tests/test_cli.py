# The pyro-core command line: the demo runs on its embedded default, prints JSON on request, and
# bad flags fail with a clear message and a non-zero exit instead of a traceback.
from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import pytest

from pyro_core.cli import main


def test_demo_prints_ring_shards_and_overlap(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "ingester-0" in out and "tenant shards" in out and "230,300 possible shards" in out
    assert "token 3659401939" in out  # Pyroscope's TokenFor vector


def test_demo_json_is_machine_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json", "--instances", "9", "--shard-size", "0"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["instances"]) == 9
    assert all(len(s) == 9 for s in data["shards"].values())  # size 0 = every instance
    assert sum(data["overlap"]["probabilities"]) == pytest.approx(1.0)


@pytest.mark.parametrize("flags", [["--instances", "0"], ["--tokens", "x"], ["--shard-size", "-1"], ["--bogus"]])
def test_demo_rejects_bad_flags(flags: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pyro_core", "demo", *flags], capture_output=True, text=True, cwd=tempfile.gettempdir()
    )
    assert proc.returncode == 2
    assert "error" in proc.stderr and "Traceback" not in proc.stderr
