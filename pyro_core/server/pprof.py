# pprof profiles as Pyroscope clients send them (sans-I/O: bytes in, objects out).
# Owns: the schema of google/pprof's profile.proto (package perftools.profiles), built at import time
# from a FileDescriptorProto written here (no protoc step); bounded decoding of raw or gzipped
# profiles; the conversion of a profile into Pyroscope series (one per sample type and label set,
# folded stacks root→leaf, cumulative types diffed against a previous profile); the sample type
# config of the legacy ingest; the multipart/form-data body of the legacy pprof form upload;
# encode_profile, which builds profiles for tests and for remote write.
# Must not know: HTTP, tenants, storage, the ingest name syntax beyond what a tag must not contain.
from __future__ import annotations

import email.parser
import email.policy
import gzip
import json
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory

MAX_PROFILE_SIZE: Final = 4 * 1024 * 1024  # Grafana Pyroscope's per-tenant default (uncompressed)
GZIP_MAGIC: Final = b"\x1f\x8b"


class ProfileError(ValueError):
    """The body is not a usable profile (the HTTP layer answers 422, or 400 for a bad form)."""


class ProfileTooLargeError(ProfileError):
    """The profile, once decompressed, is larger than allowed (the HTTP layer answers 413)."""


# -- the schema ----------------------------------------------------------------------------------
_F = descriptor_pb2.FieldDescriptorProto
_REPEATED: Final = _F.LABEL_REPEATED
_OPTIONAL: Final = _F.LABEL_OPTIONAL


def _json_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _message(
    f: descriptor_pb2.FileDescriptorProto, name: str, fields: Sequence[tuple[str, int, int, bool, str]]
) -> None:
    msg = f.message_type.add(name=name)
    for field_name, number, type_, repeated, type_name in fields:
        fd = msg.field.add(
            name=field_name, number=number, type=type_, label=_REPEATED if repeated else _OPTIONAL
        )
        if type_name:
            fd.type_name = type_name
        fd.json_name = _json_name(field_name)


def _profile_file() -> descriptor_pb2.FileDescriptorProto:
    """google/pprof proto/profile.proto (package perftools.profiles, proto3).

    ``string_table`` is declared ``repeated bytes`` rather than ``repeated string``: the wire format is
    the same, and real profiles may hold symbol names that are not valid UTF-8, which a proto3
    ``string`` field would reject. Strings are decoded (with replacement) when read.
    """
    f = descriptor_pb2.FileDescriptorProto(
        name="perftools/profiles/profile.proto", package="perftools.profiles", syntax="proto3"
    )
    i64, u64, b, s = _F.TYPE_INT64, _F.TYPE_UINT64, _F.TYPE_BOOL, _F.TYPE_BYTES
    msg = _F.TYPE_MESSAGE
    p = ".perftools.profiles."
    _message(f, "Profile", [
        ("sample_type", 1, msg, True, p + "ValueType"),
        ("sample", 2, msg, True, p + "Sample"),
        ("mapping", 3, msg, True, p + "Mapping"),
        ("location", 4, msg, True, p + "Location"),
        ("function", 5, msg, True, p + "Function"),
        ("string_table", 6, s, True, ""),
        ("drop_frames", 7, i64, False, ""),
        ("keep_frames", 8, i64, False, ""),
        ("time_nanos", 9, i64, False, ""),
        ("duration_nanos", 10, i64, False, ""),
        ("period_type", 11, msg, False, p + "ValueType"),
        ("period", 12, i64, False, ""),
        ("comment", 13, i64, True, ""),
        ("default_sample_type", 14, i64, False, ""),
        ("doc_url", 15, _F.TYPE_STRING, False, ""),
    ])  # fmt: skip
    _message(f, "ValueType", [("type", 1, i64, False, ""), ("unit", 2, i64, False, "")])
    _message(f, "Sample", [
        ("location_id", 1, u64, True, ""),
        ("value", 2, i64, True, ""),
        ("label", 3, msg, True, p + "Label"),
    ])  # fmt: skip
    _message(f, "Label", [
        ("key", 1, i64, False, ""),
        ("str", 2, i64, False, ""),
        ("num", 3, i64, False, ""),
        ("num_unit", 4, i64, False, ""),
    ])  # fmt: skip
    _message(f, "Mapping", [
        ("id", 1, u64, False, ""),
        ("memory_start", 2, u64, False, ""),
        ("memory_limit", 3, u64, False, ""),
        ("file_offset", 4, u64, False, ""),
        ("filename", 5, i64, False, ""),
        ("build_id", 6, i64, False, ""),
        ("has_functions", 7, b, False, ""),
        ("has_filenames", 8, b, False, ""),
        ("has_line_numbers", 9, b, False, ""),
        ("has_inline_frames", 10, b, False, ""),
    ])  # fmt: skip
    _message(f, "Location", [
        ("id", 1, u64, False, ""),
        ("mapping_id", 2, u64, False, ""),
        ("address", 3, u64, False, ""),
        ("line", 4, msg, True, p + "Line"),
        ("is_folded", 5, b, False, ""),
    ])  # fmt: skip
    _message(f, "Line", [
        ("function_id", 1, u64, False, ""),
        ("line", 2, i64, False, ""),
        ("column", 3, i64, False, ""),
    ])  # fmt: skip
    _message(f, "Function", [
        ("id", 1, u64, False, ""),
        ("name", 2, i64, False, ""),
        ("system_name", 3, i64, False, ""),
        ("filename", 4, i64, False, ""),
        ("start_line", 5, i64, False, ""),
    ])  # fmt: skip
    return f


