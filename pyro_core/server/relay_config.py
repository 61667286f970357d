# The `remote-write:` section of the server's YAML configuration, parsed and checked.
# Owns: RemoteWriteConfig / TargetConfig / RetryConfig / SpoolConfig (frozen, fully defaulted), the
# keys each level accepts, their defaults, and RemoteWriteConfigError with messages that say which key
# is wrong and where (`remote-write.targets.bar.timeout: ...`).
# Must not know: HTTP, trio, files (the spool and the workers read these values; they are not here).
#
# Keys (seed "Remote Write" + spec §5, then pyro-core's additions):
#   remote-write:
#     enabled: false              disable-local-writes: false
#     targets: {<name>: <target>}  required (non-empty) when enabled
#     timeout / queue-size / queue-workers / retry keys / spool: optional defaults for every target
#   <target>:
#     address (http(s) URL, required), auth-token, basic-auth-user, basic-auth-password, tenant-id,
#     tags {k: v}, headers {K: v}, timeout (Go duration, 10s), queue-size (100),
#     queue-workers (max(numCPU*4, 64)),
#     max-retries (8; unlimited when the spool is on; "unlimited" or -1 to say so),
#     min-backoff (500ms), max-backoff (30s), max-retry-after (5m),
#     retry-budget (10 retries/s per target), retry-burst (20),
#     spool: false | true | {enabled: true, max-bytes: 256MiB, segment-bytes: 16MiB, fsync: true,
#                            commit-interval: 1s}
from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from pyro_core.flags import parse_duration

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_QUEUE_WORKERS",
    "DEFAULT_TIMEOUT",
    "RemoteWriteConfig",
    "RemoteWriteConfigError",
    "RetryConfig",
    "SpoolConfig",
    "TargetConfig",
    "parse_size",
]

DEFAULT_TIMEOUT: Final = 10.0
DEFAULT_QUEUE_SIZE: Final = 100
#: The seed's default: max(numCPU * 4, 64) (the og code used min; the seed document says max).
DEFAULT_QUEUE_WORKERS: Final = max((os.cpu_count() or 1) * 4, 64)
DEFAULT_MAX_RETRIES: Final = 8  # what other Pyroscope clients do
DEFAULT_MIN_BACKOFF: Final = 0.5
DEFAULT_MAX_BACKOFF: Final = 30.0
DEFAULT_MAX_RETRY_AFTER: Final = 300.0
DEFAULT_RETRY_BUDGET: Final = 10.0  # retries per second per target
DEFAULT_RETRY_BURST: Final = 20
DEFAULT_SPOOL_MAX_BYTES: Final = 256 << 20
DEFAULT_SPOOL_SEGMENT_BYTES: Final = 16 << 20
DEFAULT_SPOOL_COMMIT_INTERVAL: Final = 1.0

_SECTION: Final = "remote-write"
_TOP_KEYS: Final = frozenset({"enabled", "disable-local-writes", "targets"})
# Keys that may sit at the top level as defaults for every target, or in a target.
_TUNING_KEYS: Final = frozenset(
    {
        "timeout",
        "queue-size",
        "queue-workers",
        "max-retries",
        "min-backoff",
        "max-backoff",
        "max-retry-after",
        "retry-budget",
        "retry-burst",
        "spool",
    }
)
_TARGET_KEYS: Final = (
    frozenset(
        {"address", "auth-token", "basic-auth-user", "basic-auth-password", "tenant-id", "tags", "headers"}
    )
    | _TUNING_KEYS
)
_HEADER_NAME_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an RFC 9110 token
_ADDRESS_FORBIDDEN_RE: Final = re.compile(r"[\x00-\x20\x7f]")
_HEADER_VALUE_FORBIDDEN_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # a tab is allowed
_SPOOL_KEYS: Final = frozenset({"enabled", "max-bytes", "segment-bytes", "fsync", "commit-interval"})

_TAG_KEY_RE: Final = re.compile(r"[A-Za-z0-9_]+")
_SIZE_RE: Final = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([KMGT]i?B|B)?\s*", re.IGNORECASE)
_SIZE_UNITS: Final = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}


class RemoteWriteConfigError(ValueError):
    """The `remote-write:` section is invalid; the message names the key and where it is."""


