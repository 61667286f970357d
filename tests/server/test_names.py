# The query side of legacy ingest: app names with tags, from/until, tenant ids and the parameter
# defaults — table tests, plus a property that normalizing is stable.
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyro_core.server.names import (
    AGGREGATION_TYPES,
    UNITS,
    BadNameError,
    IngestParams,
    InvalidTenantError,
    ParsedName,
    parse_app_name,
    parse_time,
    validate_tenant,
)

NOW = 1_700_000_000.0

# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "app", "tags", "normalized"),
    [
        ("myapp.cpu", "myapp.cpu", {}, "myapp.cpu{}"),
        ("myapp.cpu{}", "myapp.cpu", {}, "myapp.cpu{}"),
        ("my-app_1.alloc_objects{env=prod}", "my-app_1.alloc_objects", {"env": "prod"}, None),
        ("app{b=2,a=1}", "app", {"a": "1", "b": "2"}, "app{a=1,b=2}"),
        (
            " app.cpu { region = us-east , env = prod } ",
            "app.cpu",
            {"region": "us-east", "env": "prod"},
            "app.cpu{env=prod,region=us-east}",
        ),
        ("app{a=1,}", "app", {"a": "1"}, "app{a=1}"),
        ("app{a=}", "app", {"a": ""}, "app{a=}"),
        ("app{a=1,a=2}", "app", {"a": "2"}, "app{a=2}"),
        ("app{a=x=y{z}", "app", {"a": "x=y{z"}, "app{a=x=y{z}"),
        ("app{a=hello world}", "app", {"a": "hello world"}, "app{a=hello world}"),
    ],
)
def test_parse_app_name_accepts_pyroscope_names(
    name: str, app: str, tags: dict[str, str], normalized: str | None
) -> None:
    parsed = parse_app_name(name)
    assert parsed.app == app
    assert parsed.tags == tags
    if normalized is not None:
        assert parsed.normalized == normalized


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "required"),
        ("   ", "required"),
        ("{a=1}", "required"),
        ("my app", "may only contain"),
        ("app/cpu", "may only contain"),
        ("äpp", "may only contain"),
        ("app{a=1", "closing"),
        ("app{a=1}x", "after"),
        ("app{a}", "no '='"),
        ("app{=1}", "tag key is required"),
        ("app{__name__=x}", "reserved"),
        ("app{a-b=1}", "may only contain"),
        ("app{a b=1}", "may only contain"),
    ],
)
def test_parse_app_name_rejects_bad_names_with_a_reason(name: str, message: str) -> None:
    with pytest.raises(BadNameError, match=message):
        parse_app_name(name)


@pytest.mark.parametrize(
    ("app", "profile_type"),
    [("myapp.cpu", "cpu"), ("a.b.inuse_space", "inuse_space"), ("myapp", ""), ("myapp.", "")],
)
def test_profile_type_is_last_dotted_part(app: str, profile_type: str) -> None:
    assert parse_app_name(app).profile_type == profile_type


def test_bad_name_error_is_a_value_error() -> None:
    assert issubclass(BadNameError, ValueError)


_key = st.from_regex(r"[A-Za-z0-9_]{1,8}", fullmatch=True).filter(lambda k: k != "__name__")
_value = st.from_regex(r"[A-Za-z0-9_.:/-]{0,8}", fullmatch=True)


@given(st.from_regex(r"[A-Za-z0-9_.\-]{1,16}", fullmatch=True), st.dictionaries(_key, _value, max_size=6))
def test_normalized_name_parses_back_to_itself(app: str, tags: dict[str, str]) -> None:
    parsed = ParsedName(app, tags)
    again = parse_app_name(parsed.normalized)
    assert again == parsed
    assert again.normalized == parsed.normalized


# --- time ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, NOW),
        ("", NOW),
        ("now", NOW),
        ("1699990000", 1699990000.0),
        ("0", 0.0),
        ("1699990000123", 1699990000.123),
        ("1699990000123456", 1699990000.123456),
        ("1699990000123456789", 1699990000.123456789),
        ("now-1h", NOW - 3600),
        ("now-30m", NOW - 1800),
        ("now-15s", NOW - 15),
        ("now-2d", NOW - 2 * 86400),
        ("now-1h30m", NOW - 5400),
        # Bad values fall back to the default, now.
        ("yesterday", NOW),
        ("now-", NOW),
        ("now-1w", NOW),
        ("now+1h", NOW),
        ("-5", NOW),
        ("1.5", NOW),
        ("١٢٣", NOW),
    ],
)
def test_parse_time_table(value: str | None, expected: float) -> None:
    assert parse_time(value, NOW) == pytest.approx(expected, abs=1e-6)


