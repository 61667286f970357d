# The sans-I/O parts of remote write: retry decisions, backoff, Retry-After, the retry budget, the
# request a target receives, and the spool record encoding. No sockets, no clock: `now` is an argument.
from __future__ import annotations

import base64
import ssl
from urllib.parse import urlencode

import pytest

from pyro_core.server.push import decode_push_request, encode_push_request
from pyro_core.server.relay_config import RemoteWriteConfig, RetryConfig
from pyro_core.server.remote_write import (
    PROFILE_ID_HEADER,
    Action,
    RelayItem,
    RetryBudget,
    RetryRules,
    backoff_delay,
    build_request,
    decode_item,
    encode_item,
    parse_retry_after,
)

NOW = 1_700_000_000.0


def rules(**kw: object) -> RetryRules:
    return RetryRules(RetryConfig(**kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [200, 201, 204])
def test_2xx_is_sent(status: int) -> None:
    assert rules().decide(0, status, now=5.0, wall_now=NOW, rand=0.5).action is Action.SENT


@pytest.mark.parametrize("status", [None, 408, 429, 500, 502, 503, 504])
def test_network_errors_408_429_and_5xx_are_retried(status: int | None) -> None:
    d = rules(min_backoff=1.0, max_backoff=10.0).decide(0, status, now=5.0, wall_now=NOW, rand=0.5)
    assert d.action is Action.RETRY and d.at == pytest.approx(5.5)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_other_4xx_are_permanent_failures(status: int) -> None:
    assert rules().decide(0, status, now=5.0, wall_now=NOW, rand=0.5).action is Action.REJECTED


def test_max_retries_gives_up_and_none_means_unlimited() -> None:
    r = rules(max_retries=2)
    assert [r.decide(a, 503, now=0, wall_now=NOW, rand=0).action for a in range(3)] == [
        Action.RETRY,
        Action.RETRY,
        Action.GIVE_UP,
    ]
    assert rules(max_retries=None).decide(10_000, 503, now=0, wall_now=NOW, rand=0).action is Action.RETRY


def test_backoff_is_exponential_full_jitter_capped() -> None:
    assert [backoff_delay(a, 0.5, 30.0, 1.0) for a in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff_delay(3, 0.5, 30.0, 0.25) == 1.0
    assert backoff_delay(0, 0.5, 30.0, 0.0) == 0.0
    assert backoff_delay(10_000, 0.5, 30.0, 0.5) == 15.0


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("30", NOW) == 30.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:40 GMT", NOW) == 20.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", NOW) == 0.0  # in the past
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


@pytest.mark.parametrize("value", ["\xb2", "\u0663", "1" + "0" * 400, "9" * 5000, "-5", "1e9", "Fri, 31 Dec 99999"])
def test_an_unreadable_retry_after_is_ignored_never_raised(value: str) -> None:
    assert parse_retry_after(value, NOW) is None
    decision = rules().decide(0, 429, value, now=0.0, wall_now=NOW, rand=0.5)
    assert decision.action is Action.RETRY  # the backoff alone decides


def test_retry_after_overrides_a_shorter_backoff_and_is_clipped() -> None:
    r = rules(min_backoff=1.0, max_backoff=2.0, max_retry_after=60.0)
    assert r.decide(0, 429, "30", now=100.0, wall_now=NOW, rand=0.9).at == pytest.approx(130.0)
    assert r.decide(0, 429, "3600", now=100.0, wall_now=NOW, rand=0.9).at == pytest.approx(160.0)
    assert (
        rules(min_backoff=1.0, max_backoff=2.0).decide(0, 500, "30", now=0.0, wall_now=NOW, rand=0.5).at
        == 0.5
    )  # only 429 / 503


def test_budget_allows_a_burst_then_the_rate() -> None:
    b = RetryBudget(rate=10.0, burst=3)
    assert [b.reserve(0.0) for _ in range(6)] == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2, 0.3])
    # Idle for a while: the burst is available again.
    assert [b.reserve(100.0) for _ in range(4)] == pytest.approx([100.0, 100.0, 100.0, 100.1])


def test_budget_bounds_retries_in_any_window() -> None:
    b = RetryBudget(rate=2.0, burst=4)
    times = sorted(b.reserve(t * 0.01) for t in range(200))
    for i in range(len(times)):
        in_window = [x for x in times[i:] if x < times[i] + 5.0]
        assert len(in_window) <= 4 + 2 * 5


def test_an_outage_cannot_amplify_load_through_the_rules() -> None:
    # 1000 profiles fail at t=0; the budget spaces their first retries at `budget` per second.
    r = rules(min_backoff=0.1, max_backoff=0.1, budget=5.0, burst=5)
    ats = sorted(r.decide(0, 503, now=0.0, wall_now=NOW, rand=1.0).at for _ in range(1000))
    assert sum(1 for a in ats if a < 10.1) <= 5 + 5 * 10


# -- requests ---------------------------------------------------------------------------------------


