# Shared fixtures: every kernel-level test runs against both implementations.
# ``impl`` is the kernel namespace of one implementation (pyro_core._impl.kernels(name)); the
# compiled one must be built (``pip install .``) — a missing build is an error, not a skip.
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import pyro_core
from pyro_core import _impl

# Subprocesses (``python -m pyro_core ...``) must import the same pyro_core as this test run, not
# whatever ``pyro_core/`` sits in their working directory (a source checkout without built kernels):
# they run from a neutral directory (tempfile.gettempdir()) with this run's package on PYTHONPATH.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(pyro_core.__file__)))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [_PACKAGE_ROOT, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
)


# Shared test helpers are imported as ``tests.<package>.<module>`` (e.g. tests.server.procs). The
# checkout goes at the END of sys.path, so ``pyro_core`` still comes from the installed package.
_CHECKOUT = str(Path(__file__).resolve().parent.parent)
if _CHECKOUT not in sys.path:
    sys.path.append(_CHECKOUT)


@pytest.fixture(params=_impl.IMPLEMENTATIONS, scope="session")
def impl(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return _impl.kernels(request.param)


@pytest.fixture(scope="session")
def compiled():  # type: ignore[no-untyped-def]
    return _impl.kernels("compiled")


@pytest.fixture(scope="session")
def pure():  # type: ignore[no-untyped-def]
    return _impl.kernels("pure")
