# Per-tenant ingestion limits, sans-I/O: the distributor's local ingestion-rate strategy (one token
# bucket per tenant, in bytes) and the validation limits of a series (spec "pyroscope-api.md" §6).
# Owns: the token-bucket arithmetic (golang.org/x/time/rate's AllowN, which dskit's RateLimiter wraps),
# the defaults of §6, the checks of labels, profile sizes and timestamps, and Pyroscope's discard
# reasons (the `reason` label of its discarded-samples metric).
# Must not know: HTTP or status codes (the shell turns a refusal into 429 and a ValidationError into
# 400), the clock (`now` is an argument, unix seconds), where a tenant's limits come from (a callable:
# overrides.py's Overrides.for_tenant in the server) or YAML.
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

MIB: Final = 1 << 20  # Pyroscope's "MB" in ingestion_rate_mb is a MiB (bytesInMB = 1 << 20)

# Pyroscope's discard reasons (pkg/validation), used as the metric label and in messages.
RATE_LIMITED: Final = "rate_limited"
MISSING_LABELS: Final = "missing_labels"
INVALID_LABELS: Final = "invalid_labels"
MAX_LABEL_NAMES_PER_SERIES: Final = "max_label_names_per_series"
LABEL_NAME_TOO_LONG: Final = "label_name_too_long"
LABEL_VALUE_TOO_LONG: Final = "label_value_too_long"
DUPLICATE_LABEL_NAMES: Final = "duplicate_label_names"
PROFILE_SIZE_LIMIT: Final = "profile_size_limit"
NOT_IN_INGESTION_WINDOW: Final = "not_in_ingestion_window"
SAMPLES_LIMIT: Final = "samples_limit"


# -- rate limiting ----------------------------------------------------------------------------------


class RateLimits(Protocol):
    """What the rate limiter needs of a tenant's limits (overrides.Limits has both, read-only)."""

    @property
    def ingestion_rate_mb(self) -> float: ...  # MiB/s; math.inf = unlimited

    @property
    def ingestion_burst_size_mb(self) -> float: ...  # MiB


@dataclass(frozen=True)
class RateLimit:
    """A tenant's rate limit on its own, with Pyroscope's defaults (4 MiB/s, burst 2 MiB)."""

    ingestion_rate_mb: float = 4.0
    ingestion_burst_size_mb: float = 2.0


