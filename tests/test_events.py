"""Tests for tracker.events: the event classes, validation and upcasting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.helpers import T0, record
from tracker import events
from tracker.errors import EventValidationError
from tracker.events import (
    QuestionAnswered,
    SessionRegistered,
    event_from_record,
    format_ts,
    to_ts,
)


class TestEventFromRecord:
    def test_builds_the_class_of_the_type(self) -> None:
        """A valid record becomes an instance of its type's class with every field."""
        e = event_from_record(record(1, "s1", "session_registered", username="ann", course_numbers=[1, 2]))
        assert isinstance(e, SessionRegistered)
        assert (e.username, e.course_numbers, e.session_id, e.seq, e.ts) == ("ann", (1, 2), "s1", 1, T0)

    def test_integer_duration_becomes_float(self) -> None:
        """response_time_ms given as an integer is read as a float."""
        e = event_from_record(record(1, "s1", "question_answered", response_time_ms=2000))
        assert isinstance(e, QuestionAnswered)
        assert e.response_time_ms == 2000.0
        assert type(e.response_time_ms) is float

    def test_to_record_round_trips(self) -> None:
        """to_record gives back the record, optional fields left out when unset."""
        rec = record(3, "s1", "question_answered", response_time_ms=12.5, input_tokens=7)
        assert event_from_record(rec).to_record() == rec

    def test_unknown_fields_are_ignored(self) -> None:
        """A field this version does not know is dropped, not refused (forward compatibility)."""
        e = event_from_record(record(1, "s1", "cycle_completed", added_later=True))
        assert "added_later" not in e.to_record()

    @pytest.mark.parametrize(
        ("change", "field", "reason"),
        [
            ({"v": 2}, "v", "unsupported_version"),
            ({"v": 0}, "v", "schema"),
            ({"v": "1"}, "v", "schema"),
            ({"type": "question_liked"}, "type", "unknown_type"),
            ({"ts": 1.5}, "ts", "schema"),
            ({"ts": -1}, "ts", "implausible_time"),
            ({"seq": 0}, "seq", "schema"),
            ({"session_id": 5}, "session_id", "schema"),
            ({"session_id": ""}, "session_id", "schema"),
            ({"event_id": None}, "event_id", "schema"),
            ({"writer": "x" * 257}, "writer", "schema"),
            ({"response_time_ms": -1.0}, "response_time_ms", "schema"),
            ({"response_time_ms": True}, "response_time_ms", "schema"),
            ({"response_time_ms": "12"}, "response_time_ms", "schema"),
            ({"input_tokens": 1.5}, "input_tokens", "schema"),
            ({"question_id": ""}, "question_id", "schema"),
        ],
    )
    def test_refuses_bad_values(self, change: dict[str, Any], field: str, reason: str) -> None:
        """A bad value is refused with the field, the value and a reason code."""
        rec = {**record(1, "s1", "question_answered", response_time_ms=5.0), **change}
        with pytest.raises(EventValidationError) as info:
            event_from_record(rec)
        assert (info.value.field, info.value.reason) == (field, reason)
        assert field in str(info.value)
        assert repr(change[field])[:20] in str(info.value)

    def test_refuses_missing_required_field(self) -> None:
        """A missing required type field is named in the error."""
        with pytest.raises(EventValidationError, match="reason: is required for 'session_unregistered'"):
            event_from_record(record(1, "s1", "session_unregistered"))

    def test_refuses_non_object(self) -> None:
        """A JSON value that is not an object is refused as not_object."""
        with pytest.raises(EventValidationError) as info:
            event_from_record([1, 2])
        assert info.value.reason == "not_object"


