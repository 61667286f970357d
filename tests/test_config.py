# The YAML config file: every flag of `pyro-core server` has a YAML key (Pyroscope's where it exists),
# a YAML value and the same flag give the same parsed value for every flag type, flags override the
# file, and an unknown key, a bad value, a missing or invalid file fail with exit status 2 and a
# message naming the file and the key (no traceback); ${VAR} expansion; the raw remote-write section.
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyro_core import cli
from pyro_core.config import (
    UPSTREAM_YAML_KEYS,
    add_config_flags,
    derived_yaml_path,
    expand_env,
    flag_name,
    load_yaml,
    parse_args_with_config,
    yaml_keys,
    yaml_path_for,
)
from pyro_core.server.auth import add_auth_flags
from pyro_core.server.overrides import add_limits_flags, add_runtime_config_flags


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            sub: argparse.ArgumentParser = action.choices[name]
            return sub
    raise AssertionError(f"no subcommand {name}")


def _has(parser: argparse.ArgumentParser, dest: str) -> bool:
    return any(a.dest == dest for a in parser._actions)


def make_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """cli's parser, its `server` subparser completed with the flags of this change (until the lead
    wires them in cli.py: then these additions are no-ops)."""
    top = cli.make_parser()
    server = _subparser(top, "server")
    if not _has(server, "config_file"):
        add_config_flags(server)
    add_limits_flags(server)  # skips flags the parser already has
    if not _has(server, "runtime_config_file"):
        add_runtime_config_flags(server)
    if not _has(server, "auth_bearer_token"):
        add_auth_flags(server)
    return top, server


@pytest.fixture
def tmp_yaml(tmp_path: Path) -> Iterator[Any]:
    def write(text: str) -> str:
        path = tmp_path / "pyroscope.yaml"
        path.write_text(textwrap.dedent(text))
        return str(path)

    yield write


def parse(argv: list[str], environ: dict[str, str] | None = None) -> argparse.Namespace:
    top, _ = make_parser()
    return parse_args_with_config(top, ["server", *argv], environ=environ)


