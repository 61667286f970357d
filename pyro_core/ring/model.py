# The ring's data model: instance states, operations, InstanceDesc and RingDesc.
# Owns: the shape of a ring description (dskit ring.proto's Desc / InstanceDesc), validation of what a
# user builds, health rules (state bitmasks + heartbeat timeout), and the CRDT merge entry point.
# Must not know: lookups (ring.py), wire formats (codec.py, dskit_codec.py), clocks or I/O — every
# time is an argument.
from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from pyro_core.ring.errors import InvalidRingError

TokenArray = npt.NDArray[np.uint32]
UINT32_MAX = 0xFFFFFFFF


class InstanceState(enum.IntEnum):
    """An instance's lifecycle state, with dskit's numeric values (ring.proto)."""

    ACTIVE = 0
    LEAVING = 1
    PENDING = 2
    JOINING = 3
    LEFT = 4  # a gossip-only tombstone: the instance has left the ring


# Operations are bitmasks (dskit ring.Operation): bit 1<<state = the state is healthy for the
# operation; bit 0x10000<<state = meeting an instance in that state extends the replica set.
def make_operation(healthy: Iterable[InstanceState], extend_on: Iterable[InstanceState] = ()) -> int:
    """Build an operation bitmask from the states healthy for it and the states that extend a set."""
    op = 0
    for s in healthy:
        op |= 1 << int(s)
    for s in extend_on:
        op |= 0x10000 << int(s)
    return op


_ALL_STATES = tuple(InstanceState)
WRITE = make_operation([InstanceState.ACTIVE], [s for s in _ALL_STATES if s != InstanceState.ACTIVE])
WRITE_NO_EXTEND = make_operation([InstanceState.ACTIVE])
READ = make_operation(
    [InstanceState.ACTIVE, InstanceState.PENDING, InstanceState.LEAVING],
    [s for s in _ALL_STATES if s not in (InstanceState.ACTIVE, InstanceState.LEAVING)],
)
REPORTING = 0xFFFF


def is_state_healthy(op: int, state: int) -> bool:
    return bool(op & (1 << state))


def extends_on_state(op: int, state: int) -> bool:
    return bool(op & (0x10000 << state))


def as_tokens(tokens: Any) -> TokenArray:
    """Validate and normalise tokens: integers in [0, 2**32), sorted, without duplicates.

    The returned array is read-only, so descriptions can share it safely.
    """
    if isinstance(tokens, np.ndarray) and tokens.dtype == np.uint32:
        arr = tokens
    else:
        try:
            raw = np.asarray(tokens if tokens is not None else [])
        except (TypeError, ValueError) as exc:
            raise InvalidRingError(f"tokens must be integers in [0, 2**32): {exc}") from None
        if raw.size == 0:
            arr = np.empty(0, dtype=np.uint32)
        elif raw.dtype.kind not in "iu":
            if raw.dtype == object and all(isinstance(t, int) for t in raw.ravel()):
                raw = np.array([int(t) for t in raw.ravel()], dtype=object)
                if any(t < 0 or t > UINT32_MAX for t in raw):
                    raise InvalidRingError("tokens must be integers in [0, 2**32)")
                arr = raw.astype(np.uint32)
            else:
                raise InvalidRingError(f"tokens must be integers in [0, 2**32), got dtype {raw.dtype}")
        else:
            if raw.ndim != 1:
                raise InvalidRingError("tokens must be a flat sequence")
            if raw.size and (int(raw.min()) < 0 or int(raw.max()) > UINT32_MAX):
                raise InvalidRingError("tokens must be integers in [0, 2**32)")
            arr = raw.astype(np.uint32)
    if arr.ndim != 1:
        raise InvalidRingError("tokens must be a flat sequence")
    if arr.size > 1 and not bool(np.all(arr[1:] > arr[:-1])):
        arr = np.unique(arr)
    elif arr.base is not None or arr.flags.writeable:
        arr = arr.copy()
    arr.flags.writeable = False
    return arr


_EMPTY_TOKENS = as_tokens([])


