"""The events in the log: one frozen dataclass per type, and their validation.

The wire format is specified by ``schemas/event.schema.json``; this module is
its Python reading. Every event carries a schema version ``v``. A record of an
older version is upcast step by step (``UPCASTERS``) to the current one before
it becomes an event; a record of a newer version is refused, never guessed at.
Unknown fields are ignored (a newer writer may add optional fields without
bumping ``v``); an optional field that is ``null`` is absent; an unknown
``type`` is refused. Every integer is a signed 64-bit one (``INT64_MIN`` to
``INT64_MAX``, what polars and most JSON readers hold), and ``ts`` lies in
``[MIN_TS, END_TS)`` (2000-01-01 to 2100-01-01): a time outside it is a unit or
clock error, refused as ``implausible_time``. Readers check only this fixed
range, never the wall clock, so they decide the same way on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final

from .errors import EventValidationError

__all__ = (
    "CURRENT_VERSION",
    "END_TS",
    "EVENT_TYPES",
    "FORMAT_END_TS",
    "INT64_MAX",
    "INT64_MIN",
    "MIN_TS",
    "UPCASTERS",
    "CycleCompleted",
    "ErrorReported",
    "Event",
    "FieldSpec",
    "QuestionAnswered",
    "QuestionAsked",
    "SessionRegistered",
    "SessionUnregistered",
    "check_field",
    "describe_ts",
    "event_from_emitted",
    "event_from_record",
    "format_ts",
    "implausible_time",
    "to_ts",
)

CURRENT_VERSION: Final = 1
#: The bounds of every integer field (``v``, ``seq``, token counts, course numbers): a signed 64-bit integer.
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
#: The plausible times: ``MIN_TS <= ts < END_TS``, 2000-01-01T00:00:00Z to 2100-01-01T00:00:00Z in epoch
#: microseconds (the schema's ``minimum`` and ``exclusiveMaximum`` of ``ts``).
MIN_TS: Final = 946_684_800_000_000
END_TS: Final = 4_102_444_800_000_000
#: 10000-01-01T00:00:00Z: the first time :func:`format_ts` cannot write (ISO years have four digits).
FORMAT_END_TS: Final = 253_402_300_800_000_000
#: Units a ts is often written in by mistake, with the factor that turns one into microseconds.
_UNITS: Final = (("seconds", 10**6, 1), ("milliseconds", 10**3, 1), ("nanoseconds", 1, 10**3))
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

#: ``UPCASTERS[n]`` turns a record of version ``n`` into one of version ``n + 1``.
UPCASTERS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def _bad(field: str, value: object, why: str, reason: str = "schema") -> EventValidationError:
    return EventValidationError(f"{field}: {why}, got {value!r}", field=field, value=value, reason=reason)


Checker = Callable[[str, object], object]


def _string(max_len: int) -> Checker:
    def check(field: str, value: object) -> object:
        if type(value) is not str:
            raise _bad(field, value, "must be a string")
        if not value:
            raise _bad(field, value, "must not be empty")
        if len(value) > max_len:
            raise _bad(field, value[:40] + "...", f"must be at most {max_len} characters, has {len(value)}")
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:
                raise _bad(field, value, "must be valid Unicode text (it has a lone surrogate)") from None
        return value

    return check


def _count(field: str, value: object) -> object:
    if type(value) is not int or not 0 <= value <= INT64_MAX:
        raise _bad(field, value, f"must be an integer in [0, {INT64_MAX}]")
    return value


def _duration(field: str, value: object) -> object:
    if type(value) is float:
        if not (value >= 0.0) or value == math.inf:
            raise _bad(field, value, "must be a finite number >= 0")
        return value
    if type(value) is int and value >= 0:
        try:
            return float(value)
        except OverflowError:  # above ~1.8e308: no float holds it
            raise _bad(field, value, "must be a finite number >= 0 (this integer is too large for a float)") from None
    raise _bad(field, value, "must be a finite number >= 0")


def _int_list(field: str, value: object) -> object:
    if not isinstance(value, list | tuple):
        raise _bad(field, value, "must be a list of integers")
    if len(value) > 1000:
        raise _bad(field, f"<{len(value)} items>", "must have at most 1000 items")
    for item in value:
        if type(item) is not int:
            raise _bad(field, value, f"must be a list of integers, has {item!r}")
        if not INT64_MIN <= item <= INT64_MAX:
            raise _bad(field, value, f"must be a list of integers in [{INT64_MIN}, {INT64_MAX}], has {item}")
    return list(value)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """How one type-specific field is checked; ``kind`` is what the CLI parses it as."""

    check: Checker
    kind: str  # "str", "int", "number" or "int_list"
    required: bool
    max_len: int = 0  # for "str": the longest value allowed


_SESSION_ID = _string(256)
_EVENT_ID = _string(128)
_WRITER = _string(256)

#: The type-specific fields of every event type, in the order they are written.
EVENT_TYPES: Final[Mapping[str, Mapping[str, FieldSpec]]] = {
    "session_registered": {
        "username": FieldSpec(_string(256), "str", True, 256),
        "course_numbers": FieldSpec(_int_list, "int_list", True),
    },
    "question_asked": {
        "question_text": FieldSpec(_string(1000), "str", False, 1000),
        "question_id": FieldSpec(_string(128), "str", False, 128),
    },
    "question_answered": {
        "response_time_ms": FieldSpec(_duration, "number", True),
        "question_id": FieldSpec(_string(128), "str", False, 128),
        "time_to_first_token_ms": FieldSpec(_duration, "number", False),
        "input_tokens": FieldSpec(_count, "int", False),
        "output_tokens": FieldSpec(_count, "int", False),
    },
    "cycle_completed": {},
    "error": {
        "error": FieldSpec(_string(2000), "str", True, 2000),
        "kind": FieldSpec(_string(128), "str", False, 128),
        "response_time_ms": FieldSpec(_duration, "number", False),
    },
    "session_unregistered": {
        "reason": FieldSpec(_string(256), "str", True, 256),
    },
}


def check_field(event_type: str, name: str, value: object) -> object:
    """Check one type-specific field and return its normalised value.

    Raises :class:`EventValidationError` naming the field and value.
    """
    spec = EVENT_TYPES[event_type].get(name)
    if spec is None:
        allowed = ", ".join(EVENT_TYPES[event_type]) or "none"
        raise _bad(name, value, f"is not a field of {event_type!r} events (allowed: {allowed})")
    return spec.check(name, value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """The envelope every event carries."""

    TYPE: ClassVar[str] = ""

    v: int = CURRENT_VERSION
    ts: int
    event_id: str
    writer: str
    seq: int
    session_id: str

    @property
    def type(self) -> str:
        return self.TYPE

    def to_record(self) -> dict[str, Any]:
        """The event as the JSON object the log holds (optional fields left out when unset)."""
        record: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            record[f.name] = list(value) if isinstance(value, tuple) else value
            if f.name == "session_id":
                record["type"] = self.TYPE
        return record


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRegistered(Event):
    TYPE: ClassVar[str] = "session_registered"
    username: str
    course_numbers: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class QuestionAsked(Event):
    TYPE: ClassVar[str] = "question_asked"
    question_text: str | None = None
    question_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class QuestionAnswered(Event):
    TYPE: ClassVar[str] = "question_answered"
    response_time_ms: float
    question_id: str | None = None
    time_to_first_token_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CycleCompleted(Event):
    TYPE: ClassVar[str] = "cycle_completed"


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorReported(Event):
    TYPE: ClassVar[str] = "error"
    error: str
    kind: str | None = None
    response_time_ms: float | None = None  # the time until the request failed


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionUnregistered(Event):
    TYPE: ClassVar[str] = "session_unregistered"
    reason: str


_CLASSES: Final[Mapping[str, type[Event]]] = {
    cls.TYPE: cls
    for cls in (SessionRegistered, QuestionAsked, QuestionAnswered, CycleCompleted, ErrorReported, SessionUnregistered)
}


def _upcast(record: dict[str, Any], version: int) -> dict[str, Any]:
    while version < CURRENT_VERSION:
        step = UPCASTERS.get(version)
        if step is None:
            raise _bad("v", version, f"has no upcasting step to version {version + 1}", "unsupported_version")
        record = step(record)
        version += 1
        record["v"] = version
    return record


def event_from_emitted(record: dict[str, Any]) -> Event:
    """The event of a record that :class:`~tracker.emitter.EventLog` just wrote (so already valid): no checks."""
    fields = {k: v for k, v in record.items() if k != "type"}
    if "course_numbers" in fields:
        fields["course_numbers"] = tuple(fields["course_numbers"])
    return _CLASSES[record["type"]](**fields)


def event_from_record(record: object) -> Event:
    """Validate one decoded JSON value and return it as an :class:`Event`.

    Raises :class:`EventValidationError`; its ``reason`` is ``not_object``,
    ``unsupported_version``, ``unknown_type`` or ``schema``.
    """
    if type(record) is not dict:
        raise EventValidationError(
            f"an event must be a JSON object, got {type(record).__name__}", value=record, reason="not_object"
        )
    version = record.get("v")
    if type(version) is not int or not 1 <= version <= INT64_MAX:
        raise _bad("v", version, f"must be an integer in [1, {INT64_MAX}]")
    if version > CURRENT_VERSION:
        raise EventValidationError(
            f"v: version {version} is newer than this tracker reads ({CURRENT_VERSION}); upgrade tracker to read it",
            field="v", value=version, reason="unsupported_version",
        )
    if version < CURRENT_VERSION:
        record = _upcast(dict(record), version)
        version = CURRENT_VERSION
    event_type = record.get("type")
    cls = _CLASSES.get(event_type) if type(event_type) is str else None
    if cls is None:
        if "type" not in record:
            raise _bad("type", None, "is required")
        raise _bad("type", event_type, f"must be one of {', '.join(_CLASSES)}", "unknown_type")
    ts = record.get("ts")
    if type(ts) is not int:
        raise _bad("ts", ts, "must be an integer (epoch microseconds)")
    if not MIN_TS <= ts < END_TS:
        raise implausible_time(ts)
    seq = record.get("seq")
    if type(seq) is not int or not 1 <= seq <= INT64_MAX:
        raise _bad("seq", seq, f"must be an integer in [1, {INT64_MAX}]")
    kwargs: dict[str, Any] = {
        "v": version,
        "ts": ts,
        "seq": seq,
        "event_id": _EVENT_ID("event_id", record.get("event_id")),
        "writer": _WRITER("writer", record.get("writer")),
        "session_id": _SESSION_ID("session_id", record.get("session_id")),
    }
    for name, spec in EVENT_TYPES[cls.TYPE].items():
        value = record.get(name)  # null is the same as absent
        if value is not None:
            value = spec.check(name, value)
            kwargs[name] = tuple(value) if isinstance(value, list) else value
        elif spec.required:
            raise _bad(name, value, f"is required for {cls.TYPE!r} events")
    return cls(**kwargs)


def to_ts(when: datetime | int) -> int:
    """Epoch microseconds (UTC) from an aware datetime or from epoch microseconds, in ``[MIN_TS, END_TS)``.

    Raises :class:`EventValidationError`: ``implausible_time`` (naming the likely unit) outside the range.
    """
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise _bad("ts", when, "must be timezone-aware (naive datetimes are ambiguous; use UTC)")
        delta = when - _EPOCH
        value = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    elif type(when) is int:
        value = when
    else:
        raise _bad("ts", when, "must be an aware datetime or integer epoch microseconds")
    if not MIN_TS <= value < END_TS:
        raise implausible_time(value)
    return value



def format_ts(ts: int) -> str:
    """``2026-11-24T22:20:00.123456Z`` (microseconds left out when zero), for ts in years 1 to 9999."""
    seconds, micros = divmod(ts, 1_000_000)
    moment = datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
    text = moment.isoformat()
    return f"{text}.{micros:06d}Z" if micros else f"{text}Z"


def describe_ts(ts: int) -> str:
    """The ISO time of any integer ts (:func:`format_ts`), or where it lies when no ISO time can name it."""
    try:
        moment = _EPOCH + timedelta(microseconds=ts)
    except OverflowError:
        return "before 0001-01-01" if ts < 0 else "after 9999-12-31"
    return moment.replace(tzinfo=None).isoformat() + "Z"  # as format_ts: microseconds only when not zero


def implausible_time(ts: int, why: str = "") -> EventValidationError:
    """The ``implausible_time`` error for ``ts``: its value, the time it would mean, and its likely unit."""
    if not why:
        why = f"outside the plausible range {format_ts(MIN_TS)} to {format_ts(END_TS)}"
    hint = "is the writer's clock or unit wrong?"
    for unit, factor, divisor in _UNITS:
        if MIN_TS <= ts * factor // divisor < END_TS:
            hint = f"it looks like {unit} ({describe_ts(ts * factor // divisor)}), not microseconds"
            break
    return EventValidationError(
        f"ts: {ts} is not a plausible event time: as epoch microseconds it is {describe_ts(ts)}, {why}; {hint}",
        field="ts", value=ts, reason="implausible_time")
