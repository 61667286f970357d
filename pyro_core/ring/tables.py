# The lookup tables of a ring, built from a RingDesc (dskit Ring.setRingStateFromDesc).
# Owns: turning a description into flat arrays both kernel twins walk — sorted tokens and their
# owners, zones and per-zone token runs, per-instance state/heartbeat/read-only columns — and the
# "is this a topology change" test that decides between a rebuild and a state swap.
# Must not know: lookups or sharding rules (the kernels), clocks, I/O.
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from pyro_core.ring.model import InstanceDesc, RingDesc

U32 = npt.NDArray[np.uint32]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class RingTables:
    instances: list[InstanceDesc]  # by index; indices follow sorted instance ids
    ids: list[str]
    index: dict[str, int]
    tokens: U32  # every token, sorted; a token held twice keeps its lowest-id owner
    owner: I32  # owner index of each token
    zones: list[str]  # sorted, every zone that has an instance (may include "")
    inst_zone: I32  # zone index of each instance
    zone_size: I32  # instances per zone (with or without tokens)
    zone_tokens: U32  # tokens grouped by zone, sorted within each zone
    zone_owner: I32
    zone_offsets: I64  # zone z's run is zone_tokens[zone_offsets[z]:zone_offsets[z+1]]
    state: U8
    heartbeat: I64
    read_only: U8
    read_only_ts: I64
    registered_ts: I64
    oldest_registered: int  # 0 when any instance has an unknown registration time
    read_only_count: int
    oldest_read_only_updated: int
    lookback_events: I64  # sorted distinct registered / read-only-updated times (lookback cache)


def state_columns(instances: list[InstanceDesc]) -> tuple[U8, I64]:
    n = len(instances)
    state = np.fromiter((i.state for i in instances), dtype=np.uint8, count=n)
    heartbeat = np.fromiter((i.timestamp for i in instances), dtype=np.int64, count=n)
    return state, heartbeat


def build_tables(desc: RingDesc) -> RingTables:
    ids = sorted(desc.instances)
    instances = [desc.instances[i] for i in ids]
    n = len(instances)
    lengths = np.fromiter((len(i.tokens) for i in instances), dtype=np.int64, count=n)
    if lengths.sum():
        all_tokens = np.concatenate([i.tokens for i in instances])
        owners = np.repeat(np.arange(n, dtype=np.int32), lengths)
        order = np.lexsort((owners, all_tokens))
        tokens = all_tokens[order]
        owner = owners[order]
        if len(tokens) > 1:
            first = np.ones(len(tokens), dtype=bool)
            first[1:] = tokens[1:] != tokens[:-1]
            if not first.all():
                tokens, owner = tokens[first], owner[first]
    else:
        tokens = np.empty(0, dtype=np.uint32)
        owner = np.empty(0, dtype=np.int32)
    tokens = np.ascontiguousarray(tokens, dtype=np.uint32)
    owner = np.ascontiguousarray(owner, dtype=np.int32)

    zones = sorted({i.zone for i in instances})
    zone_index = {z: k for k, z in enumerate(zones)}
    inst_zone = np.fromiter((zone_index[i.zone] for i in instances), dtype=np.int32, count=n)
    zone_size = np.bincount(inst_zone, minlength=len(zones)).astype(np.int32)
    tok_zone = inst_zone[owner] if len(owner) else np.empty(0, dtype=np.int32)
    by_zone = np.argsort(tok_zone, kind="stable")
    zone_tokens = np.ascontiguousarray(tokens[by_zone])
    zone_owner = np.ascontiguousarray(owner[by_zone])
    zone_offsets = np.zeros(len(zones) + 1, dtype=np.int64)
    if len(zones):
        np.cumsum(np.bincount(tok_zone, minlength=len(zones)), out=zone_offsets[1:])

    state, heartbeat = state_columns(instances)
    read_only = np.fromiter((i.read_only for i in instances), dtype=np.uint8, count=n)
    read_only_ts = np.fromiter((i.read_only_updated_timestamp for i in instances), dtype=np.int64, count=n)
    registered_ts = np.fromiter((i.registered_timestamp for i in instances), dtype=np.int64, count=n)
    oldest_registered = 0 if n == 0 or (registered_ts == 0).any() else int(registered_ts.min())
    ro = read_only.astype(bool)
    read_only_count = int(ro.sum())
    oldest_ro = int(read_only_ts[ro].min()) if read_only_count else 0
    events = np.unique(np.concatenate([registered_ts, read_only_ts]))
    return RingTables(
        instances=instances,
        ids=ids,
        index={k: j for j, k in enumerate(ids)},
        tokens=tokens,
        owner=owner,
        zones=zones,
        inst_zone=inst_zone,
        zone_size=zone_size,
        zone_tokens=zone_tokens,
        zone_owner=zone_owner,
        zone_offsets=zone_offsets,
        state=state,
        heartbeat=heartbeat,
        read_only=read_only,
        read_only_ts=read_only_ts,
        registered_ts=registered_ts,
        oldest_registered=oldest_registered,
        read_only_count=read_only_count,
        oldest_read_only_updated=oldest_ro,
        lookback_events=events,
    )


def same_topology(old: RingTables, desc: RingDesc) -> bool:
    """True when ``desc`` differs from the tables' ring only in states and heartbeats."""
    if len(old.ids) != len(desc.instances):
        return False
    get = desc.instances.get
    for inst in old.instances:
        new = get(inst.id)
        if new is None or not (new is inst or inst.same_topology(new)):
            return False
    return True


def with_states(old: RingTables, desc: RingDesc) -> RingTables:
    """The same tables with the states and heartbeats of ``desc`` (same topology)."""
    instances = [desc.instances[i] for i in old.ids]
    state, heartbeat = state_columns(instances)
    return replace(old, instances=instances, state=state, heartbeat=heartbeat)
