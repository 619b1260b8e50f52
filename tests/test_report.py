"""Tests for tracker.report: the aggregation, checked cell by cell against an independent computation."""

from __future__ import annotations

import csv
import io
import math
import random
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import T0, event
from tests.reference import reference_reports
from tracker.events import Event
from tracker.report import (
    ERRORS_FILE,
    SUMMARY_FILE,
    TOTALS_FILE,
    ReportBuilder,
    build_reports,
    distinct,
    events_frame,
    session_file_name,
    session_rows,
    write_reports,
)

S = 1_000_000
FIELDS: dict[str, dict[str, Any]] = {
    "session_registered": {"username": "u", "course_numbers": [1, 2]},
    "error": {"error": "boom"},
    "session_unregistered": {"reason": "done"},
}

STEP = st.tuples(
    st.sampled_from(["s1", "s2", "s3", "=s4", "s5"]),
    st.sampled_from(["session_registered", "question_asked", "question_answered", "question_answered",
                     "cycle_completed", "error", "session_unregistered"]),
    st.integers(0, 900 * S),
    st.floats(0, 10_000, allow_nan=False).map(lambda x: round(x, 3)),
    st.sampled_from([None, "timeout", "-bad"]),
)
LOGS = st.lists(STEP, min_size=1, max_size=80)
INTERVALS = st.sampled_from([1, 7, 60, 300])


def random_events(steps: list[tuple[str, str, int, float, str | None]], t0: int = T0) -> list[Event]:
    """Events from generated steps, numbered by one writer in list order."""
    out = []
    for seq, (sid, kind, offset, rt, error_kind) in enumerate(steps, 1):
        fields = dict(FIELDS.get(kind, {}))
        if kind == "question_answered":
            fields["response_time_ms"] = rt
        if kind == "error":
            fields["error"] = f"error {int(rt) % 3}"
            if error_kind:
                fields["kind"] = error_kind
        out.append(event(seq, sid, kind, t0 + offset, **fields))
    return out


def _read_csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def _same_cell(ours: str, theirs: object) -> bool:
    if theirs is None:
        return ours == ""
    if isinstance(theirs, float):
        # our CSV has 3 decimals; the reference is unrounded
        return ours != "" and math.isclose(float(ours), theirs, abs_tol=0.0005 + 1e-9, rel_tol=1e-12)
    return ours == str(theirs)


def assert_matches_reference(out: Path, events: list[Event], interval_s: int) -> None:
    """Every cell of every file in ``out`` equals the reference's, and no file is missing or extra."""
    expected = reference_reports(events, interval_s)
    tables = {SUMMARY_FILE: expected["summary"], TOTALS_FILE: expected["totals"], ERRORS_FILE: expected["errors"]}
    for name, rows in tables.items():
        _compare(out / name, rows)
    by_window: dict[str, list[dict[str, object]]] = {}
    for row in expected["sessions"]:
        by_window.setdefault(str(row["window_end"]), []).append(row)
    for window in expected["summary"]:
        end = str(window["window_end"])
        micros = int(pl.Series([end]).str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_unit="us").dt.epoch("us")[0])
        _compare(out / session_file_name(micros), by_window.get(end, []))
    files = sorted(p.name for p in out.glob("session_tracking_report_*.csv"))
    assert len(files) == len(expected["summary"])


def _compare(path: Path, rows: list[dict[str, object]]) -> None:
    ours = _read_csv(path.read_bytes())
    assert len(ours) == len(rows), path.name
    header = path.read_bytes().split(b"\n", 1)[0].decode().split(",")
    if rows:
        assert header == list(rows[0]), path.name
    for n, (mine, theirs) in enumerate(zip(ours, rows, strict=True)):
        for column, value in theirs.items():
            assert _same_cell(mine[column], value), (path.name, n, column, mine[column], value)


class TestAgainstReference:
    @settings(max_examples=120, deadline=None)
    @given(LOGS, INTERVALS)
    def test_random_logs(self, tmp_path_factory: pytest.TempPathFactory,
                         steps: list[tuple[str, str, int, float, str | None]], interval_s: int) -> None:
        """For random logs and intervals, every file equals the independent plain-Python computation."""
        events = random_events(steps)
        out = tmp_path_factory.mktemp("out")
        write_reports(build_reports(events_frame(events), interval_s), out)
        assert_matches_reference(out, events, interval_s)

    def test_no_events(self, tmp_path: Path) -> None:
        """No events: header-only tables and a totals row of zeros and blanks, as the reference says."""
        write_reports(build_reports(events_frame([]), 60), tmp_path)
        assert_matches_reference(tmp_path, [], 60)
        assert (tmp_path / SUMMARY_FILE).read_bytes().count(b"\n") == 1


class TestDistinct:
    def test_keeps_the_first_copy_of_each_line(self) -> None:
        """distinct keeps the first of equal rows; the same event_id at another ts, or with other content, stays."""
        a = event(1, "s1", "session_registered", T0, username="first", course_numbers=[1])
        other = event(1, "s1", "session_registered", T0, username="other", course_numbers=[1])
        later = event(1, "s1", "session_registered", T0 + 1, username="later", course_numbers=[1])
        kept = distinct(events_frame([a, a, other, later, a, other]))
        assert kept["username"].cast(pl.String).to_list() == ["first", "other", "later"]


