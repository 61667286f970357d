# The querier's read path, sans-I/O: which ingesters to ask for a tenant, and how to merge what they
# answer so that a series held by several replicas is counted once.
# Owns: query_targets (every healthy ingester with dskit's READ error budget, or the tenant's shuffle
# shard with a lookback) and assign_replicas (deduplication: which replica of each series and time
# bucket is merged, and by which ingester).
# Must not know: HTTP, clocks (``now`` is an argument), storage formats.
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pyro_core.ring.model import READ
from pyro_core.server.internal import Meta, SeriesIndex, SeriesKey

__all__ = ["assign_replicas", "merge_meta", "merge_union", "query_targets"]


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


def assign_replicas(indexes: Sequence[tuple[str, SeriesIndex]]) -> dict[str, list[tuple[SeriesKey, int]]]:
    """Which ingester merges which ``(series, bucket)`` pieces: for each piece, one of the replicas
    holding the most samples of it (the most complete copy); among equally complete replicas the
    one with the least work assigned so far, so the merging is spread over the ingesters. Returns
    ``{instance id: [pieces]}`` (instances with nothing to merge are left out)."""
    best: dict[tuple[SeriesKey, int], tuple[int, list[str]]] = {}
    for instance_id, index in indexes:
        for key, (_, total) in index.items():
            have = best.get(key)
            if have is None or total > have[0]:
                best[key] = (total, [instance_id])
            elif total == have[0]:
                have[1].append(instance_id)
    load: dict[str, int] = {}
    out: dict[str, list[tuple[SeriesKey, int]]] = {}
    for key, (total, holders) in sorted(best.items(), key=lambda kv: -kv[1][0]):
        if total == 0:
            continue
        chosen = min(holders, key=lambda iid: (load.get(iid, 0), holders.index(iid)))
        load[chosen] = load.get(chosen, 0) + total
        out.setdefault(chosen, []).append(key)
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
