# Per-tenant limits and the runtime config: Pyroscope's defaults and flag names, the runtime-config
# format and its errors, overrides on top of the defaults, and the reload loop (under trio's
# MockClock) picking up a change while keeping the last good config when the file goes bad.
from __future__ import annotations

import argparse
import functools
import hashlib
import logging
from dataclasses import fields
from pathlib import Path

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry, generate_latest

from pyro_core.config import UPSTREAM_YAML_KEYS, add_config_flags, parse_args_with_config
from pyro_core.flags import add_flag, parse_positive_int
from pyro_core.server.limits import MIB
from pyro_core.server.overrides import (
    LIMIT_KEYS,
    Limits,
    Overrides,
    RuntimeConfigCollector,
    RuntimeConfigError,
    RuntimeConfigWatcher,
    add_limits_flags,
    add_runtime_config_flags,
    load_runtime_config,
    parse_limit_duration,
    parse_runtime_config,
    runtime_config_from_bytes,
    runtime_config_paths,
    watch_runtime_config,
)

# -- limits, flags, the config file -----------------------------------------------------------------


def test_limits_defaults_are_pyroscopes() -> None:
    d = Limits()
    assert (d.ingestion_rate_mb, d.ingestion_burst_size_mb, d.ingestion_tenant_shard_size) == (4.0, 2.0, 0)
    assert (d.max_label_names_per_series, d.max_label_name_length, d.max_label_value_length) == (
        30,
        1024,
        2048,
    )
    assert d.max_profile_size_bytes == 4 * MIB and d.max_profile_stacktrace_depth == 1000
    assert (d.reject_older_than, d.reject_newer_than) == (3600.0, 600.0)
    assert d.max_query_lookback == 7 * 86400.0 and d.max_query_length == 86400.0
    assert d.ingestion_rate_bytes == 4 * MIB and d.ingestion_burst_bytes == 2 * MIB


def test_every_limit_has_its_pyroscope_flag_and_yaml_key() -> None:
    for f in fields(Limits):
        assert UPSTREAM_YAML_KEYS[f.metadata["flag"]] == f"limits.{f.name}"


def test_limits_from_flags() -> None:
    parser = argparse.ArgumentParser()
    add_limits_flags(parser)
    args = parser.parse_args(
        [
            "-distributor.ingestion-rate-limit-mb=8.5",
            "-querier.max-query-lookback=2w",
            "-validation.reject-older-than=90m",
        ]
    )
    limits = Limits.from_args(args)
    assert limits == Limits(ingestion_rate_mb=8.5, max_query_lookback=14 * 86400.0, reject_older_than=5400.0)
    assert Limits.from_args(parser.parse_args([])) == Limits()
    with pytest.raises(SystemExit):
        parser.parse_args(["-distributor.ingestion-rate-limit-mb=-1"])


def test_add_limits_flags_keeps_a_flag_the_parser_already_has() -> None:
    parser = argparse.ArgumentParser()
    add_flag(parser, "distributor.ingestion-tenant-shard-size", type=parse_positive_int, default=3)
    add_limits_flags(parser)
    assert Limits.from_args(parser.parse_args([])).ingestion_tenant_shard_size == 3


def test_the_config_files_limits_section_sets_the_defaults(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="pyro-core server")
    add_config_flags(parser)
    add_limits_flags(parser)
    add_runtime_config_flags(parser)
    path = tmp_path / "c.yaml"
    path.write_text(
        "limits:\n  ingestion_rate_mb: 10\n  max_query_lookback: 1d\n  ingestion_tenant_shard_size: 3\n"
        "runtime_config:\n  file: a.yaml,b.yaml\n  period: 1m\n"
    )
    args = parse_args_with_config(
        parser, [f"-config.file={path}", "-validation.max-label-names-per-series=40"]
    )
    limits = Limits.from_args(args)
    assert limits == Limits(
        ingestion_rate_mb=10.0,
        max_query_lookback=86400.0,
        ingestion_tenant_shard_size=3,
        max_label_names_per_series=40,
    )
    assert runtime_config_paths(args.runtime_config_file) == ["a.yaml", "b.yaml"]
    assert args.runtime_config_reload_period == 60.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("30s", 30.0),
        ("1h30m", 5400.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1y", 365 * 86400.0),
        ("1.5h", 5400.0),
    ],
)
def test_limit_durations_take_go_and_prometheus_units(text: str, seconds: float) -> None:
    assert parse_limit_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-1h", "1x", "h", "1 h"])
