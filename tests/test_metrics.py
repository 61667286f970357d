# Metrics and status payloads of a running cluster (three members on an in-memory network, virtual
# clock): the ring gauges exactly as Pyroscope names them, memberlist counters, /memberlist JSON.
from __future__ import annotations

from typing import Any

import trio
import trio.testing
from prometheus_client import CollectorRegistry, generate_latest

from pyro_core.memberlist.config import default_local_config
from pyro_core.metrics import ClusterCollector
from pyro_core.net.cluster import ClusterMember, RingRegistration
from pyro_core.net.transport import MemoryNetwork
from pyro_core.status import memberlist_payload, ring_payload

EPOCH = 1_700_000_000.0


def test_ring_and_memberlist_metrics_follow_the_cluster() -> None:
    async def main() -> dict[str, Any]:
        net = MemoryNetwork(seed=2)
        clock = lambda: EPOCH + trio.current_time()  # noqa: E731
        members = []
        async with trio.open_nursery() as nursery:
            for i in range(3):
                member = ClusterMember(
                    default_local_config(f"i{i}"),
                    net.transport(),
                    registration=RingRegistration(f"ingester-{i}", num_tokens=16, heartbeat_period=1.0),
                    clock=clock,
                    seed=i,
                )
                await nursery.start(member.run)
                members.append(member)
            for m in members[1:]:
                await m.node.join([members[0].address])
            for m in members:
                await m.register()
            with trio.move_on_after(30):
                while not all((r := m.ring()) is not None and len(r) == 3 for m in members):
                    await trio.sleep(0.2)
            await trio.sleep(2)
            registry = CollectorRegistry()
            registry.register(
                ClusterCollector(
                    lambda: members[0].node.core, members[0].store, clock=clock, node=members[0].node
                )
            )
            text = generate_latest(registry).decode()
            core = members[0].node.core
            assert core is not None
            result = {
                "metrics": text,
                "memberlist": memberlist_payload(core, members[0].store),
                "ring": ring_payload(members[0].ring() or members[0].store.get("collectors/ring"), clock()),
            }
            nursery.cancel_scope.cancel()
        return result

    out = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    text = out["metrics"]
    assert 'pyroscope_ring_members{name="ingester",state="ACTIVE"} 3.0' in text
    assert 'pyroscope_ring_members{name="Unhealthy"' not in text
    assert 'pyroscope_ring_members{name="ingester",state="Unhealthy"} 0.0' in text
    assert 'pyroscope_ring_tokens_total{name="ingester"} 48.0' in text
    assert 'pyroscope_ring_oldest_member_timestamp{name="ingester",state="LEAVING"} 0.0' in text
    assert "memberlist_client_cluster_members_count 3.0" in text
    assert "memberlist_client_cas_success_total" in text
    assert "memberlist_stream_errors_total" in text and "memberlist_packets_dropped_total 0.0" in text
    assert out["memberlist"]["num_members"] == 3
    assert (
        out["memberlist"]["kv"][0]["key"] == "collectors/ring"
        and out["memberlist"]["kv"][0]["codec"] == "ringDesc"
    )
    assert sorted(i["id"] for i in out["ring"]["instances"]) == ["ingester-0", "ingester-1", "ingester-2"]