class TestReportBuilder:
    @settings(max_examples=60, deadline=None)
    @given(LOGS, INTERVALS, st.randoms(use_true_random=False))
    def test_any_grouping_of_windows_gives_the_same_rows(
        self, steps: list[tuple[str, str, int, float, str | None]], interval_s: int, rnd: random.Random,
    ) -> None:
        """Windows built in runs of any length give the same rows, and the same totals, as all at once."""
        frame = events_frame(random_events(steps))
        every = interval_s * S
        k_min, k_max = int(frame["ts"].min()) // every, int(frame["ts"].max()) // every  # type: ignore[arg-type]
        whole = build_reports(frame, interval_s)
        builder = ReportBuilder(session_rows(frame), k_min, k_max, interval_s)
        parts = []
        k = k_min
        while k <= k_max:
            last = min(k_max, k + rnd.randrange(3))
            parts.append(builder.windows(last, frame.filter(pl.col("ts").is_between(k * every, (last + 1) * every,
                                                                                     closed="left"))))
            k = last + 1
        assert whole.sessions is not None
        assert pl.concat([p.summary for p in parts]).equals(whole.summary)
        assert pl.concat([p.sessions for p in parts]).equals(whole.sessions)
        assert pl.concat([p.errors for p in parts]).equals(whole.errors)
        assert builder.totals().equals(whole.totals)

    @settings(max_examples=40, deadline=None)
    @given(LOGS, INTERVALS)
    def test_rows_in_counts_the_windows_session_rows(
        self, steps: list[tuple[str, str, int, float, str | None]], interval_s: int,
    ) -> None:
        """rows_in(k) is the number of sessions from their first event's window to their end, counted directly."""
        events = random_events(steps)
        frame = events_frame(events)
        every = interval_s * S
        k_min, k_max = int(frame["ts"].min()) // every, int(frame["ts"].max()) // every  # type: ignore[arg-type]
        builder = ReportBuilder(session_rows(frame), k_min, k_max, interval_s)
        first: dict[str, int] = {}
        end: dict[str, int] = {}
        for e in events:
            first[e.session_id] = min(first.get(e.session_id, e.ts), e.ts)
            if e.TYPE == "session_unregistered":
                end[e.session_id] = min(end.get(e.session_id, e.ts), e.ts)
        for k in range(k_min, k_max + 1):
            expected = sum(1 for s, t in first.items() if t // every <= k and (s not in end or k <= end[s] // every))
            assert builder.rows_in(k) == expected

    def test_windows_must_come_in_order(self) -> None:
        """Asking for a window already built, or past the last, is an error naming the expected range."""
        frame = events_frame(random_events([("s1", "cycle_completed", 0, 0.0, None)]))
        k = int(frame["ts"][0]) // (60 * S)
        builder = ReportBuilder(session_rows(frame), k, k + 1, 60)
        with pytest.raises(ValueError, match=rf"expected a last window in {k}\.\.{k + 1}, got {k + 2}"):
            builder.windows(k + 2, frame)
        builder.windows(k, frame)
        with pytest.raises(ValueError, match=rf"in {k + 1}\.\.{k + 1}, got {k}"):
            builder.windows(k, frame)
        with pytest.raises(ValueError, match="are not built yet"):
            builder.totals()


class TestReportRules:
    def test_window_boundaries_are_left_closed(self) -> None:
        """An event exactly at a window's start belongs to that window, not the one before."""
        events = [event(1, "s", "question_asked", T0 + 60 * S - 1), event(2, "s", "question_asked", T0 + 60 * S)]
        summary = build_reports(events_frame(events), 60).summary
        assert summary["questions_asked"].to_list() == [1, 1]
        assert summary["window_start"].to_list() == [T0, T0 + 60 * S]

    def test_session_ending_exactly_at_window_end_is_alive_at_end(self) -> None:
        """A session that unregisters at the window's end instant is alive at that end, then ends."""
        events = [event(1, "s", "session_registered", T0, username="u", course_numbers=[]),
                  event(2, "s", "session_unregistered", T0 + 60 * S, reason="r")]
        summary = build_reports(events_frame(events), 60).summary
        assert summary["active_at_end"].to_list() == [1, 0]
        assert summary["active_sessions"].to_list() == [1, 1]

    def test_percentiles_interpolate_linearly(self) -> None:
        """p90 of 1..10 ms is 9.1, numpy's linear method, not the nearest rank."""
        events = [event(i, "s", "question_answered", T0 + i, response_time_ms=float(i)) for i in range(1, 11)]
        summary = build_reports(events_frame(events), 60).summary
        assert summary["response_time_ms_p90"].to_list() == [pytest.approx(9.1)]

    def test_interval_must_be_whole_positive_seconds(self) -> None:
        """A zero, negative or fractional interval is refused with the value quoted."""
        for bad in (0, -5, 1.5):
            with pytest.raises(ValueError, match=f"interval_s: .* got {bad!r}"):
                build_reports(events_frame([]), bad)  # type: ignore[arg-type]

    def test_same_events_same_bytes(self, tmp_path: Path) -> None:
        """Writing the same events twice, in different order, gives identical bytes."""
        events = random_events([("s1", "question_answered", i * 977_777, i * 1.111, None) for i in range(300)])
        write_reports(build_reports(events_frame(events), 7), tmp_path / "a")
        write_reports(build_reports(events_frame(events[::-1]), 7), tmp_path / "b")
        names = sorted(p.name for p in (tmp_path / "a").iterdir())
        assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
        for name in names:
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name

    def test_writes_leave_no_temporary_files(self, tmp_path: Path) -> None:
        """Files are written under a temporary name and renamed: none is left behind."""
        write_reports(build_reports(events_frame(random_events([("s1", "cycle_completed", 0, 0.0, None)])), 60),
                      tmp_path)
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    def test_session_file_name_is_the_window_end(self) -> None:
        """Per-window files are stamped with the window's end in UTC."""
        assert session_file_name(T0 + 300 * S) == "session_tracking_report_20261124_220500.csv"