class InstanceDesc:
    """One instance of a ring (dskit InstanceDesc). Treat it as immutable: use ``replace``.

    Times are unix seconds: ``timestamp`` is the last heartbeat, ``registered_timestamp`` the
    registration (0 = unknown), ``read_only_updated_timestamp`` the last read-only change.
    """

    __slots__ = (
        "addr",
        "id",
        "read_only",
        "read_only_updated_timestamp",
        "registered_timestamp",
        "state",
        "timestamp",
        "tokens",
        "versions",
        "zone",
    )

    id: str
    addr: str
    timestamp: int
    state: InstanceState
    tokens: TokenArray
    zone: str
    registered_timestamp: int
    read_only: bool
    read_only_updated_timestamp: int
    versions: dict[int, int]

    def __init__(
        self,
        *,
        id: str = "",
        addr: str = "",
        timestamp: int = 0,
        state: InstanceState | int = InstanceState.ACTIVE,
        tokens: Any = None,
        zone: str = "",
        registered_timestamp: int = 0,
        read_only: bool = False,
        read_only_updated_timestamp: int = 0,
        versions: Mapping[int, int] | None = None,
    ) -> None:
        if not isinstance(id, str) or not isinstance(addr, str) or not isinstance(zone, str):
            raise InvalidRingError("id, addr and zone must be strings")
        try:
            st = InstanceState(state)
        except ValueError:
            raise InvalidRingError(f"unknown instance state {state!r}") from None
        for name, value in (
            ("timestamp", timestamp),
            ("registered_timestamp", registered_timestamp),
            ("read_only_updated_timestamp", read_only_updated_timestamp),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InvalidRingError(f"{name} must be an integer (unix seconds), got {value!r}")
            if not -(2**63) <= int(value) < 2**63:
                raise InvalidRingError(f"{name} does not fit in int64: {value}")
        self.id = id
        self.addr = addr
        self.timestamp = int(timestamp)
        self.state = st
        self.tokens = as_tokens(tokens)
        self.zone = zone
        self.registered_timestamp = int(registered_timestamp)
        if not isinstance(read_only, (bool, np.bool_)):
            raise InvalidRingError(f"read_only must be a bool, got {read_only!r}")
        self.read_only = bool(read_only)
        self.read_only_updated_timestamp = int(read_only_updated_timestamp)
        self.versions = dict(versions) if versions else {}
        for k, v in self.versions.items():
            if not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**64 for x in (k, v)):
                raise InvalidRingError(f"versions must map uint64 to uint64, got {k!r}: {v!r}")

    @classmethod
    def _trusted(
        cls,
        id: str,
        addr: str,
        timestamp: int,
        state: InstanceState,
        tokens: TokenArray,
        zone: str,
        registered_timestamp: int,
        read_only: bool,
        read_only_updated_timestamp: int,
        versions: dict[int, int],
    ) -> InstanceDesc:
        """Build without validation: for codecs and merges whose inputs are already checked."""
        self = object.__new__(cls)
        self.id = id
        self.addr = addr
        self.timestamp = timestamp
        self.state = state
        self.tokens = tokens
        self.zone = zone
        self.registered_timestamp = registered_timestamp
        self.read_only = read_only
        self.read_only_updated_timestamp = read_only_updated_timestamp
        self.versions = versions
        return self

    def replace(self, **changes: Any) -> InstanceDesc:
        """A copy with some fields changed (validated like the constructor)."""
        fields: dict[str, Any] = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        return InstanceDesc(**fields)

    def is_heartbeat_healthy(self, heartbeat_timeout: float, now: float) -> bool:
        return now - self.timestamp <= heartbeat_timeout

    def is_healthy(self, op: int, heartbeat_timeout: float, now: float | None) -> bool:
        """Healthy for ``op``: a healthy state and, when ``now`` is given, a fresh heartbeat."""
        if not op & (1 << self.state):
            return False
        return now is None or now - self.timestamp <= heartbeat_timeout

    def same_topology(self, other: InstanceDesc) -> bool:
        """Equal but for state and heartbeat (dskit RingCompare's EqualButStatesAndTimestamps)."""
        return (
            self.addr == other.addr
            and self.zone == other.zone
            and self.registered_timestamp == other.registered_timestamp
            and self.read_only == other.read_only
            and self.read_only_updated_timestamp == other.read_only_updated_timestamp
            and (self.tokens is other.tokens or np.array_equal(self.tokens, other.tokens))
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InstanceDesc):
            return NotImplemented
        return (
            self.id == other.id
            and self.timestamp == other.timestamp
            and self.state == other.state
            and self.versions == other.versions
            and self.same_topology(other)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"InstanceDesc(id={self.id!r}, addr={self.addr!r}, zone={self.zone!r}, "
            f"state={self.state.name}, timestamp={self.timestamp}, tokens=<{len(self.tokens)} tokens>"
            + (", read_only=True" if self.read_only else "")
            + ")"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "addr": self.addr,
            "timestamp": self.timestamp,
            "state": self.state.name,
            "tokens": self.tokens.tolist(),
            "zone": self.zone,
            "registered_timestamp": self.registered_timestamp,
            "read_only": self.read_only,
            "read_only_updated_timestamp": self.read_only_updated_timestamp,
            "versions": dict(self.versions),
        }


