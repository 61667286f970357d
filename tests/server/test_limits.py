# Per-tenant ingestion limits: the token bucket behaves exactly as Go's rate.Limiter under AllowN
# (full burst at start, refill at the rate, capped at the burst, refusals take nothing), each tenant
# has its own bucket, a changed limit applies to the next request; and the §6 validation limits.
from __future__ import annotations

import math

import pytest

from pyro_core.server.limits import (
    DEFAULT_VALIDATION_LIMITS,
    DUPLICATE_LABEL_NAMES,
    LABEL_NAME_TOO_LONG,
    LABEL_VALUE_TOO_LONG,
    MAX_LABEL_NAMES_PER_SERIES,
    MIB,
    MISSING_LABELS,
    NOT_IN_INGESTION_WINDOW,
    PROFILE_SIZE_LIMIT,
    IngestionRateLimiter,
    RateLimit,
    TokenBucket,
    ValidationError,
    ValidationLimits,
    format_bytes,
    rate_limited_message,
    validate_labels,
    validate_profile_size,
    validate_timestamp,
)
from pyro_core.server.overrides import Limits, Overrides, parse_runtime_config

T0 = 1_700_000_000.0


def limiter(limits: dict[str, RateLimit] | None = None) -> IngestionRateLimiter:
    table = limits if limits is not None else {}
    return IngestionRateLimiter(lambda tenant: table.get(tenant, RateLimit()))


# -- the bucket -------------------------------------------------------------------------------------


def test_defaults_are_pyroscopes_4_mib_per_second_and_2_mib_burst() -> None:
    assert RateLimit() == RateLimit(ingestion_rate_mb=4.0, ingestion_burst_size_mb=2.0)
    assert limiter().limit_bytes("t") == 4 * MIB


def test_new_tenant_starts_with_a_full_burst() -> None:
    rl = limiter()
    assert rl.available("t", T0) == 2 * MIB
    assert rl.allow("t", 2 * MIB, T0)
    assert not rl.allow("t", 1, T0)


def test_tokens_refill_at_the_rate() -> None:
    rl = limiter()
    assert rl.allow("t", 2 * MIB, T0)
    assert rl.available("t", T0 + 0.25) == 1 * MIB  # 4 MiB/s for 1/4 s
    assert rl.allow("t", 1 * MIB, T0 + 0.25)
    assert not rl.allow("t", 1, T0 + 0.25)
    assert rl.allow("t", 4, T0 + 0.25 + 1 / MIB)  # 4 bytes accrue in 1/MiB of a second


def test_refill_is_capped_at_the_burst() -> None:
    rl = limiter()
    assert rl.allow("t", 1 * MIB, T0)
    assert rl.available("t", T0 + 3600) == 2 * MIB
    assert rl.allow("t", 2 * MIB, T0 + 3600)
    assert not rl.allow("t", 1, T0 + 3600)


def test_a_request_larger_than_the_burst_is_always_refused_and_takes_nothing() -> None:
    rl = limiter()
    assert not rl.allow("t", 2 * MIB + 1, T0)
    assert rl.available("t", T0) == 2 * MIB
    assert not rl.allow("t", 2 * MIB + 1, T0 + 10_000)


def test_a_refused_request_takes_nothing() -> None:
    rl = limiter()
    assert rl.allow("t", 1.5 * MIB, T0)
    assert not rl.allow("t", 1 * MIB, T0)  # 0.5 MiB left
    assert rl.available("t", T0) == 0.5 * MIB
    assert rl.allow("t", 0.5 * MIB, T0)


def test_sustained_rate_is_the_limit() -> None:
    # 1 MiB every 0.25 s = exactly 4 MiB/s is always allowed once the burst is spent
    rl = limiter()
    assert rl.allow("t", 2 * MIB, T0)
    for i in range(1, 41):
        assert rl.allow("t", 1 * MIB, T0 + 0.25 * i)
        assert not rl.allow("t", 1, T0 + 0.25 * i)