class TokenBucket:
    """Go's ``rate.Limiter`` as ``AllowN`` uses it: ``rate`` tokens per second up to ``burst``,
    full when created; a refused request takes nothing; a request larger than ``burst`` is always
    refused; ``rate == inf`` allows everything. Time going backwards counts as no time passing."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = now

    def _advance(self, now: float) -> float:
        """The tokens there are at ``now`` (not stored)."""
        elapsed = now - self.last
        if elapsed <= 0:
            return self.tokens
        return min(self.burst, self.tokens + elapsed * self.rate)

    def available(self, now: float) -> float:
        return math.inf if self.rate == math.inf else self._advance(now)

    def allow(self, n: float, now: float) -> bool:
        if self.rate == math.inf:
            return True
        if n > self.burst:
            return False
        tokens = self._advance(now)
        if tokens < n:
            return False
        self.tokens = tokens - n
        self.last = max(self.last, now)
        return True

    def set_limits(self, rate: float, burst: float, now: float) -> None:
        """Go's SetLimitAt + SetBurstAt: tokens accrue at the old rate until ``now``, then the new
        rate applies; tokens above a smaller burst are dropped."""
        if self.rate != math.inf:
            self.tokens = self._advance(now)
        else:
            self.tokens = burst
        self.last = max(self.last, now)
        self.rate = rate
        self.burst = burst
        self.tokens = min(self.tokens, burst)


class IngestionRateLimiter:
    """Pyroscope's local ingestion-rate strategy: per tenant, ``ingestion_rate_mb`` MiB/s with a
    burst of ``ingestion_burst_size_mb`` MiB, counted in bytes of the request's (uncompressed)
    profiles. ``limits_for(tenant)`` is asked on every call, so a runtime-config change applies to
    the next request (dskit re-checks every 10 s): the tenant's bucket keeps its tokens (accrued at
    the old rate until then) and continues at the new rate, capped at the new burst."""

    def __init__(self, limits_for: Callable[[str], RateLimits]) -> None:
        self._limits_for = limits_for
        self._buckets: dict[str, TokenBucket] = {}

    def _bucket(self, tenant: str, now: float) -> TokenBucket:
        limits = self._limits_for(tenant)
        rate = float(limits.ingestion_rate_mb) * MIB
        # Pyroscope: int(IngestionBurstSizeMB * bytesInMB); an infinite burst stays infinite
        burst_mb = float(limits.ingestion_burst_size_mb)
        burst = float(int(burst_mb * MIB)) if math.isfinite(burst_mb) else math.inf
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = self._buckets[tenant] = TokenBucket(rate, burst, now)
        elif bucket.rate != rate or bucket.burst != burst:
            bucket.set_limits(rate, burst, now)
        return bucket

    def allow(self, tenant: str, nbytes: float, now: float) -> bool:
        """Take ``nbytes`` from the tenant's bucket at ``now``; False (nothing taken) when over."""
        return self._bucket(tenant, now).allow(nbytes, now)

    def available(self, tenant: str, now: float) -> float:
        """Bytes the tenant could send at ``now`` (for tests and status pages)."""
        return self._bucket(tenant, now).available(now)

    def limit_bytes(self, tenant: str) -> float:
        """The tenant's current rate in bytes per second (for the 429 message)."""
        return float(self._limits_for(tenant).ingestion_rate_mb) * MIB

    def forget(self, tenant: str) -> None:
        """Drop a tenant's bucket (it starts full again on its next request)."""
        self._buckets.pop(tenant, None)

    def tenants(self) -> list[str]:
        return sorted(self._buckets)


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB' (binary units, as Pyroscope's messages)."""
    if math.isinf(n):
        return "unlimited"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def rate_limited_message(limit_bytes_per_second: float, nbytes: float) -> str:
    """The body of the 429: what the limit is and how much the request tried to add."""
    return (
        f"push rate limit ({format_bytes(limit_bytes_per_second)}/s) exceeded while adding "
        f"{format_bytes(nbytes)}"
    )


# -- validation -------------------------------------------------------------------------------------


class ValidationLimitsLike(Protocol):
    """What the validation helpers need (ValidationLimits and overrides.Limits both have it)."""

    @property
    def max_label_names_per_series(self) -> int: ...

    @property
    def max_label_name_length(self) -> int: ...

    @property
    def max_label_value_length(self) -> int: ...

    @property
    def max_profile_size_bytes(self) -> int: ...

    @property
    def reject_older_than(self) -> float: ...

    @property
    def reject_newer_than(self) -> float: ...


@dataclass(frozen=True)
class ValidationLimits:
    """Pyroscope's per-tenant validation defaults (spec §6). 0 disables a limit, as in Pyroscope."""

    max_label_names_per_series: int = 30
    max_label_name_length: int = 1024  # bytes (UTF-8)
    max_label_value_length: int = 2048  # bytes (UTF-8); also the profile (metric) name
    max_profile_size_bytes: int = 4 * MIB  # uncompressed
    max_profile_stacktrace_depth: int = 1000  # deeper stacks are truncated, not refused
    reject_older_than: float = 3600.0  # seconds
    reject_newer_than: float = 600.0  # seconds


DEFAULT_VALIDATION_LIMITS: Final = ValidationLimits()
DEFAULT_BODY_LIMIT_BYTES: Final = 256 * MIB  # a request body (not per tenant)


