# Shuffle-sharding maths that needs no ring: seeds and the theory of tenant overlap.
# Owns: dskit's ShuffleShardSeed (md5 of the identifier [+ NUL + zone], first 8 bytes big-endian as
# int64), the per-zone shard size, and the exact hypergeometric overlap distribution used for
# capacity planning (the seed document's 50-instance / size-4 table).
from __future__ import annotations

import hashlib
import math

from pyro_core.ring.errors import InvalidRingError


def shuffle_shard_seed(identifier: str, zone: str = "") -> int:
    """dskit's seed for a tenant (``identifier``) and zone: a signed int64."""
    data = identifier.encode()
    if zone:
        data += b"\x00" + zone.encode()
    return int.from_bytes(hashlib.md5(data, usedforsecurity=False).digest()[:8], "big", signed=True)


def shard_size_per_zone(size: int, zones: int) -> int:
    """Instances to pick per zone: ceil(size / zones) (dskit ShuffleShardExpectedInstancesPerZone)."""
    return -(-size // zones)


def overlap_probabilities(n_instances: int, shard_size: int) -> list[float]:
    """P(two random shards of ``shard_size`` out of ``n_instances`` share exactly k instances),
    for k = 0..shard_size (hypergeometric). 50 / 4 → 70.86%, 26.37%, 2.70%, 0.08%, 0.0004%."""
    if n_instances <= 0 or shard_size < 0:
        raise InvalidRingError("n_instances must be positive and shard_size non-negative")
    s = min(shard_size, n_instances)
    total = math.comb(n_instances, s)
    return [math.comb(s, k) * math.comb(n_instances - s, s - k) / total for k in range(s + 1)]


def shard_combinations(n_instances: int, shard_size: int) -> int:
    """How many distinct shards exist: C(n, size) (230,300 for 50 instances, size 4)."""
    return math.comb(n_instances, min(shard_size, n_instances))