def test_bad_limit_durations_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid duration"):
        parse_limit_duration(text)


# -- the runtime config -----------------------------------------------------------------------------


def test_runtime_config_holds_only_the_keys_each_tenant_sets() -> None:
    config = runtime_config_from_bytes(
        [
            (
                "rc.yaml",
                b"overrides:\n  tenant-a:\n    ingestion_rate_mb: 8\n    ingestion_tenant_shard_size: 2\n"
                b"    max_query_lookback: 2d\n  tenant-b:\n",
            )
        ]
    )
    assert config.overrides == {
        "tenant-a": {
            "ingestion_rate_mb": 8.0,
            "ingestion_tenant_shard_size": 2,
            "max_query_lookback": 172800.0,
        },
        "tenant-b": {},
    }
    assert (
        config.sha256
        == hashlib.sha256(
            b"overrides:\n  tenant-a:\n    ingestion_rate_mb: 8\n    ingestion_tenant_shard_size: 2\n"
            b"    max_query_lookback: 2d\n  tenant-b:\n"
        ).hexdigest()
    )


def test_an_empty_runtime_config_overrides_nothing() -> None:
    assert parse_runtime_config(None).overrides == {}
    assert runtime_config_from_bytes([("rc.yaml", b"")]).overrides == {}
    assert parse_runtime_config({"overrides": None}).overrides == {}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"overides": {}}, "unknown key 'overides' (a runtime config holds overrides)"),
        (
            {"overrides": {"t": {"ingestion_rate": 1}}},
            "overrides.t: unknown limit 'ingestion_rate' (did you mean ingestion_rate_mb?)",
        ),
        (
            {"overrides": {"t": {"ingestion_rate_mb": "fast"}}},
            "overrides.t.ingestion_rate_mb: expected a number >= 0, got 'fast'",
        ),
        (
            {"overrides": {"t": {"ingestion_rate_mb": -1}}},
            "overrides.t.ingestion_rate_mb: expected a number >= 0, got -1",
        ),
        ({"overrides": {"t": {"ingestion_rate_mb": True}}}, "expected a number >= 0, got True"),
        (
            {"overrides": {"t": {"ingestion_tenant_shard_size": 2.5}}},
            "ingestion_tenant_shard_size: expected a whole number >= 0, got 2.5",
        ),
        ({"overrides": {"t": {"ingestion_tenant_shard_size": -3}}}, "expected a whole number >= 0, got -3"),
        (
            {"overrides": {"t": {"max_query_lookback": 3600}}},
            "max_query_lookback: expected a duration such as 30s",
        ),
        ({"overrides": {"t": {"max_query_lookback": "soon"}}}, "got 'soon'"),
        ({"overrides": {"t": {"max_label_names_per_series": [1]}}}, "got a mapping or list"),
        ({"overrides": {"t": 5}}, "overrides.t: expected a mapping of limits, got 5"),
        ({"overrides": ["t"]}, "overrides: expected a mapping of tenant ids"),
        ({"overrides": {"a/b": {}}}, "overrides: 'a/b': tenant id may only contain"),
        (["overrides"], "the top level must be a mapping"),
    ],
)
def test_runtime_config_errors_name_the_tenant_key_and_value(document: object, message: str) -> None:
    with pytest.raises(RuntimeConfigError) as e:
        parse_runtime_config(document, source="rc.yaml")
    assert str(e.value).startswith("rc.yaml: ")
    assert message in str(e.value)


