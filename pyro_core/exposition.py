# The Prometheus text exposition as Go's client_golang writes it, so that a scrape of pyro-core reads
# like a scrape of Pyroscope: ``pending{…} 0`` rather than prometheus_client's ``0.0``.
# Owns: go_float (Go's expfmt number formatting: 0, 1 and -1 short; otherwise strconv 'g' with the
# shortest digits, exponent form from 1e+06 and below 1e-04; +Inf, -Inf, NaN) and go_exposition (a
# registry's text exposition with every sample value and ``le``/``quantile`` label rewritten that way).
# Must not know: which metrics exist, HTTP.
from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest

__all__ = ["go_exposition", "go_float"]

_BOUND_LABEL: Final = re.compile(r'\b(le|quantile)="([^"]*)"')


def go_float(value: float) -> str:
    """``value`` as Go's Prometheus client prints it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    if value == 1:
        return "1"
    if value == -1:
        return "-1"
    sign, digit_tuple, exponent = Decimal(repr(float(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    nd = len(digits)
    dp = nd + exponent  # value = 0.<digits> × 10^dp
    neg = "-" if sign else ""
    exp10 = dp - 1
    if exp10 < -4 or exp10 >= 6:  # Go: %e when the exponent is < -4 or >= 6 (shortest precision)
        mantissa = digits[0] + ("." + digits[1:] if nd > 1 else "")
        return f"{neg}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    if dp <= 0:
        return f"{neg}0.{'0' * -dp}{digits}"
    if dp >= nd:
        return f"{neg}{digits}{'0' * (dp - nd)}"
    return f"{neg}{digits[:dp]}.{digits[dp:]}"


def _rewrite_bound(m: re.Match[str]) -> str:
    try:
        return f'{m.group(1)}="{go_float(float(m.group(2)))}"'
    except ValueError:
        return m.group(0)


def go_exposition(registry: CollectorRegistry) -> bytes:
    """``generate_latest(registry)`` with Go's number formatting (values and bucket/quantile labels)."""
    out: list[str] = []
    for line in generate_latest(registry).decode("utf-8").split("\n"):
        if not line or line.startswith("#"):
            out.append(line)
            continue
        series, _, value = line.rpartition(" ")
        try:
            number = float(value)
        except ValueError:
            out.append(line)
            continue
        if "le=" in series or "quantile=" in series:
            series = _BOUND_LABEL.sub(_rewrite_bound, series)
        out.append(f"{series} {go_float(number)}")
    return "\n".join(out).encode("utf-8")
