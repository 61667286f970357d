# The YAML config file of a Pyroscope-style command (`-config.file`, `-config.expand-env`).
# Owns: the table from Grafana Pyroscope's YAML keys to flag names (and the rule that derives a key
# for a flag Pyroscope does not have), reading and checking the file (unknown keys, bad values,
# duplicate keys, invalid YAML, ${VAR} expansion), turning its values into flag defaults with the
# flags' own argparse `type=` callables, and the strict YAML loaders the runtime config also uses.
# Must not know: what any setting means (the commands and pyro_core.flags do), HTTP, trio, the
# `remote-write:` section's contents (handed over raw, another module validates it).
"""Load a YAML config file under a command's flags, the way Pyroscope does it.

``parse_args_with_config(parser, argv)`` parses ``argv`` once to find ``-config.file`` (either
spelling, ``=`` or a space) and ``-config.expand-env``; loads the file; maps every YAML key to a flag
of the chosen (sub)command; converts each value with that flag's ``type=`` callable (so YAML
``heartbeat_period: 5s`` and ``-ingester.heartbeat-period=5s`` give the same value); makes the values
the parser's defaults; and parses ``argv`` again, so that flags given on the command line override
the file. A repeatable flag given on the command line replaces the file's list (Pyroscope's
StringSlice would append to it). Errors go through ``parser.error``: exit status 2, one message on
stderr naming the file and the key, no traceback.

YAML keys. :data:`UPSTREAM_YAML_KEYS` maps a flag to the key Grafana Pyroscope's reference
configuration gives it (``-memberlist.join`` → ``memberlist.join_members``, ``-distributor.replication
-factor`` → ``ingester.lifecycler.ring.replication_factor``, ``-log.level`` → ``server.log_level``,
``-auth.multitenancy-enabled`` → ``multitenancy_enabled``, ``-distributor.ingestion-rate-limit-mb`` →
``limits.ingestion_rate_mb`` …). A flag that is not in the table (a pyro-core flag, or one Pyroscope
does not have) gets a derived key: every ``.`` of the flag name starts a nested section and every
``-`` becomes ``_`` (``-memberlist.transport`` → ``memberlist: {transport: …}``,
``-auth.bearer-token`` → ``auth: {bearer_token: …}``). :func:`yaml_keys` lists the keys of a parser.

Values. Every YAML scalar is read as text (YAML 1.1's ``yes``/``no``/``0755``/``1:30`` surprises do not
apply) and handed to the flag's ``type=``, exactly as the command line would; ``null`` (or an empty
value) leaves the default. A repeatable flag takes a YAML list (a single value is a list of one).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import yaml

from pyro_core.flags import (
    add_flag,
    parse_bool,
    parse_duration,
    parse_hex_key,
    parse_port,
    parse_positive_int,
)

REMOTE_WRITE_KEY: Final = "remote-write"  # a top-level section that is not flags (args.remote_write)
CONFIG_FLAGS: Final = ("config.file", "config.expand-env")  # never keys of the file itself

# flag name -> YAML key path in Grafana Pyroscope's reference configuration (dots = nesting)
UPSTREAM_YAML_KEYS: Final[Mapping[str, str]] = {
    # top level
    "target": "target",
    "auth.multitenancy-enabled": "multitenancy_enabled",
    "config.show_banner": "show_banner",
    "api.base-url": "api.base-url",
    "usage-stats.enabled": "analytics.reporting_enabled",
    "tracing.enabled": "tracing.enabled",
    # server
    "server.http-listen-network": "server.http_listen_network",
    "server.http-listen-address": "server.http_listen_address",
    "server.http-listen-port": "server.http_listen_port",
    "server.http-conn-limit": "server.http_listen_conn_limit",
    "server.grpc-listen-network": "server.grpc_listen_network",
    "server.grpc-listen-address": "server.grpc_listen_address",
    "server.grpc-listen-port": "server.grpc_listen_port",
    "server.http-tls-cert-path": "server.http_tls_config.cert_file",
    "server.http-tls-key-path": "server.http_tls_config.key_file",
    "server.http-tls-client-auth": "server.http_tls_config.client_auth_type",
    "server.http-tls-ca-path": "server.http_tls_config.client_ca_file",
    "server.graceful-shutdown-timeout": "server.graceful_shutdown_timeout",
    "server.http-read-timeout": "server.http_server_read_timeout",
    "server.http-read-header-timeout": "server.http_server_read_header_timeout",
    "server.http-write-timeout": "server.http_server_write_timeout",
    "server.http-idle-timeout": "server.http_server_idle_timeout",
    "server.path-prefix": "server.http_path_prefix",
    "server.register-instrumentation": "server.register_instrumentation",
    "log.format": "server.log_format",
    "log.level": "server.log_level",
    # distributor
    "distributor.push.timeout": "distributor.pushtimeout",
    "distributor.client-cleanup-period": "distributor.pool_config.client_cleanup_period",
    "distributor.health-check-ingesters": "distributor.pool_config.health_check_ingesters",
    "distributor.health-check-timeout": "distributor.pool_config.remote_timeout",
    # ingester (the lifecycler and its ring)
    "ring.store": "ingester.lifecycler.ring.kvstore.store",
    "ring.prefix": "ingester.lifecycler.ring.kvstore.prefix",
    "ring.heartbeat-timeout": "ingester.lifecycler.ring.heartbeat_timeout",
    "distributor.replication-factor": "ingester.lifecycler.ring.replication_factor",
    "distributor.zone-awareness-enabled": "ingester.lifecycler.ring.zone_awareness_enabled",
    "distributor.excluded-zones": "ingester.lifecycler.ring.excluded_zones",
    "ingester.num-tokens": "ingester.lifecycler.num_tokens",
    "ingester.heartbeat-period": "ingester.lifecycler.heartbeat_period",
    "ingester.heartbeat-timeout": "ingester.lifecycler.heartbeat_timeout",
    "ingester.observe-period": "ingester.lifecycler.observe_period",
    "ingester.join-after": "ingester.lifecycler.join_after",
    "ingester.min-ready-duration": "ingester.lifecycler.min_ready_duration",
    "ingester.final-sleep": "ingester.lifecycler.final_sleep",
    "ingester.tokens-file-path": "ingester.lifecycler.tokens_file_path",
    "ingester.availability-zone": "ingester.lifecycler.availability_zone",
    "ingester.unregister-on-shutdown": "ingester.lifecycler.unregister_on_shutdown",
    "ingester.readiness-check-ring-health": "ingester.lifecycler.readiness_check_ring_health",
    "ingester.lifecycler.addr": "ingester.lifecycler.address",
    "ingester.lifecycler.port": "ingester.lifecycler.port",
    "ingester.lifecycler.id": "ingester.lifecycler.id",
    "ingester.lifecycler.ID": "ingester.lifecycler.id",
    # querier
    "querier.client-cleanup-period": "querier.pool_config.client_cleanup_period",
    "querier.health-check-ingesters": "querier.pool_config.health_check_ingesters",
    "querier.health-check-timeout": "querier.pool_config.remote_timeout",
    "querier.query-store-after": "querier.query_store_after",
    "querier.id": "frontend_worker.id",
    "querier.max-concurrent": "frontend_worker.max_concurrent",
    # memberlist
    "memberlist.nodename": "memberlist.node_name",
    "memberlist.randomize-node-name": "memberlist.randomize_node_name",
    "memberlist.stream-timeout": "memberlist.stream_timeout",
    "memberlist.retransmit-factor": "memberlist.retransmit_factor",
    "memberlist.pullpush-interval": "memberlist.pull_push_interval",
    "memberlist.gossip-interval": "memberlist.gossip_interval",
    "memberlist.gossip-nodes": "memberlist.gossip_nodes",
    "memberlist.gossip-to-dead-nodes-time": "memberlist.gossip_to_dead_nodes_time",
    "memberlist.dead-node-reclaim-time": "memberlist.dead_node_reclaim_time",
    "memberlist.compression-enabled": "memberlist.compression_enabled",
    "memberlist.advertise-addr": "memberlist.advertise_addr",
    "memberlist.advertise-port": "memberlist.advertise_port",
    "memberlist.cluster-label": "memberlist.cluster_label",
    "memberlist.cluster-label-verification-disabled": "memberlist.cluster_label_verification_disabled",
    "memberlist.join": "memberlist.join_members",
    "memberlist.min-join-backoff": "memberlist.min_join_backoff",
    "memberlist.max-join-backoff": "memberlist.max_join_backoff",
    "memberlist.max-join-retries": "memberlist.max_join_retries",
    "memberlist.abort-if-join-fails": "memberlist.abort_if_cluster_join_fails",
    "memberlist.rejoin-interval": "memberlist.rejoin_interval",
    "memberlist.left-ingesters-timeout": "memberlist.left_ingesters_timeout",
    "memberlist.leave-timeout": "memberlist.leave_timeout",
    "memberlist.message-history-buffer-bytes": "memberlist.message_history_buffer_bytes",
    "memberlist.bind-addr": "memberlist.bind_addr",
    "memberlist.bind-port": "memberlist.bind_port",
    "memberlist.packet-dial-timeout": "memberlist.packet_dial_timeout",
    "memberlist.packet-write-timeout": "memberlist.packet_write_timeout",
    "memberlist.tls-enabled": "memberlist.tls_enabled",
    "memberlist.tls-cert-path": "memberlist.tls_cert_path",
    "memberlist.tls-key-path": "memberlist.tls_key_path",
    "memberlist.tls-ca-path": "memberlist.tls_ca_path",
    "memberlist.tls-server-name": "memberlist.tls_server_name",
    "memberlist.tls-insecure-skip-verify": "memberlist.tls_insecure_skip_verify",
    "memberlist.tls-cipher-suites": "memberlist.tls_cipher_suites",
    "memberlist.tls-min-version": "memberlist.tls_min_version",
    # limits (defaults of the per-tenant overrides)
    "distributor.ingestion-rate-limit-mb": "limits.ingestion_rate_mb",
    "distributor.ingestion-burst-size-mb": "limits.ingestion_burst_size_mb",
    "distributor.ingestion-tenant-shard-size": "limits.ingestion_tenant_shard_size",
    "validation.max-length-label-name": "limits.max_label_name_length",
    "validation.max-length-label-value": "limits.max_label_value_length",
    "validation.max-label-names-per-series": "limits.max_label_names_per_series",
    "validation.max-sessions-per-series": "limits.max_sessions_per_series",
    "validation.enforce-labels-order": "limits.enforce_labels_order",
    "validation.max-profile-size-bytes": "limits.max_profile_size_bytes",
    "validation.max-profile-stacktrace-samples": "limits.max_profile_stacktrace_samples",
    "validation.max-profile-stacktrace-sample-labels": "limits.max_profile_stacktrace_sample_labels",
    "validation.max-profile-stacktrace-depth": "limits.max_profile_stacktrace_depth",
    "validation.max-profile-symbol-value-length": "limits.max_profile_symbol_value_length",
    "validation.reject-older-than": "limits.reject_older_than",
    "validation.reject-newer-than": "limits.reject_newer_than",
    "distributor.aggregation-window": "limits.distributor_aggregation_window",
    "distributor.aggregation-period": "limits.distributor_aggregation_period",
    "ingester.max-local-series-per-tenant": "limits.max_local_series_per_tenant",
    "ingester.max-global-series-per-tenant": "limits.max_global_series_per_tenant",
    "querier.max-query-lookback": "limits.max_query_lookback",
    "querier.max-query-length": "limits.max_query_length",
    "querier.max-query-parallelism": "limits.max_query_parallelism",
    "querier.max-flamegraph-nodes-default": "limits.max_flamegraph_nodes_default",
    "querier.max-flamegraph-nodes-max": "limits.max_flamegraph_nodes_max",
    "querier.split-queries-by-interval": "limits.split_queries_by_interval",
    "store-gateway.tenant-shard-size": "limits.store_gateway_tenant_shard_size",
    "compactor.blocks-retention-period": "limits.compactor_blocks_retention_period",
    # pyroscopedb (local storage)
    "pyroscopedb.data-path": "pyroscopedb.data_path",
    "pyroscopedb.max-block-duration": "pyroscopedb.max_block_duration",
    "pyroscopedb.row-group-target-size": "pyroscopedb.row_group_target_size",
    "pyroscopedb.retention-policy-min-free-disk-gb": "pyroscopedb.min_free_disk_gb",
    "pyroscopedb.retention-policy-min-disk-available-percentage": "pyroscopedb.min_disk_available_percentage",
    "pyroscopedb.retention-policy-enforcement-interval": "pyroscopedb.enforcement_interval",
    "pyroscopedb.retention-policy-disable": "pyroscopedb.disable_enforcement",
    # runtime config
    "runtime-config.file": "runtime_config.file",
    "runtime-config.reload-period": "runtime_config.period",
}

# A readable name for the form a flag's type expects (used when its callable raised a plain
# ValueError; argparse.ArgumentTypeError messages from pyro_core.flags already say it).
_FORMS: Final[Mapping[object, str]] = {
    int: "a whole number",
    float: "a number",
    parse_duration: "a Go duration such as 200ms, 30s, 5m",
    parse_bool: "true or false",
    parse_port: "a port number 0-65535",
    parse_positive_int: "a whole number >= 0",
    parse_hex_key: "a hex key of 16, 24 or 32 bytes",
}


class ConfigFileError(ValueError):
    """A config file that cannot be used; the message names the file and, when there is one, the key."""


# -- YAML -------------------------------------------------------------------------------------------

_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_NULL_TAG: Final = "tag:yaml.org,2002:null"


def _construct_unique_mapping(self: Any, node: Any, deep: bool = False) -> Any:
    """SafeLoader's mapping, but a key written twice is an error (as Go's yaml.v3 says)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable (complex) key: SafeLoader reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found key {key!r} twice",
                    key_node.start_mark,
                )
            seen.add(key)
    return yaml.SafeLoader.construct_mapping(self, node, deep=deep)