_POOL: Final = descriptor_pool.DescriptorPool()  # private: no clash with another perftools schema
_POOL.Add(_profile_file())


def _message_class(full_name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(full_name))


PbProfile: Final[Any] = _message_class("perftools.profiles.Profile")
PbValueType: Final[Any] = _message_class("perftools.profiles.ValueType")
PbSample: Final[Any] = _message_class("perftools.profiles.Sample")
PbLabel: Final[Any] = _message_class("perftools.profiles.Label")
PbMapping: Final[Any] = _message_class("perftools.profiles.Mapping")
PbLocation: Final[Any] = _message_class("perftools.profiles.Location")
PbLine: Final[Any] = _message_class("perftools.profiles.Line")
PbFunction: Final[Any] = _message_class("perftools.profiles.Function")


# -- decoding ------------------------------------------------------------------------------------
def gunzip_bounded(data: bytes, max_size: int) -> bytes:
    """Decompress gzip ``data`` (several members allowed), never producing more than ``max_size`` bytes.

    Raises ProfileTooLargeError past the bound (a gzip bomb costs at most ``max_size`` of memory) and
    ProfileError for a corrupt or truncated stream.
    """
    out = bytearray()
    rest = data
    while True:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += d.decompress(rest, max_size - len(out) + 1)
        except zlib.error as e:
            raise ProfileError(f"invalid gzip data: {e}") from None
        if len(out) > max_size:
            raise ProfileTooLargeError(f"decompressed profile larger than {max_size} bytes")
        if not d.eof:
            raise ProfileError("invalid gzip data: truncated stream")
        rest = d.unused_data
        if not rest:
            return bytes(out)
        if not rest.startswith(GZIP_MAGIC):
            raise ProfileError("invalid gzip data: trailing garbage after the compressed stream")


def decode_profile(data: bytes, *, max_size: int = MAX_PROFILE_SIZE) -> Any:
    return decode_profile_index(data, max_size=max_size).profile


def decode_profile_index(data: bytes, *, max_size: int = MAX_PROFILE_SIZE) -> ProfileIndex:
    """A ``perftools.profiles.Profile`` message (``decode_profile``), or its checked index
    (``decode_profile_index``: ``.profile`` is the message; pass it to profile_to_series to skip a
    second check), from raw or gzipped (sniffed: ``1f 8b``) protobuf.

    ``max_size`` bounds the uncompressed profile. Raises ProfileTooLargeError past it and ProfileError
    for anything else that is not a consistent profile (checked like ``profile_to_series`` reads it).
    """
    data = bytes(data)
    if data.startswith(GZIP_MAGIC):
        data = gunzip_bounded(data, max_size)
    elif len(data) > max_size:
        raise ProfileTooLargeError(f"profile larger than {max_size} bytes")
    if not data:
        raise ProfileError("empty profile")
    profile = PbProfile()
    try:
        profile.ParseFromString(data)
    except (message.DecodeError, RuntimeError, ValueError) as e:
        raise ProfileError(f"invalid pprof protobuf: {e}") from None
    return _ProfileIndex(profile)  # validates


