# The ring lifecycle of one instance over the KV store (dskit BasicLifecycler as Pyroscope's ingesters
# configure it), sans-I/O, and the ring client's metrics.
# Owns: what this instance writes into the ring key and when — register (tokens avoiding taken ones,
# ACTIVE at once: Pyroscope's join-after 0), heartbeats with auto-forget of instances unhealthy for
# 10 × heartbeat timeout, leave (LEAVING), unregister (delete → a LEFT tombstone by the local-CAS merge)
# — as CAS operations run one after another, each with dskit's retries; the heartbeat timer
# (``next_deadline`` / ``handle_timer``); a ``Ring`` view kept current by watching the key; and
# ``ring_metrics`` (dskit ring.go updateRingMetrics).
# Must not know: sockets, gossip, the clock (``now`` is wall-clock unix seconds, an argument),
# sleeping (a CAS waiting for its retry is a deadline), or how the shell flushes data on leave.
from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypedDict

import numpy as np

from pyro_core import Ring
from pyro_core.kv.store import CasError, CasOperation, CasResult, CasStatus, KVStore
from pyro_core.ring.model import REPORTING, InstanceDesc, InstanceState, RingDesc
from pyro_core.ring.tokens import generate_tokens

__all__ = [
    "AUTO_FORGET_UNHEALTHY_PERIODS",
    "UNHEALTHY",
    "Completed",
    "Lifecycler",
    "LifecyclerPhase",
    "RingMetrics",
    "ring_metrics",
]

# Pyroscope's ringAutoForgetUnhealthyPeriods: forget an instance unhealthy for this many heartbeat
# timeouts.
AUTO_FORGET_UNHEALTHY_PERIODS: Final = 10
# dskit's label for instances whose heartbeat is stale (ring.go).
UNHEALTHY: Final = "Unhealthy"
# The states ring metrics always report (zero when empty), in dskit's order.
_METRIC_STATES: Final = (
    UNHEALTHY,
    InstanceState.ACTIVE.name,
    InstanceState.LEAVING.name,
    InstanceState.PENDING.name,
    InstanceState.JOINING.name,
)


# -- metrics ------------------------------------------------------------------------------------------


class RingMetrics(TypedDict):
    """dskit ring client gauges (``<prefix>_ring_*{name=...}``), by state label."""

    ring_members: dict[str, int]
    ring_tokens_total: int
    ring_oldest_member_timestamp: dict[str, int]


def ring_metrics(desc: RingDesc, now: float, heartbeat_timeout: float) -> RingMetrics:
    """The ring client's gauges for ``desc`` at ``now`` (dskit Ring.updateRingMetrics).

    Per state — ACTIVE, LEAVING, PENDING, JOINING and ``Unhealthy`` (a heartbeat older than
    ``heartbeat_timeout``), each reported even when 0 — the number of members and the oldest
    last-heartbeat unix time (0 when empty). Another state present in ``desc`` (LEFT: clients normally
    never see tombstones) gets its own label, as in dskit. ``ring_tokens_total`` counts every token of
    every instance, healthy or not.
    """
    members = dict.fromkeys(_METRIC_STATES, 0)
    oldest = dict.fromkeys(_METRIC_STATES, 0)
    for inst in desc.instances.values():
        state = inst.state.name
        if not inst.is_healthy(REPORTING, heartbeat_timeout, now):
            state = UNHEALTHY
        members[state] = members.get(state, 0) + 1
        current = oldest.get(state, 0)
        if current == 0 or inst.timestamp < current:
            oldest[state] = inst.timestamp
    return RingMetrics(
        ring_members=members,
        ring_tokens_total=sum(len(i.tokens) for i in desc.instances.values()),
        ring_oldest_member_timestamp=oldest,
    )


# -- the lifecycler ----------------------------------------------------------------------------------


class LifecyclerPhase(enum.Enum):
    """The last lifecycle step that completed."""

    NEW = "new"  # not registered (yet, or registration failed)
    RUNNING = "running"  # registered (ACTIVE); heartbeating
    LEAVING = "leaving"  # LEAVING written; still heartbeating while the shell flushes
    STOPPED = "stopped"  # unregistered: the ring holds a LEFT tombstone; no more heartbeats


class _Kind(enum.Enum):
    REGISTER = "register"
    HEARTBEAT = "heartbeat"
    LEAVE = "leave"
    UNREGISTER = "unregister"


