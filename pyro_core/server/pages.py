"""The cluster status pages of the HTTP server: ``/ring``, ``/memberlist`` and the ring part of ``/ready``.

Owns: the JSON-or-HTML choice (by the Accept header), the HTML rendering (every value escaped) and the
readiness rule (this instance ACTIVE in its ring). The payloads themselves come from pyro_core.status.
Must not know: ASGI or sockets (app.py does the HTTP), how the member runs (cli.py).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any, Final

from pyro_core.net.cluster import DEFAULT_RING_KEY, ClusterMember
from pyro_core.ring.model import InstanceState, RingDesc
from pyro_core.status import memberlist_payload, ring_payload

__all__ = ["HTML", "JSON", "memberlist_page", "not_ready_reason", "ring_page", "wants_json"]

JSON: Final = "application/json"
HTML: Final = "text/html; charset=utf-8"
DEFAULT_HEARTBEAT_TIMEOUT: Final = 60.0


def wants_json(accept: str) -> bool:
    """True when the request's Accept header asks for JSON."""
    return "application/json" in accept.lower()


def _ring_key(member: ClusterMember) -> str:
    reg = member.registration
    return reg.ring_key if reg is not None else DEFAULT_RING_KEY


def _heartbeat_timeout(member: ClusterMember) -> float:
    reg = member.registration
    return reg.heartbeat_timeout if reg is not None else DEFAULT_HEARTBEAT_TIMEOUT


def not_ready_reason(member: ClusterMember) -> str | None:
    """None when this member is ready (no ring registration, or its instance is ACTIVE in the ring),
    otherwise why not."""
    reg = member.registration
    if reg is None:
        return None
    desc = member.store.get(reg.ring_key)
    if not isinstance(desc, RingDesc):
        return f"ring {reg.ring_key} not found"
    inst = desc.instances.get(reg.instance_id)
    if inst is None:
        return f"instance {reg.instance_id} not in the ring {reg.ring_key}"
    if inst.state != InstanceState.ACTIVE:
        return f"instance {reg.instance_id} is {InstanceState(inst.state).name}, not ACTIVE"
    return None


def _page(title: str, sections: Sequence[str]) -> bytes:
    t = html.escape(title)
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>'
        f"{t}</title>\n<style>body{{font-family:sans-serif}}table{{border-collapse:collapse}}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}</style></head>\n"
        f"<body><h1>{t}</h1>\n{body}\n</body></html>\n"
    ).encode()


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    lines = [f"<table>\n<tr>{head}</tr>"]
    for row in rows:
        cells = "".join(f"<td>{c if isinstance(c, _Raw) else html.escape(str(c))}</td>" for c in row)
        lines.append(f"<tr>{cells}</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def ring_page(member: ClusterMember, now: float, accept: str, notice: str = "") -> tuple[bytes, str]:
    """``/ring``: JSON ``{"instances": [...]}`` or an HTML table of the member's ingester ring, with a
    Forget button (a form POSTing ``forget=<id>`` to /ring) beside every unhealthy instance."""
    key = _ring_key(member)
    desc = member.store.get(key)
    payload = (
        ring_payload(desc, now, _heartbeat_timeout(member))
        if isinstance(desc, RingDesc)
        else {"instances": []}
    )
    if wants_json(accept):
        return json.dumps(payload, separators=(",", ":")).encode(), JSON
    rows = [
        (
            i["id"],
            i["zone"] or "-",
            i["state"],
            i["addr"],
            f"{i['heartbeat_age']:.1f}s ago" + ("" if i["healthy"] else " (unhealthy)"),
            i["num_tokens"],
            f"{i['ownership']:.2f}%",
            _Raw(_forget_button(str(i["id"]))) if not i["healthy"] else "",
        )
        for i in payload["instances"]
    ]
    table = _table(("Instance", "Zone", "State", "Address", "Heartbeat", "Tokens", "Ownership", ""), rows)
    summary = f"<p>{html.escape(key)}: {len(rows)} instance{'s' if len(rows) != 1 else ''}</p>"
    sections = [summary, table]
    if notice:
        sections.insert(0, f"<p><b>{html.escape(notice)}</b></p>")
    return _page("Ring status", sections), HTML


class _Raw(str):
    """Markup a table cell keeps as is (everything else is escaped)."""


def _forget_button(instance_id: str) -> str:
    value = html.escape(instance_id, quote=True)
    return (
        '<form method="post" action="/ring" style="margin:0">'
        f'<input type="hidden" name="forget" value="{value}">'
        '<button type="submit">Forget</button></form>'
    )


def memberlist_page(member: ClusterMember, accept: str) -> tuple[bytes, str]:
    """``/memberlist``: JSON (status.memberlist_payload) or an HTML page of members and KV keys."""
    core = member.node.core
    if core is None:
        payload: dict[str, Any] = {"node": "", "num_members": 0, "health_score": 0, "members": [], "kv": []}
    else:
        payload = memberlist_payload(core, member.store)
    if wants_json(accept):
        return json.dumps(payload, separators=(",", ":")).encode(), JSON
    summary = (
        f"<p>node {html.escape(str(payload['node']))}, {html.escape(str(payload['num_members']))} "
        f"members, health score {html.escape(str(payload['health_score']))}</p>"
    )
    members = _table(
        ("Name", "Address", "State", "Incarnation"),
        [(m["name"], m["address"], m["state"], m["incarnation"]) for m in payload["members"]],
    )
    kv = _table(
        ("Key", "Codec", "Version", "Deleted"),
        [(k["key"], k["codec"], k["version"], k["deleted"]) for k in payload.get("kv", [])],
    )
    return _page("Memberlist status", [summary, "<h2>Members</h2>", members, "<h2>KV store</h2>", kv]), HTML
