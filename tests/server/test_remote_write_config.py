# The `remote-write:` section: the seed's examples parse with the spec's defaults; every mistake is a
# RemoteWriteConfigError that names the key and where it is.
from __future__ import annotations

import os
from typing import Any

import pytest
import yaml

from pyro_core.server.relay_config import (
    DEFAULT_QUEUE_WORKERS,
    RemoteWriteConfig,
    RemoteWriteConfigError,
    parse_size,
)

SEED_BASIC = """
remote-write:
  enabled: true
  targets:
    bar:
      address: http://bar:4040
      auth-token: MY_AUTH_TOKEN
      tags:
        foo: bar
    baz:
      address: http://baz:4040
      auth-token: MY_AUTH_TOKEN
      tags:
        foo: baz
      headers:
        X-Extra-Header: "Value"
"""

SEED_PHLARE = """
remote-write:
  enabled: true
  disable-local-writes: true
  targets:
    phlare:
      address: "https://phlare.example"
      basic-auth-user: "user"
      basic-auth-password: "secret"
      tenant-id: "tenant-1"
      timeout: 1m
      queue-size: 1000
      queue-workers: 4
"""


def parse(text: str) -> RemoteWriteConfig:
    return RemoteWriteConfig.from_mapping(yaml.safe_load(text)["remote-write"])


def one(target: dict[str, Any], **top: Any) -> RemoteWriteConfig:
    return RemoteWriteConfig.from_mapping({"enabled": True, "targets": {"t": target}, **top})


def test_seed_example_parses_with_the_spec_defaults() -> None:
    cfg = parse(SEED_BASIC)
    assert cfg.active and not cfg.disable_local_writes
    bar, baz = cfg.targets
    assert (bar.name, bar.address, bar.auth_token, bar.tags) == (
        "bar",
        "http://bar:4040",
        "MY_AUTH_TOKEN",
        (("foo", "bar"),),
    )
    assert baz.headers == (("X-Extra-Header", "Value"),)
    assert (bar.timeout, bar.queue_size, bar.queue_workers) == (10.0, 100, DEFAULT_QUEUE_WORKERS)
    assert max((os.cpu_count() or 1) * 4, 64) == DEFAULT_QUEUE_WORKERS
    assert bar.spool.enabled is False and bar.retry.max_retries == 8


def test_phlare_example_parses() -> None:
    cfg = parse(SEED_PHLARE)
    (t,) = cfg.targets
    assert cfg.disable_local_writes
    assert (t.basic_auth_user, t.basic_auth_password, t.tenant_id) == ("user", "secret", "tenant-1")
    assert (t.timeout, t.queue_size, t.queue_workers) == (60.0, 1000, 4)


def test_missing_or_disabled_section_is_off() -> None:
    assert not RemoteWriteConfig.from_mapping(None).active
    cfg = RemoteWriteConfig.from_mapping({"enabled": False, "targets": {"t": {"address": "http://x"}}})
    assert not cfg.active and len(cfg.targets) == 1


def test_top_level_tuning_keys_are_defaults_for_every_target() -> None:
    cfg = RemoteWriteConfig.from_mapping(
        {
            "enabled": True,
            "timeout": "3s",
            "queue-size": 7,
            "targets": {"a": {"address": "http://a"}, "b": {"address": "http://b", "queue-size": 9}},
        }
    )
    a, b = cfg.targets
    assert (a.timeout, a.queue_size, b.timeout, b.queue_size) == (3.0, 7, 3.0, 9)


