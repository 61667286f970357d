# What moves when the cluster grows or shrinks by one instance.
# Owns: re-picking every tenant's real shuffle shard on the ring with one instance added (next name,
# next zone, fresh tokens) or removed (the last instance), and counting the tenants whose shard changed
# and by how many instances (dskit's consistency property: at most one each), plus the share of the
# key space that changes primary owner (exact: the instance's ownership).
# Must not know: loads, failures, printing; the seed is an argument.
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pyro_core.plan.load import add_planned_instance, make_ring
from pyro_core.plan.scenario import Tenant
from pyro_core.ring.model import RingDesc


@dataclass(frozen=True, slots=True)
class ChurnReport:
    change: str  # "add" or "remove"
    instance: str
    tenants_moved: int  # tenants whose shard changed
    tenants_moved_share: float
    max_instances_changed: int  # the most instances any one tenant's shard swapped (≤ 1 expected)
    key_space_moved: float  # share of the token space whose primary owner changed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def churn(
    desc: RingDesc,
    replication_factor: int,
    zones: int,
    tokens: int,
    tenants: Sequence[Tenant],
    default_shard_size: int,
    change: str,
    seed: int,
) -> ChurnReport:
    """Shards before and after one instance is added (``change="add"``) or removed (``"remove"``)."""
    after = desc.copy()
    if change == "add":
        instance = add_planned_instance(after, tokens, zones, seed)
    elif change == "remove":
        instance = sorted(desc, key=lambda k: (len(k), k))[-1]
        after.remove_instance(instance)
    else:
        raise ValueError(f"change must be 'add' or 'remove', got {change!r}")
    before_ring = make_ring(desc, replication_factor, zones)
    after_ring = make_ring(after, replication_factor, zones)
    moved = 0
    worst = 0
    for t in tenants:
        size = default_shard_size if t.shard_size is None else t.shard_size
        if change == "remove":  # a shard cannot be larger than the ring
            size = min(size, len(after))
        old = set(before_ring.shuffle_shard(t.name, size).instance_ids())
        new = set(after_ring.shuffle_shard(t.name, size).instance_ids())
        if old != new:
            moved += 1
            worst = max(worst, len(new - old), len(old - new))
    # exact: the primary ranges the added instance takes, or the removed one gave up
    key_moved = make_ring(after if change == "add" else desc, 1, 1).ownership()[instance]
    return ChurnReport(
        change=change,
        instance=instance,
        tenants_moved=moved,
        tenants_moved_share=moved / len(tenants) if tenants else 0.0,
        max_instances_changed=worst,
        key_space_moved=key_moved,
    )
