# Test helpers: small hand-made rings and hypothesis strategies for random ones.
from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from pyro_core import InstanceDesc, InstanceState, RingDesc, generate_tokens


def inst(
    id: str,
    tokens: list[int],
    *,
    zone: str = "",
    state: InstanceState = InstanceState.ACTIVE,
    ts: int = 1000,
    **kw: Any,
) -> InstanceDesc:
    return InstanceDesc(id=id, addr=f"{id}:9095", tokens=tokens, zone=zone, state=state, timestamp=ts, **kw)


def ring_of(*instances: InstanceDesc) -> RingDesc:
    return RingDesc.from_instances(instances)


def random_desc(
    n: int, tokens: int = 128, zones: int = 0, seed: int = 0, now: int = 1000, registered: int | None = None
) -> RingDesc:
    rng = np.random.default_rng(seed)
    desc = RingDesc()
    taken: list[int] = []
    for i in range(n):
        toks = generate_tokens(tokens, taken, rng)
        taken.extend(toks.tolist())
        desc.add_instance(
            f"instance-{i}",
            f"10.0.{i // 250}.{i % 250}:9095",
            zone=f"zone-{i % zones}" if zones else "",
            tokens=toks,
            now=now,
            registered_timestamp=registered if registered is not None else now,
        )
    return desc


@st.composite
def ring_descs(draw: st.DrawFn, max_instances: int = 12, token_space: int = 2**32) -> RingDesc:
    """Random rings: any state, zones or none, stale or fresh heartbeats, few or many tokens."""
    n = draw(st.integers(1, max_instances))
    n_zones = draw(st.integers(0, 3))
    used: set[int] = set()
    instances = []
    for i in range(n):
        k = draw(st.integers(0, 6))
        toks = [
            t
            for t in draw(st.lists(st.integers(0, token_space - 1), min_size=k, max_size=k))
            if t not in used
        ]
        used.update(toks)
        instances.append(
            InstanceDesc(
                id=f"i{i}",
                addr=f"10.0.0.{i}:9095",
                tokens=toks,
                zone=f"z{draw(st.integers(0, n_zones - 1))}" if n_zones else "",
                state=draw(st.sampled_from(list(InstanceState))),
                timestamp=draw(st.sampled_from([900, 1000, 1050])),
                registered_timestamp=draw(st.sampled_from([0, 500, 990, 1000])),
                read_only=draw(st.booleans()),
                read_only_updated_timestamp=draw(st.sampled_from([0, 500, 995])),
            )
        )
    return RingDesc.from_instances(instances)


def big_ring(n: int = 600, tokens: int = 128, seed: int = 3) -> RingDesc:
    """A production-sized ring: n ACTIVE instances over 3 zones with distinct random tokens."""
    rng = np.random.default_rng(seed)
    all_tokens = rng.choice(2**32, size=n * tokens, replace=False).astype(np.uint32)
    return RingDesc(
        {
            f"ingester-{i:03d}": InstanceDesc(
                id=f"ingester-{i:03d}",
                addr=f"10.0.{i // 250}.{i % 250}:9095",
                timestamp=1_700_000_000 + i,
                state=InstanceState.ACTIVE,
                tokens=all_tokens[i * tokens : (i + 1) * tokens],
                zone=f"zone-{i % 3}",
                registered_timestamp=1_690_000_000,
            )
            for i in range(n)
        }
    )


def assert_well_formed(desc: RingDesc) -> None:
    """What every decoded description must be: ids match keys, tokens sorted unique read-only uint32."""
    for key, inst in desc.instances.items():
        assert inst.id == key
        assert inst.tokens.dtype == np.uint32 and not inst.tokens.flags.writeable
        assert bool(np.all(inst.tokens[1:] > inst.tokens[:-1]))
        assert isinstance(inst.state, InstanceState)
