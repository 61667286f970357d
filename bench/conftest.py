# Shared benchmark fixtures: seeded rings, lookup keys, label strings and the Python peers.
# Owns: the workloads every bench file may reuse — rings of 50 x 128 tokens (one zone and three
# zones) and 600 x 128, built with generate_tokens + RingDesc.add_instance from fixed seeds; 10,000
# lookup keys (str keys for uhashring, their uint32 hashes for pyro-core); 1e6 uint32 keys; a
# uhashring 2.5 HashRing over the same 50 instance names; the Ring class of each implementation.
# Everything is session-scoped and read-only: benchmarks that mutate a description copy it first.
from __future__ import annotations

from bisect import bisect_right
from typing import Any

import numpy as np
import pytest
import xxhash

from pyro_core import RingDesc, _impl, generate_tokens, labels_string, ring_class

NOW = 1_700_000_000  # unix seconds: every instance's heartbeat and registration time
TOKENS_PER_INSTANCE = 128
N_LOOKUP_KEYS = 10_000
N_BATCH_KEYS = 1_000_000
ZONES = ("zone-a", "zone-b", "zone-c")


def instance_id(i: int) -> str:
    return f"ingester-{i:03d}"


def build_ring_desc(n_instances: int, *, zones: int = 0, seed: int = 1) -> RingDesc:
    """A ring of ``n_instances`` ACTIVE instances x 128 random tokens; zones round-robin when ``zones``."""
    rng = np.random.default_rng(seed)
    desc = RingDesc()
    taken = np.empty(0, dtype=np.uint32)
    for i in range(n_instances):
        tokens = generate_tokens(TOKENS_PER_INSTANCE, taken, rng)
        taken = np.concatenate([taken, tokens])
        desc.add_instance(
            instance_id(i),
            f"10.0.{i // 250}.{i % 250 + 1}:9095",
            zone=ZONES[i % zones] if zones else "",
            tokens=tokens,
            now=NOW,
        )
    return desc


# -- implementations ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def kernels_compiled() -> Any:
    return _impl.kernels("compiled")


@pytest.fixture(scope="session")
def kernels_pure() -> Any:
    return _impl.kernels("pure")


@pytest.fixture(scope="session")
def ring_cls_compiled(kernels_compiled: Any) -> type:
    return ring_class(kernels_compiled)


@pytest.fixture(scope="session")
def ring_cls_pure(kernels_pure: Any) -> type:
    return ring_class(kernels_pure)


# -- ring descriptions -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def ring_desc_50() -> RingDesc:
    """50 instances x 128 tokens, no zones (the issue's reference ring)."""
    return build_ring_desc(50, seed=1)


@pytest.fixture(scope="session")
def ring_desc_50_zones() -> RingDesc:
    """50 instances x 128 tokens over three zones (17 / 17 / 16)."""
    return build_ring_desc(50, zones=3, seed=2)


@pytest.fixture(scope="session")
def ring_desc_600() -> RingDesc:
    """600 instances x 128 tokens, no zones (the merge benchmarks' ring)."""
    return build_ring_desc(600, seed=3)


# -- keys ----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def str_keys() -> list[str]:
    """10,000 string keys, as a uhashring user would pass them."""
    return [f"tenant-{i % 37}/series-{i:06d}" for i in range(N_LOOKUP_KEYS)]


@pytest.fixture(scope="session")
def lookup_keys(str_keys: list[str]) -> list[int]:
    """The same 10,000 keys hashed to uint32 (xxh32), as Python ints: pyro-core's lookup input."""
    return [xxhash.xxh32_intdigest(k.encode()) for k in str_keys]


@pytest.fixture(scope="session")
def lookup_keys_array(lookup_keys: list[int]) -> np.ndarray:
    return np.array(lookup_keys, dtype=np.uint32)


@pytest.fixture(scope="session")
def batch_keys() -> np.ndarray:
    """1e6 uniformly random uint32 keys (unsorted)."""
    return np.random.default_rng(7).integers(0, 2**32, size=N_BATCH_KEYS, dtype=np.uint32)


@pytest.fixture(scope="session")
def batch_keys_sorted(batch_keys: np.ndarray) -> np.ndarray:
    return np.sort(batch_keys)


@pytest.fixture(scope="session")
def label_strings() -> list[str]:
    """10,000 distinct Pyroscope label strings (sorted, Go-quoted) of one tenant's series."""
    return [
        labels_string(
            {
                "__name__": "process_cpu",
                "service_name": f"svc-{i % 50}",
                "pod": f"svc-{i % 50}-{i:05d}",
                "namespace": "prod",
                "region": "eu-west-1",
            }
        )
        for i in range(N_LOOKUP_KEYS)
    ]


# -- peers ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def uhash_ring(ring_desc_50: RingDesc) -> Any:
    """uhashring 2.5 over the same 50 instance names, 128 vnodes each (6,400 points, like the ring)."""
    from uhashring import HashRing

    return HashRing(nodes=sorted(ring_desc_50.instances), vnodes=TOKENS_PER_INSTANCE)


class BisectRing:
    """The naive Python peer: sorted token list + owner list, ``bisect`` then walk for replicas."""

    def __init__(self, desc: RingDesc) -> None:
        pairs = sorted((int(t), inst.id) for inst in desc.instances.values() for t in inst.tokens.tolist())
        self.tokens = [t for t, _ in pairs]
        self.owners = [o for _, o in pairs]
        self.n_instances = len(desc.instances)

    def get(self, key: int) -> str:
        i = bisect_right(self.tokens, key)
        return self.owners[i if i < len(self.tokens) else 0]

    def get_n(self, key: int, n: int) -> list[str]:
        owners = self.owners
        size = len(owners)
        i = bisect_right(self.tokens, key)
        out: list[str] = []
        want = min(n, self.n_instances)
        while len(out) < want:
            if i >= size:
                i = 0
            o = owners[i]
            if o not in out:
                out.append(o)
            i += 1
        return out


@pytest.fixture(scope="session")
def bisect_ring(ring_desc_50: RingDesc) -> BisectRing:
    return BisectRing(ring_desc_50)