# Built with type(): subclassing needs no stub for yaml (mypy's strict mode refuses Any bases).
STRICT_LOADER: Final[Any] = type(
    "StrictLoader", (yaml.SafeLoader,), {"construct_mapping": _construct_unique_mapping}
)
TEXT_LOADER: Final[Any] = type(
    "TextLoader",
    (STRICT_LOADER,),
    {
        # every plain scalar is text except null: values go to the flags' own parsers
        "yaml_implicit_resolvers": {
            first: [(tag, regexp) for tag, regexp in resolvers if tag == _NULL_TAG]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }
    },
)


def load_yaml(text: str, source: str, *, as_text: bool = False) -> Any:
    """Parse one YAML document strictly (duplicate keys are errors). With ``as_text`` every scalar but
    null is a str. Raises :class:`ConfigFileError` naming ``source``, the line and the column."""
    loader = (TEXT_LOADER if as_text else STRICT_LOADER)(text)
    loader.name = source  # marks (line, column) name the file
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = "; ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ConfigFileError(f"{source}: invalid YAML{where}: {what}") from None
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{source}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()


_ENV_REF: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-?([^}]*))?\}")


def expand_env(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace ``${VAR}`` by the variable's value (empty when unset), and ``${VAR:-default}`` (also
    written ``${VAR:default}``) by the default when VAR is unset or empty. Done on the file's text
    before YAML parsing, as Pyroscope's ``-config.expand-env=true``."""
    env = os.environ if environ is None else environ

    def replace(m: re.Match[str]) -> str:
        value = env.get(m.group(1), "")
        if not value and m.group(2) is not None:
            return m.group(2)
        return value

    return _ENV_REF.sub(replace, text)


