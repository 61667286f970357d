# The inputs of a capacity plan: the cluster, its tenants and their ingest rates, capacity and gossip.
# Owns: the ``Scenario`` value, its validation (every message names the field and what it must be),
# seeded synthetic tenant rates (constant, lognormal, zipf), and the YAML scenario file format (unknown
# keys are errors, not silently ignored). A ``ScenarioError`` is what the CLI turns into exit code 2.
# Must not know: rings, shards, argparse or printing; the seed is an argument, never global random.
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from pyro_core.plan.gossip import GossipSettings

DISTRIBUTIONS = ("constant", "lognormal", "zipf")


class ScenarioError(ValueError):
    """The scenario cannot be planned: a bad flag, a bad file, an impossible combination."""


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    rate: float  # MB/s of profiles ingested (before replication)
    shard_size: int | None = None  # None: the scenario's global shard size


@dataclass(frozen=True, slots=True)
class TenantMix:
    """Synthetic tenants: ``count`` of them with rates drawn from ``distribution`` (mean ``mean_rate``)."""

    count: int = 0
    distribution: str = "lognormal"
    mean_rate: float = 1.0  # MB/s
    sigma: float = 1.0  # lognormal shape
    zipf_exponent: float = 1.1  # zipf: rate of the i-th largest tenant ∝ 1 / i^s


@dataclass(frozen=True, slots=True)
class Scenario:
    instances: int
    zones: int = 1
    tokens: int = 128
    replication_factor: int = 1  # Pyroscope's default
    shard_size: int = 0  # 0: every tenant on every instance (shuffle sharding off)
    tenants: tuple[Tenant, ...] = ()
    mix: TenantMix = field(default_factory=TenantMix)
    instance_capacity: float | None = None  # MB/s one instance sustains (pyro-core bench or given)
    headroom: float = 0.3  # share of capacity kept free at peak
    fail_instances: int = 1
    seed: int = 0
    gossip: GossipSettings = field(default_factory=GossipSettings)

    @property
    def zone_aware(self) -> bool:
        return self.zones > 1

    def all_tenants(self) -> tuple[Tenant, ...]:
        """The named tenants followed by the synthetic ones (seeded by ``seed``)."""
        return self.tenants + generate_tenants(self.mix, self.seed)

    def check(self) -> Scenario:
        """Raise ``ScenarioError`` listing every problem; return self when the scenario is plannable."""
        errors: list[str] = []

        def positive_int(name: str, value: object, minimum: int = 1) -> bool:
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                errors.append(f"{name} must be an integer ≥ {minimum}, got {value!r}")
                return False
            return True

        ok_n = positive_int("instances", self.instances)
        ok_z = positive_int("zones", self.zones)
        positive_int("tokens", self.tokens)
        ok_rf = positive_int("replication_factor", self.replication_factor)
        ok_s = positive_int("shard_size", self.shard_size, 0)
        positive_int("fail_instances", self.fail_instances, 0)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            errors.append(f"seed must be a non-negative integer, got {self.seed!r}")
        if ok_n and ok_z and self.zones > self.instances:
            errors.append(f"zones ({self.zones}) cannot exceed instances ({self.instances})")
        if ok_n and ok_rf and self.replication_factor > self.instances:
            errors.append(
                f"replication_factor ({self.replication_factor}) cannot exceed instances ({self.instances})"
            )
        if ok_z and ok_rf and self.zones > 1 and self.replication_factor > self.zones:
            errors.append(
                f"with zone awareness the replication factor ({self.replication_factor}) cannot exceed "
                f"the zones ({self.zones}): one replica per zone"
            )
        if ok_n and ok_s and self.shard_size > self.instances:
            errors.append(f"shard_size ({self.shard_size}) cannot exceed instances ({self.instances})")
        if ok_n and isinstance(self.fail_instances, int) and self.fail_instances > self.instances:
            errors.append(
                f"fail_instances ({self.fail_instances}) cannot exceed instances ({self.instances})"
            )
        if self.instance_capacity is not None and not _positive(self.instance_capacity):
            errors.append(f"instance capacity must be a positive MB/s, got {self.instance_capacity!r}")
        if not (_number(self.headroom) and 0.0 <= self.headroom < 1.0):
            errors.append(f"headroom must be a fraction in [0, 1), got {self.headroom!r}")
        seen: set[str] = set()
        for t in self.tenants:
            if not isinstance(t.name, str) or not t.name:
                errors.append(f"tenant names must be non-empty strings, got {t.name!r}")
            elif t.name in seen:
                errors.append(f"tenant {t.name!r} is listed twice")
            seen.add(str(t.name))
            if not (_number(t.rate) and t.rate >= 0):
                errors.append(f"tenant {t.name!r}: rate must be a non-negative MB/s, got {t.rate!r}")
            if t.shard_size is not None and (
                isinstance(t.shard_size, bool) or not isinstance(t.shard_size, int) or t.shard_size < 0
            ):
                errors.append(f"tenant {t.name!r}: shard_size must be an integer ≥ 0, got {t.shard_size!r}")
            elif t.shard_size is not None and ok_n and t.shard_size > self.instances:
                errors.append(
                    f"tenant {t.name!r}: shard_size ({t.shard_size}) cannot exceed"
                    f" instances ({self.instances})"
                )
        m = self.mix
        positive_int("tenants", m.count, 0)
        if m.distribution not in DISTRIBUTIONS:
            errors.append(
                f"rate distribution must be one of {', '.join(DISTRIBUTIONS)}, got {m.distribution!r}"
            )
        if not (_number(m.mean_rate) and m.mean_rate >= 0):
            errors.append(f"mean rate must be a non-negative MB/s, got {m.mean_rate!r}")
        if not (_number(m.sigma) and m.sigma >= 0):
            errors.append(f"rate sigma must be ≥ 0, got {m.sigma!r}")
        if not _positive(m.zipf_exponent):
            errors.append(f"zipf exponent must be > 0, got {m.zipf_exponent!r}")
        if not self.tenants and m.count == 0:
            errors.append("no tenants: give --tenants N or list tenants in the scenario file")
        errors += self.gossip.check()
        if errors:
            raise ScenarioError("; ".join(errors))
        return self


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value: object) -> bool:
    return _number(value) and float(value) > 0  # type: ignore[arg-type]


