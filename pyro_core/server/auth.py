# Optional HTTP authentication of the server's API: configured bearer tokens and/or one basic
# user:password, checked in constant time; the challenge of a 401; what a node sends its peers.
# Owns: the -auth.bearer-token / -auth.bearer-token-file / -auth.basic-username / -auth.basic-password
# flags, the Authorization header's grammar (RFC 6750 Bearer, RFC 7617 Basic: base64 of UTF-8
# "user:password", the password may hold colons) and WWW-Authenticate.
# Must not know: HTTP routing or status codes (the app answers 401 and decides which paths are open),
# tenants (X-Scope-OrgID is separate), sockets, trio. Grafana Pyroscope itself has no built-in auth
# (it expects a proxy in front); these flags are pyro-core's.
from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import re
from dataclasses import dataclass, field
from typing import Final

from pyro_core.flags import add_flag

REALM: Final = "pyro-core"
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 b64token


class AuthConfigError(ValueError):
    """Auth flags that do not make sense together, or a token file that cannot be used."""


@dataclass(frozen=True)
class AuthConfig:
    """Who may call the API. Nothing configured: everyone (``enabled`` is False). Secrets are kept
    out of ``repr``."""

    bearer_tokens: tuple[str, ...] = field(default=(), repr=False)
    basic_username: str = ""
    basic_password: str = field(default="", repr=False)
    realm: str = REALM
    _tokens: tuple[bytes, ...] = field(init=False, repr=False, compare=False)
    _user: bytes = field(init=False, repr=False, compare=False)
    _password: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for i, token in enumerate(self.bearer_tokens):
            if not _TOKEN_RE.fullmatch(token):
                raise AuthConfigError(
                    f"bearer token #{i + 1} is not a valid token (letters, digits and - . _ ~ + / "
                    "followed by optional =; no spaces)"
                )
        if self.basic_password and not self.basic_username:
            raise AuthConfigError("-auth.basic-password needs -auth.basic-username")
        if self.basic_username and not self.basic_password:
            raise AuthConfigError("-auth.basic-username needs -auth.basic-password")
        if ":" in self.basic_username:
            raise AuthConfigError("-auth.basic-username may not contain ':'")
        if '"' in self.realm or "\\" in self.realm:
            raise AuthConfigError("the realm may not contain quotes or backslashes")
        object.__setattr__(self, "_tokens", tuple(t.encode() for t in self.bearer_tokens))
        object.__setattr__(self, "_user", self.basic_username.encode())
        object.__setattr__(self, "_password", self.basic_password.encode())

    @property
    def bearer_enabled(self) -> bool:
        return bool(self.bearer_tokens)

    @property
    def basic_enabled(self) -> bool:
        return bool(self.basic_username)

    @property
    def enabled(self) -> bool:
        return self.bearer_enabled or self.basic_enabled

    def check(self, authorization: str | None) -> bool:
        """Whether a request with this ``Authorization`` header value may pass. Always True when no
        credentials are configured; otherwise a Bearer token must equal a configured one, or Basic
        credentials must equal the configured user and password (compared in constant time)."""
        if not self.enabled:
            return True
        if authorization is None:
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        scheme = scheme.lower()  # the scheme is case-insensitive (RFC 7235)
        credentials = credentials.strip()
        if scheme == "bearer" and self._tokens:
            given = credentials.encode("utf-8", "replace")
            ok = False
            for token in self._tokens:  # no early exit: every token is compared
                ok |= hmac.compare_digest(given, token)
            return ok
        if scheme == "basic" and self._user:
            pair = decode_basic(credentials)
            if pair is None:
                return False
            user, password = pair
            user_ok = hmac.compare_digest(user.encode(), self._user)
            password_ok = hmac.compare_digest(password.encode(), self._password)
            return user_ok & password_ok
        return False

    def www_authenticate(self) -> str:
        """The WWW-Authenticate value of a 401: one challenge per configured scheme."""
        challenges = []
        if self.bearer_enabled:
            challenges.append(f'Bearer realm="{self.realm}"')
        if self.basic_enabled:
            challenges.append(f'Basic realm="{self.realm}", charset="UTF-8"')
        return ", ".join(challenges)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> AuthConfig:
        """From the flags of :func:`add_auth_flags` (missing ones count as unset); the token file is
        read here, once. Raises :class:`AuthConfigError`."""
        tokens = list(getattr(args, "auth_bearer_token", None) or [])
        path = getattr(args, "auth_bearer_token_file", "") or ""
        if path:
            tokens.extend(read_token_file(path))
        return cls(
            bearer_tokens=tuple(dict.fromkeys(t.strip() for t in tokens if t.strip())),
            basic_username=getattr(args, "auth_basic_username", "") or "",
            basic_password=getattr(args, "auth_basic_password", "") or "",
        )


def decode_basic(credentials: str) -> tuple[str, str] | None:
    """'dXNlcjpwYTpzcw==' -> ('user', 'pa:ss'); None when not base64 of UTF-8 'user:password'."""
    try:
        raw = base64.b64decode(credentials.encode("ascii"), validate=True)
        text = raw.decode("utf-8")
    except (UnicodeError, binascii.Error, ValueError):
        return None
    user, sep, password = text.partition(":")
    return (user, password) if sep else None


def encode_basic(username: str, password: str) -> str:
    """The Authorization value for Basic credentials."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def read_token_file(path: str) -> list[str]:
    """Tokens in a file, one per line; blank lines and lines starting with # are skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise AuthConfigError(f"-auth.bearer-token-file {path}: no such file") from None
    except (OSError, UnicodeError) as exc:
        raise AuthConfigError(f"-auth.bearer-token-file {path}: cannot read: {exc}") from None
    tokens = [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]
    if not tokens:
        raise AuthConfigError(f"-auth.bearer-token-file {path}: holds no token")
    return tokens


def outgoing_authorization(config: AuthConfig) -> str | None:
    """What this node sends in ``Authorization`` to its peers' internal endpoints (every node of a
    cluster runs with the same auth flags): its first bearer token, else its basic credentials,
    else nothing."""
    if config.bearer_tokens:
        return f"Bearer {config.bearer_tokens[0]}"
    if config.basic_enabled:
        return encode_basic(config.basic_username, config.basic_password)
    return None


def add_auth_flags(parser: argparse.ArgumentParser) -> None:
    """The optional authentication flags (pyro-core's; Pyroscope has none)."""
    add_flag(
        parser,
        "auth.bearer-token",
        action="append",
        default=[],
        metavar="TOKEN",
        help="accept 'Authorization: Bearer TOKEN' (repeatable; with none and no basic user, no auth)",
    )
    add_flag(
        parser,
        "auth.bearer-token-file",
        default="",
        metavar="FILE",
        help="file of bearer tokens, one per line (# comments); keeps tokens off the command line",
    )
    add_flag(parser, "auth.basic-username", default="", help="accept HTTP basic auth with this user")
    add_flag(parser, "auth.basic-password", default="", help="the basic-auth password")