class _ProfileIndex:
    """The string table, functions and locations of one profile, checked for consistency."""

    __slots__ = ("_frames", "functions", "locations", "profile", "strings")

    def __init__(self, profile: Any) -> None:
        self.profile = profile
        table = profile.string_table
        if not table or table[0] != b"":
            raise ProfileError("malformed profile: string_table must start with an empty string")
        self.strings: list[str] = [s.decode("utf-8", "replace") for s in table]
        n = len(self.strings)

        def string(i: int, what: str) -> str:
            if not 0 <= i < n:
                raise ProfileError(f"malformed profile: {what} string index {i} out of range")
            return self.strings[i]

        self.functions: dict[int, str] = {}
        for fn in profile.function:
            if fn.id == 0 or fn.id in self.functions:
                raise ProfileError(f"malformed profile: function id {fn.id} is zero or duplicated")
            name = string(fn.name, "function name") or string(fn.system_name, "function system name")
            string(fn.filename, "function filename")
            self.functions[fn.id] = name
        self.locations: dict[int, tuple[str, ...]] = {}  # frames of a location, leaf (innermost) first
        for loc in profile.location:
            if loc.id == 0 or loc.id in self.locations:
                raise ProfileError(f"malformed profile: location id {loc.id} is zero or duplicated")
            frames = []
            for ln in loc.line:  # a location's lines: the inlined callee first, its caller last
                fname = self.functions.get(ln.function_id) if ln.function_id else ""
                if fname is None:
                    raise ProfileError(f"malformed profile: function id {ln.function_id} not found")
                frames.append(fname or f"0x{loc.address:x}")
            self.locations[loc.id] = tuple(frames) if frames else (f"0x{loc.address:x}",)
        for vt in profile.sample_type:
            string(vt.type, "sample type")
            string(vt.unit, "sample unit")
        string(profile.period_type.type, "period type")
        string(profile.period_type.unit, "period unit")
        n_types = len(profile.sample_type)
        for sample in profile.sample:
            if len(sample.value) != n_types:
                raise ProfileError(
                    f"malformed profile: a sample has {len(sample.value)} values for {n_types} sample types"
                )
            for lid in sample.location_id:
                if lid not in self.locations:
                    raise ProfileError(f"malformed profile: location id {lid} not found")
            for label in sample.label:
                string(label.key, "label key")
                string(label.str, "label value")
        self._frames: dict[tuple[int, ...], bytes] = {}

    def stack(self, location_ids: Sequence[int]) -> bytes:
        """The folded stack of a sample: function names root→leaf joined by ';' (b'' when empty)."""
        ids = tuple(location_ids)
        key = self._frames.get(ids)
        if key is None:
            frames: list[str] = []
            for lid in ids:  # leaf first
                frames.extend(self.locations[lid])
            frames.reverse()
            key = ";".join(frames).encode()
            self._frames[ids] = key
        return key


# -- sample type config --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SampleTypeConfig:
    units: str = ""  # "" → derived from the pprof unit
    display_name: str = ""  # "" → the sample type itself
    aggregation: str = "sum"  # "sum" or "average"
    cumulative: bool = False  # values accumulate over the process lifetime: diff against prev_profile
    sampled: bool = False  # the sample rate is 1 s / period


