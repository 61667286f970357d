# Tokens: random token generation and the series tokens a distributor computes.
# Owns: generate_tokens (dskit's random generator: draw uint32s, reject taken ones, sort),
# labels_string (Pyroscope's rendering of a label set), token_for (Pyroscope's FNV-1 32 TokenFor)
# and the faster xxhash token. Randomness is always a seeded numpy Generator passed in.
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from pyro_core import _impl
from pyro_core.ring.errors import InvalidRingError


def generate_tokens(
    n: int, taken: Iterable[int] | npt.NDArray[np.uint32] = (), rng: np.random.Generator | int | None = None
) -> npt.NDArray[np.uint32]:
    """``n`` random unique uint32 tokens, none of them in ``taken``, sorted.

    ``rng`` is a numpy Generator or a seed; pass one for reproducible tokens (None = fresh entropy).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise InvalidRingError(f"the number of tokens must be a non-negative integer, got {n!r}")
    taken_arr = np.asarray(list(taken) if not isinstance(taken, np.ndarray) else taken, dtype=np.int64)
    if taken_arr.size + n > 2**32:
        raise InvalidRingError("not enough free tokens in the uint32 space")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    used = set(taken_arr.tolist())
    out: list[int] = []
    fresh: set[int] = set()
    while len(out) < n:
        for t in gen.integers(0, 2**32, size=max(8, (n - len(out)) * 2), dtype=np.uint64).tolist():
            if t in used or t in fresh:
                continue
            fresh.add(t)
            out.append(t)
            if len(out) == n:
                break
    arr = np.array(sorted(out), dtype=np.uint32)
    arr.flags.writeable = False
    return arr


def _go_quote(value: str) -> str:
    """Quote like Go's strconv.Quote: escapes for \\ and ", named controls, \\x / \\u / \\U otherwise."""
    out = ['"']
    named = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in named:
            out.append(named[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            cp = ord(ch)
            if cp < 0x80:
                out.append(f"\\x{cp:02x}")
            elif cp < 0x10000:
                out.append(f"\\u{cp:04x}")
            else:
                out.append(f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)


def labels_string(labels: Mapping[str, str] | Sequence[tuple[str, str]]) -> str:
    """Render labels as Pyroscope does: sorted by name, ``{a="1", b="2"}`` with Go-quoted values."""
    pairs = list(labels.items()) if isinstance(labels, Mapping) else list(labels)
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise InvalidRingError(f"labels must be (name, value) string pairs, got {pair!r}")
    pairs.sort(key=lambda p: p[0])
    return "{" + ", ".join(f"{name}={_go_quote(value)}" for name, value in pairs) + "}"


_hashing = _impl.kernels().hashing


def token_for(tenant: str, labels: str) -> int:
    """Pyroscope's series token (distributor TokenFor): FNV-1 32 over tenant then label string."""
    try:
        return _hashing.token_for(tenant, labels)  # type: ignore[no-any-return]
    except (TypeError, AttributeError, UnicodeEncodeError):
        raise InvalidRingError("tenant and labels must be strings (see labels_string)") from None


def tokens_for(tenant: str, labels: Sequence[str]) -> npt.NDArray[np.uint32]:
    """``token_for`` for many label strings of one tenant (a Cython loop in the compiled build)."""
    try:
        return _hashing.tokens_for(tenant, list(labels))  # type: ignore[no-any-return]
    except (TypeError, AttributeError, UnicodeEncodeError):
        raise InvalidRingError("tenant and labels must be strings") from None


def fast_token_for(tenant: str, labels: str) -> int:
    """An xxh3-based token for deployments that need no Pyroscope compatibility: a stronger hash
    than FNV-1 (better spread on near-identical label strings), at about the same cost per call."""
    try:
        return _hashing.xxh_token(tenant, labels)  # type: ignore[no-any-return]
    except (TypeError, AttributeError, UnicodeEncodeError):
        raise InvalidRingError("tenant and labels must be strings") from None