def fail(argv: list[str], capsys: pytest.CaptureFixture[str], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(SystemExit) as e:
        parse(argv, environ)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# -- keys -------------------------------------------------------------------------------------------


def _settable(server: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in server._actions
        if a.option_strings
        and not isinstance(a, argparse._HelpAction)
        and flag_name(a) not in ("config.file", "config.expand-env")
    ]


def test_every_server_flag_has_exactly_one_yaml_key() -> None:
    _, server = make_parser()
    keys = yaml_keys(server)
    assert sorted(a.dest for a in keys.values()) == sorted(a.dest for a in _settable(server))
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize(
    ("flag", "key"),
    [
        ("server.http-listen-port", "server.http_listen_port"),
        ("server.http-listen-address", "server.http_listen_address"),
        ("log.level", "server.log_level"),
        ("memberlist.join", "memberlist.join_members"),
        ("memberlist.nodename", "memberlist.node_name"),
        ("memberlist.pullpush-interval", "memberlist.pull_push_interval"),
        ("memberlist.abort-if-join-fails", "memberlist.abort_if_cluster_join_fails"),
        ("memberlist.bind-addr", "memberlist.bind_addr"),
        ("ingester.num-tokens", "ingester.lifecycler.num_tokens"),
        ("ingester.heartbeat-period", "ingester.lifecycler.heartbeat_period"),
        ("ingester.availability-zone", "ingester.lifecycler.availability_zone"),
        ("ingester.lifecycler.id", "ingester.lifecycler.id"),
        ("ring.heartbeat-timeout", "ingester.lifecycler.ring.heartbeat_timeout"),
        ("distributor.replication-factor", "ingester.lifecycler.ring.replication_factor"),
        ("distributor.zone-awareness-enabled", "ingester.lifecycler.ring.zone_awareness_enabled"),
        ("distributor.ingestion-rate-limit-mb", "limits.ingestion_rate_mb"),
        ("distributor.ingestion-tenant-shard-size", "limits.ingestion_tenant_shard_size"),
        ("validation.max-label-names-per-series", "limits.max_label_names_per_series"),
        ("pyroscopedb.data-path", "pyroscopedb.data_path"),
        ("runtime-config.file", "runtime_config.file"),
        ("runtime-config.reload-period", "runtime_config.period"),
        ("auth.multitenancy-enabled", "multitenancy_enabled"),
        # not in Pyroscope: derived (dots nest, dashes become underscores)
        ("memberlist.transport", "memberlist.transport"),
        ("querier.shuffle-sharding-ingesters-enabled", "querier.shuffle_sharding_ingesters_enabled"),
        ("auth.bearer-token", "auth.bearer_token"),
        ("pyroscopedb.retention-period", "pyroscopedb.retention_period"),
    ],
)
def test_yaml_keys_follow_pyroscope_and_the_derivation_rule(flag: str, key: str) -> None:
    assert yaml_path_for(flag) == key


def test_the_derivation_rule() -> None:
    assert derived_yaml_path("a.b-c.d-e-f") == "a.b_c.d_e_f"
    assert all(not k.startswith(".") and ".." not in k for k in UPSTREAM_YAML_KEYS.values())


def test_two_flags_with_one_key_are_a_bug_in_the_flag_set() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("-a.b-c", dest="one")
    p.add_argument("-a.b_c", dest="two")
    with pytest.raises(ValueError, match=r"share the YAML key a\.b_c"):
        yaml_keys(p)
    q = argparse.ArgumentParser()
    q.add_argument("-a.b", dest="one")
    q.add_argument("-a.b.c", dest="two")
    with pytest.raises(ValueError, match="both a setting and the section"):
        yaml_keys(q)


# -- YAML <-> flag equivalence ----------------------------------------------------------------------

CANDIDATES = ["3", "7s", "true", "false", "x-value", "00112233445566778899aabbccddeeff", "1.5"]


def _sample(server: argparse.ArgumentParser, action: argparse.Action) -> str:
    """A value the flag accepts (its last choice, else the first candidate its type takes that is not
    the default)."""
    if action.choices is not None:
        return str(list(action.choices)[-1])
    type_func = server._registry_get("type", action.type, action.type)
    accepted = []
    for text in CANDIDATES:
        try:
            value = type_func(text) if type_func is not None else text
        except (argparse.ArgumentTypeError, TypeError, ValueError):
            continue
        if isinstance(action, argparse._StoreConstAction):
            return "true"
        if value != action.default:
            return text
        accepted.append(text)
    assert accepted, f"no sample value for -{flag_name(action)}: add one to CANDIDATES"
    return accepted[0]


def _nested_yaml(path: str, value: str, many: bool) -> str:
    *sections, leaf = path.split(".")
    lines = [f"{'  ' * i}{s}:" for i, s in enumerate(sections)]
    rendered = f"[{value}]" if many else value
    lines.append(f"{'  ' * len(sections)}{leaf}: {rendered}")
    return "\n".join(lines) + "\n"


def _server_flags() -> list[str]:
    _, server = make_parser()
    return [flag_name(a) for a in _settable(server)]


@pytest.mark.parametrize("flag", _server_flags())
def test_a_yaml_value_and_the_flag_parse_the_same(flag: str, tmp_yaml: Any) -> None:
    _, server = make_parser()
    action = next(a for a in server._actions if a.option_strings and flag_name(a) == flag)
    sample = _sample(server, action)
    many = isinstance(action, argparse._AppendAction)
    path = tmp_yaml(_nested_yaml(yaml_path_for(flag), sample, many))
    from_flag = parse([f"-{flag}" if isinstance(action, argparse._StoreConstAction) else f"-{flag}={sample}"])
    from_file = parse([f"-config.file={path}"])
    assert getattr(from_file, action.dest) == getattr(from_flag, action.dest)


def test_native_yaml_types_are_accepted(tmp_yaml: Any) -> None:
    path = tmp_yaml(
        """
        server:
          http_listen_port: 5040
        memberlist:
          gossip_nodes: 5
          gossip_interval: 0
          compression_enabled: false
          join_members: [10.0.0.1:7946, "dns+pyroscope-memberlist:7946"]
          bind_addr: 127.0.0.1
        limits:
          ingestion_rate_mb: 4.5
        multitenancy_enabled: true
        """
    )
    args = parse([f"-config.file={path}"])
    assert args.server_http_listen_port == 5040
    assert args.memberlist_gossip_nodes == 5 and args.memberlist_gossip_interval == 0.0
    assert args.memberlist_compression_enabled is False
    assert args.memberlist_join == ["10.0.0.1:7946", "dns+pyroscope-memberlist:7946"]
    assert args.memberlist_bind_addr == ["127.0.0.1"]  # one value is a list of one
    assert args.distributor_ingestion_rate_limit_mb == 4.5
    assert args.auth_multitenancy_enabled is True


def test_values_are_text_as_on_the_command_line(tmp_yaml: Any) -> None:
    # YAML 1.1 would make these a number and a boolean; the flags see the text, as Go's YAML 1.2 does
    path = tmp_yaml("memberlist:\n  node_name: 0755\n  cluster_label: no\n")
    args = parse([f"-config.file={path}"])
    assert (args.memberlist_nodename, args.memberlist_cluster_label) == ("0755", "no")


def test_null_leaves_the_default(tmp_yaml: Any) -> None:
    path = tmp_yaml("server:\n  http_listen_port:\nmemberlist: ~\n")
    args = parse([f"-config.file={path}"])
    assert args.server_http_listen_port == 4040


def test_an_empty_file_sets_nothing(tmp_yaml: Any) -> None:
    path = tmp_yaml("# nothing here\n")
    assert parse([f"-config.file={path}"]).server_http_listen_port == 4040


# -- precedence -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling", ["-config.file={}", "--config.file={}", "-config.file {}", "--config.file {}"]
)
def test_flags_override_the_file(spelling: str, tmp_yaml: Any) -> None:
    path = tmp_yaml("server:\n  http_listen_port: 5000\n  log_level: debug\n")
    config_args = spelling.format(path).split(" ")
    args = parse([*config_args, "-server.http-listen-port=6000"])
    assert args.server_http_listen_port == 6000  # the flag wins
    assert args.log_level == "debug"  # the file fills in the rest
    args = parse(["-server.http-listen-port", "6001", *config_args])  # flag order does not matter
    assert args.server_http_listen_port == 6001


