# Test helpers for the KV store: a settable wall clock, stores built on it, hand-made instances, and a
# fake gossip network that carries each store's broadcasts to the others and runs push/pull.
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pyro_core.kv.lifecycler import Lifecycler
from pyro_core.kv.store import RING_DESC_CODEC, KVStore
from pyro_core.ring.dskit_codec import (
    KeyValuePair,
    decode_dskit,
    decode_kv_pair,
    encode_dskit,
    encode_kv_pair,
)
from pyro_core.ring.model import InstanceDesc, InstanceState, RingDesc

KEY = "collectors/ring"
T0 = 1_700_000_000.0  # a realistic unix time: tombstone limits are computed from it
OVERHEAD = 2  # memberlist's per-message overhead in a compound packet (about)
PACKET = 1400  # a UDP packet budget


class FakeClock:
    """Wall-clock unix seconds that only move when a test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)


def make_store(clock: FakeClock, *, members: int = 3, **kwargs: float) -> KVStore[RingDesc]:
    return KVStore([RING_DESC_CODEC], retransmit_mult=4, num_members=lambda: members, clock=clock, **kwargs)  # type: ignore[arg-type]


def inst(
    id: str,
    ts: int,
    state: InstanceState = InstanceState.ACTIVE,
    tokens: tuple[int, ...] = (),
    zone: str = "",
) -> InstanceDesc:
    return InstanceDesc(id=id, addr=f"{id}:9095", timestamp=ts, state=state, tokens=list(tokens), zone=zone)


def ring(*instances: InstanceDesc) -> RingDesc:
    return RingDesc.from_instances(instances)


def pair_bytes(value: RingDesc, key: str = KEY, **kwargs: object) -> bytes:
    return encode_kv_pair(KeyValuePair(key=key, value=encode_dskit(value), codec="ringDesc", **kwargs))  # type: ignore[arg-type]


def decode_message(msg: bytes) -> tuple[str, RingDesc]:
    pair = decode_kv_pair(msg)
    return pair.key, decode_dskit(pair.value)


def set_ring(store: KVStore[RingDesc], value: RingDesc, now: float) -> None:
    """Store ``value`` by CAS (the whole ring, as f's result)."""
    result = store.cas(KEY, lambda _cur: (value.copy(), True), now)
    assert result.ok, result


@dataclass
class Mesh:
    """Stores wired together: every store's broadcasts reach every other store (or are dropped)."""

    clock: FakeClock
    stores: list[KVStore[RingDesc]]
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    delivered: int = 0

    @classmethod
    def of(cls, n: int, clock: FakeClock, **kwargs: float) -> Mesh:
        return cls(clock, [make_store(clock, members=n, **kwargs) for _ in range(n)])

    def lifecyclers(self, *, seed: int = 0, **kwargs: object) -> list[Lifecycler]:
        return [
            Lifecycler(
                s,
                instance_id=f"ingester-{i}",
                addr=f"10.0.0.{i}:9095",
                rng=np.random.default_rng(seed + i),
                **kwargs,  # type: ignore[arg-type]
            )
            for i, s in enumerate(self.stores)
        ]

    def gossip_round(self, loss: float = 0.0) -> int:
        """Each store sends one packet's worth of broadcasts to every other store."""
        sent = 0
        for i, src in enumerate(self.stores):
            msgs = src.get_broadcasts(OVERHEAD, PACKET)
            sent += len(msgs)
            for j, dst in enumerate(self.stores):
                if i == j:
                    continue
                for m in msgs:
                    if loss and self.rng.random() < loss:
                        continue
                    dst.notify_msg(m)
                    self.delivered += 1
        return sent

    def gossip_until_quiet(self, loss: float = 0.0, max_rounds: int = 200) -> int:
        for rounds in range(1, max_rounds + 1):
            if self.gossip_round(loss) == 0:
                return rounds
        raise AssertionError("gossip did not go quiet")

    def push_pull(self, a: int, b: int) -> None:
        """memberlist's push/pull between two stores: each merges the other's whole state."""
        sa = self.stores[a].local_state(False)
        sb = self.stores[b].local_state(False)
        self.stores[a].merge_remote_state(sb, False)
        self.stores[b].merge_remote_state(sa, False)

    def raw_values(self, key: str = KEY) -> list[RingDesc | None]:
        return [s.raw(key) for s in self.stores]


def drive(lc: Lifecycler, clock: FakeClock, until: Callable[[], bool], max_steps: int = 1000) -> None:
    """Jump the clock from deadline to deadline, handling timers, until ``until()``."""
    for _ in range(max_steps):
        if until():
            return
        deadline = lc.next_deadline()
        assert deadline is not None, "nothing scheduled"
        clock.now = max(clock.now, deadline)
        lc.handle_timer(clock.now)
    raise AssertionError("condition not reached")


def drain(store: KVStore[RingDesc]) -> None:
    """Send everything queued until the queues are empty (each broadcast goes out several times)."""
    for _ in range(1000):
        if not store.get_broadcasts(OVERHEAD, PACKET):
            return
    raise AssertionError("queues do not drain")