# --- tenants -------------------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", ["anonymous", "team-a", "A_b.c", "x!*'()", "t" * 150, "...", ".a", "a.."])
def test_validate_tenant_accepts_valid_ids(tenant: str) -> None:
    assert validate_tenant(tenant) == tenant


@pytest.mark.parametrize(
    "tenant", ["", ".", "..", "t" * 151, "a/b", "a b", "a|b", "a:b", "a,b", "tenänt", "a\nb", "a#b"]
)
def test_validate_tenant_rejects_invalid_ids(tenant: str) -> None:
    with pytest.raises(InvalidTenantError):
        validate_tenant(tenant)


# --- query parameters ----------------------------------------------------------------------------


def test_ingest_params_defaults() -> None:
    params = IngestParams.from_query({"name": "app.cpu"}, NOW)
    assert params.name == ParsedName("app.cpu", {})
    assert (params.from_, params.until) == (NOW, NOW)
    assert params.sample_rate == 100
    assert params.spy_name == "unknown"
    assert params.units == "samples"
    assert params.aggregation_type == "sum"
    assert params.format == "folded"


def test_ingest_params_reads_every_parameter() -> None:
    query = {
        "name": "app.alloc_space{env=prod}",
        "from": "1699990000",
        "until": "now",
        "sampleRate": "97",
        "spyName": "pyspy",
        "units": "bytes",
        "aggregationType": "average",
        "format": "trie",
    }
    params = IngestParams.from_query(query, NOW)
    assert params.name.normalized == "app.alloc_space{env=prod}"
    assert (params.from_, params.until) == (1699990000.0, NOW)
    assert (params.sample_rate, params.spy_name) == (97, "pyspy")
    assert (params.units, params.aggregation_type, params.format) == ("bytes", "average", "trie")


@pytest.mark.parametrize(
    ("key", "bad", "attribute", "default"),
    [
        ("from", "garbage", "from_", NOW),
        ("until", "now-1y", "until", NOW),
        ("sampleRate", "abc", "sample_rate", 100),
        ("sampleRate", "0", "sample_rate", 100),
        ("sampleRate", "-5", "sample_rate", 100),
        ("sampleRate", "1.5", "sample_rate", 100),
        ("spyName", "", "spy_name", "unknown"),
        ("units", "parsecs", "units", "samples"),
        ("units", "Bytes", "units", "samples"),
        ("aggregationType", "max", "aggregation_type", "sum"),
        ("format", "xml", "format", "folded"),
    ],
)
def test_ingest_params_bad_values_fall_back_to_defaults(
    key: str, bad: str, attribute: str, default: object
) -> None:
    params = IngestParams.from_query({"name": "app", key: bad}, NOW)
    assert getattr(params, attribute) == default


@pytest.mark.parametrize("units", UNITS)
def test_ingest_params_accepts_every_spec_unit(units: str) -> None:
    assert IngestParams.from_query({"name": "a", "units": units}, NOW).units == units


@pytest.mark.parametrize("aggregation", AGGREGATION_TYPES)
def test_ingest_params_accepts_every_aggregation_type(aggregation: str) -> None:
    assert (
        IngestParams.from_query({"name": "a", "aggregationType": aggregation}, NOW).aggregation_type
        == aggregation
    )


def test_ingest_params_format_uses_content_type() -> None:
    params = IngestParams.from_query({"name": "a"}, NOW, content_type="binary/octet-stream+tree")
    assert params.format == "tree"
    params = IngestParams.from_query({"name": "a"}, NOW, content_type="multipart/form-data; boundary=x")
    assert params.format == "pprof-form"


def test_ingest_params_missing_or_bad_name_raises() -> None:
    with pytest.raises(BadNameError, match="name is required"):
        IngestParams.from_query({}, NOW)
    with pytest.raises(BadNameError):
        IngestParams.from_query({"name": "bad name"}, NOW)
