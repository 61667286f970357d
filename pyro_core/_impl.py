# Picks the kernel implementation: the compiled Cython modules, or their pure-Python twins.
# Owns: the PYRO_CORE_PURE switch and the one place that imports kernels by implementation name.
# ``kernels()`` is the default; ``kernels("pure")`` / ``kernels("compiled")`` load a given one so
# tests can run both in one process and compare them.
from __future__ import annotations

import importlib
import os
import warnings
from functools import cache
from types import ModuleType, SimpleNamespace

KERNEL_MODULES = ("_ring", "_gorand", "_hashing", "_merge", "_lzw")
IMPLEMENTATIONS = ("compiled", "pure")


def _want_pure() -> bool:
    return os.environ.get("PYRO_CORE_PURE", "").strip().lower() not in ("", "0", "false", "no")


def _load_module(impl: str, name: str) -> ModuleType:
    if impl == "compiled":
        return importlib.import_module(f"pyro_core.{name}")
    if impl == "pure":
        return importlib.import_module(f"pyro_core._pure.{name.lstrip('_')}")
    raise ValueError(f"unknown implementation {impl!r}; expected one of {IMPLEMENTATIONS}")


@cache
def kernels(impl: str | None = None) -> SimpleNamespace:
    """The kernel modules of one implementation, as a namespace ``ring``, ``gorand``, ``hashing``, ``merge``.

    With no argument: the compiled kernels, or the pure twins when PYRO_CORE_PURE is set or when the
    extensions are not built (a source checkout used in place).
    """
    if impl is None:
        if _want_pure():
            impl = "pure"
        else:
            try:
                return kernels("compiled")
            except ImportError as exc:
                # A source checkout used in place without a build: say so, then run on the twins.
                warnings.warn(
                    f"pyro_core's compiled kernels are not available ({exc}); using the pure-Python "
                    "twins. Build them with `pip install .` (or set PYRO_CORE_PURE=1 to silence this).",
                    RuntimeWarning,
                    stacklevel=2,
                )
                impl = "pure"
    mods = {name.lstrip("_"): _load_module(impl, name) for name in KERNEL_MODULES}
    return SimpleNamespace(name=impl, **mods)


def compiled_available() -> bool:
    try:
        kernels("compiled")
    except ImportError:
        return False
    return True
