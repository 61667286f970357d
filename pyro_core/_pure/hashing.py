# Pure-Python twin of pyro_core._hashing: series tokens.
# Owns: Pyroscope's TokenFor (Go hash/fnv New32 = FNV-1, 32-bit: multiply, then XOR, over the
# tenant bytes followed by the label string, no separator) and pyro-core's faster xxhash token
# (xxh3-64 of tenant, a 0xff separator and the labels; the high 32 bits) for non-Pyroscope uses.
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import xxhash

FNV32_OFFSET = 2166136261
FNV32_PRIME = 16777619
_SEPARATOR = b"\xff"  # never appears in UTF-8, so (tenant, labels) pairs cannot collide by shifting


def fnv1_32(data: bytes, h: int = FNV32_OFFSET) -> int:
    """FNV-1 (not FNV-1a) 32-bit hash of ``data``, continuing from ``h``."""
    for byte in data:
        h = (h * FNV32_PRIME) & 0xFFFFFFFF
        h ^= byte
    return h


def token_for(tenant: str, labels: str) -> int:
    """Pyroscope's series token: FNV-1 32 over tenant bytes then the label string."""
    return fnv1_32(labels.encode(), fnv1_32(tenant.encode()))


def tokens_for(tenant: str, labels: Sequence[str]) -> npt.NDArray[np.uint32]:
    """``token_for`` of one tenant's many label strings, as a uint32 array."""
    h0 = fnv1_32(tenant.encode())
    return np.array([fnv1_32(s.encode(), h0) for s in labels], dtype=np.uint32)


def xxh_token(tenant: str, labels: str) -> int:
    """A fast token (not Pyroscope-compatible): high 32 bits of xxh3-64(tenant 0xff labels)."""
    return xxhash.xxh3_64_intdigest(tenant.encode() + _SEPARATOR + labels.encode()) >> 32


def xxh_tokens(tenant: str, labels: Sequence[str]) -> npt.NDArray[np.uint32]:
    prefix = tenant.encode() + _SEPARATOR
    return np.array([xxhash.xxh3_64_intdigest(prefix + s.encode()) >> 32 for s in labels], dtype=np.uint32)
