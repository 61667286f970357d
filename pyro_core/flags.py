# Pyroscope-style command-line flags: -memberlist.join=ADDR, --memberlist.join ADDR, Go durations
# (200ms, 30s, 5m, 1h30m) and Go booleans (-flag, -flag=true), with clear errors.
# Owns: the -memberlist.* flag set (names and defaults as in dskit / the seed documents) and turning
# parsed flags into a memberlist Config, a transport and a join list. Must not know: sockets, trio.
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from pyro_core.memberlist.config import Config, ConfigError, dskit_config
from pyro_core.net.dskit_tcp import DskitTCPTransport, TLSConfig
from pyro_core.net.transport import Transport, parse_address
from pyro_core.net.udp import NetTransport

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration, in seconds: "200ms", "1m30s", "0"."""
    s = text.strip()
    if s in ("0", "+0", "-0"):
        return 0.0
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            raise argparse.ArgumentTypeError(f"invalid duration {text!r} (use Go syntax: 200ms, 30s, 5m)")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}")
    return sign * total


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "t", "true"):
        return True
    if value in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r} (use true or false)")


def parse_port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range 0-65535")
    return port


def parse_hex_key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("an encryption key must be hex") from None
    if len(key) not in (16, 24, 32):
        raise argparse.ArgumentTypeError(f"an encryption key must be 16, 24 or 32 bytes, got {len(key)}")
    return key


def parse_positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {n}")
    return n


def add_flag(parser: argparse.ArgumentParser, name: str, **kwargs: object) -> None:
    """A Go-style flag: accepted as -name and --name, with -name=value or -name value."""
    dest = name.replace(".", "_").replace("-", "_")
    if kwargs.get("type") is parse_bool:
        kwargs.setdefault("nargs", "?")
        kwargs.setdefault("const", True)
    parser.add_argument(f"-{name}", f"--{name}", dest=dest, **kwargs)  # type: ignore[arg-type]


def add_memberlist_flags(parser: argparse.ArgumentParser) -> None:
    """Every -memberlist.* flag, with dskit's defaults."""
    add_flag(parser, "memberlist.nodename", default="", help="member name (default: the hostname)")
    add_flag(
        parser,
        "memberlist.join",
        action="append",
        default=[],
        metavar="ADDR",
        help="join address, repeatable: ip:port, host:port, dns+name:port, dnssrv+name, dnssrvnoa+name",
    )
    add_flag(
        parser,
        "memberlist.dns-server",
        default="",
        metavar="IP:PORT",
        help="DNS server for dns+/dnssrv+ join addresses (a pyro-core flag; default: the system's)",
    )
    add_flag(
        parser,
        "memberlist.bind-addr",
        action="append",
        default=[],
        metavar="IP",
        help="IP to listen on (default 0.0.0.0)",
    )
    add_flag(parser, "memberlist.bind-port", type=parse_port, default=7946)
    add_flag(parser, "memberlist.advertise-addr", default="", help="IP other members reach this one at")
    add_flag(
        parser,
        "memberlist.advertise-port",
        type=parse_port,
        default=None,
        help="port other members reach this one at (default: the bound port)",
    )
    add_flag(
        parser,
        "memberlist.transport",
        choices=["tcp", "udp"],
        default="tcp",
        help="tcp = dskit's TCP transport (Pyroscope's); udp = memberlist's UDP+TCP",
    )
    add_flag(parser, "memberlist.gossip-interval", type=parse_duration, default=0.2)
    add_flag(parser, "memberlist.gossip-nodes", type=parse_positive_int, default=3)
    add_flag(parser, "memberlist.pullpush-interval", type=parse_duration, default=30.0)
    add_flag(parser, "memberlist.retransmit-factor", type=parse_positive_int, default=4)
    add_flag(parser, "memberlist.gossip-to-dead-nodes-time", type=parse_duration, default=30.0)
    add_flag(
        parser,
        "memberlist.probe-interval",
        type=parse_duration,
        default=5.0,
        help="SWIM probe period (a pyro-core flag; dskit fixes it at 5s)",
    )
    add_flag(
        parser,
        "memberlist.probe-timeout",
        type=parse_duration,
        default=2.0,
        help="direct probe timeout (a pyro-core flag; dskit fixes it at 2s)",
    )
    add_flag(parser, "memberlist.dead-node-reclaim-time", type=parse_duration, default=0.0)
    add_flag(parser, "memberlist.left-ingesters-timeout", type=parse_duration, default=300.0)
    add_flag(parser, "memberlist.stream-timeout", type=parse_duration, default=2.0)
    add_flag(parser, "memberlist.packet-dial-timeout", type=parse_duration, default=2.0)
    add_flag(parser, "memberlist.packet-write-timeout", type=parse_duration, default=5.0)
    add_flag(parser, "memberlist.compression-enabled", type=parse_bool, default=True)
    add_flag(parser, "memberlist.cluster-label", default="")
    add_flag(parser, "memberlist.cluster-label-verification-disabled", type=parse_bool, default=False)
    add_flag(parser, "memberlist.abort-if-join-fails", type=parse_bool, default=True)
    add_flag(parser, "memberlist.rejoin-interval", type=parse_duration, default=0.0)
    add_flag(parser, "memberlist.leave-timeout", type=parse_duration, default=20.0)
    add_flag(
        parser,
        "memberlist.encryption-key",
        action="append",
        default=[],
        type=parse_hex_key,
        metavar="HEX",
        help="AES key (16/24/32 bytes, hex) for memberlist's own encryption; repeatable, the first "
        "encrypts (a pyro-core flag, to join plain memberlist clusters; Pyroscope uses TLS instead)",
    )
    add_flag(parser, "memberlist.tls-enabled", type=parse_bool, default=False)
    add_flag(parser, "memberlist.tls-cert-path", default="")
    add_flag(parser, "memberlist.tls-key-path", default="")
    add_flag(parser, "memberlist.tls-ca-path", default="")
    add_flag(parser, "memberlist.tls-server-name", default="")
    add_flag(parser, "memberlist.tls-insecure-skip-verify", type=parse_bool, default=False)


