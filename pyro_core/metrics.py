# Prometheus metrics of a cluster member, collected when scraped (nothing on the hot paths).
# Owns: metric names and labels — the ring gauges exactly as dskit/Pyroscope define them
# (<prefix>_ring_members{name,state}, <prefix>_ring_oldest_member_timestamp{name,state},
# <prefix>_ring_tokens_total{name}) and memberlist / KV counters under dskit's memberlist_client_*
# names. Must not know: HTTP (prometheus_client's exposition does that), trio.
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from pyro_core.kv.lifecycler import ring_metrics
from pyro_core.kv.store import KVStore
from pyro_core.memberlist.state import Memberlist, NodeStateType
from pyro_core.ring.model import RingDesc

RING_NAMES = {"collectors/ring": "ingester"}  # the ring's name label, by KV key (Pyroscope's)


class ClusterCollector(Collector):
    """Scrape-time metrics of one member: its rings (as seen in its KV store) and its gossip."""

    def __init__(
        self,
        core: Callable[[], Memberlist | None],
        store: KVStore[RingDesc],
        *,
        clock: Callable[[], float],
        prefix: str = "pyroscope",
        heartbeat_timeout: float = 60.0,
        ring_names: Mapping[str, str] = RING_NAMES,
        node: Any = None,
    ) -> None:
        self.node = node  # the MemberlistNode shell, for its stream and drop counters (optional)
        self.core = core
        self.store = store
        self.clock = clock
        self.prefix = prefix
        self.heartbeat_timeout = heartbeat_timeout
        self.ring_names = dict(ring_names)

    def describe(self) -> list[object]:
        return []  # collected dynamically: skip the registry's duplicate check by describing nothing

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield from self._ring_metrics()
        yield from self._memberlist_metrics()
        yield from self._kv_metrics()
        yield from self._shell_metrics()

    def _shell_metrics(self) -> Iterator[CounterMetricFamily]:
        node = self.node
        if node is None:
            return
        for name, help_text, value in (
            (
                "memberlist_stream_errors_total",
                "Inbound or outbound streams that failed.",
                node.stream_errors,
            ),
            (
                "memberlist_packets_dropped_total",
                "Outbound packets dropped because the send queue was full.",
                node.dropped_packets,
            ),
            (
                "memberlist_streams_dropped_total",
                "Streams refused: too many in flight.",
                node.dropped_streams,
            ),
            (
                "memberlist_handler_errors_total",
                "Errors caught at task boundaries (bugs).",
                node.handler_errors,
            ),
        ):
            c = CounterMetricFamily(name, help_text)
            c.add_metric([], value)
            yield c

    def _ring_metrics(self) -> Iterator[GaugeMetricFamily]:
        p = self.prefix
        members = GaugeMetricFamily(
            f"{p}_ring_members", "Number of members in the ring", labels=["name", "state"]
        )
        oldest = GaugeMetricFamily(
            f"{p}_ring_oldest_member_timestamp",
            "Timestamp of the oldest member in the ring.",
            labels=["name", "state"],
        )
        tokens = GaugeMetricFamily(f"{p}_ring_tokens_total", "Number of tokens in the ring", labels=["name"])
        now = self.clock()
        for key in self.store.keys():  # noqa: SIM118 (a KVStore, not a dict)
            desc = self.store.get(key)
            if not isinstance(desc, RingDesc):
                continue
            name = self.ring_names.get(key, key)
            m = ring_metrics(desc, now, self.heartbeat_timeout)
            for state, count in sorted(m["ring_members"].items()):
                members.add_metric([name, state], count)
            for state, ts in sorted(m["ring_oldest_member_timestamp"].items()):
                oldest.add_metric([name, state], ts)
            tokens.add_metric([name], m["ring_tokens_total"])
        yield members
        yield oldest
        yield tokens

    def _memberlist_metrics(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        core = self.core()
        if core is None:
            return
        count = GaugeMetricFamily(
            "memberlist_client_cluster_members_count", "Number of members in the memberlist cluster."
        )
        count.add_metric([], core.num_members())
        yield count
        by_state = GaugeMetricFamily(
            "memberlist_client_cluster_members_by_state",
            "Members known to this node, by state.",
            labels=["state"],
        )
        states = {s: 0 for s in NodeStateType}
        for node in core.all_nodes():
            states[node.state] += 1
        for state, n in states.items():
            by_state.add_metric([state.name.lower()], n)
        yield by_state
        health = GaugeMetricFamily(
            "memberlist_client_cluster_node_health_score",
            "Local health score of this node (0 = healthy; higher = degraded, probes slowed).",
        )
        health.add_metric([], core.health_score())
        yield health
        stats = core.stats
        for name, help_text, value in (
            ("memberlist_packets_received_total", "Packets received.", stats.packets_received),
            ("memberlist_packets_received_bytes_total", "Bytes of packets received.", stats.bytes_received),
            ("memberlist_packets_sent_total", "Packets sent.", stats.packets_sent),
            ("memberlist_packets_sent_bytes_total", "Bytes of packets sent.", stats.bytes_sent),
            ("memberlist_packets_invalid_total", "Packets that did not decode (dropped).", stats.bad_packets),
            ("memberlist_probes_total", "Probes started.", stats.probes),
            ("memberlist_probes_failed_total", "Probes that ended in a suspicion.", stats.failed_probes),
            ("memberlist_refutes_total", "Times this node refuted a suspicion about itself.", stats.refutes),
        ):
            c = CounterMetricFamily(name, help_text)
            c.add_metric([], value)
            yield c
        msgs = CounterMetricFamily(
            "memberlist_messages_received_total", "Messages received, by type.", labels=["type"]
        )
        for kind, n in sorted(stats.messages.items()):
            msgs.add_metric([kind], n)
        yield msgs

    def _kv_metrics(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        s = self.store.stats
        for name, help_text, value in (
            ("memberlist_client_cas_attempt_total", "CAS attempts.", s.cas_attempts),
            ("memberlist_client_cas_success_total", "Successful CAS operations.", s.cas_successes),
            ("memberlist_client_cas_failure_total", "Failed CAS operations.", s.cas_failures),
            ("memberlist_client_received_broadcasts_total", "KV broadcasts received.", s.received_broadcasts),
            (
                "memberlist_client_received_broadcasts_invalid_total",
                "Invalid KV broadcasts received (dropped).",
                s.received_broadcasts_invalid,
            ),
            ("memberlist_client_state_pushes_total", "Full KV states pushed.", s.state_pushes),
            ("memberlist_client_state_pulls_total", "Full KV states pulled.", s.state_pulls),
        ):
            c = CounterMetricFamily(name, help_text)
            c.add_metric([], value)
            yield c
        keys = GaugeMetricFamily("memberlist_client_kv_store_count", "Number of values in the KV store.")
        keys.add_metric([], s.keys)
        yield keys
        queue = GaugeMetricFamily(
            "memberlist_client_messages_in_broadcast_queue",
            "KV messages waiting to be gossiped.",
            labels=["queue"],
        )
        queue.add_metric(["local"], s.local_queue_length)
        queue.add_metric(["gossip"], s.gossip_queue_length)
        yield queue
