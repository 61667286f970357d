# Clusters of real `pyro-core server` processes: writes replicated over the ring, reads from any node
# with replicas counted once, kill -9 mid-ingest, restart with data, tenants confined to their shard.
from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyro_core import InstanceDesc, InstanceState, Ring, RingDesc
from pyro_core.server.internal import (
    CONTENT_TYPE,
    LABELS_PATH,
    QUERY_PATH,
    LabelsRequest,
    QueryRequest,
    decode_labels_result,
    decode_query_result,
    encode_labels_request,
    encode_query,
)
from pyro_core.server.tree import StackTree
from tests.server.procs import Server, collapsed, http, stop_all

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def ring_of(node: Server) -> list[dict[str, object]]:
    status, body = http("GET", node.url("/ring"), headers={"Accept": "application/json"})
    assert status == 200, body
    instances: list[dict[str, object]] = json.loads(body)["instances"]
    return instances


def wait_for_ring(nodes: list[Server], active: set[str], timeout: float = 40.0) -> list[dict[str, object]]:
    """Until every node's /ring shows exactly ``active`` as ACTIVE (and each is ready)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        for n in nodes:
            n.check_alive()
        try:
            rings = [ring_of(n) for n in nodes]
            last = rings
            if all({str(i["id"]) for i in r if i["state"] == "ACTIVE"} == active for r in rings) and all(
                http("GET", n.url("/ready"))[0] == 200 for n in nodes
            ):
                return rings[0]
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"rings never converged on {sorted(active)}: {last}")


@pytest.fixture
def cluster() -> Iterator[list[Server]]:
    nodes: list[Server] = []
    yield nodes
    stop_all(nodes)


def start_cluster(nodes: list[Server], count: int, tmp_path: Path, extra: list[str]) -> None:
    for i in range(count):
        nodes.append(Server(f"ing-{i}", tmp_path / f"n{i}", ["-memberlist.pullpush-interval=1s", *extra], tokens=32))
    nodes[0].start()
    wait_for_ring(nodes[:1], {nodes[0].name})  # listening before the others join it
    for n in nodes[1:]:
        n.join = nodes[0].ml
        n.start()
    wait_for_ring(nodes, {n.name for n in nodes})


def internal_query(node: Server, tenant: str, query: str) -> StackTree:
    """What this one ingester holds (its internal API, no fan-out)."""
    body = encode_query(QueryRequest(tenant, query, 0.0, time.time() + 3600))
    status, raw = http("POST", node.url(QUERY_PATH), body, {"Content-Type": CONTENT_TYPE})
    assert status == 200, raw
    series, _ = decode_query_result(raw)
    out = StackTree()
    for _, stacks in series.values():
        out.add_stacks(stacks)
    return out


def test_replicated_cluster_survives_kill_9_mid_ingest_and_the_node_rejoins_with_its_data(
    cluster: list[Server], tmp_path: Path
) -> None:
    start_cluster(cluster, 3, tmp_path, ["-distributor.replication-factor=3"])
    a, b, c = cluster
    acked: list[int] = []
    failed: list[tuple[int, int, bytes]] = []
    killed_at: list[int] = []
    stop = threading.Event()

    def ingest() -> None:
        i = 0
        while not stop.is_set() and i < 400:
            status, body = http("POST", a.url("/ingest?name=repl.cpu{env=test}"), f"main;fn_{i} 1\n".encode())
            (acked.append(i) if status == 200 else failed.append((i, status, body)))
            i += 1
            if i == 60:
                c.kill()  # mid-ingest: the profiles after this one reach two replicas of three
                killed_at.append(i)

    writer = threading.Thread(target=ingest)
    writer.start()
    writer.join(timeout=120)
    stop.set()
    writer.join()
    assert killed_at, "the writer never reached the kill"
    # RF=3 tolerates one failed replica: every write was acknowledged.
    assert not failed, failed[:3]
    assert len(acked) == 400
    want = {f"main;fn_{i}": 1 for i in acked}
    # Any node answers for the whole cluster; the dead node's share is served by the others and the
    # replicas of each series are counted once (not three or two times).
    assert collapsed(b, "repl.cpu{env=\"test\"}") == want
    assert collapsed(a, "repl.cpu") == want
    # Every live ingester holds every series (RF=3 on three nodes).
    assert internal_query(b, "anonymous", "repl.cpu").total == 400

    c.join = a.ml
    c.start()  # same name, ports and data directory
    wait_for_ring(cluster, {"ing-0", "ing-1", "ing-2"})
    held = internal_query(c, "anonymous", "repl.cpu").to_dict()
    # It came back with what it had acknowledged before the kill (its WAL), and no more.
    assert {k.decode() for k in held} >= {f"main;fn_{i}" for i in range(killed_at[0] - 1)}
    assert all(v == 1 for v in held.values())
    # A query through the restarted node still counts each profile once.
    assert collapsed(c, "repl.cpu") == want
    status, body = http("POST", c.url("/ingest?name=repl.cpu{env=test}"), b"main;after 5\n")
    assert status == 200, body
    for n in cluster:
        assert internal_query(n, "anonymous", "repl.cpu").to_dict()[b"main;after"] == 5


def ring_from_json(instances: list[dict[str, object]], now: float) -> RingDesc:
    out = {}
    for inst in instances:
        out[str(inst["id"])] = InstanceDesc(
            id=str(inst["id"]),
            addr=str(inst["addr"]),
            timestamp=int(now),
            state=InstanceState.ACTIVE,
            tokens=[int(t) for t in inst["tokens"]],  # type: ignore[attr-defined]
            zone=str(inst["zone"]),
        )
    return RingDesc(out)


def test_tenant_series_land_only_on_its_shuffle_shard(cluster: list[Server], tmp_path: Path) -> None:
    start_cluster(
        cluster,
        5,
        tmp_path,
        [
            "-distributor.replication-factor=2",
            "-distributor.ingestion-tenant-shard-size=2",
            "-auth.multitenancy-enabled=true",
        ],
    )
    ring = Ring(ring_from_json(ring_of(cluster[0]), time.time()), replication_factor=2)
    by_id = {n.name: n for n in cluster}
    for tenant in ("tenant-a", "tenant-b"):
        shard = {i.id for i in ring.shuffle_shard(tenant, 2).instances}
        assert len(shard) == 2
        for k in range(12):  # series with different labels: different tokens
            status, body = http(
                "POST",
                cluster[k % 5].url(f"/ingest?name=shard.cpu{{host=h{k}}}"),
                f"main;{tenant};w{k} 1\n".encode(),
                {"X-Scope-OrgID": tenant},
            )
            assert status == 200, body
        holders = {n.name for n in cluster if internal_query(n, tenant, "shard.cpu").total > 0}
        # RF=2 within a shard of 2: both shard members hold every series, nobody else holds any.
        assert holders == shard, (tenant, holders, shard)
        for iid in shard:
            assert internal_query(by_id[iid], tenant, "shard.cpu").total == 12
        # Queries from any node see the tenant's data once; the other tenant sees none of it.
        for n in cluster:
            got = collapsed(n, "shard.cpu", tenant)
            assert sum(got.values()) == 12 and all(tenant in s for s in got)
    status, body = http(
        "POST",
        cluster[0].url(LABELS_PATH),
        encode_labels_request(LabelsRequest("tenant-a", "apps")),
        {"Content-Type": CONTENT_TYPE},
    )
    assert status == 200
    assert decode_labels_result(body)[0] in (["shard.cpu"], [])
