# Join-address discovery, answered by a tiny DNS server of our own on loopback: SRV then A records,
# SRV targets as they are, dns+ A lookups, plain ip:port, and a clear error when nothing resolves.
from __future__ import annotations

import socket
from typing import Any

import dns.message
import dns.rcode
import dns.rrset
import pytest
import trio

from pyro_core.net.discovery import DiscoveryError, Resolver

ZONE = {
    ("_memberlist._tcp.pyro.test.", "SRV"): ["0 0 7946 ing-0.pyro.test.", "0 0 7947 ing-1.pyro.test."],
    ("ing-0.pyro.test.", "A"): ["127.0.0.10"],
    ("ing-1.pyro.test.", "A"): ["127.0.0.11", "127.0.0.12"],
    ("members.pyro.test.", "A"): ["127.0.0.20", "127.0.0.21"],
}


async def dns_server(*, task_status: Any) -> None:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    task_status.started(sock.getsockname()[1])
    while True:
        data, addr = await sock.recvfrom(4096)
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        key = (question.name.to_text(), dns.rdatatype.to_text(question.rdtype))
        if key in ZONE:
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", key[1], *ZONE[key]))
        elif not any(name == key[0] for name, _ in ZONE):
            response.set_rcode(dns.rcode.NXDOMAIN)
        await sock.sendto(response.to_wire(), addr)


def resolve(entries: list[str]) -> list[tuple[str, int]]:
    async def main() -> list[tuple[str, int]] | DiscoveryError:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(dns_server)
            try:
                return await Resolver(["127.0.0.1"], port=port, timeout=2).resolve(entries)
            except DiscoveryError as exc:
                return exc
            finally:
                nursery.cancel_scope.cancel()

    result = trio.run(main)
    if isinstance(result, DiscoveryError):
        raise result
    return result


def test_dnssrv_resolves_srv_then_a_records() -> None:
    assert sorted(resolve(["dnssrv+_memberlist._tcp.pyro.test"])) == [
        ("127.0.0.10", 7946),
        ("127.0.0.11", 7947),
        ("127.0.0.12", 7947),
    ]


def test_dnssrvnoa_keeps_the_srv_targets() -> None:
    assert sorted(resolve(["dnssrvnoa+_memberlist._tcp.pyro.test"])) == [
        ("ing-0.pyro.test", 7946),
        ("ing-1.pyro.test", 7947),
    ]


def test_dns_plus_resolves_a_records_with_the_given_port() -> None:
    assert sorted(resolve(["dns+members.pyro.test:7000"])) == [("127.0.0.20", 7000), ("127.0.0.21", 7000)]


def test_ip_entries_pass_through_and_duplicates_are_dropped() -> None:
    got = resolve(["10.1.2.3:7946", "10.1.2.3:7946", "dns+members.pyro.test:7946", "nowhere.pyro.test:1"])
    assert got[0] == ("10.1.2.3", 7946)  # entries keep their order; records within one entry may not
    assert sorted(got[1:]) == [("127.0.0.20", 7946), ("127.0.0.21", 7946)]


def test_nothing_resolving_is_a_clear_error() -> None:
    with pytest.raises(DiscoveryError, match="none of the join addresses resolved"):
        resolve(["dnssrv+_missing._tcp.pyro.test", "dns+nowhere.pyro.test:7946"])


def test_a_member_joins_a_cluster_found_through_dns_srv() -> None:
    from pyro_core.memberlist.config import default_local_config
    from pyro_core.net.node import MemberlistNode
    from pyro_core.net.udp import NetTransport

    async def main() -> int:
        async with trio.open_nursery() as nursery:
            seeds = [
                MemberlistNode(default_local_config(f"seed-{i}"), NetTransport("127.0.0.1", 0))
                for i in range(2)
            ]
            for s in seeds:
                await nursery.start(s.run)
            await seeds[1].join([seeds[0].address])
            ZONE[("_gossip._tcp.cluster.test.", "SRV")] = [
                f"0 0 {s.address[1]} seeds.cluster.test." for s in seeds
            ]
            ZONE[("seeds.cluster.test.", "A")] = ["127.0.0.1"]
            port = await nursery.start(dns_server)
            newcomer = MemberlistNode(default_local_config("newcomer"), NetTransport("127.0.0.1", 0))
            await nursery.start(newcomer.run)
            addresses = await Resolver(["127.0.0.1"], port=port, timeout=2).resolve(
                ["dnssrv+_gossip._tcp.cluster.test"]
            )
            joined = await newcomer.join(addresses)
            with trio.move_on_after(10):
                while newcomer.core is None or newcomer.core.num_members() != 3:
                    await trio.sleep(0.05)
            assert newcomer.core is not None and newcomer.core.num_members() == 3
            nursery.cancel_scope.cancel()
        return joined

    assert trio.run(main) == 2
