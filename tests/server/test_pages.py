# The cluster pages of the ASGI app (/ring, /memberlist, /ready, /metrics) with real ClusterMembers on
# an in-memory network and a virtual clock; requests are hand-built ASGI calls inside the same trio run.
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from pyro_core.memberlist.config import default_local_config
from pyro_core.net.cluster import ClusterMember, RingRegistration
from pyro_core.net.transport import MemoryNetwork
from pyro_core.server.app import make_app
from pyro_core.server.pages import wants_json
from pyro_core.server.storage import Storage

EPOCH = 1_700_000_000.0
HOSTILE = '<script>alert("x")</script>&co'
Response = tuple[int, dict[str, str], bytes]


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    s = Storage(tmp_path / "data", fsync=False).open()
    yield s
    s.close()


async def call(
    app: Any, path: str, headers: dict[str, str] | None = None, *, method: str = "GET", body: bytes = b""
) -> Response:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    await app(scope, receive, send)
    start = sent[0]
    hdrs = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], hdrs, b"".join(m.get("body", b"") for m in sent[1:])


def run_cluster(
    storage: Storage,
    ids: list[str],
    body: Callable[[Any, list[ClusterMember]], Awaitable[Any]],
) -> Any:
    """Start one member per id (the first one serving the app), join them, run ``body(app, members)``."""

    async def main() -> Any:
        net = MemoryNetwork(seed=3)
        clock = lambda: EPOCH + trio.current_time()  # noqa: E731
        members = [
            ClusterMember(
                default_local_config(f"node-{i}"),
                net.transport(),
                registration=RingRegistration(
                    instance_id, instance_addr=f"10.0.0.{i + 1}:4040", num_tokens=16, heartbeat_period=1.0
                ),
                clock=clock,
                seed=i,
            )
            for i, instance_id in enumerate(ids)
        ]
        app = make_app(storage, clock=clock, member=members[0])
        async with trio.open_nursery() as nursery:
            for m in members:
                await nursery.start(m.run)
            for m in members[1:]:
                await m.node.join([members[0].address])
            result = await body(app, members)
            nursery.cancel_scope.cancel()
        return result

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def wait_ring(member: ClusterMember, n: int) -> None:
    with trio.fail_after(60):
        while (r := member.ring()) is None or len(r.instances) < n:
            await trio.sleep(0.2)


def test_wants_json() -> None:
    assert wants_json("application/json")
    assert wants_json("text/html, Application/JSON;q=0.9")
    assert not wants_json("text/html")
    assert not wants_json("")


def test_ready_is_503_until_this_instance_is_active(storage: Storage) -> None:
    async def body(app: Any, members: list[ClusterMember]) -> list[Response]:
        out = [await call(app, "/ready")]
        await members[0].register()
        await wait_ring(members[0], 1)
        out.append(await call(app, "/ready"))
        return out

    before, after = run_cluster(storage, ["ingester-0"], body)
    assert before[0] == 503
    assert before[2].startswith(b"not ready: ")
    assert after[0] == 200
    assert after[2] == b"ready\n"