@dataclass(frozen=True)
class MemberlistSettings:
    config: Config
    transport: Transport
    join: list[str]
    dns_server: tuple[str, int] | None
    abort_if_join_fails: bool
    rejoin_interval: float
    leave_timeout: float
    left_ingesters_timeout: float


def memberlist_settings(args: argparse.Namespace, default_name: str) -> MemberlistSettings:
    """Turn parsed -memberlist.* flags into a Config and a transport; ConfigError when inconsistent."""
    bind_addrs = args.memberlist_bind_addr or ["0.0.0.0"]
    if len(bind_addrs) > 1:
        raise ConfigError("only one -memberlist.bind-addr is supported")
    bind = bind_addrs[0]
    advertise_addr = args.memberlist_advertise_addr or ("" if bind in ("0.0.0.0", "::") else bind)
    tls = TLSConfig(
        enabled=bool(args.memberlist_tls_enabled),
        cert_path=args.memberlist_tls_cert_path,
        key_path=args.memberlist_tls_key_path,
        ca_path=args.memberlist_tls_ca_path,
        server_name=args.memberlist_tls_server_name,
        insecure_skip_verify=bool(args.memberlist_tls_insecure_skip_verify),
    )
    if tls.enabled and args.memberlist_transport != "tcp":
        raise ConfigError("-memberlist.tls-enabled needs -memberlist.transport=tcp")
    if tls.enabled and not (tls.cert_path and tls.key_path):
        raise ConfigError(
            "-memberlist.tls-enabled needs -memberlist.tls-cert-path and -memberlist.tls-key-path"
        )
    config = dskit_config(
        args.memberlist_nodename or default_name,
        bind_addr=bind,
        bind_port=args.memberlist_bind_port,
        advertise_addr=advertise_addr,
        advertise_port=args.memberlist_advertise_port or 0,
        gossip_interval=args.memberlist_gossip_interval,
        probe_interval=args.memberlist_probe_interval,
        probe_timeout=args.memberlist_probe_timeout,
        gossip_nodes=args.memberlist_gossip_nodes,
        push_pull_interval=args.memberlist_pullpush_interval,
        retransmit_mult=args.memberlist_retransmit_factor,
        gossip_to_the_dead_time=args.memberlist_gossip_to_dead_nodes_time,
        dead_node_reclaim_time=args.memberlist_dead_node_reclaim_time,
        tcp_timeout=args.memberlist_stream_timeout,
        enable_compression=bool(args.memberlist_compression_enabled),
        label=args.memberlist_cluster_label,
        secret_keys=tuple(args.memberlist_encryption_key),
        skip_inbound_label_check=bool(args.memberlist_cluster_label_verification_disabled),
    )
    transport: Transport
    if args.memberlist_transport == "udp":
        transport = NetTransport(bind, args.memberlist_bind_port)
    else:
        transport = DskitTCPTransport(
            bind,
            args.memberlist_bind_port,
            tls=tls,
            packet_dial_timeout=args.memberlist_packet_dial_timeout,
            packet_write_timeout=args.memberlist_packet_write_timeout,
        )
    return MemberlistSettings(
        config=config,
        transport=transport,
        join=list(args.memberlist_join),
        dns_server=parse_address(args.memberlist_dns_server, 53) if args.memberlist_dns_server else None,
        abort_if_join_fails=bool(args.memberlist_abort_if_join_fails),
        rejoin_interval=args.memberlist_rejoin_interval,
        leave_timeout=args.memberlist_leave_timeout,
        left_ingesters_timeout=args.memberlist_left_ingesters_timeout,
    )
