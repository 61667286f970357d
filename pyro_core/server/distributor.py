# The distributor's write path (Pyroscope distributor.Push over dskit ring.DoBatch), sans-I/O.
# Owns: plan_push (series → tokens → the tenant's shuffle shard → replicas per series → series per
# ingester), PushPlan, and PushTracker (per-series quorum bookkeeping as ingester answers arrive,
# with DoBatch's early success/failure decision and the error text of a failed push).
# Must not know: HTTP, gRPC clients, clocks (``now`` is an argument), payload contents, retries.
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from pyro_core.ring.errors import TooManyUnhealthyInstancesError
from pyro_core.ring.model import WRITE
from pyro_core.ring.tokens import labels_string, tokens_for

__all__ = ["LabeledSeries", "PushPlan", "PushTracker", "Series", "plan_push"]


class LabeledSeries(Protocol):
    """Anything with labels: a name → value mapping or (name, value) pairs (e.g. push.PushSeries)."""

    @property
    def labels(self) -> Mapping[str, str] | Sequence[tuple[str, str]]: ...


@dataclass(frozen=True)
class Series:
    """One series to push: its labels (which decide its token) and an opaque payload."""

    labels: Mapping[str, str]
    payload: Any = None


@dataclass(frozen=True)
class PushPlan:
    """Where each series of one push goes.

    ``per_instance[id]`` lists the indices (into the pushed sequence) of the series to send to
    instance ``id``, ascending; ``addresses[id]`` is its address. Series i needs
    ``required_acks[i]`` acknowledgements out of ``len(replicas[i])`` and tolerates
    ``max_errors[i]`` failures.
    """

    tenant: str
    tokens: npt.NDArray[np.uint32]
    per_instance: dict[str, list[int]]
    addresses: dict[str, str]
    replicas: list[tuple[str, ...]]
    required_acks: list[int]
    max_errors: list[int]
    _groups: dict[str, npt.NDArray[np.intp]] = field(repr=False, compare=False, default_factory=dict)

    def __len__(self) -> int:
        return len(self.required_acks)

    def batch(self, instance_id: str, series: Sequence[Any]) -> list[Any]:
        """The series (from the sequence the plan was made of) to send to ``instance_id``."""
        return [series[i] for i in self.per_instance[instance_id]]


def plan_push(
    ring: Any, tenant: str, series: Sequence[LabeledSeries], *, shard_size: int, now: float
) -> PushPlan:
    """Plan a push: each series' token (Pyroscope TokenFor), the tenant's shuffle shard
    (``shard_size`` 0 = the whole ring), and the WRITE replicas of every token at ``now``.

    Raises TooManyUnhealthyInstancesError with dskit's "at least N live replicas required, could
    only find K" when any series has too few live replicas (DoBatch fails before any call), and
    EmptyRingError when the shard has no tokens.
    """
    if not isinstance(tenant, str):
        raise TypeError(f"tenant must be a string, got {type(tenant).__name__}")
    tokens = tokens_for(tenant, [labels_string(s.labels) for s in series])
    if len(tokens) == 0:
        return PushPlan(tenant, tokens, {}, {}, [], [], [])
    shard = ring.shuffle_shard(tenant, shard_size)
    if len(tokens) <= _SMALL_PUSH:
        return _plan_small(shard, tenant, tokens, now)
    batch = shard.get_many(tokens, WRITE, now)
    failed = batch.failed
    if len(failed):
        # The single-key lookup raises with dskit's exact wording (and the unhealthy instances).
        shard.get(int(tokens[int(failed[0])]), WRITE, now)
        raise TooManyUnhealthyInstancesError(  # pragma: no cover - get raised above
            f"series {int(failed[0])}: not enough live replicas"
        )
    instances = batch.instances
    counts = batch.counts.astype(np.int64)
    max_errors = batch.max_errors.astype(np.int64)
    replicas = [
        tuple(instances[j].id for j in row[:n])
        for row, n in zip(batch.replicas.tolist(), counts.tolist(), strict=True)
    ]
    groups = {iid: np.asarray(idx, dtype=np.intp) for iid, idx in batch.groups().items()}
    addr = {inst.id: inst.addr for inst in instances}
    return PushPlan(
        tenant=tenant,
        tokens=tokens,
        per_instance={iid: idx.tolist() for iid, idx in groups.items()},
        addresses={iid: addr[iid] for iid in groups},
        replicas=replicas,
        required_acks=(counts - max_errors).tolist(),
        max_errors=max_errors.tolist(),
        _groups=groups,
    )


#: Pushes of at most this many series are planned with single-key lookups (no batch set-up).
_SMALL_PUSH = 8


def _plan_small(shard: Any, tenant: str, tokens: npt.NDArray[np.uint32], now: float) -> PushPlan:
    """plan_push for a few series: one ``get`` per token (same answers as the batch path)."""
    per_instance: dict[str, list[int]] = {}
    addresses: dict[str, str] = {}
    replicas: list[tuple[str, ...]] = []
    required: list[int] = []
    max_errors: list[int] = []
    for i, token in enumerate(tokens.tolist()):
        rs = shard.get(token, WRITE, now)  # raises dskit's error when too few replicas are live
        ids = tuple(inst.id for inst in rs.instances)
        for inst in rs.instances:
            per_instance.setdefault(inst.id, []).append(i)
            addresses[inst.id] = inst.addr
        replicas.append(ids)
        required.append(len(ids) - rs.max_errors)
        max_errors.append(rs.max_errors)
    return PushPlan(tenant, tokens, per_instance, addresses, replicas, required, max_errors)