def read_config_text(path: str, *, expand: bool = False, environ: Mapping[str, str] | None = None) -> str:
    """The file's UTF-8 text (``${VAR}`` expanded when ``expand``); ConfigFileError when unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigFileError(f"{path}: is a directory, not a file") from None
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return expand_env(text, environ) if expand else text


# -- keys -------------------------------------------------------------------------------------------


def derived_yaml_path(flag: str) -> str:
    """The YAML key of a flag Pyroscope does not have: dots nest, dashes become underscores."""
    return ".".join(part.replace("-", "_") for part in flag.split("."))


def yaml_path_for(flag: str) -> str:
    """Pyroscope's key for ``flag`` when it has one, else the derived key."""
    return UPSTREAM_YAML_KEYS.get(flag) or derived_yaml_path(flag)


def flag_name(action: argparse.Action) -> str:
    """'memberlist.join' for an option spelled -memberlist.join / --memberlist.join."""
    return max(action.option_strings, key=len).lstrip("-")


def _settable(action: argparse.Action) -> bool:
    if not action.option_strings or action.dest == argparse.SUPPRESS:
        return False
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._CountAction)):
        return False
    if isinstance(action, argparse._AppendConstAction):
        return False
    return flag_name(action) not in CONFIG_FLAGS


def yaml_keys(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every YAML key path the file may hold for ``parser`` (its own flags, not its subcommands'),
    mapped to the flag's action. Raises ValueError when two flags would share a key, or a key would
    be both a setting and a section (a bug in the flag set, not in a file)."""
    keys: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if not _settable(action):
            continue
        path = yaml_path_for(flag_name(action))
        other = keys.get(path)
        if other is not None and other.dest != action.dest:
            raise ValueError(f"flags -{flag_name(other)} and -{flag_name(action)} share the YAML key {path}")
        keys[path] = action
    for path in keys:
        parts = path.split(".")
        for i in range(1, len(parts)):
            if ".".join(parts[:i]) in keys:
                raise ValueError(
                    f"YAML key {'.'.join(parts[:i])} is both a setting and the section of {path}"
                )
    return keys


def _tree(keys: Mapping[str, argparse.Action]) -> dict[str, Any]:
    """Nested dicts of the key paths; leaves are actions."""
    root: dict[str, Any] = {}
    for path, action in keys.items():
        node = root
        *sections, leaf = path.split(".")
        for s in sections:
            node = node.setdefault(s, {})
        node[leaf] = action
    return root


def _unsupported_upstream(path: str) -> bool:
    return any(p == path or p.startswith(path + ".") for p in UPSTREAM_YAML_KEYS.values())


def _describe(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _form(type_func: object, action: argparse.Action) -> str:
    if action.choices is not None:
        return "one of " + ", ".join(str(c) for c in action.choices)
    form = _FORMS.get(type_func)
    if form is not None:
        return form
    name = getattr(type_func, "__name__", "")
    if not name.startswith("parse_"):
        return "a value the flag accepts"
    return f"a valid {name.removeprefix('parse_').replace('_', ' ')}"


def _convert_one(parser: argparse.ArgumentParser, action: argparse.Action, value: object, key: str) -> Any:
    if isinstance(value, (Mapping, list)):
        raise ConfigFileError(f"{key}: expected a single value, got {_describe(value)}")
    text = _text(value)
    type_func = parser._registry_get("type", action.type, action.type)
    converted: Any = text
    if type_func is not None:
        if not callable(type_func):
            raise ConfigFileError(f"{key}: the flag -{flag_name(action)} has no usable type")
        try:
            converted = type_func(text)
        except argparse.ArgumentTypeError as exc:
            raise ConfigFileError(f"{key}: {exc}") from None
        except (TypeError, ValueError):
            raise ConfigFileError(
                f"{key}: invalid value {text!r} (expected {_form(type_func, action)})"
            ) from None
    if action.choices is not None and converted not in action.choices:
        raise ConfigFileError(f"{key}: invalid value {text!r} (expected {_form(type_func, action)})")
    return converted


def _convert(parser: argparse.ArgumentParser, action: argparse.Action, value: object, key: str) -> Any:
    """A YAML value as the flag's parsed value (what argparse would store for it)."""
    if isinstance(action, argparse._StoreConstAction):  # store_true / store_false / store_const
        if isinstance(value, (Mapping, list)):
            raise ConfigFileError(f"{key}: expected true or false, got {_describe(value)}")
        try:
            on = parse_bool(_text(value))
        except argparse.ArgumentTypeError as exc:
            raise ConfigFileError(f"{key}: {exc}") from None
        return action.const if on else action.default
    many = isinstance(action, (argparse._AppendAction, argparse._ExtendAction)) or action.nargs in (
        "*",
        "+",
    )
    if many or isinstance(action.nargs, int):
        items = value if isinstance(value, list) else [value]
        return [_convert_one(parser, action, item, f"{key}[{i}]") for i, item in enumerate(items)]
    return _convert_one(parser, action, value, key)


def config_defaults(parser: argparse.ArgumentParser, document: object) -> dict[str, Any]:
    """The flag values (by dest) a parsed YAML document sets for ``parser``. Raises
    :class:`ConfigFileError` (without the file name) for an unknown key or a bad value."""
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise ConfigFileError(f"the top level must be a mapping of settings, got {_describe(document)}")
    keys = yaml_keys(parser)
    tree = _tree(keys)
    # a key written as its flag's name ("memberlist.join") -> the flag's key ("memberlist.join_members")
    by_flag = {derived_yaml_path(flag_name(a)): path for path, a in keys.items()}
    values: dict[str, Any] = {}

    def leaves(path: str, value: object) -> Iterator[str]:
        yield path
        if isinstance(value, Mapping):
            for k, v in value.items():
                yield from leaves(f"{path}.{k}", v)

    def suggestion(path: str, key: str, value: object, prefix: str, schema: Mapping[str, Any]) -> str:
        if _unsupported_upstream(path):
            return f" (a Pyroscope setting that {parser.prog} does not support)"
        for leaf in leaves(path, value):
            if leaf in by_flag:
                return f" (did you mean {by_flag[leaf]}?)"
        starts = sorted(k for k in schema if k.startswith(key + "_"))
        close = starts or difflib.get_close_matches(key, list(schema), n=1, cutoff=0.6)
        if close:
            return f" (did you mean {prefix + close[0]}?)"
        if len(schema) <= 12:
            under = f" under {prefix[:-1]}" if prefix else ""
            return f" (valid keys{under}: {', '.join(sorted(schema))})"
        return ""

    def walk(node: Mapping[Any, Any], schema: Mapping[str, Any], prefix: str) -> None:
        for raw_key, value in node.items():
            key = str(raw_key)
            path = prefix + key
            if not prefix and key == REMOTE_WRITE_KEY:
                continue
            expected = schema.get(key)
            if expected is None:
                hint = suggestion(path, key, value, prefix, schema)
                raise ConfigFileError(f"unknown key {path}{hint}")
            if isinstance(expected, dict):
                if value is None:
                    continue
                if not isinstance(value, Mapping):
                    raise ConfigFileError(
                        f"{path}: expected a section (a mapping of {', '.join(sorted(expected)[:4])}, …), "
                        f"got {_describe(value)}"
                    )
                walk(value, expected, path + ".")
                continue
            if value is None:
                continue
            values[expected.dest] = _convert(parser, expected, value, path)

    walk(document, tree, "")
    return values


# -- the command line -------------------------------------------------------------------------------


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """``-config.file`` and ``-config.expand-env`` (Pyroscope's names and defaults)."""
    add_flag(parser, "config.file", default="", metavar="FILE", help="YAML config file; flags override it")
    add_flag(
        parser,
        "config.expand-env",
        type=parse_bool,
        default=False,
        help="expand ${VAR} and ${VAR:-default} in the config file from the environment",
    )


def _command_chain(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str]
) -> list[argparse.ArgumentParser]:
    """The parser and the subcommand parsers ``argv`` chose, outermost first."""
    chain = [parser]
    while True:
        sub = next((a for a in chain[-1]._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None:
            return chain
        choices: Mapping[str, argparse.ArgumentParser] = sub.choices
        name = getattr(args, sub.dest, None) if sub.dest != argparse.SUPPRESS else None
        if name is None:
            name = next((a for a in argv if a in choices), None)
        if name is None or name not in choices:
            return chain
        chain.append(choices[name])


def _has_dest(parser: argparse.ArgumentParser, dest: str) -> bool:
    return any(a.dest == dest for a in parser._actions)


def parse_args_with_config(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> argparse.Namespace:
    """``parser.parse_args(argv)`` with the (sub)command's ``-config.file`` applied underneath the
    flags. The namespace also gets ``remote_write``: the file's top-level ``remote-write:`` mapping,
    raw, or None. Exits with status 2 and a message on stderr (``parser.error``) when the file is
    missing, is not valid YAML, has an unknown key or a bad value. ``environ`` (default os.environ)
    is what ``-config.expand-env=true`` expands from."""
    arg_list = list(argv) if argv is not None else sys.argv[1:]
    args = parser.parse_args(arg_list)
    args.remote_write = None
    chain = _command_chain(parser, args, arg_list)
    target = next((p for p in reversed(chain) if _has_dest(p, "config_file")), None)
    path = getattr(args, "config_file", "") if target is not None else ""
    if target is None or not path:
        return args
    try:
        text = read_config_text(path, expand=bool(getattr(args, "config_expand_env", False)), environ=environ)
        document = load_yaml(text, path, as_text=True)
        defaults = config_defaults(target, document)
        typed = load_yaml(text, path)
    except ConfigFileError as exc:
        message = str(exc)
        if not message.startswith(path + ":"):
            message = f"{path}: {message}"
        target.error(f"config file {message}")
    remote_write = typed.get(REMOTE_WRITE_KEY) if isinstance(typed, Mapping) else None
    if remote_write is not None and not isinstance(remote_write, Mapping):
        target.error(
            f"config file {path}: {REMOTE_WRITE_KEY}: expected a mapping, got {_describe(remote_write)}"
        )

    saved_actions = {id(a): a.default for a in target._actions}
    saved_defaults = dict(target._defaults)
    try:
        target.set_defaults(**defaults)
        args = parser.parse_args(arg_list)
    finally:
        for a in target._actions:
            a.default = saved_actions[id(a)]
        target._defaults.clear()
        target._defaults.update(saved_defaults)
    _flags_replace_file_lists(target, args, defaults)
    args.remote_write = dict(remote_write) if remote_write is not None else None
    return args


def _flags_replace_file_lists(
    parser: argparse.ArgumentParser, args: argparse.Namespace, defaults: Mapping[str, Any]
) -> None:
    """A repeatable flag appends to its default; when given on the command line it replaces the
    file's list instead (flags override the file)."""
    for action in parser._actions:
        if not isinstance(action, (argparse._AppendAction, argparse._ExtendAction)):
            continue
        from_file = defaults.get(action.dest)
        value = getattr(args, action.dest, None)
        if not isinstance(from_file, list) or not isinstance(value, list):
            continue
        n = len(from_file)
        if len(value) > n and value[:n] == from_file:
            setattr(args, action.dest, value[n:])
