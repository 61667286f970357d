# The querier's read path, sans-I/O: which ingesters to ask for a tenant, and how to merge what they
# answer so that a series held by several replicas is counted once.
# Owns: query_targets (every healthy ingester with dskit's READ error budget, or the tenant's shuffle
# shard with a lookback) and merge_replica_answers (deduplication per series and time bucket).
# Must not know: HTTP, clocks (``now`` is an argument), storage formats.
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pyro_core.ring.model import READ
from pyro_core.server.internal import Meta, SeriesBuckets
from pyro_core.server.storage import FlatStacks, merge_stacks

__all__ = ["merge_meta", "merge_replica_answers", "merge_union", "query_targets"]


def query_targets(
    ring: Any,
    tenant: str,
    *,
    now: float,
    shard_size: int = 0,
    shuffle_sharding: bool = False,
    lookback: float = 0.0,
) -> Any:
    """The ingesters to ask for ``tenant``'s data and how many of them may fail (a dskit
    ReplicationSet: ``instances``, ``max_errors``, ``max_unavailable_zones``).

    Without ``shuffle_sharding`` (or with shard size 0) every healthy ingester of the ring, with the
    READ error budget of ``replication_set_for_operation``. With it, the tenant's shuffle shard plus
    every instance that was part of it within ``lookback`` seconds (Pyroscope's
    ``-querier.shuffle-sharding-ingesters-enabled``, lookback = the retention period), so series
    written before the shard changed are still found.
    """
    if shuffle_sharding and shard_size > 0:
        ring = ring.shuffle_shard_with_lookback(tenant, shard_size, lookback, now)
    return ring.replication_set_for_operation(READ, now)


def merge_replica_answers(answers: Iterable[SeriesBuckets]) -> FlatStacks:
    """Merge the per-series, per-bucket samples of several ingesters into one flat map, counting
    each ``(series, bucket)`` once: of the replicas holding it, the one with the most samples (a
    replica that missed writes, e.g. while it was down, holds a subset of the others). Ties keep the
    first answer, so the caller's order makes the result deterministic."""
    best: dict[Any, tuple[int, FlatStacks]] = {}
    for answer in answers:
        for key, (_, stacks) in answer.items():
            total = sum(stacks.values())
            have = best.get(key)
            if have is None or total > have[0]:
                best[key] = (total, stacks)
    out: FlatStacks = {}
    for _, stacks in best.values():
        merge_stacks(out, stacks)
    return out


def merge_union(values: Iterable[Iterable[str]]) -> list[str]:
    """The sorted union of several ingesters' label names, label values or app names."""
    return sorted({v for answer in values for v in answer})


def merge_meta(answers: Iterable[Mapping[str, Meta]]) -> dict[str, Meta]:
    """Apps' metadata from several ingesters (the first answer that knows an app wins)."""
    out: dict[str, Meta] = {}
    for answer in answers:
        for app, meta in answer.items():
            out.setdefault(app, meta)
    return out