def generate_tenants(mix: TenantMix, seed: int) -> tuple[Tenant, ...]:
    """``mix.count`` tenants named tenant-1..N with seeded rates whose mean is ``mix.mean_rate``."""
    n = mix.count
    if n <= 0:
        return ()
    rng = np.random.default_rng([seed, 0x7E1A])
    if mix.distribution == "constant":
        rates = np.full(n, mix.mean_rate)
    elif mix.distribution == "lognormal":
        rates = rng.lognormal(-(mix.sigma**2) / 2, mix.sigma, n)  # mean 1
        rates *= mix.mean_rate / rates.mean() if rates.mean() > 0 else 0.0
    else:  # zipf: a few very large tenants and a long tail, in a random order
        weights = 1.0 / np.arange(1, n + 1) ** mix.zipf_exponent
        rates = rng.permutation(weights * (mix.mean_rate * n / weights.sum()))
    return tuple(Tenant(f"tenant-{i + 1}", float(r)) for i, r in enumerate(rates))


# -- the YAML scenario file ------------------------------------------------------------------------------
_TOP = {
    "instances",
    "zones",
    "tokens",
    "replication_factor",
    "shard_size",
    "tenants",
    "generate",
    "instance_capacity",
    "headroom",
    "fail_instances",
    "seed",
    "gossip",
}
_TENANT = {"name", "rate", "shard_size"}
_MIX = {"count", "distribution", "mean_rate", "sigma", "zipf_exponent"}
_GOSSIP = {f.name for f in fields(GossipSettings)}