class ValidationError(ValueError):
    """A series or profile a tenant's limits refuse; ``reason`` is Pyroscope's discard reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _labels_text(pairs: list[tuple[str, str]]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in pairs) + "}"


def validate_labels(
    labels: Mapping[str, str] | Iterable[tuple[str, str]],
    limits: ValidationLimitsLike = DEFAULT_VALIDATION_LIMITS,
) -> None:
    """Check one series' labels against ``limits``; raise :class:`ValidationError` saying which label
    is wrong and which limit it breaks. Lengths are in UTF-8 bytes. Pairs (not only a mapping) are
    accepted so that duplicate names, which a decoded push request can carry, are caught."""
    pairs = list(labels.items()) if isinstance(labels, Mapping) else list(labels)
    if not pairs:
        raise ValidationError(MISSING_LABELS, "a series needs at least one label")
    limit = limits.max_label_names_per_series
    if limit > 0 and len(pairs) > limit:
        raise ValidationError(
            MAX_LABEL_NAMES_PER_SERIES,
            f"series {_labels_text(pairs)[:200]} has {len(pairs)} label names; the limit is {limit}",
        )
    seen: set[str] = set()
    for name, value in pairs:
        if not name:
            raise ValidationError(
                INVALID_LABELS, f"series {_labels_text(pairs)[:200]} has an empty label name"
            )
        name_limit = limits.max_label_name_length
        if name_limit > 0 and len(name.encode()) > name_limit:
            raise ValidationError(
                LABEL_NAME_TOO_LONG,
                f"label name {name[:64]!r}… is {len(name.encode())} bytes long; the limit is {name_limit}",
            )
        value_limit = limits.max_label_value_length
        if value_limit > 0 and len(value.encode()) > value_limit:
            raise ValidationError(
                LABEL_VALUE_TOO_LONG,
                f"the value of label {name[:64]!r} is {len(value.encode())} bytes long; "
                f"the limit is {value_limit}",
            )
        if name in seen:
            raise ValidationError(DUPLICATE_LABEL_NAMES, f"label name {name[:64]!r} appears twice")
        seen.add(name)


def validate_profile_size(nbytes: int, limits: ValidationLimitsLike = DEFAULT_VALIDATION_LIMITS) -> None:
    """Refuse an (uncompressed) profile larger than ``max_profile_size_bytes`` (0 = no limit)."""
    limit = limits.max_profile_size_bytes
    if limit > 0 and nbytes > limit:
        raise ValidationError(
            PROFILE_SIZE_LIMIT,
            f"profile of {format_bytes(nbytes)} ({nbytes} bytes) is over the limit of "
            f"{format_bytes(limit)} ({limit} bytes)",
        )


def validate_timestamp(
    timestamp: float, now: float, limits: ValidationLimitsLike = DEFAULT_VALIDATION_LIMITS
) -> None:
    """Refuse a profile older than ``reject_older_than`` or newer than ``reject_newer_than`` relative
    to ``now`` (unix seconds; 0 disables either bound)."""
    older, newer = limits.reject_older_than, limits.reject_newer_than
    if older > 0 and timestamp < now - older:
        raise ValidationError(
            NOT_IN_INGESTION_WINDOW,
            f"profile is {now - timestamp:.0f}s old; profiles older than {older:.0f}s are refused",
        )
    if newer > 0 and timestamp > now + newer:
        raise ValidationError(
            NOT_IN_INGESTION_WINDOW,
            f"profile is {timestamp - now:.0f}s in the future; more than {newer:.0f}s ahead is refused",
        )


class ProfileLimitsLike(ValidationLimitsLike, Protocol):
    @property
    def max_profile_stacktrace_samples(self) -> int: ...

    @property
    def max_profile_stacktrace_depth(self) -> int: ...

    @property
    def max_profile_symbol_value_length(self) -> int: ...


def validate_profile(profile: Any, limits: ProfileLimitsLike) -> None:
    """Refuse a decoded pprof larger than ``max_profile_size_bytes`` once serialized, or with more
    samples than ``max_profile_stacktrace_samples`` (0 = no limit)."""
    validate_profile_size(profile.ByteSize(), limits)
    cap = limits.max_profile_stacktrace_samples
    if cap > 0 and len(profile.sample) > cap:
        raise ValidationError(
            SAMPLES_LIMIT, f"profile has {len(profile.sample)} samples; the limit is {cap}"
        )


def truncate_stacks(stacks: Mapping[bytes, int], limits: ProfileLimitsLike) -> Mapping[bytes, int]:
    """``stacks`` (``b"root;…;leaf"`` → value) with stacks deeper than
    ``max_profile_stacktrace_depth`` cut to their root-most frames and symbols longer than
    ``max_profile_symbol_value_length`` bytes cut, as Pyroscope truncates rather than refuses; the
    same object when nothing needs cutting."""
    depth = limits.max_profile_stacktrace_depth
    symbol = limits.max_profile_symbol_value_length
    cut = [k for k in stacks if (depth > 0 and k.count(b";") >= depth) or (symbol > 0 and len(k) > symbol)]
    if not cut:
        return stacks
    out = dict(stacks)
    for key in cut:
        frames = key.split(b";")
        if depth > 0:
            frames = frames[:depth]
        if symbol > 0:
            frames = [f[:symbol] for f in frames]
        value = out.pop(key)
        new = b";".join(frames)
        out[new] = out.get(new, 0) + value
    return out