@dataclass(frozen=True, slots=True)
class Completed:
    """An operation that finished during ``handle_timer``: its kind and its final result."""

    operation: str  # "register", "heartbeat", "leave" or "unregister"
    result: CasResult[RingDesc]


_CasFn = Callable[[RingDesc | None], tuple[RingDesc | None, bool]]


@dataclass(slots=True)
class _Op:
    kind: _Kind
    cas: CasOperation[RingDesc]


class Lifecycler:
    """One instance's life in a ring stored under ``ring_key`` in a ``KVStore``.

    Operations (``register``, ``heartbeat``, ``leave``, ``unregister``) run one at a time, in call
    order, like dskit's lifecycler goroutine. Each is a CAS with dskit's retries: a call makes the first
    attempt at once when nothing is pending and returns its result; if that result asks for a retry, or
    if another operation is still pending (then the call returns None), ``next_deadline()`` says when
    to call ``handle_timer(now)``, which runs due retries, then queued operations, then a heartbeat when
    one is due, and returns what completed.

    ``now`` is wall-clock unix seconds; ring timestamps are its whole seconds. ``rng`` draws tokens.
    ``forget_period`` defaults to 10 × ``heartbeat_timeout`` (0 disables auto-forget).
    """

    def __init__(
        self,
        store: KVStore[RingDesc],
        *,
        ring_key: str = "collectors/ring",
        instance_id: str,
        addr: str,
        zone: str = "",
        num_tokens: int = 128,
        heartbeat_period: float = 5.0,
        heartbeat_timeout: float = 60.0,
        forget_period: float | None = None,
        rng: np.random.Generator,
        replication_factor: int = 1,
        zone_awareness: bool = False,
    ) -> None:
        if not instance_id:
            raise ValueError("instance_id must not be empty")
        if num_tokens < 0:
            raise ValueError(f"num_tokens must not be negative, got {num_tokens}")
        if not heartbeat_period > 0 or not heartbeat_timeout > 0:
            raise ValueError("heartbeat_period and heartbeat_timeout must be positive")
        self.store = store
        self.ring_key = ring_key
        self.instance_id = instance_id
        self.addr = addr
        self.zone = zone
        self.num_tokens = num_tokens
        self.heartbeat_period = float(heartbeat_period)
        self.heartbeat_timeout = float(heartbeat_timeout)
        self.forget_period = (
            AUTO_FORGET_UNHEALTHY_PERIODS * self.heartbeat_timeout if forget_period is None else forget_period
        )
        self._rng = rng
        # The last lifecycle step completed.
        self.phase = LifecyclerPhase.NEW
        # This instance as last written by a successful operation (dskit currInstanceDesc).
        self._instance: InstanceDesc | None = None
        # What the attempt in flight wrote into its CAS value, and whom it forgot; kept on success.
        self._candidate: InstanceDesc | None = None
        self._candidate_forgotten: list[str] = []
        # The time of the attempt in flight, for the CAS functions.
        self._now = 0.0
        # Instances the last successful heartbeat forgot.
        self.forgotten: list[str] = []
        # Operations in call order; the head has made its first attempt and waits for its retry.
        self._ops: deque[_Op] = deque()
        # When the next heartbeat is due (armed by a successful register, disarmed by unregister).
        self._next_heartbeat: float | None = None
        # Counters: heartbeats written, operations that failed for good.
        self.heartbeats = 0
        self.failures = 0
        # The read side: a Ring over the key's value, swapped on every change of the key.
        self._ring: Any = Ring(
            store.get(ring_key) or RingDesc(),
            replication_factor=replication_factor,
            zone_awareness=zone_awareness,
            heartbeat_timeout=self.heartbeat_timeout,
        )
        self._unwatch = store.watch_key(ring_key, self._on_ring_changed)

    # -- what the shell reads ----------------------------------------------------------------------

    @property
    def instance(self) -> InstanceDesc | None:
        """This instance as last written (None before registering and after unregistering)."""
        return self._instance

    @property
    def tokens(self) -> list[int]:
        return self._instance.tokens.tolist() if self._instance is not None else []

    @property
    def state(self) -> InstanceState | None:
        return self._instance.state if self._instance is not None else None

    @property
    def busy(self) -> bool:
        """An operation is pending (waiting for a retry, or queued behind one)."""
        return bool(self._ops)

    def ring(self) -> Any:
        """A ``pyro_core.Ring`` over the key's current value (tombstones hidden), kept current."""
        return self._ring

    def ring_metrics(self, now: float) -> RingMetrics:
        return ring_metrics(self._ring.desc, now, self.heartbeat_timeout)

    def close(self) -> None:
        """Stop watching the store (the ``Ring`` view stops updating)."""
        self._unwatch()

    def _on_ring_changed(self, value: RingDesc | None) -> None:
        self._ring.update(value if value is not None else RingDesc())

    # -- operations ------------------------------------------------------------------------------------

    def register(self, now: float) -> CasResult[RingDesc] | None:
        """Join the ring ACTIVE: keep this instance's tokens if the ring has it, top them up to
        ``num_tokens`` with random ones no instance holds, keep its registration time (else ``now``)."""
        return self._submit(_Kind.REGISTER, self._register_f, now)

    def heartbeat(self, now: float) -> CasResult[RingDesc] | None:
        """Write a heartbeat now (the timer also does, every ``heartbeat_period``); forgets instances
        whose last heartbeat is more than ``forget_period`` old. A no-op unless registered."""
        return self._submit(_Kind.HEARTBEAT, self._heartbeat_f, now)

    def leave(self, now: float) -> CasResult[RingDesc] | None:
        """Switch to LEAVING (the shell flushes next, heartbeats go on, then ``unregister``)."""
        return self._submit(_Kind.LEAVE, self._leave_f, now)

    def unregister(self, now: float) -> CasResult[RingDesc] | None:
        """Delete this instance from the ring; the local-CAS merge leaves a LEFT tombstone stamped
        ``now``, gossiped until ``left_ingesters_timeout``."""
        return self._submit(_Kind.UNREGISTER, self._unregister_f, now)

    # -- timers ----------------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` has work: a pending retry or the next heartbeat (None: nothing)."""
        retry_at = self._ops[0].cas.retry_at if self._ops else None
        deadlines = [d for d in (retry_at, self._next_heartbeat) if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> list[Completed]:
        """Run what is due at ``now``: a pending retry and the operations queued behind it, then a
        heartbeat if one is due. Returns the operations that completed."""
        completed = self._run(now)
        if self._next_heartbeat is not None and now >= self._next_heartbeat:
            # A ticker: missed ticks are skipped, like Go's.
            missed = math.floor((now - self._next_heartbeat) / self.heartbeat_period) + 1
            self._next_heartbeat += missed * self.heartbeat_period
            if not any(op.kind is _Kind.HEARTBEAT for op in self._ops):
                self._ops.append(
                    _Op(_Kind.HEARTBEAT, self.store.cas_operation(self.ring_key, self._heartbeat_f))
                )
                completed.extend(self._run(now))
        return completed

    # -- running operations ----------------------------------------------------------------------------
    # Invariant: the head of _ops has made its first attempt and waits for its retry_at; the others have
    # not been attempted.

    def _submit(self, kind: _Kind, f: _CasFn, now: float) -> CasResult[RingDesc] | None:
        op = _Op(kind, self.store.cas_operation(self.ring_key, f))
        self._ops.append(op)
        if len(self._ops) > 1:
            return None  # runs when the pending operations ahead of it are done
        self._run(now)  # only this operation can run: its completion is reported by the return value
        return op.cas.result

    def _run(self, now: float) -> list[Completed]:
        completed: list[Completed] = []
        while self._ops:
            op = self._ops[0]
            retry_at = op.cas.retry_at
            if op.cas.result is not None and retry_at is not None and retry_at > now:
                break
            self._now = now
            self._candidate = None
            self._candidate_forgotten = []
            result = op.cas.attempt(now)
            if not result.final:
                break
            self._ops.popleft()
            self._complete(op.kind, result, now)
            completed.append(Completed(op.kind.value, result))
        return completed

    def _complete(self, kind: _Kind, result: CasResult[RingDesc], now: float) -> None:
        candidate, self._candidate = self._candidate, None
        if not result.ok:
            self.failures += 1
            return
        if kind is _Kind.REGISTER:
            self._instance = candidate
            self.phase = LifecyclerPhase.RUNNING
            self._next_heartbeat = now + self.heartbeat_period
        elif kind is _Kind.HEARTBEAT:
            if result.status is CasStatus.UPDATED:
                self._instance = candidate
                self.forgotten = self._candidate_forgotten
                self.heartbeats += 1
        elif kind is _Kind.LEAVE:
            if candidate is not None:
                self._instance = candidate
            self.phase = LifecyclerPhase.LEAVING
        elif kind is _Kind.UNREGISTER:
            self._instance = None
            self._next_heartbeat = None
            self.phase = LifecyclerPhase.STOPPED

    # -- the CAS functions (they read the attempt's time from self._now, as dskit's read time.Now()) ---

    def _register_f(self, current: RingDesc | None) -> tuple[RingDesc | None, bool]:
        ts = math.floor(self._now)
        ring = current if current is not None else RingDesc()
        existing = ring.get(self.instance_id)
        kept = existing.tokens if existing is not None else np.empty(0, dtype=np.uint32)
        fresh = generate_tokens(max(0, self.num_tokens - len(kept)), ring.tokens(), self._rng)
        inst = InstanceDesc(
            id=self.instance_id,
            addr=self.addr,
            timestamp=ts,
            state=InstanceState.ACTIVE,
            tokens=np.concatenate([kept, fresh]),
            zone=self.zone,
            registered_timestamp=existing.registered_timestamp if existing is not None else ts,
            read_only=existing.read_only if existing is not None else False,
            read_only_updated_timestamp=existing.read_only_updated_timestamp if existing is not None else 0,
        )
        ring.instances[self.instance_id] = inst
        self._candidate = inst
        return ring, True

    def _update_instance(
        self, current: RingDesc | None, update: Callable[[RingDesc, InstanceDesc], InstanceDesc | None]
    ) -> tuple[RingDesc | None, bool]:
        """dskit updateInstance: apply ``update`` to this instance (re-adding it, registered now, if the
        ring lost it); ``update`` returns None for "no change". The timestamp always moves."""
        ts = math.floor(self._now)
        ring = current if current is not None else RingDesc()
        inst = ring.get(self.instance_id)
        found = inst is not None
        if inst is None:
            mine = self._instance
            inst = InstanceDesc(
                id=self.instance_id,
                addr=self.addr,
                timestamp=ts,
                state=mine.state if mine is not None else InstanceState.ACTIVE,
                tokens=mine.tokens if mine is not None else None,
                zone=self.zone,
                registered_timestamp=ts,
            )
        updated = update(ring, inst)
        if updated is None:
            if found:
                return None, False
            updated = inst
        if updated.timestamp == inst.timestamp:
            updated = updated.replace(timestamp=ts)
        ring.instances[self.instance_id] = updated
        self._candidate = updated
        return ring, True

    def _heartbeat_f(self, current: RingDesc | None) -> tuple[RingDesc | None, bool]:
        if self.phase not in (LifecyclerPhase.RUNNING, LifecyclerPhase.LEAVING):
            return None, False  # not in the ring: nothing to heartbeat
        return self._update_instance(current, self._heartbeat_update)

    def _heartbeat_update(self, ring: RingDesc, inst: InstanceDesc) -> InstanceDesc:
        now = self._now
        if self.forget_period > 0:
            # dskit AutoForgetDelegate: forget whoever has not heartbeated for forget_period (this
            # instance too, but it is written back by _update_instance).
            for other_id, other in list(ring.instances.items()):
                if now - other.timestamp > self.forget_period:
                    ring.remove_instance(other_id)
                    if other_id != self.instance_id:
                        self._candidate_forgotten.append(other_id)
            self._candidate_forgotten.sort()
        return inst.replace(timestamp=math.floor(now))

    def _leave_f(self, current: RingDesc | None) -> tuple[RingDesc | None, bool]:
        def update(ring: RingDesc, inst: InstanceDesc) -> InstanceDesc | None:
            return None if inst.state == InstanceState.LEAVING else inst.replace(state=InstanceState.LEAVING)

        return self._update_instance(current, update)

    def _unregister_f(self, current: RingDesc | None) -> tuple[RingDesc | None, bool]:
        if current is None:
            raise CasError("found empty ring when trying to unregister")
        if self.instance_id not in current:
            # Already gone (forgotten, or only a tombstone left). dskit would retry its no-change merge
            # ten times and fail; there is nothing to delete, so this is done.
            return None, False
        current.remove_instance(self.instance_id)
        return current, True

    def __repr__(self) -> str:
        return (
            f"Lifecycler(instance_id={self.instance_id!r}, phase={self.phase.value}, "
            f"pending={[op.kind.value for op in self._ops]})"
        )
