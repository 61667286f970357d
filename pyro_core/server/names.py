# The query side of legacy ingest (`POST /ingest`): the application name with its tags, the time
# range, the tenant id and the other query parameters, as Pyroscope reads them.
# Owns: parse_app_name / ParsedName (the `app.name{k=v}` key and its normalized form), parse_time
# (`from` / `until`), validate_tenant (X-Scope-OrgID), IngestParams.from_query (every parameter with
# its default), and the errors BadNameError (→ 400) and InvalidTenantError.
# Must not know: HTTP, the clock (`now` is an argument), request bodies (ingest.py parses those; this
# file only asks it which body format the parameters name).
#
# Rules (Pyroscope, og branch `segment.ParseKey` + `flameql` validation, and dskit's tenant rules):
# - name: `app{k=v,k2=v2}`; the app name is everything before the first `{`, trimmed of spaces, and
#   must match [A-Za-z0-9_.-]+. Inside the braces, `key=value` pairs split at `,`; keys and values are
#   trimmed of spaces; keys must match [A-Za-z0-9_]+; a value runs to the next `,` or `}` and may be
#   empty; a later duplicate key wins; `{}` and a trailing `,` are fine. Stricter than Pyroscope,
#   which silently drops such tags: `__name__` as a tag key, a key with no `=`, a missing `}`, and
#   text other than spaces after the `}` are rejected.
# - from/until: all digits → unix seconds, except 13 / 16 / 19 digits → ms / µs / ns; `now`;
#   `now-<n><unit>...` with units s, m, h, d (e.g. `now-1h`, `now-1h30m`). Anything else → default.
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from pyro_core.server.ingest import detect_format

__all__ = [
    "AGGREGATION_TYPES",
    "UNITS",
    "BadNameError",
    "IngestParams",
    "InvalidTenantError",
    "ParsedName",
    "parse_app_name",
    "parse_time",
    "validate_tenant",
]

RESERVED_TAG_KEY: Final = "__name__"
MAX_TENANT_ID_BYTES: Final = 150

#: The `units` values Pyroscope accepts on legacy ingest; the first is the default.
UNITS: Final = ("samples", "objects", "bytes", "goroutines", "lock_samples", "lock_nanoseconds")
#: The `aggregationType` values; the first is the default.
AGGREGATION_TYPES: Final = ("sum", "average")

DEFAULT_SAMPLE_RATE: Final = 100
DEFAULT_SPY_NAME: Final = "unknown"

_APP_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.\-]+")
_TAG_KEY_RE: Final = re.compile(r"[A-Za-z0-9_]+")
# dskit's tenant alphabet: letters, digits and the seven characters ! - _ . * ' ( )
_TENANT_RE: Final = re.compile(r"[A-Za-z0-9!\-_.*'()]+")
_RELATIVE_RE: Final = re.compile(r"now-((?:[0-9]+[smhd])+)")
_RELATIVE_PART_RE: Final = re.compile(r"([0-9]+)([smhd])")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Digit count of an absolute timestamp → its divisor to seconds (anything else is seconds).
_DIGITS_DIVISOR: Final = {13: 1e3, 16: 1e6, 19: 1e9}


class BadNameError(ValueError):
    """The `name` parameter is missing or malformed (→ HTTP 400)."""


class InvalidTenantError(ValueError):
    """The tenant id (X-Scope-OrgID) breaks the tenant id rules."""


@dataclass(frozen=True)
class ParsedName:
    """An application name with its tags, e.g. `myapp.cpu{env=prod}`."""

    app: str  # the application name including its profile-type suffix, e.g. "myapp.cpu"
    tags: dict[str, str] = field(default_factory=dict)  # tag key → value, never `__name__`

    @property
    def normalized(self) -> str:
        """`app{k1=v1,k2=v2}` with the keys sorted: the series key Pyroscope stores under."""
        inner = ",".join(f"{k}={self.tags[k]}" for k in sorted(self.tags))
        return f"{self.app}{{{inner}}}"

    @property
    def profile_type(self) -> str:
        """The last dotted part of the app name ("cpu" in "myapp.cpu"); "" when there is no dot."""
        _, dot, tail = self.app.rpartition(".")
        return tail if dot else ""


