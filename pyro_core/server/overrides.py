# Per-tenant limits and the runtime-config file that overrides them while the server runs.
# Owns: the Limits a tenant gets (Pyroscope's `limits:` keys, flags and defaults), the runtime-config
# format (`overrides: {tenant: {key: value}}`, as Pyroscope/Mimir/dskit read it) and its checks,
# Overrides (defaults + the current runtime config -> Limits per tenant), the reload loop (a trio
# task: re-read on a content change, keep the last good config on a bad file) and its Prometheus
# metrics (dskit's runtime_config_* gauges under the pyroscope_ prefix).
# Must not know: HTTP, what a limit is enforced by (limits.py, the distributor, the querier), the
# static config file (pyro_core/config.py owns it; only its strict YAML loader is used here).
from __future__ import annotations

import argparse
import difflib
import hashlib
import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final

import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from pyro_core.config import ConfigFileError, load_yaml
from pyro_core.flags import add_flag, parse_bool, parse_duration, parse_positive_int
from pyro_core.server.limits import MIB
from pyro_core.server.names import InvalidTenantError, validate_tenant

log = logging.getLogger("pyro_core.runtime_config")

_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d|w|y)")
_UNITS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
    "y": 365 * 86400.0,
}


def parse_limit_duration(text: str) -> float:
    """A duration of a limit, in seconds: Go syntax plus Prometheus' d, w and y units (Pyroscope's
    limits are model.Duration: ``1w``, ``1d``, ``1h30m``); never negative."""
    s = text.strip()
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            raise argparse.ArgumentTypeError(
                f"invalid duration {text!r} (use 30s, 10m, 1h, 1d, 1w; 0 disables)"
            )
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}")
    return total


