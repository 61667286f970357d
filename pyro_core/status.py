# Status payloads of a cluster member: what /memberlist and /ring show (JSON) and what
# `pyro-core ring-status` prints, from the member's own state.
# Owns: the shape of those payloads and their text rendering. Must not know: HTTP, sockets.
from __future__ import annotations

from typing import Any

from pyro_core.kv.store import KVStore
from pyro_core.memberlist.state import Memberlist
from pyro_core.net.transport import format_address
from pyro_core.ring.model import RingDesc
from pyro_core.ring.ring import ring_class


def members_payload(core: Memberlist) -> list[dict[str, Any]]:
    return [
        {
            "name": n.name,
            "address": format_address(n.address),
            "state": n.state.name.lower(),
            "incarnation": n.incarnation,
        }
        for n in sorted(core.all_nodes(), key=lambda n: n.name)
    ]


def ring_payload(desc: RingDesc, now: float, heartbeat_timeout: float = 60.0) -> dict[str, Any]:
    """``{"instances": [{id, addr, zone, state, timestamp, heartbeat_age, healthy, tokens (the list),
    num_tokens, ownership}]}``
    with ownership in percent of the token space (within the instance's zone)."""
    ring = ring_class()(desc)
    ownership = ring.ownership() if len(ring.tokens) else {}
    instances = []
    for inst in sorted(desc.instances.values(), key=lambda i: i.id):
        age = now - inst.timestamp
        instances.append(
            {
                "id": inst.id,
                "addr": inst.addr,
                "zone": inst.zone,
                "state": inst.state.name,
                "timestamp": inst.timestamp,
                "heartbeat_age": round(age, 3),
                "healthy": age <= heartbeat_timeout,
                "tokens": [int(t) for t in inst.tokens],
                "num_tokens": len(inst.tokens),
                "ownership": round(100.0 * ownership.get(inst.id, 0.0), 4),
                "registered_timestamp": inst.registered_timestamp,
                "read_only": inst.read_only,
            }
        )
    return {"instances": instances}


def memberlist_payload(core: Memberlist, store: KVStore[Any] | None = None) -> dict[str, Any]:
    """What /memberlist shows: members, this node's health, and the KV keys."""
    payload: dict[str, Any] = {
        "node": core.name,
        "num_members": core.num_members(),
        "health_score": core.health_score(),
        "members": members_payload(core),
    }
    if store is not None:
        payload["kv"] = [
            {"key": key, "codec": info.codec, "version": info.version, "deleted": info.deleted}
            for key in store.keys()  # noqa: SIM118 (a KVStore, not a dict)
            if (info := store.key_info(key)) is not None
        ]
    return payload


def cluster_status(
    core: Memberlist, store: KVStore[Any], now: float, heartbeat_timeout: float = 60.0
) -> dict[str, Any]:
    """`pyro-core ring-status --json`: ``{"members": [...], "rings": {key: {"instances": [...]}}}``."""
    rings = {}
    for key in store.keys():  # noqa: SIM118 (a KVStore, not a dict)
        value = store.get(key)
        if isinstance(value, RingDesc):
            rings[key] = ring_payload(value, now, heartbeat_timeout)
    return {"members": members_payload(core), "rings": rings}


def render_cluster_status(status: dict[str, Any]) -> str:
    """The readable form of ``cluster_status``."""
    lines = [f"members ({len(status['members'])}):", f"  {'name':<24}{'address':<24}state"]
    for m in status["members"]:
        lines.append(f"  {m['name']:<24}{m['address']:<24}{m['state']}")
    for key, ring in status["rings"].items():
        lines.append("")
        lines.append(f"ring {key} ({len(ring['instances'])} instances):")
        lines.append(f"  {'instance':<24}{'zone':<10}{'state':<9}{'heartbeat':>10}{'tokens':>8}{'owns':>9}")
        for i in ring["instances"]:
            age = f"{i['heartbeat_age']:.0f}s ago"
            flag = "" if i["healthy"] else "  UNHEALTHY"
            lines.append(
                f"  {i['id']:<24}{i['zone'] or '-':<10}{i['state']:<9}{age:>10}{i['num_tokens']:>8}"
                f"{i['ownership']:>8.2f}%{flag}"
            )
    if not status["rings"]:
        lines.append("")
        lines.append("no rings in the KV store")
    return "\n".join(lines)
