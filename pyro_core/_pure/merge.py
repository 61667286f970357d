# Pure-Python twin of pyro_core._merge: the token kernels behind the ring-state merge.
# Owns: token-list equality, "is any token held twice", and conflict resolution by rank, written
# to read like dskit's model.go rules. Must not know about RingDesc: it sees token arrays only.
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Tokens = npt.NDArray[np.uint32]


def tokens_equal(a: Tokens, b: Tokens) -> bool:
    """Whether two sorted token lists are equal."""
    return a is b or (len(a) == len(b) and bool(np.array_equal(a, b)))


def has_duplicate_tokens(arrays: Sequence[Tokens]) -> bool:
    """Whether any token appears in more than one of the (individually duplicate-free) arrays."""
    seen: set[int] = set()
    for arr in arrays:
        for token in arr.tolist():
            if token in seen:
                return True
            seen.add(token)
    return False


def resolve_conflicts(arrays: Sequence[Tokens]) -> list[Tokens]:
    """Arrays are given in rank order (index 0 wins every contested token); return each one's
    tokens after resolution, sorted and read-only."""
    owner: dict[int, int] = {}
    for rank, arr in enumerate(arrays):
        for token in arr.tolist():
            if token not in owner:  # an earlier (lower) rank already holds it and keeps it
                owner[token] = rank
    kept: list[list[int]] = [[] for _ in arrays]
    for token, rank in owner.items():
        kept[rank].append(token)
    out = []
    for tokens in kept:
        arr = np.array(sorted(tokens), dtype=np.uint32)
        arr.flags.writeable = False
        out.append(arr)
    return out


def changed_instances(snapshot: dict[str, Tokens], instances: dict[str, object]) -> list[str]:
    """Ids whose tokens are not the array object ``snapshot`` recorded for them: instances added
    with tokens, removed, or given other tokens (empty ones included) since the snapshot."""
    changed = []
    for key, inst in instances.items():
        tokens = inst.tokens  # type: ignore[attr-defined]
        old = snapshot.get(key)
        if old is tokens:
            continue
        if len(tokens) > 0 or old is not None:
            changed.append(key)
    for key in snapshot:
        if key not in instances:
            changed.append(key)
    return changed