class PushTracker:
    """Per-series quorum of one planned push, fed with the ingesters' answers (dskit DoBatch).

    A series succeeds once it has ``required_acks`` acknowledgements and fails as soon as its
    failures exceed ``max_errors`` (client errors, 4xx-like, and server errors, 5xx-like, are
    counted separately as in dskit). The push succeeds when every series succeeded and fails as
    soon as one series failed — ``decided`` tells when that is known, possibly before ``done``
    (every instance answered). A series still undecided once everyone answered counts as failed.
    """

    def __init__(self, plan: PushPlan) -> None:
        self.plan = plan
        n = len(plan)
        self._required = np.asarray(plan.required_acks, dtype=np.int64).reshape(n)
        self._max_errors = np.asarray(plan.max_errors, dtype=np.int64).reshape(n)
        self._acks = np.zeros(n, dtype=np.int64)
        self._fail_5xx = np.zeros(n, dtype=np.int64)
        self._fail_4xx = np.zeros(n, dtype=np.int64)
        self._failed = np.zeros(n, dtype=bool)
        self._remaining = n  # series not yet at their required acks
        self._pending = set(plan.per_instance)
        self._errors: dict[str, tuple[str, bool]] = {}
        self._first_failure: tuple[int, str, bool] | None = None  # (series, instance, client_error)

    def _groups(self, instance_id: str) -> npt.NDArray[np.intp]:
        if instance_id not in self.plan.per_instance:
            raise ValueError(f"instance {instance_id!r} is not part of this push")
        if instance_id not in self._pending:
            raise ValueError(f"instance {instance_id!r} already answered")
        self._pending.discard(instance_id)
        idx = self.plan._groups.get(instance_id)
        if idx is None:
            idx = np.asarray(self.plan.per_instance[instance_id], dtype=np.intp)
        return idx

    def ack(self, instance_id: str) -> None:
        """Instance ``instance_id`` stored every series sent to it."""
        idx = self._groups(instance_id)
        self._acks[idx] += 1
        self._remaining -= int(np.count_nonzero(self._acks[idx] == self._required[idx]))

    def fail(self, instance_id: str, error: object, *, client_error: bool = False) -> None:
        """Instance ``instance_id`` failed (or timed out) for every series sent to it; ``error`` is
        kept for the message. ``client_error`` marks a 4xx-like answer (counted apart from 5xx)."""
        idx = self._groups(instance_id)
        counter = self._fail_4xx if client_error else self._fail_5xx
        counter[idx] += 1
        self._errors[instance_id] = (str(error), client_error)
        crossed = idx[counter[idx] == self._max_errors[idx] + 1]
        if len(crossed):
            self._failed[crossed] = True
            if self._first_failure is None:
                self._first_failure = (int(crossed[0]), instance_id, client_error)

    @property
    def pending(self) -> frozenset[str]:
        """Instances that have not answered yet."""
        return frozenset(self._pending)

    @property
    def done(self) -> bool:
        """Every instance of the plan answered."""
        return not self._pending

    @property
    def succeeded(self) -> bool:
        """Every series reached its required acknowledgements."""
        return self._remaining == 0

    @property
    def failed(self) -> bool:
        """The push failed: a series failed, or everyone answered and some series fell short."""
        return bool(self._failed.any()) or (self.done and not self.succeeded)

    @property
    def decided(self) -> bool:
        """The outcome is known (the caller may answer the client and stop waiting)."""
        return self.succeeded or self.failed

    @property
    def failed_series(self) -> list[int]:
        """Indices of the series that failed (all short ones once every instance answered)."""
        bad = self._failed.copy()
        if self.done:
            bad |= self._acks < self._required
        return np.flatnonzero(bad).tolist()

    @property
    def client_error(self) -> bool:
        """The push failed because of a 4xx-like answer (dskit passes that error through)."""
        return self._first_failure is not None and self._first_failure[2]

    @property
    def error(self) -> str | None:
        """Why the push failed (None unless ``failed``): the worst series, i.e. the one with the
        fewest acknowledgements, with how many of its replicas acknowledged it, and the last error."""
        if not self.failed:
            return None
        bad = self.failed_series
        worst = min(bad, key=lambda i: (int(self._acks[i]), i))
        acks = int(self._acks[worst])
        total = len(self.plan.replicas[worst])
        fails = int(self._fail_4xx[worst] + self._fail_5xx[worst])
        msg = (
            f"failed to push {len(bad)} of {len(self.plan)} series: only {acks} of {total} replicas "
            f"acknowledged series {worst} ({self.plan.required_acks[worst]} required, {fails} failed)"
        )
        cause = next(
            (self._errors[iid] for iid in reversed(list(self._errors)) if iid in self.plan.replicas[worst]),
            None,
        )
        if cause is not None:
            msg += f": {cause[0]}"
        return msg