def test_spool_forms_and_retry_defaults() -> None:
    (t,) = one({"address": "http://x", "spool": True}).targets
    assert t.spool.enabled and t.retry.max_retries is None  # unlimited while the spool has room
    (t,) = one(
        {
            "address": "http://x",
            "spool": {
                "max-bytes": "64MiB",
                "segment-bytes": "1MB",
                "fsync": False,
                "commit-interval": "250ms",
            },
            "max-retries": 3,
        }
    ).targets
    assert (t.spool.max_bytes, t.spool.segment_bytes, t.spool.fsync, t.spool.commit_interval) == (
        64 << 20,
        10**6,
        False,
        0.25,
    )
    assert t.retry.max_retries == 3
    (t,) = one(
        {
            "address": "http://x",
            "spool": {"enabled": False},
            "max-retries": "unlimited",
            "min-backoff": "100ms",
            "max-backoff": "1m",
            "retry-budget": 2.5,
            "retry-burst": 3,
        }
    ).targets
    assert not t.spool.enabled
    r = t.retry
    assert (r.max_retries, r.min_backoff, r.max_backoff, r.budget, r.burst) == (None, 0.1, 60.0, 2.5, 3)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"enabled": True}, "remote-write: enabled, but no targets are configured"),
        ({"enabled": True, "targets": {}}, "no targets"),
        (
            {"enabled": True, "targets": {"t": {"address": "bar:4040"}}},
            "remote-write.targets.t.address: 'bar:4040' is not an http:// or https:// URL",
        ),
        ({"enabled": True, "targets": {"t": {"address": "ftp://bar"}}}, "is not an http:// or https:// URL"),
        ({"enabled": True, "targets": {"t": {}}}, "remote-write.targets.t.address: required"),
        (
            {"enabled": True, "targets": {"t": {"address": "http://bar:4040/a b"}}},
            "remote-write.targets.t.address: 'http://bar:4040/a b' has a space or control character",
        ),
        (
            {"enabled": True, "targets": {"t": {"address": "http://x", "auth-token": "a\r\nX-Injected: 1"}}},
            "remote-write.targets.t.auth-token: must not contain a line break, NUL or control character",
        ),
        (
            {"enabled": True, "targets": {"t": {"address": "http://x", "tenant-id": "t\x00"}}},
            "remote-write.targets.t.tenant-id: must not contain a line break, NUL or control character",
        ),
        (
            {"enabled": True, "targets": {"t": {"address": "http://x", "headers": {"Bad Name": "v"}}}},
            "remote-write.targets.t.headers: 'Bad Name' is not a valid HTTP header name",
        ),
        (
            {"enabled": True, "targets": {"t": {"address": "http://x", "headers": {"X-Price": "5 €"}}}},
            "remote-write.targets.t.headers.X-Price: '5 €' has characters an HTTP header cannot carry",
        ),
        (
            {"enabled": True, "targets": {"t": {"address": "http://x", "basic-auth-user": "a:b"}}},
            "remote-write.targets.t.basic-auth-user: must not contain ':'",
        ),
        (
            {"enabled": True, "targets": {"t": {"address": "http://x", "tokn": "a"}}},
            "remote-write.targets.t: unknown key 'tokn'",
        ),
        (
            {"enabled": True, "bogus": 1, "targets": {"t": {"address": "http://x"}}},
            "remote-write: unknown key 'bogus'",
        ),
        (
            {"enabled": True, "targets": {"t": {"address": "http://x", "spool": {"size": 1}}}},
            "remote-write.targets.t.spool: unknown key 'size'",
        ),
        (
            {"enabled": True, "targets": {"t": {"address": "http://x", "timeout": "10"}}},
            "remote-write.targets.t.timeout: invalid duration '10'",
        ),
        (
            {"enabled": True, "targets": {"t": {"address": "http://x", "timeout": 10}}},
            "remote-write.targets.t.timeout: expected a Go duration",
        ),
        (
            {"enabled": True, "targets": {"t": {"address": "http://x", "timeout": "0s"}}},
            "timeout: must be positive",
        ),
        (
            {"enabled": True, "targets": {"t": {"address": "http://x", "queue-size": 0}}},
            "queue-size: must be at least 1",
        ),
        (
            {"enabled": True, "targets": {"t": {"address": "http://x", "queue-workers": "many"}}},
            "queue-workers: expected an integer",
        ),
        (
            {"enabled": True, "targets": {"t": {"address": "http://x", "retry-budget": 0}}},
            "retry-budget: must be a positive number",
        ),
        (
            {"enabled": True, "targets": {"t": {"address": "http://x", "spool": {"max-bytes": "lots"}}}},
            "spool.max-bytes: invalid size",
        ),
        (
            {"enabled": True, "targets": {"t": {"address": "http://x", "tags": {"bad-key": "v"}}}},
            "tags: tag key 'bad-key'",
        ),
        (
            {"enabled": True, "targets": {"t": {"address": "http://x", "tags": {"k": "a,b"}}}},
            "tags.k: value 'a,b' must not contain",
        ),
        (
            {
                "enabled": True,
                "targets": {"t": {"address": "http://x", "min-backoff": "2s", "max-backoff": "1s"}},
            },
            "must not be below min-backoff",
        ),
        ({"enabled": True, "targets": {"../x": {"address": "http://x"}}}, "invalid target name"),
        ({"enabled": True, "targets": {"t": "http://x"}}, "remote-write.targets.t: expected a mapping"),
        (
            {"enabled": "yes", "targets": {"t": {"address": "http://x"}}},
            "remote-write.enabled: expected true or false",
        ),
        ({"disable-local-writes": True}, "disable-local-writes: needs remote write enabled"),
        ([1, 2], "remote-write: expected a mapping"),
    ],
)
def test_config_errors_say_what_and_where(section: Any, message: str) -> None:
    with pytest.raises(RemoteWriteConfigError, match=None) as info:
        RemoteWriteConfig.from_mapping(section)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_sizes() -> None:
    assert [parse_size(v) for v in (512, "512", "1KiB", "2 MB", "1.5GiB")] == [
        512,
        512,
        1024,
        2 * 10**6,
        3 << 29,
    ]
    with pytest.raises(ValueError):
        parse_size("1 parsec")