class TestUpcasting:
    def test_old_version_is_upcast_step_by_step(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With a version 3 reader, a v1 record goes through the 1->2 and 2->3 steps."""
        def one_to_two(rec: dict[str, Any]) -> dict[str, Any]:
            return {**rec, "reason": rec.pop("why")}

        def two_to_three(rec: dict[str, Any]) -> dict[str, Any]:
            return {**rec, "reason": rec["reason"].upper()}

        monkeypatch.setattr(events, "CURRENT_VERSION", 3)
        monkeypatch.setattr(events, "UPCASTERS", {1: one_to_two, 2: two_to_three})
        e = event_from_record(record(1, "s1", "session_unregistered", why="done"))
        assert e.v == 3
        assert e.to_record()["reason"] == "DONE"

    def test_missing_step_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An old version with no upcasting step is refused as unsupported, not guessed at."""
        monkeypatch.setattr(events, "CURRENT_VERSION", 2)
        monkeypatch.setattr(events, "UPCASTERS", {})
        with pytest.raises(EventValidationError) as info:
            event_from_record(record(1, "s1", "cycle_completed"))
        assert info.value.reason == "unsupported_version"


class TestTimestamps:
    def test_to_ts_converts_aware_datetimes_to_utc_micros(self) -> None:
        """An aware datetime in any zone gives the same UTC epoch microseconds."""
        moment = datetime(2026, 11, 24, 22, 0, 0, 123456, tzinfo=UTC)
        plus_two = moment.astimezone(timezone(timedelta(hours=2)))
        assert to_ts(moment) == to_ts(plus_two) == T0 + 123456

    def test_to_ts_refuses_naive_datetime(self) -> None:
        """A naive datetime is ambiguous and refused."""
        with pytest.raises(ValueError, match="timezone-aware"):
            to_ts(datetime(2026, 1, 1))

    @pytest.mark.parametrize("value", [-1, 2**63, "2026"])
    def test_to_ts_refuses_out_of_range(self, value: Any) -> None:
        """Values outside [2000, 2100) or of another type are refused."""
        with pytest.raises(ValueError, match="ts"):
            to_ts(value)

    def test_format_ts(self) -> None:
        """format_ts writes UTC ISO-8601 with Z, microseconds only when present."""
        assert format_ts(T0) == "2026-11-24T22:00:00Z"
        assert format_ts(T0 + 5) == "2026-11-24T22:00:00.000005Z"


INT64_MAX = 2**63 - 1


class TestIntegerBounds:
    """Every integer field holds a signed 64-bit integer (what polars and every other reader can hold)."""

    @pytest.mark.parametrize(("change", "field"), [
        ({"seq": INT64_MAX + 1}, "seq"),
        ({"input_tokens": INT64_MAX + 1}, "input_tokens"),
        ({"output_tokens": 2**64}, "output_tokens"),
        ({"v": INT64_MAX + 1}, "v"),
    ])
    def test_refuses_integers_above_int64(self, change: dict[str, Any], field: str) -> None:
        """A value above 2**63-1 is refused as schema, the message quoting the value and the bound."""
        rec = {**record(1, "s1", "question_answered", response_time_ms=5.0), **change}
        with pytest.raises(EventValidationError) as info:
            event_from_record(rec)
        assert (info.value.field, info.value.reason) == (field, "schema")
        assert str(change[field]) in str(info.value)
        assert "9223372036854775807" in str(info.value)

    @pytest.mark.parametrize("item", [INT64_MAX + 1, -(2**63) - 1, 2**64])
    def test_refuses_course_numbers_outside_int64(self, item: int) -> None:
        """A course number outside [-2**63, 2**63-1] is refused as schema, quoting it."""
        rec = record(1, "s1", "session_registered", username="ann", course_numbers=[1, item])
        with pytest.raises(EventValidationError) as info:
            event_from_record(rec)
        assert (info.value.field, info.value.reason) == ("course_numbers", "schema")
        assert str(item) in str(info.value)

    def test_accepts_the_int64_extremes(self) -> None:
        """2**63-1 (and -2**63 in course_numbers) are valid."""
        e = event_from_record(record(INT64_MAX, "s1", "question_answered", response_time_ms=0,
                                     input_tokens=INT64_MAX, output_tokens=0))
        assert (e.seq, getattr(e, "input_tokens", None)) == (INT64_MAX, INT64_MAX)
        e = event_from_record(record(1, "s1", "session_registered", username="a",
                                     course_numbers=[-(2**63), INT64_MAX]))
        assert getattr(e, "course_numbers", None) == (-(2**63), INT64_MAX)

    def test_huge_integer_duration_is_refused_not_overflowing(self) -> None:
        """An integer duration too big for a float is a schema error, not an OverflowError."""
        with pytest.raises(EventValidationError) as info:
            events.check_field("question_answered", "response_time_ms", 10**400)
        assert (info.value.field, info.value.reason) == ("response_time_ms", "schema")


class TestPlausibleTime:
    """ts must lie in [2000-01-01, 2100-01-01): anything else is a unit or clock error, refused as implausible_time."""

    def test_range_constants(self) -> None:
        """MIN_TS and END_TS are 2000-01-01 and 2100-01-01 in epoch microseconds."""
        assert events.MIN_TS == to_ts(datetime(2000, 1, 1, tzinfo=UTC)) == 946_684_800_000_000
        assert events.END_TS == 4_102_444_800_000_000
        assert format_ts(events.END_TS - 1) == "2099-12-31T23:59:59.999999Z"

    @pytest.mark.parametrize("ts", [946_684_800_000_000, T0, 4_102_444_800_000_000 - 1])
    def test_accepts_both_ends(self, ts: int) -> None:
        """The first and last microsecond of the range are valid."""
        assert event_from_record(record(1, "s1", "cycle_completed", ts=ts)).ts == ts

    @pytest.mark.parametrize(("ts", "unit", "means"), [
        (1_795_557_600, "seconds", "2026-11-24T22:00:00Z"),
        (1_795_557_600_123, "milliseconds", "2026-11-24T22:00:00.123000Z"),
        (1_795_557_600_000_000_000, "nanoseconds", "2026-11-24T22:00:00Z"),
    ])
    def test_names_the_likely_unit(self, ts: int, unit: str, means: str) -> None:
        """A ts in another unit is implausible_time; the message names the value, its ISO time and the unit."""
        with pytest.raises(EventValidationError) as info:
            event_from_record(record(1, "s1", "cycle_completed", ts=ts))
        assert (info.value.field, info.value.reason, info.value.value) == ("ts", "implausible_time", ts)
        message = str(info.value)
        assert str(ts) in message
        assert f"looks like {unit}" in message
        assert means in message

    @pytest.mark.parametrize(("ts", "iso"), [
        (0, "1970-01-01T00:00:00Z"),
        (946_684_800_000_000 - 1, "1999-12-31T23:59:59.999999Z"),
        (4_102_444_800_000_000, "2100-01-01T00:00:00Z"),
        (253_402_300_799_000_000, "9999-12-31T23:59:59Z"),
        (2**63 - 1, "after 9999"),
        (-1, "1969-12-31T23:59:59.999999Z"),
        (-(2**63), "before 0001"),
    ])
    def test_out_of_range_names_its_time(self, ts: int, iso: str) -> None:
        """Any integer ts outside the range is implausible_time, quoting the time it would mean."""
        with pytest.raises(EventValidationError) as info:
            event_from_record(record(1, "s1", "cycle_completed", ts=ts))
        assert info.value.reason == "implausible_time"
        assert iso in str(info.value)
        assert "2000-01-01T00:00:00Z" in str(info.value)

    def test_ts_beyond_int64_is_implausible(self) -> None:
        """A ts above 2**63-1 is refused too (implausible_time: it is no time in the range)."""
        with pytest.raises(EventValidationError) as info:
            event_from_record(record(1, "s1", "cycle_completed", ts=2**64))
        assert info.value.reason == "implausible_time"

    def test_to_ts_refuses_implausible_times(self) -> None:
        """to_ts refuses datetimes and integers outside the range, naming the unit."""
        with pytest.raises(EventValidationError, match="looks like seconds") as info:
            to_ts(1_795_557_600)
        assert info.value.reason == "implausible_time"
        with pytest.raises(EventValidationError, match="2100-01-01"):
            to_ts(datetime(2150, 1, 1, tzinfo=UTC))