def test_tenants_are_isolated() -> None:
    rl = limiter({"small": RateLimit(1, 1)})
    assert rl.allow("a", 2 * MIB, T0)
    assert not rl.allow("a", 1, T0)
    assert rl.allow("b", 2 * MIB, T0)  # b's bucket is its own
    assert not rl.allow("small", 1 * MIB + 1, T0)  # and each tenant has its own limits
    assert rl.allow("small", 1 * MIB, T0)
    assert rl.tenants() == ["a", "b", "small"]


def test_a_rate_change_applies_from_the_next_request() -> None:
    table = {"t": RateLimit(1.0, 2.0)}
    rl = limiter(table)
    assert rl.allow("t", 2 * MIB, T0)
    table["t"] = RateLimit(2.0, 2.0)
    # the limiter learns of it at the next call: tokens accrued at the old rate until then
    assert rl.available("t", T0 + 1) == 1 * MIB
    assert rl.available("t", T0 + 1.25) == 1.5 * MIB  # then 2 MiB/s
    assert rl.limit_bytes("t") == 2 * MIB


def test_a_smaller_burst_drops_the_excess_tokens_and_a_larger_one_fills_over_time() -> None:
    table = {"t": RateLimit(1.0, 2.0)}
    rl = limiter(table)
    assert rl.available("t", T0) == 2 * MIB
    table["t"] = RateLimit(1.0, 0.5)
    assert rl.available("t", T0) == 0.5 * MIB
    assert not rl.allow("t", 0.5 * MIB + 1, T0)
    table["t"] = RateLimit(1.0, 3.0)
    assert rl.available("t", T0) == 0.5 * MIB  # a larger burst is not a gift of tokens
    assert rl.available("t", T0 + 2.5) == 3 * MIB


def test_an_infinite_rate_allows_everything() -> None:
    rl = limiter({"t": RateLimit(math.inf, 2.0)})
    assert rl.allow("t", 100 * MIB, T0)
    assert rl.allow("t", 100 * MIB, T0)
    assert rl.available("t", T0) == math.inf


def test_a_zero_rate_allows_the_burst_once_and_never_refills() -> None:
    rl = limiter({"t": RateLimit(0.0, 1.0)})
    assert rl.allow("t", 1 * MIB, T0)
    assert not rl.allow("t", 1, T0 + 1e6)


def test_time_going_backwards_adds_no_tokens() -> None:
    rl = limiter()
    assert rl.allow("t", 2 * MIB, T0)
    assert not rl.allow("t", 1, T0 - 100)
    assert rl.available("t", T0 + 0.25) == 1 * MIB  # and time lost is not double-counted


def test_the_burst_is_whole_bytes_as_in_pyroscope() -> None:
    rl = limiter({"t": RateLimit(1.0, 1.5 / MIB)})  # int(1.5) bytes
    assert rl.available("t", T0) == 1
    assert not rl.allow("t", 1.5, T0)


def test_forget_starts_the_tenant_over() -> None:
    rl = limiter()
    assert rl.allow("t", 2 * MIB, T0)
    rl.forget("t")
    assert rl.allow("t", 2 * MIB, T0)


def test_token_bucket_alone() -> None:
    b = TokenBucket(rate=10.0, burst=5.0, now=0.0)
    assert b.allow(5, 0.0) and not b.allow(1, 0.0)
    assert b.allow(1, 0.1) and not b.allow(1, 0.1)


def test_overrides_drive_the_limiter_live() -> None:
    overrides = Overrides(Limits(ingestion_rate_mb=1.0, ingestion_burst_size_mb=1.0))
    rl = IngestionRateLimiter(overrides.for_tenant)
    assert not rl.allow("big", 2 * MIB, T0)
    overrides.apply(parse_runtime_config({"overrides": {"big": {"ingestion_burst_size_mb": 4}}}))
    assert rl.available("big", T0) == 1 * MIB  # the bucket keeps its tokens …
    assert rl.allow("big", 2 * MIB, T0 + 1)  # … and fills to the new burst at the rate
    assert not rl.allow("other", 2 * MIB, T0)


