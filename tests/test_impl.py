# The implementation switch: PYRO_CORE_PURE=1 makes the whole package use the pure twins, and the
# twins give the same answers end to end (the demo's output is identical under both).
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from pyro_core import _impl


def _run(code: str, pure: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYRO_CORE_PURE"}
    if pure:
        env["PYRO_CORE_PURE"] = "1"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=tempfile.gettempdir()
    ).stdout


def test_env_switch_selects_the_pure_twins() -> None:
    code = "import pyro_core; print(pyro_core.IMPLEMENTATION, type(pyro_core.GoRand(1)).__module__)"
    assert _run(code, pure=True).split() == ["pure", "pyro_core._pure.gorand"]
    assert _run(code, pure=False).split() == ["compiled", "pyro_core._gorand"]


def test_demo_output_is_identical_under_both_implementations() -> None:
    code = "from pyro_core.cli import main; main(['demo', '--json', '--instances', '12', '--shard-size', '4'])"
    compiled = _run(code, pure=False).replace('"compiled"', '"?"')
    pure = _run(code, pure=True).replace('"pure"', '"?"')
    assert compiled == pure


def test_unknown_implementation_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown implementation"):
        _impl.kernels("fortran")
