# A cluster member as Pyroscope runs one: memberlist + the gossiped KV store + (optionally) a ring
# lifecycler registering this process in a ring, all driven under trio.
# Owns: wiring the store in as memberlist's delegate, wall-clock time for the KV world, driving
# the lifecycler's timers and the store's housekeeping, and the orderly shutdown (LEAVING, leave
# the ring, flush the tombstone, leave memberlist). Must not know: SWIM or CRDT rules.
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import trio

from pyro_core.kv.lifecycler import Lifecycler, LifecyclerPhase
from pyro_core.kv.store import RING_DESC_CODEC, KVStore
from pyro_core.memberlist.config import Config
from pyro_core.memberlist.state import MemberEvent
from pyro_core.net.node import MemberlistNode
from pyro_core.net.transport import Address, Transport, format_address
from pyro_core.ring.model import RingDesc

log = logging.getLogger("pyro_core.cluster")

DEFAULT_RING_KEY = "collectors/ring"


@dataclass(frozen=True)
class RingRegistration:
    """Register this process in a ring (Pyroscope's ingester lifecycle)."""

    instance_id: str
    instance_addr: str = ""  # default: the memberlist advertise address
    zone: str = ""
    num_tokens: int = 128
    heartbeat_period: float = 5.0
    heartbeat_timeout: float = 60.0
    ring_key: str = DEFAULT_RING_KEY


class ClusterMember:
    """``await nursery.start(member.run)``; later ``await member.shutdown()``."""

    def __init__(
        self,
        config: Config,
        transport: Transport,
        *,
        registration: RingRegistration | None = None,
        left_ingesters_timeout: float = 300.0,
        on_event: Callable[[MemberEvent], None] | None = None,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        self.clock = clock
        self.registration = registration
        self.store: KVStore[RingDesc] = KVStore(
            [RING_DESC_CODEC],
            retransmit_mult=config.retransmit_mult,
            num_members=self._num_members,
            clock=clock,
            left_ingesters_timeout=left_ingesters_timeout,
        )
        self.node = MemberlistNode(config, transport, delegate=self.store, on_event=on_event, seed=seed)
        self.lifecycler: Lifecycler | None = None
        self._seed = seed
        self._lifecycler_wakeup = trio.Event()

    def _num_members(self) -> int:
        core = self.node.core
        return core.num_members() if core is not None else 1

    @property
    def address(self) -> Address:
        return self.node.address

    async def run(self, *, task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            addr = await nursery.start(self.node.run)
            nursery.start_soon(self._housekeeping)
            if self.registration is not None:
                reg = self.registration
                self.lifecycler = Lifecycler(
                    self.store,
                    ring_key=reg.ring_key,
                    instance_id=reg.instance_id,
                    addr=reg.instance_addr or format_address(addr),
                    zone=reg.zone,
                    num_tokens=reg.num_tokens,
                    heartbeat_period=reg.heartbeat_period,
                    heartbeat_timeout=reg.heartbeat_timeout,
                    rng=np.random.default_rng(self._seed),
                )
                nursery.start_soon(self._drive_lifecycler)
            task_status.started(addr)

    async def register(self) -> None:
        """Register in the ring (ACTIVE at once) once the member has joined the cluster."""
        if self.lifecycler is None:
            raise RuntimeError("this member has no ring registration")
        self.lifecycler.register(self.clock())
        self._poke()

    def _poke(self) -> None:
        self._lifecycler_wakeup.set()
        self.node.wake()

    async def _drive_lifecycler(self) -> None:
        lc = self.lifecycler
        assert lc is not None
        while True:
            deadline = lc.next_deadline()
            wait = float("inf") if deadline is None else max(0.0, deadline - self.clock())
            with trio.move_on_after(wait):
                await self._lifecycler_wakeup.wait()
            self._lifecycler_wakeup = trio.Event()
            try:
                for done in lc.handle_timer(self.clock()):
                    log.debug("ring operation %s finished: %s", done.operation, done.result)
            except Exception:  # a failed ring operation must not take the member down
                log.exception("ring lifecycle step failed")
            self.node.wake()

    async def _housekeeping(self) -> None:
        while True:
            await trio.sleep(30)
            self.store.remove_obsolete_entries(self.clock())

    def ring(self, key: str = DEFAULT_RING_KEY) -> RingDesc | None:
        return self.store.get(key)

    def forget(self, instance_id: str, key: str | None = None) -> bool:
        """Remove ``instance_id`` from the ring (dskit's "Forget" button): a LEFT tombstone is gossiped
        so every member drops it. Returns False when the ring has no such instance."""
        if key is None:
            key = self.registration.ring_key if self.registration is not None else DEFAULT_RING_KEY
        found = False

        def remove(current: RingDesc | None) -> tuple[RingDesc | None, bool]:
            nonlocal found
            found = current is not None and instance_id in current.instances
            if current is None or not found:
                return None, False
            current.remove_instance(instance_id)
            return current, True

        result = self.store.cas(key, remove, self.clock())
        if found and result.ok:
            log.info("forgot instance %s of ring %s", instance_id, key)
            self.node.wake()
            return True
        return False

    async def shutdown(self, timeout: float = 20.0) -> bool:
        """Leave the ring (LEAVING, then a LEFT tombstone), let the tombstone go out, leave the
        cluster. Returns True when every step finished within ``timeout``."""
        deadline = trio.current_time() + timeout
        lc = self.lifecycler
        if lc is not None and (lc.phase is LifecyclerPhase.RUNNING or lc.busy):  # registered, or registering
            lc.leave(self.clock())
            self._poke()
            with trio.move_on_at(deadline):
                while lc.busy:
                    await trio.sleep(0.05)
            lc.unregister(self.clock())
            self._poke()
            with trio.move_on_at(deadline):
                while _phase(lc) is not LifecyclerPhase.STOPPED:
                    await trio.sleep(0.05)
                while self.store.num_queued_local() > 0 and self._num_members() > 1:
                    await trio.sleep(0.05)
        left = await self.node.leave(max(0.1, deadline - trio.current_time()))
        return left and trio.current_time() <= deadline


def _phase(lc: Lifecycler) -> LifecyclerPhase:
    return lc.phase  # read through a call: the phase changes under us while we wait
