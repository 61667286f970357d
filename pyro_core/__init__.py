# pyro-core's public API, re-exported in one place (tests/test_exports.py keeps __all__ honest).
# Owns: which names are public. Everything else lives in the modules that own it.
"""pyro-core: a cluster core for continuous-profiling backends.

A dskit-exact hash ring with replication, zone awareness and shuffle sharding, a mergeable ring
description (the CRDT that memberlist gossips), and the codecs to exchange rings with Go tools —
Cython kernels with pure-Python twins (``PYRO_CORE_PURE=1`` selects the twins).
"""

from __future__ import annotations

from pyro_core._impl import compiled_available as compiled_available
from pyro_core._impl import kernels as _kernels
from pyro_core.ring.errors import CodecError as CodecError
from pyro_core.ring.errors import EmptyRingError as EmptyRingError
from pyro_core.ring.errors import InvalidRingError as InvalidRingError
from pyro_core.ring.errors import RingError as RingError
from pyro_core.ring.errors import TooManyUnhealthyInstancesError as TooManyUnhealthyInstancesError
from pyro_core.ring.model import READ as READ
from pyro_core.ring.model import REPORTING as REPORTING
from pyro_core.ring.model import WRITE as WRITE
from pyro_core.ring.model import WRITE_NO_EXTEND as WRITE_NO_EXTEND
from pyro_core.ring.model import InstanceDesc as InstanceDesc
from pyro_core.ring.model import InstanceState as InstanceState
from pyro_core.ring.model import RingDesc as RingDesc
from pyro_core.ring.model import make_operation as make_operation
from pyro_core.ring.ring import BatchReplication as BatchReplication
from pyro_core.ring.ring import ring_class as ring_class
from pyro_core.ring.shard import overlap_probabilities as overlap_probabilities
from pyro_core.ring.shard import shard_combinations as shard_combinations
from pyro_core.ring.shard import shuffle_shard_seed as shuffle_shard_seed
from pyro_core.ring.tokens import fast_token_for as fast_token_for
from pyro_core.ring.tokens import generate_tokens as generate_tokens
from pyro_core.ring.tokens import labels_string as labels_string
from pyro_core.ring.tokens import token_for as token_for
from pyro_core.ring.tokens import tokens_for as tokens_for

Ring = ring_class()
"""The hash ring over the default kernels (compiled, or the pure twins with PYRO_CORE_PURE=1)."""

ReplicationSet = _kernels().ring.ReplicationSet
"""The answer of a lookup: ``instances`` in walk order, ``max_errors``, ``max_unavailable_zones``."""

GoRand = _kernels().gorand.GoRand
"""A bit-exact port of Go's ``math/rand`` source (``rand.New(rand.NewSource(seed))``)."""

IMPLEMENTATION: str = _kernels().name
"""Which kernels this process uses: "compiled" or "pure"."""

__version__ = "0.1.0"

__all__ = [
    "IMPLEMENTATION",
    "READ",
    "REPORTING",
    "WRITE",
    "WRITE_NO_EXTEND",
    "BatchReplication",
    "CodecError",
    "EmptyRingError",
    "GoRand",
    "InstanceDesc",
    "InstanceState",
    "InvalidRingError",
    "ReplicationSet",
    "Ring",
    "RingDesc",
    "RingError",
    "TooManyUnhealthyInstancesError",
    "__version__",
    "compiled_available",
    "fast_token_for",
    "generate_tokens",
    "labels_string",
    "make_operation",
    "overlap_probabilities",
    "ring_class",
    "shard_combinations",
    "shuffle_shard_seed",
    "token_for",
    "tokens_for",
]
