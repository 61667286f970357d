# The ring-state CRDT: dskit's Desc.Merge as a pure function over RingDesc.
# Owns: the merge rules (newer heartbeat wins, LEFT wins a tie, local-CAS tombstoning, normalisation
# of the incoming side, token-conflict resolution) and the delta it returns.
# Must not know: clocks (``now`` is an argument), wire formats, gossip. The token kernels it calls
# (equality, duplicate detection, conflict resolution) come from pyro_core._merge / its pure twin.
from __future__ import annotations

from types import SimpleNamespace

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
    if local_cas and now is None:
        raise InvalidRingError("a local_cas merge needs now (unix seconds) to stamp tombstones")
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
    """Give every token held by several instances to one of them; return whether anything changed.

    LEFT instances hold nothing. Between holders a LEAVING instance loses to a non-LEAVING one,
    otherwise the lexicographically lower id wins (a total order, so the result is unique).
    """
    k = (kernels or _impl.kernels()).merge
    live = [inst for inst in desc.instances.values() if inst.state != LEFT and len(inst.tokens)]
    if not k.has_duplicate_tokens([inst.tokens for inst in live]):
        return False
    # Rank instances by (is LEAVING, id): the lowest rank wins a contested token.
    live.sort(key=lambda inst: (inst.state == LEAVING, inst.id))
    new_tokens = k.resolve_conflicts([inst.tokens for inst in live])
    for inst, tokens in zip(live, new_tokens, strict=True):
        if len(tokens) != len(inst.tokens):
            desc.instances[inst.id] = _with_tokens(inst, tokens)
    return True
