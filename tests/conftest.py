# Shared fixtures: every kernel-level test runs against both implementations.
# ``impl`` is the kernel namespace of one implementation (pyro_core._impl.kernels(name)); the
# compiled one must be built (``pip install .``) — a missing build is an error, not a skip.
from __future__ import annotations

import pytest

from pyro_core import _impl


@pytest.fixture(params=_impl.IMPLEMENTATIONS, scope="session")
def impl(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return _impl.kernels(request.param)


@pytest.fixture(scope="session")
def compiled():  # type: ignore[no-untyped-def]
    return _impl.kernels("compiled")


@pytest.fixture(scope="session")
def pure():  # type: ignore[no-untyped-def]
    return _impl.kernels("pure")