# What Pyroscope clients send without a sample_type_config (Go runtime profiles and pyroscope-rs).
DEFAULT_SAMPLE_TYPE_CONFIG: Final[Mapping[str, SampleTypeConfig]] = {
    "samples": SampleTypeConfig(units="samples", display_name="cpu", sampled=True),
    "cpu": SampleTypeConfig(units="samples", sampled=True),
    "wall": SampleTypeConfig(units="samples", sampled=True),
    "inuse_objects": SampleTypeConfig(units="objects", aggregation="average"),
    "alloc_objects": SampleTypeConfig(units="objects", cumulative=True),
    "inuse_space": SampleTypeConfig(units="bytes", aggregation="average"),
    "alloc_space": SampleTypeConfig(units="bytes", cumulative=True),
    "goroutine": SampleTypeConfig(units="goroutines", display_name="goroutines", aggregation="average"),
    "contentions": SampleTypeConfig(units="lock_samples", display_name="mutex_count", cumulative=True),
    "delay": SampleTypeConfig(units="lock_nanoseconds", display_name="mutex_duration", cumulative=True),
}

_APP_NAME_PART: Final = re.compile(r"[A-Za-z0-9_.-]+")
_TAG_KEY: Final = re.compile(r"[A-Za-z0-9_]+")
_BAD_TAG_VALUE: Final = re.compile(r"[,{}=\n]")


def parse_sample_type_config(data: bytes | str | Mapping[str, Any]) -> dict[str, SampleTypeConfig]:
    """The ``sample_type_config`` form field: JSON ``{type: {units, display-name, aggregation,
    cumulative, sampled}}`` (every key optional). Raises ProfileError when it is not such an object."""
    if isinstance(data, bytes | str):
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError) as e:
            raise ProfileError(f"sample_type_config is not valid JSON: {e}") from None
    else:
        obj = data
    if not isinstance(obj, Mapping):
        raise ProfileError("sample_type_config must be a JSON object")
    out: dict[str, SampleTypeConfig] = {}
    for type_, conf in obj.items():
        if not isinstance(conf, Mapping):
            raise ProfileError(f"sample_type_config[{type_!r}] must be a JSON object")
        units = conf.get("units") or ""
        display = conf.get("display-name") or ""
        aggregation = conf.get("aggregation") or "sum"
        cumulative = conf.get("cumulative", False)
        sampled = conf.get("sampled", False)
        if not all(isinstance(v, str) for v in (units, display, aggregation)):
            raise ProfileError(
                f"sample_type_config[{type_!r}]: units, display-name and aggregation must be strings"
            )
        if not isinstance(cumulative, bool) or not isinstance(sampled, bool):
            raise ProfileError(f"sample_type_config[{type_!r}]: cumulative and sampled are booleans")
        if display and not _APP_NAME_PART.fullmatch(display):
            raise ProfileError(f"sample_type_config[{type_!r}]: invalid display-name {display!r}")
        out[str(type_)] = SampleTypeConfig(
            units=units,
            display_name=display,
            aggregation="average" if aggregation == "average" else "sum",
            cumulative=cumulative,
            sampled=sampled,
        )
    return out


# -- profile → series ----------------------------------------------------------------------------
@dataclass(slots=True)
class Series:
    """One Pyroscope series from a profile: ``name`` is ``app.<type>``, ``stacks`` maps folded stacks
    (root→leaf, ';'-joined, UTF-8) to their summed positive values."""

    name: str
    tags: dict[str, str]
    units: str
    aggregation: str
    stacks: dict[bytes, int] = field(default_factory=dict)
    sample_rate: int | None = None  # 1 s / period for sampled types; None: the caller's default


def _derived_units(unit: str) -> str:
    return "samples" if unit in ("", "count") else unit


#: A decoded profile with its checked tables (what decode_profile_index returns).
ProfileIndex = _ProfileIndex


def _sample_tags(index: _ProfileIndex, sample: Any) -> tuple[tuple[str, str], ...]:
    """A sample's string labels usable as tags, sorted (keys ``[A-Za-z0-9_]+`` other than
    ``__name__``, non-empty values without ``, { } =``; numeric labels are ignored)."""
    if not sample.label:
        return ()
    strings = index.strings
    tags = {}
    for label in sample.label:
        if not label.str:
            continue
        key, value = strings[label.key], strings[label.str]
        if key == "__name__" or not _TAG_KEY.fullmatch(key) or _BAD_TAG_VALUE.search(value):
            continue
        tags[key] = value
    return tuple(sorted(tags.items()))