def test_a_repeated_flag_replaces_the_files_list(tmp_yaml: Any) -> None:
    path = tmp_yaml("memberlist:\n  join_members: [a:1, b:2]\n")
    assert parse([f"-config.file={path}"]).memberlist_join == ["a:1", "b:2"]
    assert parse(
        [f"-config.file={path}", "-memberlist.join=c:3", "-memberlist.join=d:4"]
    ).memberlist_join == [
        "c:3",
        "d:4",
    ]


def test_parsing_leaves_the_parser_as_it_was(tmp_yaml: Any) -> None:
    top, _ = make_parser()
    path = tmp_yaml("server:\n  http_listen_port: 5000\n")
    assert parse_args_with_config(top, ["server", f"-config.file={path}"]).server_http_listen_port == 5000
    assert parse_args_with_config(top, ["server"]).server_http_listen_port == 4040


def test_commands_without_a_config_flag_parse_as_before() -> None:
    top, _ = make_parser()
    args = parse_args_with_config(top, ["member", "-memberlist.bind-port=0"])
    assert args.memberlist_bind_port == 0 and args.remote_write is None


def test_a_generic_parser_without_subcommands(tmp_path: Path) -> None:
    p = argparse.ArgumentParser(prog="tool")
    add_config_flags(p)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--ratio", type=float, default=0.5)
    p.add_argument("--names", nargs="+", default=[])
    p.add_argument("--mode", choices=["fast", "slow"], default="slow")
    path = tmp_path / "tool.yaml"
    path.write_text("verbose: true\nworkers: 8\nratio: 0.25\nnames: [a, b]\nmode: fast\n")
    args = parse_args_with_config(p, [f"--config.file={path}", "--workers=9"])
    assert (args.verbose, args.workers, args.ratio, args.names, args.mode) == (
        True,
        9,
        0.25,
        ["a", "b"],
        "fast",
    )


