# The trio shell: members over an in-memory network on a virtual clock, and over real loopback
# sockets with both transports (memberlist's UDP+TCP, dskit's TCP with and without TLS), with
# cluster labels and encryption keys that must match, join failures and graceful leave.
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
import trustme

from pyro_core.memberlist.config import default_local_config
from pyro_core.memberlist.state import NodeStateType
from pyro_core.net.dskit_tcp import DskitTCPTransport, TLSConfig
from pyro_core.net.node import JoinError, MemberlistNode
from pyro_core.net.transport import MemoryNetwork, Transport, parse_address
from pyro_core.net.udp import NetTransport

S = NodeStateType


async def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(step)
    return predicate()


async def start_cluster(
    nursery: trio.Nursery, n: int, make_transport: Callable[[int], Transport], **config: Any
) -> list[MemberlistNode]:
    nodes = []
    for i in range(n):
        node = MemberlistNode(default_local_config(f"node-{i}", **config), make_transport(i), seed=i)
        await nursery.start(node.run)
        nodes.append(node)
    for node in nodes[1:]:
        await node.join([nodes[0].address])
    return nodes


def everyone_sees(nodes: list[MemberlistNode], count: int) -> bool:
    return all(node.core is not None and node.core.num_members() == count for node in nodes)


def test_members_on_a_memory_network_converge_and_detect_a_crash() -> None:
    async def main() -> None:
        net = MemoryNetwork(seed=1, loss=0.05)
        async with trio.open_nursery() as nursery:
            scopes = []
            nodes = []
            for i in range(8):
                node = MemberlistNode(default_local_config(f"m{i}"), net.transport(), seed=i)
                scope = trio.CancelScope()
                nodes.append(node)
                scopes.append(scope)

                async def run(
                    node: MemberlistNode = node, scope: trio.CancelScope = scope, *, task_status: Any
                ) -> None:
                    with scope:
                        await node.run(task_status=task_status)

                await nursery.start(run)
            for node in nodes[1:]:
                await node.join([nodes[0].address])
            assert await wait_until(lambda: everyone_sees(nodes, 8), 30)
            scopes[5].cancel()  # m5 crashes: its tasks stop, its address vanishes
            others = nodes[:5] + nodes[6:]
            assert await wait_until(
                lambda: all(n.core is not None and n.core.node("m5").state == S.DEAD for n in others), 120
            )
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.mark.parametrize("kind", ["udp", "dskit-tcp"])
def test_real_sockets_form_a_cluster_and_see_a_graceful_leave(kind: str) -> None:
    def make(i: int) -> Transport:
        return NetTransport("127.0.0.1", 0) if kind == "udp" else DskitTCPTransport("127.0.0.1", 0)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = await start_cluster(nursery, 4, make)
            assert await wait_until(lambda: everyone_sees(nodes, 4), 15)
            assert await nodes[3].leave(timeout=5)
            assert await wait_until(
                lambda: all(n.core is not None and n.core.node("node-3").state == S.LEFT for n in nodes[:3]),
                10,
            )
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_dskit_transport_with_mutual_tls(tmp_path: Any) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "cert.pem", "key": tmp_path / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    tls = TLSConfig(True, str(paths["cert"]), str(paths["key"]), str(paths["ca"]), server_name="localhost")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = await start_cluster(nursery, 3, lambda i: DskitTCPTransport("127.0.0.1", 0, tls=tls))
            assert await wait_until(lambda: everyone_sees(nodes, 3), 15)
            # a member without TLS cannot get in
            plain = MemberlistNode(default_local_config("plain"), DskitTCPTransport("127.0.0.1", 0))
            await nursery.start(plain.run)
            with pytest.raises(JoinError):
                await plain.join([nodes[0].address])
            nursery.cancel_scope.cancel()

    trio.run(main)


@pytest.mark.parametrize(
    ("ours", "theirs", "joins"),
    [
        ({"label": "prod"}, {"label": "prod"}, True),
        ({"label": "prod"}, {"label": "dev"}, False),
        ({"secret_keys": (b"k" * 16,)}, {"secret_keys": (b"k" * 16,)}, True),
        ({"secret_keys": (b"k" * 16,)}, {"secret_keys": (b"j" * 32,)}, False),
    ],
)
def test_labels_and_keys_must_match_to_join(
    ours: dict[str, Any], theirs: dict[str, Any], joins: bool
) -> None:
    async def main() -> None:
        net = MemoryNetwork()
        async with trio.open_nursery() as nursery:
            a = MemberlistNode(default_local_config("a", **ours), net.transport())
            b = MemberlistNode(default_local_config("b", **theirs), net.transport())
            await nursery.start(a.run)
            await nursery.start(b.run)
            if joins:
                await b.join([a.address])
                assert await wait_until(lambda: everyone_sees([a, b], 2), 10)
            else:
                with pytest.raises(JoinError):
                    await b.join([a.address])
                await trio.sleep(5)
                assert a.core is not None and a.core.num_members() == 1
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_join_with_nobody_listening_is_a_clear_error() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            node = MemberlistNode(
                default_local_config("lonely", tcp_timeout=0.5), NetTransport("127.0.0.1", 0)
            )
            await nursery.start(node.run)
            with pytest.raises(JoinError, match=r"could not join any of 127\.0\.0\.1:9"):
                await node.join([("127.0.0.1", 9)])
            nursery.cancel_scope.cancel()

    trio.run(main)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10.0.0.1:7946", ("10.0.0.1", 7946)), ("[::1]:80", ("::1", 80)), ("host", ("host", 7946))],
)
def test_addresses_parse_like_go(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text, default_port=7946) == expected


@pytest.mark.parametrize("text", ["host:", "host:99999", "a:b", ""])
def test_bad_addresses_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text, default_port=7946)