def _collect(index: _ProfileIndex, value_index: int) -> dict[tuple[tuple[str, str], ...], dict[bytes, int]]:
    """Raw sums per (label set, stack) for one sample type; zero values and empty stacks skipped."""
    out: dict[tuple[tuple[str, str], ...], dict[bytes, int]] = {}
    for sample in index.profile.sample:
        value = sample.value[value_index]
        if value == 0 or not sample.location_id:
            continue
        stacks = out.setdefault(_sample_tags(index, sample), {})
        key = index.stack(sample.location_id)
        stacks[key] = stacks.get(key, 0) + value
    return out


def profile_to_series(
    profile: Any,
    *,
    app_name: str,
    base_tags: Mapping[str, str] | None = None,
    sample_type_config: Mapping[str, SampleTypeConfig] | None = None,
    prev_profile: Any = None,
) -> list[Series]:
    """Pyroscope series from a decoded profile (or a ProfileIndex): one per sample type and sample
    label set.

    The series name is ``app_name.<display-name or type>``; its tags are ``base_tags`` overridden by the
    sample's string labels. ``sample_type_config`` (default: DEFAULT_SAMPLE_TYPE_CONFIG) supplies units,
    display name, aggregation and whether a type is cumulative (then, given ``prev_profile``, each stack's
    value is the difference with the previous profile, clamped at 0) or sampled (``sample_rate`` = 1 s /
    period; when the type's unit is the period's, e.g. cpu nanoseconds with a 10 ms period, values are
    divided by the period, rounded: they become sample counts, as ``samples`` units say).
    Types it does not list keep their own name and their pprof unit (``count`` → ``samples``).
    When two types would produce the same name, the first one wins. Stacks with a value ≤ 0 are dropped;
    series left with no stacks are omitted. Raises ProfileError for an inconsistent profile.
    """
    config = DEFAULT_SAMPLE_TYPE_CONFIG if sample_type_config is None else sample_type_config
    base = dict(base_tags or {})
    index = profile if isinstance(profile, _ProfileIndex) else _ProfileIndex(profile)
    profile = index.profile
    prev_index: _ProfileIndex | None = None
    if isinstance(prev_profile, _ProfileIndex):
        prev_index, prev_profile = prev_profile, prev_profile.profile
    elif prev_profile is not None:
        prev_index = _ProfileIndex(prev_profile)
    prev_types = (
        {prev_index.strings[vt.type]: i for i, vt in enumerate(prev_profile.sample_type)}
        if prev_index is not None
        else {}
    )
    series: list[Series] = []
    seen_names: set[str] = set()
    for i, vt in enumerate(profile.sample_type):
        type_, unit = index.strings[vt.type], index.strings[vt.unit]
        conf = config.get(type_, SampleTypeConfig())
        name = f"{app_name}.{conf.display_name or type_}"
        if name in seen_names:
            continue
        seen_names.add(name)
        sample_rate = None
        scale = 1  # a sampled type measured in the period's unit (cpu nanoseconds) is stored as ticks
        if conf.sampled and profile.period > 0:
            sample_rate = max(1, round(1_000_000_000 / profile.period))
            if unit and unit == index.strings[profile.period_type.unit]:
                scale = profile.period
        current = _collect(index, i)
        if conf.cumulative and prev_index is not None and type_ in prev_types:
            previous = _collect(prev_index, prev_types[type_])
            for tags, stacks in current.items():
                before = previous.get(tags, {})
                for key in stacks:
                    stacks[key] -= before.get(key, 0)
        for tags, stacks in current.items():
            if scale != 1:
                stacks = {k: (v + scale // 2) // scale for k, v in stacks.items()}
            kept = {k: v for k, v in stacks.items() if v > 0}
            if kept:
                series.append(
                    Series(
                        name=name,
                        tags={**base, **dict(tags)},
                        units=conf.units or _derived_units(unit),
                        aggregation=conf.aggregation,
                        stacks=kept,
                        sample_rate=sample_rate,
                    )
                )
    return series


# -- multipart/form-data -------------------------------------------------------------------------
def parse_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    """The named fields of a ``multipart/form-data`` body (RFC 7578), each as raw bytes.

    Raises ProfileError for another content type, a missing boundary, a body that does not start
    with or never closes its boundary, or a part without a name.
    """
    header = email.parser.BytesHeaderParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
    )
    if header.get_content_type() != "multipart/form-data":
        raise ProfileError(f"expected multipart/form-data, got {content_type!r}")
    if not header.get_boundary():
        raise ProfileError("multipart/form-data without a boundary")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body
    )
    if msg.defects or not msg.is_multipart():
        names = ", ".join(type(d).__name__ for d in msg.defects) or "not multipart"
        raise ProfileError(f"malformed multipart body: {names}")
    fields: dict[str, bytes] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            raise ProfileError("multipart part without a name")
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            raise ProfileError(f"multipart part {name!r} is not a plain field")
        fields[name] = payload
    return fields