# -- errors -----------------------------------------------------------------------------------------


def test_an_unknown_key_names_the_key_the_file_and_the_closest_key(
    tmp_yaml: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_yaml("memberlist:\n  join: [a:1]\n")
    err = fail([f"-config.file={path}"], capsys)
    assert f"config file {path}: unknown key memberlist.join (did you mean memberlist.join_members?)" in err


def test_an_unknown_key_without_a_close_one_lists_the_valid_keys(
    tmp_yaml: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_yaml("zzz: 1\n")
    err = fail([f"-config.file={path}"], capsys)
    assert "unknown key zzz (valid keys: " in err and "memberlist, " in err


def test_a_key_written_as_its_flag_points_to_the_real_key(
    tmp_yaml: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_yaml("ring:\n  heartbeat_timeout: 1m\n")
    err = fail([f"-config.file={path}"], capsys)
    assert "unknown key ring (did you mean ingester.lifecycler.ring.heartbeat_timeout?)" in err
    path = tmp_yaml("memberlist:\n  gossip: 1s\n")
    err = fail([f"-config.file={path}"], capsys)
    assert "unknown key memberlist.gossip (did you mean memberlist.gossip_interval?)" in err


def test_a_pyroscope_key_pyro_core_lacks_says_so(tmp_yaml: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_yaml("memberlist:\n  randomize_node_name: false\n")
    err = fail([f"-config.file={path}"], capsys)
    assert (
        "unknown key memberlist.randomize_node_name (a Pyroscope setting that pyro-core server does not support)"
        in err
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "ingester:\n  lifecycler:\n    heartbeat_period: fast\n",
            "ingester.lifecycler.heartbeat_period: invalid duration 'fast' (use Go syntax",
        ),
        (
            "server:\n  log_level: loud\n",
            "server.log_level: invalid value 'loud' (expected one of debug, info, warn, error)",
        ),
        (
            "server:\n  http_listen_port: 70000\n",
            "server.http_listen_port: port 70000 is out of range 0-65535",
        ),
        (
            "memberlist:\n  gossip_nodes: many\n",
            "memberlist.gossip_nodes: expected a whole number, got 'many'",
        ),
        (
            "memberlist:\n  compression_enabled: yes\n",
            "memberlist.compression_enabled: invalid boolean 'yes' (use true or false)",
        ),
        (
            "memberlist:\n  join_members: [a:1, {x: 1}]\n",
            "memberlist.join_members[1]: expected a single value, got a mapping",
        ),
        ("memberlist:\n  bind_port: [1, 2]\n", "memberlist.bind_port: expected a single value, got a list"),
        ("memberlist: 5\n", "memberlist: expected a section"),
        ("ingester:\n  lifecycler:\n    ring: fast\n", "ingester.lifecycler.ring: expected a section"),
        ("- a\n- b\n", "the top level must be a mapping of settings, got a list"),
        ("server:\n  http_listen_port: 1\n  http_listen_port: 2\n", "found key 'http_listen_port' twice"),
        ("server:\n\thttp_listen_port: 1\n", "invalid YAML at line 2, column 1"),
        ("remote-write: [a]\n", "remote-write: expected a mapping, got a list"),
    ],
)
def test_a_bad_value_names_the_key_the_value_and_the_form(
    text: str, message: str, tmp_yaml: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_yaml(text)
    err = fail([f"-config.file={path}"], capsys)
    assert f"pyro-core server: error: config file {path}: " in err
    assert message in err


def test_a_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert f"config file {missing}: no such file" in fail([f"-config.file={missing}"], capsys)
    assert f"config file {tmp_path}: is a directory" in fail([f"-config.file={tmp_path}"], capsys)


def test_unknown_flags_still_fail(capsys: pytest.CaptureFixture[str]) -> None:
    assert "unrecognized arguments: -bogus.flag=1" in fail(["-bogus.flag=1"], capsys)


# -- environment ------------------------------------------------------------------------------------


def test_expand_env_forms() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert expand_env("${A} ${B} ${B:-x} ${B:y} ${A:-z} ${EMPTY:-d} $A ${1x}", env) == "1  x y 1 d $A ${1x}"


def test_expand_env_applies_only_when_asked(tmp_yaml: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_yaml(
        "server:\n  http_listen_port: ${PORT}\npyroscopedb:\n  data_path: ${DATA:-/var/lib/pyro}\n"
    )
    env = {"PORT": "5041"}
    args = parse([f"-config.file={path}", "-config.expand-env=true"], env)
    assert (args.server_http_listen_port, args.pyroscopedb_data_path) == (5041, "/var/lib/pyro")
    args = parse([f"-config.file={path}", "-config.expand-env"], {"PORT": "5042", "DATA": "/d"})
    assert (args.server_http_listen_port, args.pyroscopedb_data_path) == (5042, "/d")
    err = fail([f"-config.file={path}"], capsys, env)  # not expanded: the literal is not a port
    assert "server.http_listen_port: invalid port '${PORT}'" in err


# -- remote-write -----------------------------------------------------------------------------------


def test_remote_write_is_handed_over_raw(tmp_yaml: Any) -> None:
    path = tmp_yaml(
        """
        server:
          http_listen_port: 5000
        remote-write:
          url: http://example:4040
          queue: {capacity: 10, enabled: true, timeout: 5s}
        """
    )
    args = parse([f"-config.file={path}"])
    assert args.remote_write == {
        "url": "http://example:4040",
        "queue": {"capacity": 10, "enabled": True, "timeout": "5s"},
    }
    empty = tmp_yaml("server: {}\n")
    assert parse([f"-config.file={empty}"]).remote_write is None
    assert parse([]).remote_write is None


def test_load_yaml_marks_name_the_file() -> None:
    from pyro_core.config import ConfigFileError

    with pytest.raises(ConfigFileError, match=r"^my.yaml: invalid YAML at line 1, column 5: mapping values"):
        load_yaml("a: b: c\n", "my.yaml")


# -- end to end -------------------------------------------------------------------------------------


def _run(code_or_args: list[str], cwd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *code_or_args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "memberlist:\n  join: [a:1]\n",
            "unknown key memberlist.join (did you mean memberlist.join_members?)",
        ),
        ("server:\n  http_listen_port: abc\n", "server.http_listen_port: invalid port 'abc'"),
    ],
)
def test_the_process_exits_2_with_the_message_and_no_traceback(
    text: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    # the parser of `pyro-core server` with this module's flags, as cli.py uses it once wired
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_config import make_parser
        from pyro_core.config import parse_args_with_config
        top, _ = make_parser()
        parse_args_with_config(top, ["server", "-config.file={path}"])
        """
    )
    proc = _run(["-c", script], tempfile.gettempdir())
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("memberlist:\n  join: [a:1]\n", "unknown key memberlist.join"),
        (
            "ingester:\n  lifecycler:\n    heartbeat_period: fast\n",
            "ingester.lifecycler.heartbeat_period: invalid duration 'fast'",
        ),
    ],
)
def test_pyro_core_server_refuses_a_bad_config_file(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    proc = _run(["-m", "pyro_core", "server", f"-config.file={path}"], tempfile.gettempdir())
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    missing = _run(
        ["-m", "pyro_core", "server", f"-config.file={tmp_path / 'missing.yaml'}"], tempfile.gettempdir()
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