def parse_app_name(name: str) -> ParsedName:
    """Parse `app.name{k=v,k2=v2}`; raise BadNameError saying what is wrong."""
    app_part, brace, rest = name.partition("{")
    app = app_part.strip()
    if not app:
        raise BadNameError("app name is required")
    if not _APP_NAME_RE.fullmatch(app):
        raise BadNameError(f"app name {app!r} may only contain letters, digits, '_', '.' and '-'")
    tags: dict[str, str] = {}
    if not brace:
        return ParsedName(app, tags)
    inner, close, trailer = rest.partition("}")
    if not close:
        raise BadNameError("tags are missing their closing '}'")
    if trailer.strip():
        raise BadNameError(f"unexpected text {trailer.strip()!r} after '}}'")
    for pair in inner.split(","):
        if not pair.strip():
            # `{}`, `{a=1,}`: Pyroscope accepts empty slots between commas.
            continue
        raw_key, eq, value = pair.partition("=")
        key = raw_key.strip()
        if not eq:
            raise BadNameError(f"tag {key!r} has no '=' and value")
        if not key:
            raise BadNameError("tag key is required")
        if key == RESERVED_TAG_KEY:
            raise BadNameError(f"tag key {RESERVED_TAG_KEY!r} is reserved")
        if not _TAG_KEY_RE.fullmatch(key):
            raise BadNameError(f"tag key {key!r} may only contain letters, digits and '_'")
        tags[key] = value.strip()
    return ParsedName(app, tags)


def parse_time(value: str | None, now: float) -> float:
    """A `from` / `until` parameter as unix seconds; a missing or bad value gives `now`."""
    if value is None:
        return now
    text = value.strip()
    if text.isascii() and text.isdigit():
        return int(text) / _DIGITS_DIVISOR.get(len(text), 1)
    if text == "now":
        return now
    match = _RELATIVE_RE.fullmatch(text)
    if match is None:
        return now
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _RELATIVE_PART_RE.findall(match.group(1)))
    return now - seconds


def validate_tenant(tenant_id: str) -> str:
    """Return `tenant_id` if it is a valid tenant id, else raise InvalidTenantError."""
    if not tenant_id:
        raise InvalidTenantError("tenant id is empty")
    if len(tenant_id.encode()) > MAX_TENANT_ID_BYTES:
        raise InvalidTenantError(f"tenant id is longer than {MAX_TENANT_ID_BYTES} bytes")
    if not _TENANT_RE.fullmatch(tenant_id):
        raise InvalidTenantError(
            "tenant id may only contain letters, digits and the characters ! - _ . * ' ( )"
        )
    if tenant_id in (".", ".."):
        raise InvalidTenantError(f"tenant id {tenant_id!r} is not allowed")
    return tenant_id


def _positive_int(value: str | None, default: int) -> int:
    if value is None:
        return default
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        return default
    number = int(text)
    return number if number > 0 else default


def _one_of(value: str | None, allowed: tuple[str, ...]) -> str:
    return value if value in allowed else allowed[0]


@dataclass(frozen=True)
class IngestParams:
    """The query parameters of one legacy ingest request, each bad value replaced by its default."""

    name: ParsedName
    from_: float  # unix seconds (`from`)
    until: float  # unix seconds
    sample_rate: int = DEFAULT_SAMPLE_RATE  # `sampleRate`, samples per second, > 0
    spy_name: str = DEFAULT_SPY_NAME  # `spyName`
    units: str = UNITS[0]  # one of UNITS
    aggregation_type: str = AGGREGATION_TYPES[0]  # one of AGGREGATION_TYPES
    format: str = "folded"  # the body format, as ingest.detect_format decides it

    @classmethod
    def from_query(
        cls, query: Mapping[str, str], now: float, *, content_type: str | None = None
    ) -> IngestParams:
        """Read the parameters of `/ingest`; only a missing or bad `name` raises (BadNameError)."""
        raw_name = query.get("name")
        if raw_name is None:
            raise BadNameError("name is required")
        spy_name = (query.get("spyName") or "").strip()
        return cls(
            name=parse_app_name(raw_name),
            from_=parse_time(query.get("from"), now),
            until=parse_time(query.get("until"), now),
            sample_rate=_positive_int(query.get("sampleRate"), DEFAULT_SAMPLE_RATE),
            spy_name=spy_name or DEFAULT_SPY_NAME,
            units=_one_of(query.get("units"), UNITS),
            aggregation_type=_one_of(query.get("aggregationType"), AGGREGATION_TYPES),
            format=detect_format(query.get("format"), content_type),
        )