class RingDesc:
    """A ring description: instances by id (dskit ``Desc``). Mergeable as a CRDT with ``merge``."""

    __slots__ = ("_token_index", "instances")

    instances: dict[str, InstanceDesc]
    _token_index: Any  # merge.TokenIndex cache (or a marker), validated by token-array identity on use

    def __init__(self, instances: Mapping[str, InstanceDesc] | None = None) -> None:
        result: dict[str, InstanceDesc] = {}
        for key, inst in (instances or {}).items():
            if not isinstance(key, str):
                raise InvalidRingError(f"instance ids must be strings, got {key!r}")
            if not isinstance(inst, InstanceDesc):
                raise InvalidRingError(f"instance {key!r} is not an InstanceDesc: {inst!r}")
            if inst.id != key:
                if inst.id:
                    raise InvalidRingError(f"instance stored under {key!r} has id {inst.id!r}")
                inst = inst.replace(id=key)  # dskit fills missing ids from the map key
            result[key] = inst
        self.instances = result
        self._token_index = None

    @classmethod
    def from_instances(cls, instances: Iterable[InstanceDesc]) -> RingDesc:
        """Build from a list of instances; a duplicate id is an error."""
        out: dict[str, InstanceDesc] = {}
        for inst in instances:
            if not inst.id:
                raise InvalidRingError("every instance needs an id")
            if inst.id in out:
                raise InvalidRingError(f"duplicate instance id {inst.id!r}")
            out[inst.id] = inst
        return cls(out)

    @classmethod
    def _trusted(cls, instances: dict[str, InstanceDesc]) -> RingDesc:
        self = object.__new__(cls)
        self.instances = instances
        self._token_index = None
        return self

    # -- mapping-like access -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.instances)

    def __iter__(self) -> Iterator[str]:
        return iter(self.instances)

    def __contains__(self, instance_id: object) -> bool:
        return instance_id in self.instances

    def __getitem__(self, instance_id: str) -> InstanceDesc:
        return self.instances[instance_id]

    def get(self, instance_id: str) -> InstanceDesc | None:
        return self.instances.get(instance_id)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RingDesc):
            return NotImplemented
        return self.instances == other.instances

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RingDesc(<{len(self.instances)} instances: {', '.join(sorted(self.instances)[:5])}...>)"

    def copy(self) -> RingDesc:
        """A copy whose map can be changed; instance descriptions are shared (they are immutable)."""
        out = RingDesc._trusted(dict(self.instances))
        out._token_index = self._token_index  # immutable and validated on use: safe to share
        return out

    def tokens(self) -> TokenArray:
        """Every token of the ring, sorted."""
        arrays = [i.tokens for i in self.instances.values() if len(i.tokens)]
        if not arrays:
            return _EMPTY_TOKENS
        return np.sort(np.concatenate(arrays))

    def add_instance(
        self,
        id: str,
        addr: str,
        *,
        zone: str = "",
        tokens: Any = None,
        state: InstanceState = InstanceState.ACTIVE,
        now: int,
        registered_timestamp: int | None = None,
        read_only: bool = False,
        read_only_updated_timestamp: int = 0,
    ) -> InstanceDesc:
        """Register (or replace) an instance with a heartbeat at ``now`` (dskit AddIngester)."""
        inst = InstanceDesc(
            id=id,
            addr=addr,
            timestamp=now,
            state=state,
            tokens=tokens,
            zone=zone,
            registered_timestamp=now if registered_timestamp is None else registered_timestamp,
            read_only=read_only,
            read_only_updated_timestamp=read_only_updated_timestamp,
        )
        self.instances[id] = inst
        return inst

    def remove_instance(self, instance_id: str) -> None:
        self.instances.pop(instance_id, None)

    # -- the CRDT ------------------------------------------------------------------------------
    def merge(
        self, other: RingDesc | None, local_cas: bool = False, now: int | None = None
    ) -> RingDesc | None:
        """Merge ``other`` into this description; return the change (delta) or None.

        Per instance the newer heartbeat timestamp wins; at an equal timestamp only LEFT wins.
        ``local_cas=True`` treats ``other`` as the full new state: instances missing from it
        become LEFT tombstones stamped ``now`` (required then). Token conflicts are resolved
        (a LEAVING holder loses, else the lower id wins). See ``pyro_core.ring.merge``.
        """
        from pyro_core.ring.merge import merge_into

        return merge_into(self, other, local_cas=local_cas, now=now)

    def remove_tombstones(self, limit: int = 0) -> tuple[int, int]:
        """Delete LEFT entries whose timestamp is before ``limit`` (all of them when 0).

        Returns (tombstones kept, tombstones removed) like dskit's RemoveTombstones.
        """
        kept = removed = 0
        for key in [k for k, i in self.instances.items() if i.state == InstanceState.LEFT]:
            if limit == 0 or self.instances[key].timestamp < limit:
                del self.instances[key]
                removed += 1
            else:
                kept += 1
        return kept, removed

    def without_tombstones(self) -> RingDesc:
        return RingDesc._trusted({k: i for k, i in self.instances.items() if i.state != InstanceState.LEFT})

    # -- codecs (see codec.py / dskit_codec.py) -------------------------------------------------
    def to_bytes(self) -> bytes:
        """The fast native encoding (msgpack, tokens as little-endian uint32 bytes)."""
        from pyro_core.ring.codec import encode_ring

        return encode_ring(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> RingDesc:
        from pyro_core.ring.codec import decode_ring

        return decode_ring(data)

    def to_dskit(self) -> bytes:
        """dskit's ``ringDesc`` codec: protobuf ``ring.Desc`` compressed as a snappy block."""
        from pyro_core.ring.dskit_codec import encode_dskit

        return encode_dskit(self)

    @classmethod
    def from_dskit(cls, data: bytes) -> RingDesc:
        from pyro_core.ring.dskit_codec import decode_dskit

        return decode_dskit(data)