EXAMPLE = """\
# pyro-core plan --scenario FILE.yaml   (every key optional except what the flags do not give)
instances: 50
zones: 3
tokens: 128
replication_factor: 3
shard_size: 6             # global; 0 = every instance
instance_capacity: 20     # MB/s per instance (or --capacity FILE from pyro-core bench)
headroom: 0.3
fail_instances: 2
seed: 1
tenants:                  # named tenants with their rates (MB/s) and optional own shard size
  - {name: big-corp, rate: 40, shard_size: 12}
  - {name: small, rate: 0.5}
generate:                 # synthetic tenants in addition
  count: 1000
  distribution: lognormal # constant | lognormal | zipf
  mean_rate: 0.2
  sigma: 1.0
gossip:                   # memberlist settings
  interval: 0.2
  nodes: 3
  retransmit_mult: 4
  packet_size: 1400
"""


def _unknown(where: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(str(k) for k in data if k not in allowed)
    if extra:
        raise ScenarioError(
            f"{where}: unknown key{'s' if len(extra) > 1 else ''} {', '.join(extra)} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )


def _mapping(where: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ScenarioError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def parse_scenario_text(text: str, source: str = "<scenario>") -> dict[str, Any]:
    """A YAML scenario as keyword arguments for ``Scenario`` (nested values already built)."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not valid YAML: {exc}".replace("\n", " ")) from None
    if data is None:
        return {}
    top = _mapping(source, data)
    _unknown(source, top, _TOP)
    out: dict[str, Any] = {k: v for k, v in top.items() if k not in ("tenants", "generate", "gossip")}
    if "tenants" in top:
        if not isinstance(top["tenants"], list):
            raise ScenarioError(f"{source}: tenants must be a list of {{name, rate, shard_size}}")
        tenants = []
        for i, item in enumerate(top["tenants"]):
            t = _mapping(f"{source}: tenants[{i}]", item)
            _unknown(f"{source}: tenants[{i}]", t, _TENANT)
            if "name" not in t or "rate" not in t:
                raise ScenarioError(f"{source}: tenants[{i}] needs a name and a rate")
            tenants.append(Tenant(str(t["name"]), t["rate"], t.get("shard_size")))
        out["tenants"] = tuple(tenants)
    if "generate" in top:
        g = _mapping(f"{source}: generate", top["generate"])
        _unknown(f"{source}: generate", g, _MIX)
        out["mix"] = TenantMix(**g)
    if "gossip" in top:
        g = _mapping(f"{source}: gossip", top["gossip"])
        _unknown(f"{source}: gossip", g, _GOSSIP)
        out["gossip"] = GossipSettings(**g)
    return out


def load_scenario_file(path: str | Path) -> dict[str, Any]:
    """Read and parse a YAML scenario file (``ScenarioError`` if unreadable or malformed)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"cannot read scenario file {path}: {exc}") from None
    return parse_scenario_text(text, str(path))


def build_scenario(file_values: Mapping[str, Any], overrides: Mapping[str, Any]) -> Scenario:
    """A checked ``Scenario`` from a file's values with flags (``overrides``, None = not given) on top.
    Keys of ``overrides`` named ``mix.<field>`` / ``gossip.<field>`` set nested fields."""
    values = dict(file_values)
    mix = values.pop("mix", TenantMix())
    gossip = values.pop("gossip", GossipSettings())
    mix_over = {k[4:]: v for k, v in overrides.items() if k.startswith("mix.") and v is not None}
    gossip_over = {k[7:]: v for k, v in overrides.items() if k.startswith("gossip.") and v is not None}
    values.update({k: v for k, v in overrides.items() if "." not in k and v is not None})
    if "instances" not in values:
        raise ScenarioError("the number of instances is missing: give --instances N or put it in --scenario")
    try:
        scenario = Scenario(mix=replace(mix, **mix_over), gossip=replace(gossip, **gossip_over), **values)
    except TypeError as exc:  # a key Scenario does not take (unknown-key checks make this rare)
        raise ScenarioError(str(exc)) from None
    return scenario.check()
