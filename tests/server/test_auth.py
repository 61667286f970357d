# Optional HTTP auth: the accept/reject matrix for bearer tokens and basic credentials (RFC 6750 /
# RFC 7617 grammar, colons in passwords, UTF-8), the 401 challenge, what a node sends its peers,
# and the flags (tokens from a file, inconsistent flags refused, secrets kept out of repr).
from __future__ import annotations

import argparse
import base64
from pathlib import Path

import pytest

from pyro_core.server.auth import (
    AuthConfig,
    AuthConfigError,
    add_auth_flags,
    decode_basic,
    encode_basic,
    outgoing_authorization,
)

BEARER = AuthConfig(bearer_tokens=("s3cr3t-token", "second.token=="))
BASIC = AuthConfig(basic_username="alice", basic_password="pa:ss:wörd")
BOTH = AuthConfig(bearer_tokens=("s3cr3t-token",), basic_username="alice", basic_password="pa:ss:wörd")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("header", [None, "", "Bearer x", "garbage", basic("a", "b")])
def test_without_credentials_configured_everything_passes(header: str | None) -> None:
    assert not AuthConfig().enabled
    assert AuthConfig().check(header)


@pytest.mark.parametrize(
    ("config", "header", "accepted"),
    [
        # bearer
        (BEARER, "Bearer s3cr3t-token", True),
        (BEARER, "Bearer second.token==", True),
        (BEARER, "bearer s3cr3t-token", True),  # the scheme is case-insensitive
        (BEARER, "BEARER   s3cr3t-token  ", True),
        (BEARER, "Bearer s3cr3t-toke", False),  # a prefix is not the token
        (BEARER, "Bearer s3cr3t-tokenX", False),
        (BEARER, "Bearer S3CR3T-TOKEN", False),  # the token is case-sensitive
        (BEARER, "Bearer", False),
        (BEARER, "Bearer ", False),
        (BEARER, "s3cr3t-token", False),
        (BEARER, "Token s3cr3t-token", False),
        (BEARER, None, False),
        (BEARER, "", False),
        (BEARER, "Bearer s3cr3t-tökén", False),  # non-ASCII never matches, never raises
        (BEARER, basic("alice", "s3cr3t-token"), False),  # basic is not configured
        # basic
        (BASIC, basic("alice", "pa:ss:wörd"), True),  # colons in the password, UTF-8
        (BASIC, "basic " + basic("alice", "pa:ss:wörd").split()[1], True),
        (BASIC, basic("alice", "pa:ss"), False),
        (BASIC, basic("alice", "pa:ss:wörd:"), False),
        (BASIC, basic("Alice", "pa:ss:wörd"), False),
        (BASIC, basic("", "pa:ss:wörd"), False),
        (BASIC, basic("alice:pa", "ss:wörd"), True),  # the user ends at the first colon: the same pair
        (BASIC, "Basic " + base64.b64encode(b"alice").decode(), False),  # no colon
        (
            BASIC,
            "Basic " + base64.b64encode("alice:pa:ss:wörd".encode("latin-1")).decode(),
            False,
        ),  # not UTF-8
        (BASIC, "Basic not*base64!", False),
        (BASIC, "Basic YWxpY2U6cGE6c3M6d8O2cmQ", False),  # missing padding is invalid base64
        (BASIC, "Basic ÿÿÿÿ", False),
        (BASIC, "Bearer s3cr3t-token", False),  # bearer is not configured
        (BASIC, None, False),
        # both
        (BOTH, "Bearer s3cr3t-token", True),
        (BOTH, basic("alice", "pa:ss:wörd"), True),
        (BOTH, "Bearer second.token==", False),
        (BOTH, basic("alice", "wrong"), False),
    ],
)
def test_accept_reject_matrix(config: AuthConfig, header: str | None, accepted: bool) -> None:
    assert config.check(header) is accepted


def test_the_401_challenge_names_each_configured_scheme() -> None:
    assert BEARER.www_authenticate() == 'Bearer realm="pyro-core"'
    assert BASIC.www_authenticate() == 'Basic realm="pyro-core", charset="UTF-8"'
    assert BOTH.www_authenticate() == 'Bearer realm="pyro-core", Basic realm="pyro-core", charset="UTF-8"'


@pytest.mark.parametrize("config", [BEARER, BASIC, BOTH])
def test_what_a_node_sends_its_peers_passes_their_check(config: AuthConfig) -> None:
    header = outgoing_authorization(config)
    assert header is not None and config.check(header)


def test_a_node_without_auth_sends_nothing() -> None:
    assert outgoing_authorization(AuthConfig()) is None
    assert outgoing_authorization(BOTH) == "Bearer s3cr3t-token"  # bearer first


def test_basic_round_trip() -> None:
    assert decode_basic(encode_basic("bob", "a:b:c").split()[1]) == ("bob", "a:b:c")
    assert decode_basic(encode_basic("bob", "").split()[1]) == ("bob", "")
    assert decode_basic("%%%") is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"basic_password": "x"}, "needs -auth.basic-username"),
        ({"basic_username": "x"}, "needs -auth.basic-password"),
        ({"basic_username": "a:b", "basic_password": "x"}, "may not contain ':'"),
        ({"bearer_tokens": ("has space",)}, "bearer token #1 is not a valid token"),
        ({"bearer_tokens": ("ok", "")}, "bearer token #2"),
    ],
)
def test_inconsistent_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(AuthConfigError, match=message):
        AuthConfig(**kwargs)  # type: ignore[arg-type]


def test_secrets_stay_out_of_repr() -> None:
    text = repr(BOTH)
    assert "s3cr3t" not in text and "wörd" not in text and "alice" in text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_auth_flags(p)
    return p


def test_flags_build_the_config_with_tokens_from_a_file(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("# peers\nfrom-file-1\n\n  from-file-2  \ntok-a\n")
    args = parser().parse_args(
        ["-auth.bearer-token=tok-a", "--auth.bearer-token", "tok-b", f"-auth.bearer-token-file={token_file}"]
    )
    config = AuthConfig.from_args(args)
    assert config.bearer_tokens == ("tok-a", "tok-b", "from-file-1", "from-file-2")  # deduplicated, in order
    assert config.check("Bearer from-file-2") and not config.check("Bearer # peers")
    basic_args = parser().parse_args(["-auth.basic-username=u", "-auth.basic-password=p:w"])
    assert AuthConfig.from_args(basic_args).check(basic("u", "p:w"))
    assert not AuthConfig.from_args(parser().parse_args([])).enabled
    assert not AuthConfig.from_args(argparse.Namespace()).enabled  # a command without the flags


def test_a_bad_token_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="no such file"):
        AuthConfig.from_args(parser().parse_args([f"-auth.bearer-token-file={tmp_path / 'nope'}"]))
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n\n")
    with pytest.raises(AuthConfigError, match="holds no token"):
        AuthConfig.from_args(parser().parse_args([f"-auth.bearer-token-file={empty}"]))