def parse_size(value: object) -> int:
    """A byte count: an integer, or a string with a unit (`512KiB`, `256MiB`, `1GB`; B, KB=1000, KiB=1024)."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _SIZE_RE.fullmatch(value)
        if m is not None:
            unit = (m.group(2) or "B").lower()
            return int(float(m.group(1)) * _SIZE_UNITS[unit])
    raise ValueError(f"invalid size {value!r} (use bytes or a unit: 512KiB, 256MiB, 1GB)")


@dataclass(frozen=True)
class RetryConfig:
    """When and how often a failed upload is tried again (see remote_write.RetryRules)."""

    max_retries: int | None = DEFAULT_MAX_RETRIES  # None: unlimited
    min_backoff: float = DEFAULT_MIN_BACKOFF  # seconds; the first retry waits up to this (full jitter)
    max_backoff: float = DEFAULT_MAX_BACKOFF  # the cap of the exponential backoff
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER  # a larger Retry-After is clipped to this
    budget: float = DEFAULT_RETRY_BUDGET  # retries per second for the whole target
    burst: int = DEFAULT_RETRY_BURST  # retries the budget lets through at once


@dataclass(frozen=True)
class SpoolConfig:
    """The durable on-disk queue of one target (off by default)."""

    enabled: bool = False
    max_bytes: int = DEFAULT_SPOOL_MAX_BYTES  # bound on undelivered records; the oldest go first
    segment_bytes: int = DEFAULT_SPOOL_SEGMENT_BYTES  # a new segment file starts past this size
    fsync: bool = True  # fsync appends (batched: RemoteWriter.wait_durable) and the commit file
    commit_interval: float = DEFAULT_SPOOL_COMMIT_INTERVAL  # how often the delivered offset is saved


@dataclass(frozen=True)
class TargetConfig:
    """One remote-write target, as configured under `remote-write.targets.<name>`."""

    name: str
    address: str  # http(s)://host[:port][/prefix], without a trailing slash
    auth_token: str | None = None  # Authorization: Bearer
    basic_auth_user: str | None = None  # Authorization: Basic (overrides Bearer)
    basic_auth_password: str | None = None
    tenant_id: str | None = None  # X-Scope-OrgID (overrides the header from `headers` and the item's)
    tags: tuple[tuple[str, str], ...] = ()  # merged into every profile's name / labels, overriding
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    queue_size: int = DEFAULT_QUEUE_SIZE
    queue_workers: int = DEFAULT_QUEUE_WORKERS
    retry: RetryConfig = field(default_factory=RetryConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)


@dataclass(frozen=True)
class RemoteWriteConfig:
    """The whole `remote-write:` section. `RemoteWriteConfig()` is remote write switched off."""

    enabled: bool = False
    disable_local_writes: bool = False
    targets: tuple[TargetConfig, ...] = ()

    @property
    def active(self) -> bool:
        """True when profiles are relayed (enabled, with targets)."""
        return self.enabled and bool(self.targets)

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any] | None) -> RemoteWriteConfig:
        """Parse the YAML value of the top-level `remote-write:` key (None: not configured)."""
        if section is None:
            return cls()
        if not isinstance(section, Mapping):
            raise RemoteWriteConfigError(f"{_SECTION}: expected a mapping, got {_kind(section)}")
        _check_keys(section, _TOP_KEYS | _TUNING_KEYS, _SECTION)
        enabled = _bool(section, "enabled", False, _SECTION)
        disable_local = _bool(section, "disable-local-writes", False, _SECTION)
        raw_targets = section.get("targets")
        if raw_targets is None:
            raw_targets = {}
        if not isinstance(raw_targets, Mapping):
            raise RemoteWriteConfigError(f"{_SECTION}.targets: expected a mapping of target names")
        defaults = {k: v for k, v in section.items() if k in _TUNING_KEYS}
        targets = tuple(_target(str(name), raw, defaults) for name, raw in raw_targets.items())
        if enabled and not targets:
            raise RemoteWriteConfigError(f"{_SECTION}: enabled, but no targets are configured")
        if disable_local and not enabled:
            raise RemoteWriteConfigError(
                f"{_SECTION}.disable-local-writes: needs remote write enabled (nothing would be stored)"
            )
        return cls(enabled=enabled, disable_local_writes=disable_local, targets=targets)


def _kind(value: object) -> str:
    return type(value).__name__


def _check_keys(section: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    for key in section:
        if key not in allowed:
            known = ", ".join(sorted(allowed))
            raise RemoteWriteConfigError(f"{where}: unknown key {key!r} (known keys: {known})")


def _bool(section: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = section.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RemoteWriteConfigError(f"{where}.{key}: expected true or false, got {value!r}")
    return value


def _str(section: Mapping[str, Any], key: str, where: str) -> str | None:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RemoteWriteConfigError(f"{where}.{key}: expected a string, got {_kind(value)}")
    return str(value)


def _duration(value: object, where: str) -> float:
    if not isinstance(value, str):
        raise RemoteWriteConfigError(f"{where}: expected a Go duration such as 10s or 500ms, got {value!r}")
    try:
        seconds = parse_duration(value)
    except argparse.ArgumentTypeError as e:
        raise RemoteWriteConfigError(f"{where}: {e}") from None
    if seconds < 0:
        raise RemoteWriteConfigError(f"{where}: must not be negative, got {value!r}")
    return seconds


def _int(value: object, where: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().lstrip("+").isdigit():
            value = int(value)
        else:
            raise RemoteWriteConfigError(f"{where}: expected an integer, got {value!r}")
    if value < minimum:
        raise RemoteWriteConfigError(f"{where}: must be at least {minimum}, got {value}")
    return value


def _number(value: object, where: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RemoteWriteConfigError(f"{where}: expected a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise RemoteWriteConfigError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(number) or (number <= 0 if positive else number < 0):
        raise RemoteWriteConfigError(
            f"{where}: must be a {'positive' if positive else 'non-negative'} number"
        )
    return number


def _size(value: object, where: str) -> int:
    try:
        size = parse_size(value)
    except ValueError as e:
        raise RemoteWriteConfigError(f"{where}: {e}") from None
    if size <= 0:
        raise RemoteWriteConfigError(f"{where}: must be positive, got {value!r}")
    return size


def _pairs(section: Mapping[str, Any], key: str, where: str) -> tuple[tuple[str, str], ...]:
    value = section.get(key)
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise RemoteWriteConfigError(f"{where}.{key}: expected a mapping, got {_kind(value)}")
    out: list[tuple[str, str]] = []
    for k, v in value.items():
        if v is None or isinstance(v, Mapping | list):
            raise RemoteWriteConfigError(f"{where}.{key}.{k}: expected a string value")
        text = str(v).lower() if isinstance(v, bool) else str(v)
        out.append((str(k), text))
    return tuple(out)


def _header_value(value: str | None, where: str) -> str | None:
    """``value`` if it can go into an HTTP header: no CR, LF or NUL, and Latin-1 (what goes on the
    wire byte for byte); a clear error at start instead of every request failing later."""
    if value is None:
        return None
    if _HEADER_VALUE_FORBIDDEN_RE.search(value):
        raise RemoteWriteConfigError(f"{where}: must not contain a line break, NUL or control character")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        message = f"{where}: {value!r} has characters an HTTP header cannot carry (not Latin-1)"
        raise RemoteWriteConfigError(message) from None
    return value


def _address(value: str | None, where: str) -> str:
    if not value:
        raise RemoteWriteConfigError(f"{where}.address: required (an http:// or https:// URL)")
    if _ADDRESS_FORBIDDEN_RE.search(value.strip()):
        raise RemoteWriteConfigError(f"{where}.address: {value!r} has a space or control character")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteWriteConfigError(f"{where}.address: {value!r} is not an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise RemoteWriteConfigError(f"{where}.address: {value!r} must not have a query or fragment")
    try:
        _ = parts.port
    except ValueError:
        raise RemoteWriteConfigError(f"{where}.address: {value!r} has an invalid port") from None
    return value.strip().rstrip("/")


def _spool(value: object, where: str) -> SpoolConfig:
    if value is None or value is False:
        return SpoolConfig()
    if value is True:
        return SpoolConfig(enabled=True)
    if not isinstance(value, Mapping):
        raise RemoteWriteConfigError(f"{where}: expected true, false or a mapping, got {value!r}")
    _check_keys(value, _SPOOL_KEYS, where)
    enabled = _bool(value, "enabled", True, where)
    max_bytes = _size(value.get("max-bytes", DEFAULT_SPOOL_MAX_BYTES), f"{where}.max-bytes")
    segment = value.get("segment-bytes")
    segment_bytes = (
        min(DEFAULT_SPOOL_SEGMENT_BYTES, max(max_bytes // 8, 4096))
        if segment is None
        else _size(segment, f"{where}.segment-bytes")
    )
    commit = value.get("commit-interval")
    commit_interval = (
        DEFAULT_SPOOL_COMMIT_INTERVAL if commit is None else _duration(commit, f"{where}.commit-interval")
    )
    if commit_interval <= 0:
        raise RemoteWriteConfigError(f"{where}.commit-interval: must be positive")
    return SpoolConfig(
        enabled=enabled,
        max_bytes=max_bytes,
        segment_bytes=segment_bytes,
        fsync=_bool(value, "fsync", True, where),
        commit_interval=commit_interval,
    )


def _max_retries(value: object, spool: bool, where: str) -> int | None:
    if value is None:
        return None if spool else DEFAULT_MAX_RETRIES
    if value in ("unlimited", "inf", -1):
        return None
    return _int(value, where, minimum=0)


def _target(name: str, raw: object, defaults: Mapping[str, Any]) -> TargetConfig:
    where = f"{_SECTION}.targets.{name}"
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise RemoteWriteConfigError(f"{where}: invalid target name {name!r} (it names a spool directory)")
    if not isinstance(raw, Mapping):
        raise RemoteWriteConfigError(f"{where}: expected a mapping with at least `address`")
    _check_keys(raw, _TARGET_KEYS, where)
    merged: dict[str, Any] = {**defaults, **raw}

    tags = _pairs(raw, "tags", where)
    for key, value in tags:
        if key == "__name__" or not _TAG_KEY_RE.fullmatch(key):
            raise RemoteWriteConfigError(
                f"{where}.tags: tag key {key!r} may only contain letters, digits and '_' (not __name__)"
            )
        if any(c in value for c in ",{}="):
            raise RemoteWriteConfigError(f"{where}.tags.{key}: value {value!r} must not contain , = {{ }}")

    spool = _spool(merged.get("spool"), f"{where}.spool")
    timeout = _duration(merged["timeout"], f"{where}.timeout") if "timeout" in merged else DEFAULT_TIMEOUT
    if timeout <= 0:
        raise RemoteWriteConfigError(f"{where}.timeout: must be positive")
    queue_size = _int(merged.get("queue-size", DEFAULT_QUEUE_SIZE), f"{where}.queue-size", minimum=1)
    workers = _int(merged.get("queue-workers", DEFAULT_QUEUE_WORKERS), f"{where}.queue-workers", minimum=1)

    def dur(key: str, default: float) -> float:
        return _duration(merged[key], f"{where}.{key}") if key in merged else default

    retry = RetryConfig(
        max_retries=_max_retries(merged.get("max-retries"), spool.enabled, f"{where}.max-retries"),
        min_backoff=dur("min-backoff", DEFAULT_MIN_BACKOFF),
        max_backoff=dur("max-backoff", DEFAULT_MAX_BACKOFF),
        max_retry_after=dur("max-retry-after", DEFAULT_MAX_RETRY_AFTER),
        budget=_number(
            merged.get("retry-budget", DEFAULT_RETRY_BUDGET), f"{where}.retry-budget", positive=True
        ),
        burst=_int(merged.get("retry-burst", DEFAULT_RETRY_BURST), f"{where}.retry-burst", minimum=1),
    )
    if retry.max_backoff < retry.min_backoff:
        raise RemoteWriteConfigError(f"{where}.max-backoff: must not be below min-backoff")

    basic_user = _str(raw, "basic-auth-user", where)
    basic_password = _str(raw, "basic-auth-password", where)
    if basic_password is not None and basic_user is None:
        raise RemoteWriteConfigError(f"{where}.basic-auth-password: set without basic-auth-user")
    if basic_user is not None and ":" in basic_user:
        raise RemoteWriteConfigError(f"{where}.basic-auth-user: must not contain ':'")
    auth_token = _header_value(_str(raw, "auth-token", where), f"{where}.auth-token")
    tenant_id = _header_value(_str(raw, "tenant-id", where), f"{where}.tenant-id")
    headers = _pairs(raw, "headers", where)
    for key, value in headers:
        if not _HEADER_NAME_RE.fullmatch(key):
            raise RemoteWriteConfigError(f"{where}.headers: {key!r} is not a valid HTTP header name")
        _header_value(value, f"{where}.headers.{key}")
    return TargetConfig(
        name=name,
        address=_address(_str(raw, "address", where), where),
        auth_token=auth_token,
        basic_auth_user=basic_user,
        basic_auth_password=basic_password,
        tenant_id=tenant_id,
        tags=tags,
        headers=headers,
        timeout=timeout,
        queue_size=queue_size,
        queue_workers=workers,
        retry=retry,
        spool=spool,
    )