def parse_non_negative_float(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(x) or x < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return x


# -- the per-tenant limits --------------------------------------------------------------------------

_KINDS: Final[Mapping[str, tuple[Callable[[str], Any], str]]] = {
    "float": (parse_non_negative_float, "a number >= 0"),
    "int": (parse_positive_int, "a whole number >= 0"),
    "duration": (parse_limit_duration, "a duration such as 30s, 10m, 1h, 1d, 1w (0 disables)"),
    "bool": (parse_bool, "true or false"),
}


def _limit(default: Any, flag: str, kind: str, help: str) -> Any:
    return field(default=default, metadata={"flag": flag, "kind": kind, "help": help})


@dataclass(frozen=True)
class Limits:
    """A tenant's limits. Field names are Pyroscope's YAML keys (``limits:`` in the config file,
    ``overrides.<tenant>`` in the runtime config); each field's metadata names its flag. Durations
    are seconds; 0 disables a limit, as in Pyroscope."""

    ingestion_rate_mb: float = _limit(
        4.0, "distributor.ingestion-rate-limit-mb", "float", "per-tenant ingestion rate limit, MiB/s"
    )
    ingestion_burst_size_mb: float = _limit(
        2.0, "distributor.ingestion-burst-size-mb", "float", "per-tenant ingestion burst size, MiB"
    )
    ingestion_tenant_shard_size: int = _limit(
        0,
        "distributor.ingestion-tenant-shard-size",
        "int",
        "ingesters in a tenant's shuffle shard (0 = every ingester)",
    )
    max_label_name_length: int = _limit(
        1024, "validation.max-length-label-name", "int", "longest label name, bytes"
    )
    max_label_value_length: int = _limit(
        2048, "validation.max-length-label-value", "int", "longest label value, bytes"
    )
    max_label_names_per_series: int = _limit(
        30, "validation.max-label-names-per-series", "int", "most label names in one series"
    )
    max_profile_size_bytes: int = _limit(
        4 * MIB, "validation.max-profile-size-bytes", "int", "largest uncompressed profile (0 = no limit)"
    )
    max_profile_stacktrace_samples: int = _limit(
        16000, "validation.max-profile-stacktrace-samples", "int", "most samples in a profile (0 = no limit)"
    )
    max_profile_stacktrace_depth: int = _limit(
        1000, "validation.max-profile-stacktrace-depth", "int", "deeper stacks are truncated (0 = no limit)"
    )
    max_profile_symbol_value_length: int = _limit(
        65535, "validation.max-profile-symbol-value-length", "int", "longer symbols are truncated"
    )
    reject_older_than: float = _limit(
        3600.0, "validation.reject-older-than", "duration", "refuse profiles older than this"
    )
    reject_newer_than: float = _limit(
        600.0, "validation.reject-newer-than", "duration", "refuse profiles further in the future"
    )
    max_query_lookback: float = _limit(
        7 * 86400.0, "querier.max-query-lookback", "duration", "how far back queries may look"
    )
    max_query_length: float = _limit(86400.0, "querier.max-query-length", "duration", "longest query range")
    max_flamegraph_nodes_default: int = _limit(
        8192, "querier.max-flamegraph-nodes-default", "int", "flame graph nodes when a query names none"
    )
    max_flamegraph_nodes_max: int = _limit(
        0, "querier.max-flamegraph-nodes-max", "int", "most flame graph nodes a query may ask (0 = no limit)"
    )

    @property
    def ingestion_rate_bytes(self) -> float:
        return self.ingestion_rate_mb * MIB

    @property
    def ingestion_burst_bytes(self) -> int:
        return int(self.ingestion_burst_size_mb * MIB)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Limits:
        """The defaults from parsed flags (see :func:`add_limits_flags`); a flag the parser does
        not have keeps Pyroscope's default."""
        values = {}
        for f in fields(cls):
            dest = _dest(f.metadata["flag"])
            if hasattr(args, dest):
                values[f.name] = getattr(args, dest)
        return cls(**values)


LIMIT_KEYS: Final[tuple[str, ...]] = tuple(f.name for f in fields(Limits))


def _dest(flag: str) -> str:
    return flag.replace(".", "_").replace("-", "_")


def add_limits_flags(parser: argparse.ArgumentParser) -> None:
    """Every Limits field as a flag with Pyroscope's name and default (the config file's ``limits:``
    section maps onto them). A flag the parser already has is left as it is (Limits.from_args reads
    it all the same)."""
    for f in fields(Limits):
        meta = f.metadata
        if f"-{meta['flag']}" in parser._option_string_actions:
            continue
        parse = _KINDS[meta["kind"]][0]
        add_flag(parser, meta["flag"], type=parse, default=f.default, help=meta["help"])


def add_runtime_config_flags(parser: argparse.ArgumentParser) -> None:
    """``-runtime-config.file`` (comma-separated, merged left to right) and
    ``-runtime-config.reload-period`` (10s), Pyroscope's names and defaults."""
    add_flag(
        parser,
        "runtime-config.file",
        default="",
        metavar="FILES",
        help="comma-separated YAML files of per-tenant overrides, reloaded while running",
    )
    add_flag(
        parser,
        "runtime-config.reload-period",
        type=parse_duration,
        default=10.0,
        help="how often to check the runtime config files",
    )


def runtime_config_paths(value: str | Sequence[str]) -> list[str]:
    """'a.yaml, b.yaml' -> ['a.yaml', 'b.yaml']."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [p.strip() for p in items if p.strip()]


# -- the runtime config -----------------------------------------------------------------------------


class RuntimeConfigError(ValueError):
    """A runtime config that cannot be used; the message names the file and the key."""


RUNTIME_CONFIG_KEYS: Final = ("overrides",)


@dataclass(frozen=True)
class RuntimeConfig:
    """A checked runtime config: per tenant, the limits it sets (only those keys), and the sha256 of
    the files' bytes it came from."""

    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sha256: str = hashlib.sha256(b"").hexdigest()


def _limit_value(name: str, value: object, where: str) -> Any:
    kind = Limits.__dataclass_fields__[name].metadata["kind"]
    parse, form = _KINDS[kind]
    problem = None
    if isinstance(value, bool):
        if kind == "bool":
            return value
        problem = f"got {value!r}"
    elif kind == "bool":
        problem = f"got {value!r}"
    elif kind == "float" and isinstance(value, (int, float)):
        if math.isfinite(value) and value >= 0:
            return float(value)
        problem = f"got {value!r}"
    elif kind == "int" and isinstance(value, int):
        if value >= 0:
            return value
        problem = f"got {value!r}"
    elif kind == "duration" and (isinstance(value, str) or value == 0):
        try:
            return parse(str(value))
        except argparse.ArgumentTypeError:
            problem = f"got {value!r}"
    else:
        problem = f"got {value!r}" if not isinstance(value, (Mapping, list)) else "got a mapping or list"
    raise RuntimeConfigError(f"{where}: expected {form}, {problem}")


def parse_runtime_config(
    document: object, *, source: str = "runtime config", sha256: str = ""
) -> RuntimeConfig:
    """Check a parsed runtime-config document: ``overrides: {tenant: {limit: value}}``. Raises
    :class:`RuntimeConfigError` naming ``source``, the tenant and the key for an unknown key, a bad
    type, a negative value or an invalid tenant id."""
    if document is None:
        return RuntimeConfig(sha256=sha256 or RuntimeConfig.sha256)
    if not isinstance(document, Mapping):
        raise RuntimeConfigError(f"{source}: the top level must be a mapping (overrides: ...)")
    for key in document:
        if key not in RUNTIME_CONFIG_KEYS:
            raise RuntimeConfigError(
                f"{source}: unknown key {key!r} (a runtime config holds {', '.join(RUNTIME_CONFIG_KEYS)})"
            )
    raw = document.get("overrides")
    if raw is None:
        return RuntimeConfig(sha256=sha256 or RuntimeConfig.sha256)
    if not isinstance(raw, Mapping):
        raise RuntimeConfigError(f"{source}: overrides: expected a mapping of tenant ids to limits")
    out: dict[str, dict[str, Any]] = {}
    for tenant_key, settings in raw.items():
        tenant = str(tenant_key)
        try:
            validate_tenant(tenant)
        except InvalidTenantError as exc:
            raise RuntimeConfigError(f"{source}: overrides: {tenant!r}: {exc}") from None
        if settings is None:
            out[tenant] = {}
            continue
        if not isinstance(settings, Mapping):
            raise RuntimeConfigError(
                f"{source}: overrides.{tenant}: expected a mapping of limits, got {settings!r}"
            )
        values: dict[str, Any] = {}
        for name_key, value in settings.items():
            name = str(name_key)
            where = f"{source}: overrides.{tenant}.{name}"
            if name not in LIMIT_KEYS:
                close = difflib.get_close_matches(name, LIMIT_KEYS, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise RuntimeConfigError(f"{source}: overrides.{tenant}: unknown limit {name!r}{hint}")
            if value is None:
                continue
            values[name] = _limit_value(name, value, where)
        out[tenant] = values
    return RuntimeConfig(overrides=out, sha256=sha256 or RuntimeConfig.sha256)


def _merge(base: Any, over: Any) -> Any:
    """dskit's merge of several runtime-config files: mappings merge key by key, the right wins."""
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        merged = dict(base)
        for k, v in over.items():
            merged[k] = _merge(merged[k], v) if k in merged else v
        return merged
    return over


def runtime_config_from_bytes(contents: Sequence[tuple[str, bytes]]) -> RuntimeConfig:
    """Parse and merge runtime-config files given as (name, bytes), left to right."""
    digest = hashlib.sha256()
    merged: Any = None
    for name, data in contents:
        digest.update(data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RuntimeConfigError(f"{name}: not UTF-8 text (byte {exc.start})") from None
        try:
            document = load_yaml(text, name)
        except ConfigFileError as exc:
            raise RuntimeConfigError(str(exc)) from None
        if document is not None and not isinstance(document, Mapping):
            raise RuntimeConfigError(f"{name}: the top level must be a mapping (overrides: ...)")
        merged = _merge(merged, document) if merged is not None else document
    source = ", ".join(name for name, _ in contents) or "runtime config"
    return parse_runtime_config(merged, source=source, sha256=digest.hexdigest())


def read_runtime_config_files(paths: Sequence[str]) -> list[tuple[str, bytes]]:
    """The files' bytes; RuntimeConfigError naming the file when one cannot be read."""
    out = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                out.append((path, f.read()))
        except FileNotFoundError:
            raise RuntimeConfigError(f"{path}: no such file") from None
        except OSError as exc:
            raise RuntimeConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return out


def load_runtime_config(paths: str | Sequence[str]) -> RuntimeConfig:
    """Read, merge and check the runtime-config files (a comma-separated string or a list)."""
    return runtime_config_from_bytes(read_runtime_config_files(runtime_config_paths(paths)))


# -- overrides --------------------------------------------------------------------------------------


@dataclass
class ReloadStatus:
    """What the reload loop has seen (the metrics read it)."""

    attempted: bool = False  # a runtime config was loaded or tried at least once
    last_reload_successful: bool = False
    sha256: str | None = None  # of the config in use
    successes: int = 0
    failures: int = 0  # distinct failures: an unchanged bad file is not counted again
    last_error: str | None = None


class Overrides:
    """Per-tenant limits: the defaults (flags / the config file's ``limits:``) with the current
    runtime config's overrides on top. A tenant's override starts from the defaults, so a key it does
    not set follows them."""

    def __init__(self, defaults: Limits | None = None) -> None:
        self._defaults = defaults if defaults is not None else Limits()
        self._config = RuntimeConfig()
        self._tenants: dict[str, Limits] = {}
        self.status = ReloadStatus()

    @property
    def defaults(self) -> Limits:
        return self._defaults

    @property
    def runtime_config(self) -> RuntimeConfig:
        return self._config

    def for_tenant(self, tenant: str) -> Limits:
        return self._tenants.get(tenant, self._defaults)

    def tenants(self) -> list[str]:
        """Tenants the runtime config overrides."""
        return sorted(self._tenants)

    def apply(self, config: RuntimeConfig) -> None:
        """Make ``config`` the runtime config in use (all tenants switch at once)."""
        self._tenants = {t: replace(self._defaults, **values) for t, values in config.overrides.items()}
        self._config = config
        self.status.attempted = True
        self.status.last_reload_successful = True
        self.status.sha256 = config.sha256
        self.status.successes += 1
        self.status.last_error = None


class RuntimeConfigWatcher:
    """One reload step at a time: read the files, and apply them when their bytes changed. A bad file
    (unreadable, invalid YAML, a bad key or value) is logged, counted once, passed to ``on_error``,
    and the previous good config stays in use."""

    def __init__(
        self,
        paths: str | Sequence[str],
        overrides: Overrides,
        *,
        on_error: Callable[[RuntimeConfigError], None] | None = None,
        read: Callable[[Sequence[str]], list[tuple[str, bytes]]] = read_runtime_config_files,
    ) -> None:
        self.paths = runtime_config_paths(paths)
        self.overrides = overrides
        self.on_error = on_error
        self._read = read
        self._failed: str | None = None  # the hash (or read error) that last failed

    def poll(self) -> bool:
        """Check the files once; True when a new config was applied."""
        try:
            contents = self._read(self.paths)
        except RuntimeConfigError as exc:
            self._fail(str(exc), exc)
            return False
        digest = hashlib.sha256(b"".join(data for _, data in contents)).hexdigest()
        status = self.overrides.status
        if status.attempted and digest == status.sha256:
            if not status.last_reload_successful:  # the good file is back
                status.last_reload_successful = True
                status.last_error = None
                self._failed = None
            return False
        if digest == self._failed:
            return False
        try:
            config = runtime_config_from_bytes(contents)
        except RuntimeConfigError as exc:
            self._fail(digest, exc)
            return False
        self.overrides.apply(config)
        self._failed = None
        log.info(
            "runtime config loaded: %d tenant override(s), sha256 %s", len(config.overrides), digest[:12]
        )
        return True

    def _fail(self, key: str, exc: RuntimeConfigError) -> None:
        status = self.overrides.status
        status.attempted = True
        status.last_reload_successful = False
        if key == self._failed:
            return
        self._failed = key
        status.failures += 1
        status.last_error = str(exc)
        log.error("runtime config: %s (keeping the previous config)", exc)
        if self.on_error is not None:
            self.on_error(exc)


async def watch_runtime_config(
    paths: str | Sequence[str],
    period: float,
    overrides: Overrides,
    *,
    on_error: Callable[[RuntimeConfigError], None] | None = None,
    task_status: trio.TaskStatus[RuntimeConfigWatcher] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Check the runtime-config files now and then every ``period`` seconds until cancelled; never
    raises for a bad file. The files are small and local, so they are read inline (dskit reads them
    synchronously too); this also keeps the loop exact under trio's MockClock."""
    watcher = RuntimeConfigWatcher(paths, overrides, on_error=on_error)
    watcher.poll()
    task_status.started(watcher)
    while True:
        await trio.sleep(period)
        watcher.poll()


class RuntimeConfigCollector(Collector):
    """dskit's runtime-config gauges under Pyroscope's prefix, and a pyro-core reload counter:
    ``pyroscope_runtime_config_last_reload_successful``, ``pyroscope_runtime_config_hash{sha256}``
    (1 for the config in use), ``pyroscope_runtime_config_reloads_total{status=success|failure}``."""

    def __init__(self, overrides: Overrides, prefix: str = "pyroscope") -> None:
        self.overrides = overrides
        self.prefix = prefix

    def describe(self) -> list[object]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        status = self.overrides.status
        if not status.attempted:
            return
        ok = GaugeMetricFamily(
            f"{self.prefix}_runtime_config_last_reload_successful",
            "1 when the runtime-config files read last were valid and applied, 0 when they were refused.",
        )
        ok.add_metric([], 1.0 if status.last_reload_successful else 0.0)
        yield ok
        if status.sha256 is not None:
            h = GaugeMetricFamily(
                f"{self.prefix}_runtime_config_hash",
                "SHA-256 of the runtime config in use (the label), always 1.",
                labels=["sha256"],
            )
            h.add_metric([status.sha256], 1.0)
            yield h
        reloads = CounterMetricFamily(
            f"{self.prefix}_runtime_config_reloads",
            "Runtime-config loads, by outcome (an unchanged bad file counts once).",
            labels=["status"],
        )
        reloads.add_metric(["success"], status.successes)
        reloads.add_metric(["failure"], status.failures)
        yield reloads


__all__ = [
    "LIMIT_KEYS",
    "Limits",
    "Overrides",
    "ReloadStatus",
    "RuntimeConfig",
    "RuntimeConfigCollector",
    "RuntimeConfigError",
    "RuntimeConfigWatcher",
    "add_limits_flags",
    "add_runtime_config_flags",
    "load_runtime_config",
    "parse_limit_duration",
    "parse_runtime_config",
    "runtime_config_from_bytes",
    "runtime_config_paths",
    "watch_runtime_config",
]
