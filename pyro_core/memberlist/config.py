# Memberlist configuration: every knob of the SWIM core with memberlist's LAN / WAN / Local
# defaults and dskit's (Pyroscope's) overrides.
# Owns: names, units (seconds, bytes), defaults and validation of the knobs. Must not know: flags or
# YAML (the command line maps -memberlist.* onto these fields), sockets, clocks.
from __future__ import annotations

from dataclasses import dataclass, field, replace

PROTOCOL_VERSION_MIN = 1
PROTOCOL_VERSION_MAX = 5
PROTOCOL_VERSION = 2  # the version memberlist speaks by default
DELEGATE_VERSION = 0


class ConfigError(ValueError):
    """A memberlist setting is out of range."""


@dataclass(frozen=True, slots=True)
class Config:
    """Knobs of one member. Times are seconds; sizes bytes."""

    name: str
    bind_addr: str = "0.0.0.0"
    bind_port: int = 7946
    advertise_addr: str = ""
    advertise_port: int = 0  # 0 = the bind port
    protocol_version: int = PROTOCOL_VERSION
    delegate_protocol_version: int = DELEGATE_VERSION
    delegate_protocol_min: int = 0
    delegate_protocol_max: int = 0
    tcp_timeout: float = 10.0
    indirect_checks: int = 3
    retransmit_mult: int = 4
    suspicion_mult: int = 4
    suspicion_max_timeout_mult: int = 6
    push_pull_interval: float = 30.0
    probe_interval: float = 1.0
    probe_timeout: float = 0.5
    disable_tcp_pings: bool = False
    awareness_max_multiplier: int = 8
    gossip_interval: float = 0.2
    gossip_nodes: int = 3
    gossip_to_the_dead_time: float = 30.0
    dead_node_reclaim_time: float = 0.0  # 0 = a dead node's name is never reclaimed by a new address
    enable_compression: bool = True
    udp_buffer_size: int = 1400
    handoff_queue_depth: int = 1024
    label: str = ""
    skip_inbound_label_check: bool = False
    secret_keys: tuple[bytes, ...] = field(default=())  # AES keys; the first one encrypts
    gossip_verify_incoming: bool = True
    gossip_verify_outgoing: bool = True
    meta_max_size: int = 512

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a member needs a name")
        if not PROTOCOL_VERSION_MIN <= self.protocol_version <= PROTOCOL_VERSION_MAX:
            raise ConfigError(
                f"protocol version {self.protocol_version} is outside "
                f"[{PROTOCOL_VERSION_MIN}, {PROTOCOL_VERSION_MAX}]"
            )
        for name in ("probe_interval", "probe_timeout", "gossip_interval", "tcp_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("push_pull_interval", "gossip_to_the_dead_time", "dead_node_reclaim_time"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        for name in ("indirect_checks", "gossip_nodes", "retransmit_mult"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if (
            self.suspicion_mult < 1
            or self.suspicion_max_timeout_mult < 1
            or self.awareness_max_multiplier < 1
        ):
            raise ConfigError("suspicion and awareness multipliers must be at least 1")
        if not 0 <= self.bind_port <= 65535 or not 0 <= self.advertise_port <= 65535:
            raise ConfigError("ports must be in [0, 65535]")
        if len(self.label.encode()) > 255:
            raise ConfigError("the cluster label is longer than 255 bytes")
        for key in self.secret_keys:
            if len(key) not in (16, 24, 32):
                raise ConfigError(f"an encryption key must be 16, 24 or 32 bytes, got {len(key)}")
        if self.udp_buffer_size < 64:
            raise ConfigError("udp_buffer_size is too small")

    @property
    def encryption_enabled(self) -> bool:
        return bool(self.secret_keys)

    def with_(self, **changes: object) -> Config:
        return replace(self, **changes)  # type: ignore[arg-type]


def default_lan_config(name: str, **overrides: object) -> Config:
    """memberlist DefaultLANConfig: tuned for a local network."""
    return Config(name=name, **overrides)  # type: ignore[arg-type]


def default_wan_config(name: str, **overrides: object) -> Config:
    """memberlist DefaultWANConfig: slower timeouts for wide-area links."""
    base: dict[str, object] = {
        "tcp_timeout": 30.0,
        "suspicion_mult": 6,
        "push_pull_interval": 60.0,
        "probe_timeout": 3.0,
        "probe_interval": 5.0,
        "gossip_nodes": 4,
        "gossip_interval": 0.5,
        "gossip_to_the_dead_time": 60.0,
    }
    base.update(overrides)
    return Config(name=name, **base)  # type: ignore[arg-type]


def default_local_config(name: str, **overrides: object) -> Config:
    """memberlist DefaultLocalConfig: a loopback or single-host cluster."""
    base: dict[str, object] = {
        "tcp_timeout": 1.0,
        "indirect_checks": 1,
        "retransmit_mult": 2,
        "suspicion_mult": 3,
        "push_pull_interval": 15.0,
        "probe_timeout": 0.2,
        "probe_interval": 1.0,
        "gossip_interval": 0.1,
        "gossip_to_the_dead_time": 15.0,
    }
    base.update(overrides)
    return Config(name=name, **base)  # type: ignore[arg-type]


def dskit_config(name: str, **overrides: object) -> Config:
    """The settings dskit's memberlist KV (and so Pyroscope) runs with by default (spec §3)."""
    base: dict[str, object] = {
        "tcp_timeout": 2.0,  # -memberlist.stream-timeout
        "probe_interval": 5.0,
        "probe_timeout": 2.0,
        "gossip_interval": 0.2,
        "gossip_nodes": 3,
        "push_pull_interval": 30.0,
        "retransmit_mult": 4,
        "gossip_to_the_dead_time": 30.0,
        "dead_node_reclaim_time": 0.0,
        "enable_compression": True,
    }
    base.update(overrides)
    return Config(name=name, **base)  # type: ignore[arg-type]
