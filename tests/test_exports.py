# The public API: everything in __all__ exists, is importable from pyro_core, and nothing public
# is missing from __all__ (trio's test_exports idea).
from __future__ import annotations

from types import ModuleType

import pyro_core


def test_every_name_in_all_is_exported() -> None:
    for name in pyro_core.__all__:
        assert hasattr(pyro_core, name), name


def test_public_names_are_all_listed() -> None:
    public = {
        n
        for n in dir(pyro_core)
        if not n.startswith("_") and n != "annotations" and not isinstance(getattr(pyro_core, n), ModuleType)
    }
    assert public <= set(pyro_core.__all__) | {"__version__"}, public - set(pyro_core.__all__)


def test_issue_named_api_is_public() -> None:
    for name in [
        "InstanceState",
        "InstanceDesc",
        "RingDesc",
        "WRITE",
        "WRITE_NO_EXTEND",
        "READ",
        "REPORTING",
        "generate_tokens",
        "Ring",
        "ReplicationSet",
        "token_for",
        "labels_string",
        "shuffle_shard_seed",
        "GoRand",
        "overlap_probabilities",
    ]:
        assert name in pyro_core.__all__, name


def test_default_implementation_is_compiled_when_built() -> None:
    assert pyro_core.compiled_available()
    assert pyro_core.IMPLEMENTATION in {"compiled", "pure"}
