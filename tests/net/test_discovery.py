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
