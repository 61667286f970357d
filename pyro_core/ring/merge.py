# The ring-state CRDT: dskit's Desc.Merge as a pure function over RingDesc.
# Owns: the merge rules (newer heartbeat wins, LEFT wins a tie, local-CAS tombstoning, normalisation
# of the incoming side, token-conflict resolution) and the delta it returns.
# Must not know: clocks (``now`` is an argument), wire formats, gossip. The token kernels it calls
# (equality, duplicate detection, conflict resolution) come from pyro_core._merge / its pure twin.
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import numpy.typing as npt

from pyro_core import _impl
from pyro_core.ring.errors import InvalidRingError
from pyro_core.ring.model import _EMPTY_TOKENS, InstanceDesc, InstanceState, RingDesc

LEFT = InstanceState.LEFT
LEAVING = InstanceState.LEAVING


def _as_left(inst: InstanceDesc, timestamp: int) -> InstanceDesc:
    return InstanceDesc._trusted(
        inst.id,
        inst.addr,
        timestamp,
        LEFT,
        _EMPTY_TOKENS,
        inst.zone,
        inst.registered_timestamp,
        inst.read_only,
        inst.read_only_updated_timestamp,
        inst.versions,
    )


def _with_tokens(inst: InstanceDesc, tokens: object) -> InstanceDesc:
    return InstanceDesc._trusted(
        inst.id,
        inst.addr,
        inst.timestamp,
        inst.state,
        tokens,  # type: ignore[arg-type]
        inst.zone,
        inst.registered_timestamp,
        inst.read_only,
        inst.read_only_updated_timestamp,
        inst.versions,
    )


def merge_into(
    this: RingDesc,
    other: RingDesc | None,
    *,
    local_cas: bool = False,
    now: int | None = None,
    kernels: SimpleNamespace | None = None,
) -> RingDesc | None:
    """Merge ``other`` into ``this`` (modified in place); return the delta or None for no change."""
    if other is None:
        return None
    if not isinstance(other, RingDesc):
        raise InvalidRingError(f"can only merge a RingDesc, got {type(other).__name__}")
    if local_cas and (
        now is None
        or isinstance(now, bool)
        or not isinstance(now, (int, np.integer))
        or not -(2**63) <= now < 2**63
    ):
        raise InvalidRingError(
            f"a local_cas merge needs now as int64 unix seconds to stamp tombstones, got {now!r}"
        )
    k = (kernels or _impl.kernels()).merge
    mine = this.instances
    updated: list[str] = []
    tokens_changed = False

    for key, o in other.instances.items():
        if o.state == LEFT and len(o.tokens):
            o = _with_tokens(o, _EMPTY_TOKENS)  # normalise: a tombstone holds no tokens
        t = mine.get(key)
        # A missing instance is dskit's zero value: timestamp 0, state ACTIVE, no tokens.
        t_ts = t.timestamp if t is not None else 0
        if o.timestamp > t_ts:
            if t is None:
                tokens_changed = tokens_changed or len(o.tokens) > 0
            elif not k.tokens_equal(t.tokens, o.tokens):
                tokens_changed = True
            elif o.tokens is not t.tokens:
                o = _with_tokens(o, t.tokens)  # share the equal array: less memory, index stays valid
            mine[key] = o
            updated.append(key)
        elif o.timestamp == t_ts and o.state == LEFT and (t is None or t.state != LEFT):
            mine[key] = o  # LEFT wins a tie
            updated.append(key)

    if local_cas:
        assert now is not None
        theirs = other.instances
        for key, t in list(mine.items()):
            if key not in theirs and t.state != LEFT:
                # Stamped now, not kept at its old timestamp: a pending gossip message with a newer
                # heartbeat must not resurrect the deleted instance.
                mine[key] = _as_left(t, int(now))
                updated.append(key)

    if not updated:
        return None

    if tokens_changed:
        resolve_token_conflicts(this, kernels=kernels)

    return RingDesc._trusted({key: mine[key] for key in updated})