def test_the_429_message_says_the_limit_and_the_size() -> None:
    msg = rate_limited_message(4 * MIB, 5 * MIB + 512 * 1024)
    assert msg == "push rate limit (4.0 MiB/s) exceeded while adding 5.5 MiB"
    assert format_bytes(100) == "100 B" and format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 1024 * MIB) == "3.0 GiB" and format_bytes(math.inf) == "unlimited"


# -- validation -------------------------------------------------------------------------------------


def test_validation_defaults_are_the_spec() -> None:
    v = DEFAULT_VALIDATION_LIMITS
    assert (v.max_label_names_per_series, v.max_label_name_length, v.max_label_value_length) == (
        30,
        1024,
        2048,
    )
    assert v.max_profile_size_bytes == 4 * MIB and v.max_profile_stacktrace_depth == 1000
    assert (v.reject_older_than, v.reject_newer_than) == (3600.0, 600.0)


def test_thirty_label_names_pass_and_thirty_one_are_refused() -> None:
    labels = {f"l{i}": "v" for i in range(30)}
    validate_labels(labels)
    labels["l30"] = "v"
    with pytest.raises(ValidationError, match="31 label names; the limit is 30") as e:
        validate_labels(labels)
    assert e.value.reason == MAX_LABEL_NAMES_PER_SERIES
    assert isinstance(e.value, ValueError)


def test_label_name_and_value_lengths_are_utf8_bytes() -> None:
    validate_labels({"n" * 1024: "v" * 2048})
    with pytest.raises(ValidationError, match="1025 bytes long; the limit is 1024") as e:
        validate_labels({"n" * 1025: "v"})
    assert e.value.reason == LABEL_NAME_TOO_LONG
    with pytest.raises(ValidationError, match="'k' is 2050 bytes long; the limit is 2048") as e:
        validate_labels({"k": "é" * 1025})
    assert e.value.reason == LABEL_VALUE_TOO_LONG


def test_duplicate_and_missing_labels_are_refused() -> None:
    with pytest.raises(ValidationError, match="'a' appears twice") as e:
        validate_labels([("a", "1"), ("b", "2"), ("a", "3")])
    assert e.value.reason == DUPLICATE_LABEL_NAMES
    with pytest.raises(ValidationError) as e:
        validate_labels({})
    assert e.value.reason == MISSING_LABELS
    with pytest.raises(ValidationError, match="empty label name"):
        validate_labels({"": "x"})


def test_zero_disables_a_validation_limit_and_tenant_limits_apply() -> None:
    off = ValidationLimits(max_label_names_per_series=0, max_label_name_length=0, max_label_value_length=0)
    validate_labels({f"{'n' * 5000}{i}": "v" * 5000 for i in range(100)}, off)
    tight = Limits(max_label_names_per_series=2)  # overrides.Limits has the same attributes
    with pytest.raises(ValidationError, match="limit is 2"):
        validate_labels({"a": "1", "b": "2", "c": "3"}, tight)


def test_profile_size_limit() -> None:
    validate_profile_size(4 * MIB)
    with pytest.raises(ValidationError, match=r"4194305 bytes\) is over the limit of 4.0 MiB") as e:
        validate_profile_size(4 * MIB + 1)
    assert e.value.reason == PROFILE_SIZE_LIMIT
    validate_profile_size(10**12, ValidationLimits(max_profile_size_bytes=0))


def test_ingestion_window() -> None:
    validate_timestamp(T0 - 3600, T0)
    validate_timestamp(T0 + 600, T0)
    with pytest.raises(ValidationError, match="3601s old") as e:
        validate_timestamp(T0 - 3601, T0)
    assert e.value.reason == NOT_IN_INGESTION_WINDOW
    with pytest.raises(ValidationError, match="601s in the future"):
        validate_timestamp(T0 + 601, T0)
    validate_timestamp(0, T0, ValidationLimits(reject_older_than=0, reject_newer_than=0))
