# /metrics reads like Go's client_golang: numbers formatted as Go's expfmt writes them.
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pyro_core.exposition import go_exposition, go_float


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (-1.0, "-1"),
        (2.0, "2"),
        (2.5, "2.5"),
        (0.005, "0.005"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (1.7e9, "1.7e+09"),
        (-3.25e-7, "-3.25e-07"),
        (1e21, "1e+21"),
        (0.1 + 0.2, "0.30000000000000004"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
    ],
)
def test_go_float_matches_go_strconv_g_shortest(value: float, text: str) -> None:
    # Expected strings are what Go's strconv.FormatFloat(v, 'g', -1, 64) prints (expfmt writes 0, 1
    # and -1 itself, the same way).
    assert go_float(value) == text


@given(st.floats(allow_nan=False))
def test_go_float_round_trips(value: float) -> None:
    assert float(go_float(value)) == value


def test_exposition_prints_integral_values_and_bucket_bounds_like_go() -> None:
    registry = CollectorRegistry(auto_describe=True)
    g = Gauge("queue_pending", "pending", ["target_address", "target_name"], registry=registry)
    g.labels("http://bar:4040", "my-cluster").set(0)
    Counter("sent", "sent", registry=registry).inc(3)
    h = Histogram("latency_seconds", "latency", buckets=(0.5, 1.0, 10.0), registry=registry)
    h.observe(0.7)
    text = go_exposition(registry).decode()
    assert 'queue_pending{target_address="http://bar:4040",target_name="my-cluster"} 0\n' in text
    assert "sent_total 3\n" in text
    assert 'latency_seconds_bucket{le="1"} 1\n' in text
    assert 'latency_seconds_bucket{le="10"} 1\n' in text
    assert 'latency_seconds_bucket{le="+Inf"} 1\n' in text
    assert "latency_seconds_sum 0.7\n" in text
    assert "# TYPE queue_pending gauge" in text