def resolve_token_conflicts(desc: RingDesc, *, kernels: SimpleNamespace | None = None) -> bool:
    """If any token is held twice, resolve every conflict as dskit does; return whether it did.

    dskit counts every instance's tokens to decide (a LEFT one's too), then rebuilds all token
    lists: LEFT instances end with none; between other holders a LEAVING instance loses to a
    non-LEAVING one, otherwise the lexicographically lower id wins (a total order: one answer).
    """
    k = (kernels or _impl.kernels()).merge
    if not has_token_conflicts(desc, k):
        return False
    for inst in list(desc.instances.values()):
        if inst.state == LEFT and len(inst.tokens):
            desc.instances[inst.id] = _with_tokens(inst, _EMPTY_TOKENS)
    live = [inst for inst in desc.instances.values() if inst.state != LEFT and len(inst.tokens)]
    # Rank instances by (is LEAVING, id): the lowest rank wins a contested token.
    live.sort(key=lambda inst: (inst.state == LEAVING, inst.id))
    new_tokens = k.resolve_conflicts([inst.tokens for inst in live])
    for inst, tokens in zip(live, new_tokens, strict=True):
        if len(tokens) != len(inst.tokens):
            desc.instances[inst.id] = _with_tokens(inst, tokens)
    desc._token_index = None
    return True


@dataclass(frozen=True, slots=True)
class TokenIndex:
    """Every live token of a RingDesc at some moment, sorted, with its owner.

    Valid for an instance as long as that instance still holds the very token array object the
    index was built from (arrays are immutable, and merges reuse equal arrays), so a check after
    a change only needs to look at the instances whose arrays differ.
    """

    snapshot: dict[str, npt.NDArray[np.uint32]]  # id of each instance holding tokens -> those tokens
    tokens: npt.NDArray[np.uint32]
    owners: npt.NDArray[np.int32]  # index into ids
    ids: list[str]
    has_duplicates: bool


def build_token_index(desc: RingDesc) -> TokenIndex:
    live = [(key, inst.tokens) for key, inst in desc.instances.items() if len(inst.tokens)]
    ids = [key for key, _ in live]
    if live:
        arrays = [tokens for _, tokens in live]
        # Sort (token << 32 | owner) as one uint64: several times faster than a stable argsort.
        keys = np.concatenate(arrays).astype(np.uint64) << np.uint64(32)
        keys |= np.repeat(np.arange(len(live), dtype=np.uint64), [len(a) for a in arrays])
        keys.sort()
        tokens = (keys >> np.uint64(32)).astype(np.uint32)
        owners = (keys & np.uint64(0xFFFFFFFF)).astype(np.int32)
        dup = bool(len(tokens) > 1 and (tokens[1:] == tokens[:-1]).any())
    else:
        tokens, owners, dup = np.empty(0, np.uint32), np.empty(0, np.int32), False
    return TokenIndex(dict(live), tokens, owners, ids, dup)


def has_token_conflicts(desc: RingDesc, k: SimpleNamespace) -> bool:
    """Whether any token is held by two instances, in any state (dskit's conflictingTokensExist).

    Checks only the instances whose tokens changed since the cached index was built; rebuilds the
    index when it is missing, holds duplicates itself, or too much has changed.
    """
    idx = desc._token_index
    if isinstance(idx, TokenIndex) and not idx.has_duplicates:
        changed = k.changed_instances(idx.snapshot, desc.instances)
        if len(changed) <= max(16, len(idx.snapshot) // 8):
            return _changed_conflict(desc, idx, changed)
    if idx is None:
        # First check of this description: a one-off full scan is cheaper than building the
        # index, which pays off only for descriptions merged again and again (a KV store's).
        desc._token_index = _INDEX_NEXT_TIME
        live = [i.tokens for i in desc.instances.values() if len(i.tokens)]
        return bool(k.has_duplicate_tokens(live))
    idx = build_token_index(desc)
    desc._token_index = idx
    return idx.has_duplicates


_INDEX_NEXT_TIME = "build the token index on the next check"


def _changed_conflict(desc: RingDesc, idx: TokenIndex, changed: list[str]) -> bool:
    arrays = []
    for key in changed:
        inst = desc.instances.get(key)
        if inst is not None and len(inst.tokens):
            arrays.append(inst.tokens)
    if not arrays:
        return False
    candidates = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    if len(arrays) > 1 and len(np.unique(candidates)) != len(candidates):
        return True  # two changed instances claim the same token
    if not len(idx.tokens):
        return False
    pos = np.minimum(np.searchsorted(idx.tokens, candidates), len(idx.tokens) - 1)
    hits = pos[idx.tokens[pos] == candidates]
    if not len(hits):
        return False
    # A hit owned by a changed instance is its old token; one owned by any other is a conflict.
    changed_set = set(changed)
    return any(idx.ids[o] not in changed_set for o in idx.owners[hits].tolist())
