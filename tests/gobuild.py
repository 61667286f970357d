# Test helper: build one of our small Go programs under tests/interop/ at test time, with Debian's
# Go toolchain and packages (GOPATH mode, no module proxy, no network). A missing toolchain or
# package fails the test with the apt packages to install: CI installs them, nothing is skipped.
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

INTEROP_DIR = Path(__file__).resolve().parent / "interop"
GO_PATH = "/usr/share/gocode"


def build_go_program(
    tmp_path_factory: pytest.TempPathFactory, program: str, apt_packages: str, target: str = "."
) -> Path:
    """Build tests/interop/<program> and return the binary's path."""
    go = shutil.which("go")
    if go is None:
        pytest.fail(f"the Go toolchain is missing: apt-get install {apt_packages}")
    work = tmp_path_factory.mktemp(f"go-{program}")
    binary = work / program
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": GO_PATH,
        "GOPROXY": "off",
        "GOFLAGS": "",
        "GOCACHE": str(work / "cache"),
    }
    result = subprocess.run(
        [go, "build", "-o", str(binary), target],
        cwd=INTEROP_DIR / program,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        pytest.fail(
            f"building tests/interop/{program} failed (needs apt packages {apt_packages}):\n{result.stderr}"
        )
    return binary
