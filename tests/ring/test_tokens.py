# Series tokens: Pyroscope's TokenFor (FNV-1 32) and label rendering, with the spec's vectors,
# and the compiled and pure kernels agreeing on random input.
from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyro_core import InvalidRingError, fast_token_for, labels_string, token_for, tokens_for


def test_token_for_matches_pyroscope_vectors(impl: SimpleNamespace) -> None:
    labels = '{__name__="process_cpu", service_name="foo"}'
    assert impl.hashing.token_for("tenant-1", labels) == 3659401939
    assert impl.hashing.token_for("anonymous", "{}") == 657731444
    assert token_for("tenant-1", labels) == 3659401939


def test_fnv1_32_is_fnv1_not_fnv1a(impl: SimpleNamespace) -> None:
    # Known FNV-1 32 values: "" → offset basis, "a" → 0x050c5d7e (FNV-1a would give 0xe40c292c).
    assert impl.hashing.fnv1_32(b"") == 0x811C9DC5
    assert impl.hashing.fnv1_32(b"a") == 0x050C5D7E


def test_labels_string_renders_like_pyroscope() -> None:
    assert labels_string({"service_name": "foo", "__name__": "process_cpu"}) == (
        '{__name__="process_cpu", service_name="foo"}'
    )
    assert labels_string({}) == "{}"
    assert labels_string([("b", 'q"uo\\te'), ("a", "line\nbreak\t\x01é")]) == (
        '{a="line\\nbreak\\t\\x01é", b="q\\"uo\\\\te"}'
    )


def test_labels_string_rejects_non_string_pairs() -> None:
    with pytest.raises(InvalidRingError):
        labels_string([("a", 1)])  # type: ignore[list-item]
    with pytest.raises(InvalidRingError):
        token_for("t", {"a": "b"})  # type: ignore[arg-type]


@given(st.text(max_size=30), st.lists(st.text(max_size=60), max_size=20))
def test_token_kernels_agree_with_pure_twins(tenant: str, labels: list[str]) -> None:
    from pyro_core import _impl

    c, p = _impl.kernels("compiled").hashing, _impl.kernels("pure").hashing
    assert c.tokens_for(tenant, labels).tolist() == p.tokens_for(tenant, labels).tolist()
    assert c.xxh_tokens(tenant, labels).tolist() == p.xxh_tokens(tenant, labels).tolist()
    for s in labels[:3]:
        assert c.token_for(tenant, s) == p.token_for(tenant, s)
        assert c.xxh_token(tenant, s) == p.xxh_token(tenant, s)


def test_batch_tokens_equal_single_tokens() -> None:
    labels = [labels_string({"service_name": f"svc-{i}"}) for i in range(50)]
    assert tokens_for("t", labels).tolist() == [token_for("t", s) for s in labels]
    assert 0 <= fast_token_for("t", labels[0]) < 2**32


def test_lone_surrogates_are_a_clear_error() -> None:
    with pytest.raises(InvalidRingError):
        token_for("t", "\ud800")
