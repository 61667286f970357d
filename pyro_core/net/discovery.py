# Resolving -memberlist.join entries into addresses, as dskit's DNS provider does.
# Owns: the join-address syntaxes — ip:port, host:port, dns+name:port (A/AAAA), dnssrv+name (SRV,
# then A/AAAA of each target), dnssrvnoa+name (SRV targets as they are) — and a clear error when
# nothing resolves. Uses dnspython's async resolver under trio. Must not know: memberlist itself.
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.resolver
import trio

from pyro_core.net.transport import Address, parse_address


class DiscoveryError(RuntimeError):
    """No join address could be resolved."""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Resolver:
    """Resolves join entries. ``nameservers``/``port`` point it at a given DNS server (tests)."""

    def __init__(
        self, nameservers: Sequence[str] | None = None, port: int = 53, timeout: float = 5.0
    ) -> None:
        if nameservers:
            self._dns = dns.asyncresolver.Resolver(configure=False)
            self._dns.nameservers = list(nameservers)
            self._dns.port = port
        else:
            try:
                self._dns = dns.asyncresolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                self._dns = dns.asyncresolver.Resolver(configure=False)
                self._dns.nameservers = ["127.0.0.1"]
        self._dns.lifetime = timeout
        self._use_dns_for_hosts = bool(nameservers)

    async def _a_records(self, name: str) -> list[str]:
        if self._use_dns_for_hosts:
            out: list[str] = []
            for rdtype in ("A", "AAAA"):
                try:
                    answer = await self._dns.resolve(name, rdtype)
                except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                    continue
                out.extend(r.to_text() for r in answer)
            return out
        infos = await trio.socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    async def _srv(self, name: str) -> list[tuple[str, int]]:
        answer = await self._dns.resolve(name, "SRV")
        return [(str(r.target).rstrip("."), int(r.port)) for r in answer]

    async def resolve_one(self, entry: str, default_port: int = 7946) -> list[Address]:
        """Addresses of one join entry; an unknown name gives [] (other entries may still work)."""
        entry = entry.strip()
        try:
            if entry.startswith("dnssrvnoa+"):
                return await self._srv(entry[len("dnssrvnoa+") :])
            if entry.startswith("dnssrv+"):
                out: list[Address] = []
                for target, port in await self._srv(entry[len("dnssrv+") :]):
                    out.extend((ip, port) for ip in await self._a_records(target))
                return out
            if entry.startswith("dns+"):
                host, port = parse_address(entry[len("dns+") :], default_port)
                return [(ip, port) for ip in await self._a_records(host)]
            host, port = parse_address(entry, default_port)
            if _is_ip(host):
                return [(host, port)]
            return [(ip, port) for ip in await self._a_records(host)]
        except (dns.exception.DNSException, OSError):
            return []

    async def resolve(self, entries: Sequence[str], default_port: int = 7946) -> list[Address]:
        """Every address of every entry, in order, without duplicates. Raises DiscoveryError if
        nothing resolves (so a node does not start alone by mistake)."""
        out: dict[Address, None] = {}
        for entry in entries:
            for addr in await self.resolve_one(entry, default_port):
                out[addr] = None
        if entries and not out:
            raise DiscoveryError(f"none of the join addresses resolved: {', '.join(entries)}")
        return list(out)