def encode_multipart(
    fields: Mapping[str, bytes], boundary: str = "pyro-core-form-boundary"
) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type (fields as files, like Pyroscope's Go client)."""
    parts = []
    for name, value in fields.items():
        parts.append(
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + value
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


# -- encoding ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StackSample:
    """A sample for ``encode_profile``: ``stack`` root→leaf, each frame a function name or a tuple of
    names for one location with inlined frames (outer caller first); one value per sample type."""

    stack: Sequence[str | Sequence[str]]
    values: Sequence[int]
    labels: Mapping[str, str | int] = field(default_factory=dict)


def encode_profile(
    samples: Iterable[StackSample],
    *,
    sample_types: Sequence[tuple[str, str]] = (("cpu", "nanoseconds"),),
    period_type: tuple[str, str] | None = ("cpu", "nanoseconds"),
    period: int = 10_000_000,
    time_nanos: int = 0,
    duration_nanos: int = 0,
    compress: bool = False,
) -> bytes:
    """A pprof profile (protobuf, gzipped when ``compress``) holding ``samples``.

    Functions and locations are deduplicated; a location is one frame, or one tuple of inlined frames
    (stored inner-first in the location's lines, as pprof does).
    """
    strings: dict[str, int] = {"": 0}

    def sid(s: str) -> int:
        return strings.setdefault(s, len(strings))

    profile = PbProfile(time_nanos=time_nanos, duration_nanos=duration_nanos, period=period)
    for type_, unit in sample_types:
        profile.sample_type.add(type=sid(type_), unit=sid(unit))
    if period_type is not None:
        profile.period_type.type = sid(period_type[0])
        profile.period_type.unit = sid(period_type[1])
    functions: dict[str, int] = {}
    locations: dict[tuple[str, ...], int] = {}

    def function_id(name: str) -> int:
        fid = functions.get(name)
        if fid is None:
            fid = functions[name] = len(functions) + 1
            profile.function.add(id=fid, name=sid(name), system_name=sid(name), filename=sid(""))
        return fid

    def location_id(frame: str | Sequence[str]) -> int:
        names = (frame,) if isinstance(frame, str) else tuple(frame)
        lid = locations.get(names)
        if lid is None:
            lid = locations[names] = len(locations) + 1
            loc = profile.location.add(id=lid, address=0x1000 + lid)
            for n in reversed(names):  # inner-first
                loc.line.add(function_id=function_id(n), line=1)
        return lid

    for sample in samples:
        if len(sample.values) != len(sample_types):
            raise ValueError("one value per sample type")
        s = profile.sample.add(value=list(sample.values))
        s.location_id.extend(location_id(frame) for frame in reversed(sample.stack))  # leaf first
        for key, value in sample.labels.items():
            if isinstance(value, str):
                s.label.add(key=sid(key), str=sid(value))
            else:
                s.label.add(key=sid(key), num=value)
    profile.string_table.extend(s.encode() for s in strings)
    data: bytes = profile.SerializeToString()
    return gzip.compress(data, mtime=0) if compress else data