def item(**kw: object) -> RelayItem:
    base: dict[str, object] = {
        "kind": "ingest",
        "tenant": "anonymous",
        "org_id": None,
        "query": urlencode((("name", "app.cpu{env=prod,zone=a}"), ("from", "1"), ("spyName", "pyspy"))),
        "content_type": "binary/octet-stream",
        "content_encoding": "gzip",
        "body": b"\x1f\x8bbody",
        "profile_id": "abc",
        "received_at": NOW,
    }
    base.update(kw)
    return RelayItem(**base)  # type: ignore[arg-type]


def target(**kw: object) -> object:
    (t,) = RemoteWriteConfig.from_mapping(
        {"enabled": True, "targets": {"t": {"address": "http://h:4040/base/", **kw}}}
    ).targets
    return t


def test_ingest_request_keeps_parameters_body_and_content_headers() -> None:
    req = build_request(target(tags={"env": "relay", "cluster": "c"}), item())  # type: ignore[arg-type]
    assert (
        req.url
        == "http://h:4040/base/ingest?name=app.cpu%7Bcluster%3Dc%2Cenv%3Drelay%2Czone%3Da%7D&from=1&spyName=pyspy"
    )
    h = dict(req.headers)
    assert h["Content-Type"] == "binary/octet-stream" and h["Content-Encoding"] == "gzip"
    assert h[PROFILE_ID_HEADER] == "abc"
    assert "X-Scope-OrgID" not in h and "Authorization" not in h
    assert req.body == b"\x1f\x8bbody"


def test_header_precedence() -> None:
    t = target(
        headers={
            "authorization": "from-headers",
            "x-scope-orgid": "from-headers",
            "content-type": "x/y",
            "X-A": "1",
        },
        **{"auth-token": "tok"},
    )
    h = {k.lower(): v for k, v in build_request(t, item(org_id="client", content_encoding=None)).headers}  # type: ignore[arg-type]
    assert h["authorization"] == "Bearer tok"
    assert h["x-scope-orgid"] == "from-headers"  # the operator's header beats the client's tenant
    assert h["content-type"] == "binary/octet-stream"
    assert "content-encoding" not in h and h["x-a"] == "1"
    h = {k.lower(): v for k, v in build_request(target(), item(org_id="client")).headers}  # type: ignore[arg-type]
    assert h["x-scope-orgid"] == "client"  # nothing configured: the client's tenant goes on
    t = target(**{"auth-token": "tok", "basic-auth-user": "u", "basic-auth-password": "p", "tenant-id": "t1"})
    h = {k.lower(): v for k, v in build_request(t, item(org_id="client")).headers}  # type: ignore[arg-type]
    assert h["authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    assert h["x-scope-orgid"] == "t1"


def test_push_request_merges_tags_into_every_series() -> None:
    body = encode_push_request(
        [
            ({"__name__": "cpu", "env": "prod"}, [b"p1"]),
            ([("__name__", "mem"), ("service_name", "s")], [b"p2", b"p3"]),
        ],
        content_type="application/json",
    )
    it = item(kind="push", query="", content_type="application/json", content_encoding=None, body=body)
    req = build_request(target(tags={"env": "relay"}), it)  # type: ignore[arg-type]
    assert req.url == "http://h:4040/base/push.v1.PusherService/Push"
    s1, s2 = decode_push_request(req.body, "application/json")
    assert s1.labels == (("__name__", "cpu"), ("env", "relay"))
    assert s2.labels == (("__name__", "mem"), ("service_name", "s"), ("env", "relay"))
    assert [r.raw_profile for r in s2.samples] == [b"p2", b"p3"]
    assert build_request(target(), it).body is body  # type: ignore[arg-type]  # no tags: unchanged


def test_spool_record_round_trips_an_item() -> None:
    it = item(org_id="o", query=urlencode((("name", "a{b=c}"), ("x", "ü"))))
    assert decode_item(encode_item(it)) == it
    with pytest.raises(ValueError):
        decode_item(b"\x09junk")
    good = encode_item(it)
    for broken in (good.replace(b'"org_id":"o"', b'"org_id":7'), good.replace(b'"kind"', b'"kinds"')):
        meta_len = int.from_bytes(good[1:5], "big") + (len(broken) - len(good))
        with pytest.raises(ValueError, match="malformed spool record"):
            decode_item(broken[:1] + meta_len.to_bytes(4, "big") + broken[5:])


def test_an_error_that_says_nothing_is_described_by_its_deepest_telling_cause() -> None:
    from pyro_core.server.remote_write import _describe

    try:
        try:
            try:
                raise ssl.SSLCertVerificationError(1, "certificate verify failed")
            except ssl.SSLError as e:
                raise OSError() from e
        except OSError as e:
            raise ConnectionError() from e
    except ConnectionError as e:
        described = _describe(e)
    assert described == "ConnectionError (SSLCertVerificationError: certificate verify failed)"
    assert _describe(TimeoutError("after 10s")) == "TimeoutError: after 10s"
    assert _describe(TimeoutError()) == "TimeoutError"