def test_ring_and_memberlist_json_and_html(storage: Storage) -> None:
    async def body(app: Any, members: list[ClusterMember]) -> dict[str, Response]:
        for m in members:
            await m.register()
        await wait_ring(members[0], 2)
        await trio.sleep(1)
        accept = {"Accept": "application/json"}
        return {
            "ring_json": await call(app, "/ring", accept),
            "ring_html": await call(app, "/ring", {"Accept": "text/html"}),
            "ml_json": await call(app, "/memberlist", accept),
            "ml_html": await call(app, "/memberlist"),
            "metrics": await call(app, "/metrics"),
        }

    out = run_cluster(storage, ["ingester-0", HOSTILE], body)

    status, headers, raw = out["ring_json"]
    assert status == 200 and headers["content-type"] == "application/json"
    instances = json.loads(raw)["instances"]
    assert sorted(i["id"] for i in instances) == sorted(["ingester-0", HOSTILE])
    for inst in instances:
        assert {"id", "addr", "zone", "state", "timestamp", "tokens", "ownership"} <= inst.keys()
        assert inst["state"] == "ACTIVE"
        assert inst["num_tokens"] == 16 == len(inst["tokens"])
    assert abs(sum(i["ownership"] for i in instances) - 100.0) < 0.01
    assert {i["addr"] for i in instances} == {"10.0.0.1:4040", "10.0.0.2:4040"}

    status, headers, page = out["ring_html"]
    assert status == 200 and headers["content-type"].startswith("text/html")
    text = page.decode()
    assert "<table>" in text and "ingester-0" in text and "ACTIVE" in text and "10.0.0.2:4040" in text
    assert HOSTILE not in text and "<script>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;co" in text
    assert "%" in text

    status, headers, raw = out["ml_json"]
    assert status == 200 and headers["content-type"] == "application/json"
    doc = json.loads(raw)
    assert doc["node"] == "node-0" and doc["num_members"] == 2
    assert sorted(m["name"] for m in doc["members"]) == ["node-0", "node-1"]
    assert doc["kv"][0]["key"] == "collectors/ring"

    status, headers, page = out["ml_html"]
    assert status == 200 and headers["content-type"].startswith("text/html")
    text = page.decode()
    assert "<table>" in text and "node-1" in text and "collectors/ring" in text

    status, _, metrics = out["metrics"]
    assert status == 200
    assert 'pyroscope_ring_members{name="ingester",state="ACTIVE"} 2\n' in metrics.decode()
    assert "memberlist_client_cluster_members_count 2\n" in metrics.decode()


def test_no_member_keeps_single_node_behaviour(storage: Storage) -> None:
    async def main() -> tuple[Response, Response]:
        app = make_app(storage)
        return await call(app, "/ready"), await call(app, "/ring")

    ready, ring = trio.run(main)
    assert ready[0] == 200
    assert ring[0] == 404


def test_the_forget_button_removes_an_unhealthy_instance_cluster_wide(storage: Storage) -> None:
    from pyro_core.ring.model import InstanceDesc, InstanceState

    async def body(app: Any, members: list[ClusterMember]) -> dict[str, Any]:
        for m in members:
            await m.register()
        await wait_ring(members[1], 2)

        def add_ghost(current: Any) -> tuple[Any, bool]:
            current.instances["ghost"] = InstanceDesc(
                id="ghost", addr="10.0.0.9:4040", timestamp=int(EPOCH) - 3600, state=InstanceState.ACTIVE, tokens=[7, 8]
            )
            return current, True

        assert members[0].store.cas("collectors/ring", add_ghost, members[0].clock()).ok
        await wait_ring(members[1], 3)
        page = await call(app, "/ring")
        missing = await call(app, "/ring", method="POST", body=b"forget=nobody")
        empty = await call(app, "/ring", method="POST", body=b"")
        forgot = await call(app, "/ring", method="POST", body=b"forget=ghost")
        with trio.fail_after(30):
            while "ghost" in (members[1].ring() or {}).instances:  # type: ignore[union-attr]
                await trio.sleep(0.2)
        again = await call(app, "/ring", {"Accept": "application/json"}, method="POST", body=b"forget=ghost")
        return {"page": page, "missing": missing, "empty": empty, "forgot": forgot, "again": again,
                "left": sorted(members[1].ring().instances)}  # type: ignore[union-attr]

    out = run_cluster(storage, ["ingester-0", "ingester-1"], body)
    text = out["page"][2].decode()
    # One button, beside the unhealthy instance only.
    assert text.count("<button") == 1 and 'name="forget" value="ghost"' in text
    assert out["missing"][0] == 404 and out["empty"][0] == 400
    status, _, page = out["forgot"]
    assert status == 200 and b"Instance ghost forgotten." in page and b"10.0.0.9" not in page
    assert out["left"] == ["ingester-0", "ingester-1"]  # gossiped to the other member
    assert out["again"][0] == 404