def test_runtime_config_yaml_errors_name_the_file_and_line() -> None:
    with pytest.raises(RuntimeConfigError, match=r"rc.yaml: invalid YAML at line 2, column 1: .*'\\t'"):
        runtime_config_from_bytes([("rc.yaml", b"overrides:\n\tt: {}\n")])
    with pytest.raises(RuntimeConfigError, match="found key 't' twice"):
        runtime_config_from_bytes([("rc.yaml", b"overrides:\n  t: {}\n  t: {}\n")])
    with pytest.raises(RuntimeConfigError, match=r"rc\.yaml: not UTF-8"):
        runtime_config_from_bytes([("rc.yaml", b"overrides: \xff\n")])


def test_runtime_config_files_merge_left_to_right(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(
        "overrides:\n  t:\n    ingestion_rate_mb: 1\n    ingestion_burst_size_mb: 1\n  u: {ingestion_rate_mb: 5}\n"
    )
    b.write_text("overrides:\n  t:\n    ingestion_rate_mb: 2\n")
    config = load_runtime_config(f"{a}, {b}")
    assert config.overrides == {
        "t": {"ingestion_rate_mb": 2.0, "ingestion_burst_size_mb": 1.0},
        "u": {"ingestion_rate_mb": 5.0},
    }
    with pytest.raises(RuntimeConfigError, match=r"missing\.yaml: no such file"):
        load_runtime_config([str(a), str(tmp_path / "missing.yaml")])


def test_a_tenants_override_starts_from_the_defaults() -> None:
    overrides = Overrides(Limits(ingestion_rate_mb=6.0, ingestion_tenant_shard_size=3))
    overrides.apply(parse_runtime_config({"overrides": {"t": {"ingestion_tenant_shard_size": 1}}}))
    assert overrides.for_tenant("t") == Limits(ingestion_rate_mb=6.0, ingestion_tenant_shard_size=1)
    assert overrides.for_tenant("other") == overrides.defaults
    assert overrides.tenants() == ["t"]
    overrides.apply(parse_runtime_config({"overrides": {}}))  # the override is gone: defaults again
    assert overrides.for_tenant("t") == overrides.defaults


# -- reloading --------------------------------------------------------------------------------------


class FakeFiles:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def read(self, paths: list[str]) -> list[tuple[str, bytes]]:
        out = []
        for p in paths:
            if p not in self.data:
                raise RuntimeConfigError(f"{p}: no such file")
            out.append((p, self.data[p]))
        return out


GOOD = b"overrides:\n  t:\n    ingestion_rate_mb: 8\n"
BETTER = b"overrides:\n  t:\n    ingestion_rate_mb: 16\n"
BAD = b"overrides:\n  t:\n    ingestion_rate_mb: lots\n"


def test_the_watcher_applies_a_change_and_keeps_the_last_good_config_on_a_bad_file() -> None:
    files = FakeFiles()
    errors: list[RuntimeConfigError] = []
    overrides = Overrides()
    watcher = RuntimeConfigWatcher("rc.yaml", overrides, on_error=errors.append, read=files.read)
    files.data["rc.yaml"] = GOOD
    assert watcher.poll()
    assert overrides.for_tenant("t").ingestion_rate_mb == 8.0
    assert not watcher.poll()  # unchanged bytes: nothing to do
    files.data["rc.yaml"] = BAD
    assert not watcher.poll()
    assert overrides.for_tenant("t").ingestion_rate_mb == 8.0  # kept
    assert overrides.status.last_reload_successful is False and overrides.status.failures == 1
    assert "ingestion_rate_mb: expected a number >= 0, got 'lots'" in (overrides.status.last_error or "")
    assert not watcher.poll()  # the same bad file is not counted or reported again
    assert overrides.status.failures == 1 and len(errors) == 1
    files.data["rc.yaml"] = BETTER
    assert watcher.poll()
    assert overrides.for_tenant("t").ingestion_rate_mb == 16.0
    assert overrides.status.last_reload_successful and overrides.status.successes == 2


def test_a_deleted_file_keeps_the_config_and_its_return_clears_the_error() -> None:
    files = FakeFiles()
    overrides = Overrides()
    watcher = RuntimeConfigWatcher("rc.yaml", overrides, read=files.read)
    files.data["rc.yaml"] = GOOD
    assert watcher.poll()
    del files.data["rc.yaml"]
    assert not watcher.poll()
    assert (
        overrides.status.last_error == "rc.yaml: no such file"
        and overrides.for_tenant("t").ingestion_rate_mb == 8.0
    )
    files.data["rc.yaml"] = GOOD  # the same good bytes come back: healthy again, nothing to apply
    assert not watcher.poll()
    assert overrides.status.last_reload_successful and overrides.status.successes == 1


def test_a_startup_load_is_not_applied_twice() -> None:
    files = FakeFiles()
    files.data["rc.yaml"] = GOOD
    overrides = Overrides()
    overrides.apply(runtime_config_from_bytes(files.read(["rc.yaml"])))
    assert not RuntimeConfigWatcher("rc.yaml", overrides, read=files.read).poll()


def test_watch_runtime_config_reloads_a_real_file_under_a_mock_clock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "runtime.yaml"
    path.write_bytes(GOOD)
    overrides = Overrides()
    errors: list[RuntimeConfigError] = []
    seen: list[float] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            watch = functools.partial(watch_runtime_config, on_error=errors.append)
            await nursery.start(watch, str(path), 10.0, overrides)
            seen.append(overrides.for_tenant("t").ingestion_rate_mb)  # loaded before started()
            path.write_bytes(BAD)
            await trio.sleep(15)  # one reload period later
            seen.append(overrides.for_tenant("t").ingestion_rate_mb)
            path.write_bytes(BETTER)
            await trio.sleep(10)
            seen.append(overrides.for_tenant("t").ingestion_rate_mb)
            path.unlink()
            await trio.sleep(10)
            seen.append(overrides.for_tenant("t").ingestion_rate_mb)
            nursery.cancel_scope.cancel()

    with caplog.at_level(logging.ERROR, logger="pyro_core.runtime_config"):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert seen == [8.0, 8.0, 16.0, 16.0]
    assert [str(e).split(": ", 1)[1] for e in errors][1:] == ["no such file"]
    assert "got 'lots'" in str(errors[0])
    assert overrides.status.failures == 2 and not overrides.status.last_reload_successful
    assert "keeping the previous config" in caplog.text


def test_reload_metrics_use_dskits_names_under_the_pyroscope_prefix() -> None:
    files = FakeFiles()
    overrides = Overrides()
    registry = CollectorRegistry()
    registry.register(RuntimeConfigCollector(overrides))
    assert b"runtime_config" not in generate_latest(registry)  # nothing loaded yet: nothing to say
    watcher = RuntimeConfigWatcher("rc.yaml", overrides, read=files.read)
    files.data["rc.yaml"] = GOOD
    watcher.poll()
    text = generate_latest(registry).decode()
    digest = hashlib.sha256(GOOD).hexdigest()
    assert "pyroscope_runtime_config_last_reload_successful 1.0" in text
    assert f'pyroscope_runtime_config_hash{{sha256="{digest}"}} 1.0' in text
    assert 'pyroscope_runtime_config_reloads_total{status="success"} 1.0' in text
    files.data["rc.yaml"] = BAD
    watcher.poll()
    text = generate_latest(registry).decode()
    assert "pyroscope_runtime_config_last_reload_successful 0.0" in text
    assert f'pyroscope_runtime_config_hash{{sha256="{digest}"}} 1.0' in text  # still the config in use
    assert 'pyroscope_runtime_config_reloads_total{status="failure"} 1.0' in text


def test_limit_keys_are_the_dataclass_fields() -> None:
    assert tuple(f.name for f in fields(Limits)) == LIMIT_KEYS
