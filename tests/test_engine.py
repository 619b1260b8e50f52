"""Tests for tracker.engine: the fold and the tables, checked cell by cell against an independent computation."""

from __future__ import annotations

import csv
import io
import math
import random
import re
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import T0, event
from tests.reference import reference_reports
from tracker.engine import Engine
from tracker.events import Event
from tracker.frames import events_frame
from tracker.output import ERRORS_FILE, SUMMARY_FILE, TOTALS_FILE, ReportWriter, session_file_name
from tracker.tables import COUNTED

S = 1_000_000
COUNTED_NAMES = list(COUNTED)
FIELDS: dict[str, dict[str, Any]] = {
    "session_registered": {"username": "u", "course_numbers": [1, 2]},
    "error": {"error": "boom"},
    "session_unregistered": {"reason": "done"},
}

STEP = st.tuples(
    st.sampled_from(["s1", "s2", "s3", "=s4", "s5"]),
    st.sampled_from(["session_registered", "question_asked", "question_answered", "question_answered",
                     "cycle_completed", "error", "session_unregistered"]),
    # Times biased toward window boundaries and equal timestamps (two registrations at one instant).
    st.one_of(st.integers(0, 600 * S), st.sampled_from([0, 1, 7 * S - 1, 7 * S, 60 * S - 1, 60 * S, 300 * S])),
    st.floats(0, 10_000, allow_nan=False).map(lambda x: round(x, 3)),
    st.sampled_from([None, "timeout", "-bad"]),
    # An answer's chat fields, each optional: TTFT (sometimes more than the response time, sometimes equal),
    # input and output tokens (0, 1 and 2 output tokens are TPOT's edges).
    st.one_of(st.none(), st.tuples(
        st.one_of(st.none(), st.floats(0, 12_000, allow_nan=False).map(lambda x: round(x, 3)), st.just(-0.0)),
        st.one_of(st.none(), st.integers(0, 5000)),
        st.one_of(st.none(), st.integers(0, 3), st.integers(0, 4000)))),
)
LOGS = st.lists(STEP, min_size=1, max_size=80)
INTERVALS = st.sampled_from([1, 7, 60, 300])
#: Goodput limits: none (no columns), or a subset of the three, with values the random answers straddle.
GOODPUTS = st.one_of(st.none(), st.dictionaries(st.sampled_from(["response_time_ms", "ttft_ms", "tpot_ms"]),
                                                st.sampled_from([0.0, 1.5, 500.0, 2500.0, 9000.0]), min_size=1))
#: Session timeouts: off, or short enough to end sessions inside the random logs (900 s), at and off window edges.
TIMEOUTS = st.sampled_from([None, None, 0.5, 7, 60, 61.25, 300])


def random_events(steps: list[tuple[Any, ...]], t0: int = T0) -> list[Event]:
    """Events from generated steps (session, type, offset, response time, error kind[, chat fields]), numbered by
    one writer in list order."""
    out = []
    for seq, step in enumerate(steps, 1):
        sid, kind, offset, rt, error_kind = step[:5]
        chat = step[5] if len(step) > 5 else None
        fields = dict(FIELDS.get(kind, {}))
        if kind == "question_answered":
            fields["response_time_ms"] = rt
            if chat is not None:
                fields.update(zip(("time_to_first_token_ms", "input_tokens", "output_tokens"), chat, strict=True))
        if kind == "error":
            fields["error"] = f"error {int(rt) % 3}"
            if chat is not None:  # a failed request's time, on some errors
                fields["response_time_ms"] = rt
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


def assert_matches_reference(out: Path, events: list[Event], interval_s: int,
                             timeout_s: float | None = None, goodput: dict[str, float] | None = None) -> None:
    """Every cell of every file in ``out`` equals the reference's, and no file is missing or extra."""
    expected = reference_reports(events, interval_s, timeout_s, goodput)
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
    @settings(max_examples=16, deadline=None)
    @given(LOGS, INTERVALS, TIMEOUTS, GOODPUTS)
    def test_random_logs(self, tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[Any, ...]],
                         interval_s: int, timeout_s: float | None, goodput: dict[str, float] | None) -> None:
        """For random logs, intervals, session timeouts and goodput limits, every file equals the independent
        plain-Python computation."""
        events = random_events(steps)
        out = tmp_path_factory.mktemp("out")
        engine = Engine(interval_s, session_timeout_s=timeout_s, goodput=goodput)
        engine.add(events_frame(events))
        ReportWriter(engine, out).flush()
        assert_matches_reference(out, events, interval_s, timeout_s, goodput)

    @pytest.mark.parametrize("goodput", [None, {"ttft_ms": 500.0}])
    def test_no_events(self, tmp_path: Path, goodput: dict[str, float] | None) -> None:
        """No events: header-only tables and a totals row of zeros and blanks, as the reference says."""
        ReportWriter(Engine(60, goodput=goodput), tmp_path).flush()
        assert_matches_reference(tmp_path, [], 60, goodput=goodput)
        assert (tmp_path / SUMMARY_FILE).read_bytes().count(b"\n") == 1


def build(events: list[Event] | pl.DataFrame, interval_s: int = 60, timeout_s: float | None = None) -> Engine:
    """An engine fed ``events`` at once."""
    engine = Engine(interval_s, session_timeout_s=timeout_s)
    engine.add(events if isinstance(events, pl.DataFrame) else events_frame(events))
    return engine


def written(engine: Engine, out: Path) -> dict[str, bytes]:
    """Every file a writer of ``engine`` writes into ``out`` (all windows), by name."""
    ReportWriter(engine, out).flush()
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.csv"))}


class TestDuplicates:
    def test_a_line_read_twice_counts_once(self) -> None:
        """Equal rows are one event; the same event_id at another ts, or with other content, is another."""
        a = event(1, "s1", "session_registered", T0, username="first", course_numbers=[1])
        other = event(1, "s1", "session_registered", T0, username="other", course_numbers=[1])
        later = event(1, "s1", "session_registered", T0 + 1, username="later", course_numbers=[1])
        engine = Engine(60)
        new = engine.add(events_frame([a, a, other]))
        assert new["username"].to_list() == ["first", "other"]
        assert engine.add(events_frame([later, a, other]))["username"].to_list() == ["later"]
        assert (engine.duplicates, engine.counts["session_registered"]) == (3, 3)
        assert engine.sessions["s1"].username == "first"


class TestFeeding:
    @settings(max_examples=15, deadline=None)
    @given(LOGS, INTERVALS, TIMEOUTS, st.randoms(use_true_random=False))
    def test_any_chunks_in_any_order_give_the_same_files(
        self, tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[Any, ...]],
        interval_s: int, timeout_s: float | None, rnd: random.Random,
    ) -> None:
        """Events fed in random chunks, in random order, with repeats, give the bytes of feeding them at once
        (also when sessions time out, and come back, between chunks)."""
        events = random_events(steps)
        tmp = tmp_path_factory.mktemp("feed")
        whole = written(build(events, interval_s, timeout_s), tmp / "whole")
        shuffled = events + rnd.sample(events, rnd.randrange(len(events) + 1))
        rnd.shuffle(shuffled)
        engine = Engine(interval_s, session_timeout_s=timeout_s)
        writer = ReportWriter(engine, tmp / "chunks")
        while shuffled:
            cut = rnd.randint(1, len(shuffled))
            engine.add(events_frame(shuffled[:cut]))
            shuffled = shuffled[cut:]
            if rnd.random() < 0.5:  # a flush between chunks: only what changed is written again
                writer.flush(rnd.choice([None, rnd.randrange(-3, 20) + int(engine.span()[0])]))  # type: ignore[index]
        writer.flush()
        assert {p.name: p.read_bytes() for p in sorted((tmp / "chunks").glob("*.csv"))} == whole


class TestCost:
    def test_an_event_in_the_newest_window_reads_only_that_window(self, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
        """After the windows are written, a new event in the newest one derives that window alone: no older
        window's rows are read again (a flush costs the same late in a run as early)."""
        events = [event(i, f"s{i % 5}", "question_answered", T0 + i * 6 * S, response_time_ms=float(i))
                  for i in range(1, 400)]  # 40 windows of 60 s
        engine = build(events)
        writer = ReportWriter(engine, tmp_path)
        writer.flush()
        read: list[int] = []
        rows = engine.store.rows

        def reading(k: int, columns: tuple[str, ...] | None = None) -> pl.DataFrame:
            read.append(k)
            return rows(k, columns)

        monkeypatch.setattr(engine.store, "rows", reading)
        engine.add(events_frame([event(999, "s1", "question_answered", T0 + 399 * 6 * S + 1, response_time_ms=1.0)]))
        writer.flush()
        assert read == [T0 // (60 * S) + 39]

    def test_a_session_ending_in_the_newest_window_derives_only_that_window(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A session that registered in the first window and ends in the newest changes that window's rows only:
        no older window is derived or written again."""
        events = [event(1, "s1", "session_registered", T0, username="u", course_numbers=[1]),
                  *(event(i, f"s{i % 5}", "question_asked", T0 + i * 6 * S) for i in range(2, 400))]
        engine = build(events)
        writer = ReportWriter(engine, tmp_path)
        writer.flush()
        derived: list[int] = []
        derive = engine.session_rows

        def deriving(k: int) -> pl.DataFrame:
            derived.append(k)
            return derive(k)

        monkeypatch.setattr(engine, "session_rows", deriving)
        engine.add(events_frame([event(999, "s1", "session_unregistered", T0 + 399 * 6 * S + 1, reason="done")]))
        written = writer.flush().written
        assert derived == [T0 // (60 * S) + 39]
        assert sorted(p.name for p in written) == sorted([
            "session_tracking_report_20261124_224000.csv", "session_tracking_summary.csv",
            "session_tracking_totals.csv", "session_tracking_report.html"])


class TestSessionRules:
    def test_first_registration_is_first_in_event_order(self) -> None:
        """Two registrations at the same ts: the writer's seq decides (9 before 10), not the event_id's text."""
        a = event(10, "s", "session_registered", T0, username="tenth", course_numbers=[])
        b = event(9, "s", "session_registered", T0, username="ninth", course_numbers=[])
        assert build([a, b]).sessions["s"].username == "ninth"
        assert build([b, a]).sessions["s"].username == "ninth"

    def test_registrations_equal_in_event_order_do_not_depend_on_arrival(self) -> None:
        """Same (ts, writer, seq, event_id), other names: the lesser (username, courses) is first, in any order."""
        a = event(3, "s", "session_registered", T0, username="bob", course_numbers=[1])
        b = event(3, "s", "session_registered", T0, username="alice", course_numbers=[2])
        c = event(3, "s", "session_registered", T0, username="alice", course_numbers=[10])
        for feed in ([a, b, c], [c, b, a], [a, c, b], [b, a, c]):
            assert (build(feed).sessions["s"].username, build(feed).sessions["s"].course_numbers) == ("alice", (10,))
            engine = Engine(60)
            for one in feed:  # one batch each: the facts kept, then the next event
                engine.add(events_frame([one]))
            assert (engine.sessions["s"].username, engine.sessions["s"].course_numbers) == ("alice", (10,))


class TestSessionTimeout:
    """--session-timeout: a session silent that long before the run's last event ends at its last event plus it."""

    @staticmethod
    def _log(last_other: int) -> list[Event]:
        """s1 asks at 0 and 10 s and goes silent; s2 keeps asking until ``last_other``."""
        return [event(1, "s1", "question_asked", T0), event(2, "s1", "question_asked", T0 + 10 * S),
                *(event(3 + i, "s2", "question_asked", T0 + t) for i, t in enumerate(range(0, last_other + 1, 5 * S)))]

    def test_silent_for_exactly_the_timeout_times_out(self) -> None:
        """Last event at 10 s, timeout 50 s, run's last event at 60 s: timed out at 60 s, in the second window."""
        engine = build(self._log(60 * S), 30, timeout_s=50)
        k = T0 // (30 * S)
        assert engine.closing("s1") == (T0 + 60 * S, "timed_out")
        assert engine.session_rows(k + 1)["status"].to_list() == ["active", "active"]
        assert engine.session_rows(k + 2)["status"].to_list() == ["timed_out", "active"]
        assert engine.summary()["active_at_end"].to_list() == [2, 2, 1]
        assert engine.timed_out() == 1

    def test_one_microsecond_short_of_the_timeout_is_active(self) -> None:
        """The run's last event 1 us before the deadline: still active (and off, never timed out)."""
        log = [*self._log(55 * S), event(99, "s2", "question_asked", T0 + 60 * S - 1)]
        assert build(log, 30, timeout_s=50).closing("s1") is None
        assert build(self._log(600 * S), 30).closing("s1") is None

    def test_a_session_timing_out_later_rewrites_its_closed_window(self, tmp_path: Path) -> None:
        """Window [30, 60 s), written while s1 was active, is written again when an event at 100 s of another session
        makes s1 time out at 55 s (timeout 45 s): the same bytes as feeding everything at once."""
        log = [e for e in self._log(200 * S) if not T0 + 50 * S < e.ts < T0 + 100 * S]  # s2 silent 50-100 s
        engine = Engine(30, session_timeout_s=45)
        writer = ReportWriter(engine, tmp_path / "live")
        engine.add(events_frame([e for e in log if e.ts <= T0 + 50 * S]))
        writer.flush()
        assert engine.closing("s1") is None
        engine.add(events_frame([e for e in log if e.ts > T0 + 50 * S]))
        writer.flush()
        live = {p.name: p.read_bytes() for p in sorted((tmp_path / "live").glob("*.csv"))}
        assert live == written(build(log, 30, timeout_s=45), tmp_path / "whole")
        assert b",s1,,,timed_out," in live["session_tracking_report_20261124_220100.csv"]

    def test_an_event_after_the_timeout_makes_it_active_again(self, tmp_path: Path) -> None:
        """s1 times out, then asks again at 160 s (40 s before the end): active again, with the bytes of feeding
        all at once."""
        log = [*self._log(200 * S), event(999, "s1", "question_asked", T0 + 160 * S)]
        engine = Engine(30, session_timeout_s=50)
        writer = ReportWriter(engine, tmp_path / "live")
        engine.add(events_frame(log[:-1]))
        writer.flush()
        assert engine.closing("s1") == (T0 + 60 * S, "timed_out")
        engine.add(events_frame(log[-1:]))
        writer.flush()
        assert engine.closing("s1") is None
        assert engine.timed_out() == 0
        live = {p.name: p.read_bytes() for p in sorted((tmp_path / "live").glob("*.csv"))}
        assert live == written(build(log, 30, timeout_s=50), tmp_path / "whole")

    def test_an_unregistration_is_the_end_even_when_late(self) -> None:
        """An unregistration read after s1 timed out is its end (status ended), also when it is before the deadline."""
        log = [*self._log(200 * S), event(999, "s1", "session_unregistered", T0 + 20 * S, reason="done")]
        engine = Engine(30, session_timeout_s=50)
        engine.add(events_frame(log[:-1]))
        engine.add(events_frame(log[-1:]))
        assert engine.closing("s1") == (T0 + 20 * S, "ended")
        assert engine.timed_out() == 0

    def test_state_keeps_the_timeout(self) -> None:
        """A checkpointed engine comes back with its timed-out sessions; another timeout is refused."""
        engine = build(self._log(200 * S), 30, timeout_s=50)
        again = Engine(30, store=engine.store, session_timeout_s=50)
        again.restore(orjson.loads(orjson.dumps(engine.state())))
        assert (again.closing("s1"), again.timed_out()) == ((T0 + 60 * S, "timed_out"), 1)
        for other in (None, 49.5):
            with pytest.raises(ValueError, match="session timeout"):
                Engine(30, store=engine.store, session_timeout_s=other).restore(engine.state())

    @pytest.mark.parametrize("bad", [0, -1, 366 * 86_400 + 1, float("nan"), "60", True])
    def test_bad_timeouts_are_refused(self, bad: object) -> None:
        """A timeout of 0 or less, beyond 366 days, NaN or not a number is refused with the value quoted."""
        with pytest.raises(ValueError, match=r"session_timeout_s: .* got"):
            Engine(60, session_timeout_s=bad)  # type: ignore[arg-type]


class TestGoodput:
    """--goodput: answers within every per-request limit, per second and as a share of the answers."""

    @staticmethod
    def _answer(seq: int, rt: float, ttft: float | None = None, tokens: int | None = None) -> Event:
        fields: dict[str, Any] = {"response_time_ms": rt}
        if ttft is not None:
            fields["time_to_first_token_ms"] = ttft
        if tokens is not None:
            fields["output_tokens"] = tokens
        return event(seq, "s", "question_answered", T0 + seq * S, **fields)

    def _good(self, limits: dict[str, float], *answer: Any) -> float | None:
        engine = Engine(60, goodput=limits)
        engine.add(events_frame([self._answer(1, *answer), event(2, "s", "question_asked", T0 + 10 * S)]))
        return engine.totals()["goodput_ratio"][0]  # type: ignore[no-any-return]

    @pytest.mark.parametrize(("limits", "answer", "good"), [
        ({"response_time_ms": 3000}, (3000.0,), 1.0),  # at the limit is within it
        ({"response_time_ms": 3000}, (3000.5,), 0.0),
        ({"ttft_ms": 500}, (3000.0, 500.0), 1.0),
        ({"ttft_ms": 500}, (3000.0,), 0.0),  # no TTFT: not known to meet it
        ({"tpot_ms": 50}, (1000.0, 500.0, 11), 1.0),  # (1000 - 500) / 10 = 50
        ({"tpot_ms": 50}, (1001.0, 500.0, 11), 0.0),
        ({"tpot_ms": 50}, (9000.0, 500.0, 1), 1.0),  # one token: no time per output token
        ({"tpot_ms": 50}, (9000.0, 500.0, 0), 1.0),
        ({"tpot_ms": 50}, (9000.0, 500.0), 0.0),  # no token count: unknown
        ({"tpot_ms": 50}, (1000.0, None, 11), 0.0),  # no TTFT: unknown
        ({"response_time_ms": 3000, "ttft_ms": 500}, (3000.0, 501.0), 0.0),  # every limit must hold
    ])
    def test_the_limits(self, limits: dict[str, float], answer: tuple[Any, ...], good: float) -> None:
        """Each limit at, and just past, its edge; a missing value fails it; a single token meets any TPOT limit."""
        assert self._good(limits, *answer) == good

    def test_columns_only_with_limits(self, tmp_path: Path) -> None:
        """Without --goodput the files have no goodput columns; with it, goodput_per_s and goodput_ratio come last."""
        answers = [self._answer(i, 100.0 * i) for i in range(1, 5)]  # 1..4 s, rt 100..400 ms
        plain = written(build(answers), tmp_path / "plain")
        engine = Engine(60, goodput={"response_time_ms": 250})
        engine.add(events_frame(answers))
        files = written(engine, tmp_path / "good")
        assert b"goodput" not in plain["session_tracking_summary.csv"]
        header, row = files["session_tracking_totals.csv"].decode().splitlines()
        assert header.endswith(",output_tokens_per_s,failed_response_time_ms_mean,failed_response_time_ms_p95,"
                               "failed_response_time_ms_max,goodput_per_s,goodput_ratio")
        assert row.endswith(",0.667,0.5000")  # 2 good answers in 3 s; 2 of 4

    @pytest.mark.parametrize("bad", [{}, {"latency": 5.0}, {"ttft_ms": -1.0}, {"ttft_ms": float("inf")},
                                     {"ttft_ms": "5"}])
    def test_bad_limits_are_refused(self, bad: dict[str, Any]) -> None:
        """No limit, an unknown name, a negative, infinite or non-number limit is refused, quoted."""
        with pytest.raises(ValueError, match="goodput: must map"):
            Engine(60, goodput=bad)


class TestReportRules:
    def test_negative_zero_is_zero(self, tmp_path: Path) -> None:
        """-0.0 and 0.0 ms in either order give the same bytes (a value sort would order them by arrival)."""
        a = event(1, "s", "question_answered", T0, response_time_ms=-0.0)
        b = event(2, "s", "question_answered", T0 + 1, response_time_ms=0.0)
        assert written(build([a, b]), tmp_path / "ab") == written(build([b, a]), tmp_path / "ba")
        assert b"-0.000" not in written(build([a, b]), tmp_path / "ab2")["session_tracking_summary.csv"]

    def test_window_boundaries_are_left_closed(self) -> None:
        """An event exactly at a window's start belongs to that window, not the one before."""
        events = [event(1, "s", "question_asked", T0 + 60 * S - 1), event(2, "s", "question_asked", T0 + 60 * S)]
        summary = build(events).summary()
        assert summary["questions_asked"].to_list() == [1, 1]
        assert summary["window_start"].to_list() == [T0, T0 + 60 * S]

    def test_session_ending_exactly_at_window_end_is_alive_at_end(self) -> None:
        """A session that unregisters at the window's end instant is alive at that end, then ends."""
        events = [event(1, "s", "session_registered", T0, username="u", course_numbers=[]),
                  event(2, "s", "session_unregistered", T0 + 60 * S, reason="r")]
        engine = build(events)
        assert engine.summary()["active_at_end"].to_list() == [1, 0]
        assert engine.summary()["active_sessions"].to_list() == [1, 1]
        assert engine.session_rows(T0 // (60 * S))["status"].to_list() == ["active"]
        assert engine.session_rows(T0 // (60 * S) + 1)["status"].to_list() == ["ended"]

    def test_run_rates_do_not_depend_on_the_interval(self) -> None:
        """The whole run spans its first to its last event: its answers per second are the same for any interval
        (they were 29.7, 11.1 and 4.45/s for one 44 s log with 5, 60 and 300 s windows)."""
        events = [event(i + 1, "s", "question_answered", T0 + 30 * S + i * S, response_time_ms=1.0) for i in range(45)]
        for interval_s in (5, 60, 300):
            totals = build(events, interval_s).totals().row(0, named=True)
            assert (totals["run_start"], totals["run_end"], totals["duration_s"]) == (T0 + 30 * S, T0 + 74 * S, 44.0)
            assert totals["answers_per_s"] == 45 / 44

    def test_first_and_last_windows_are_not_diluted(self) -> None:
        """A window's rates divide by the seconds of it the run covers: 30 s of the first and of the last."""
        events = [event(1, "s", "question_asked", T0 + 30 * S), event(2, "s", "question_asked", T0 + 60 * S),
                  event(3, "s", "error", T0 + 90 * S, error="x")]
        summary = build(events, 60).summary()
        assert summary["seconds"].to_list() == [30.0, 30.0]
        assert summary["questions_per_s"].to_list() == [1 / 30, 1 / 30]
        assert summary["errors_per_s"].to_list() == [0.0, 1 / 30]
        assert summary["error_rate"].to_list() == [None, 1.0]  # no answer and no error: no rate

    def test_one_instant_has_no_rates(self) -> None:
        """A run of one instant lasts 0 s: its rates are empty, not infinite."""
        totals = build([event(1, "s", "question_answered", T0, response_time_ms=1.0)]).totals().row(0, named=True)
        assert (totals["duration_s"], totals["answers_per_s"], totals["error_rate"]) == (0.0, None, 0.0)

    def test_percentiles_interpolate_linearly(self) -> None:
        """p90 of 1..10 ms is 9.1, numpy's linear method, not the nearest rank."""
        events = [event(i, "s", "question_answered", T0 + i, response_time_ms=float(i)) for i in range(1, 11)]
        assert build(events).summary()["response_time_ms_p90"].to_list() == [pytest.approx(9.1)]

    def test_no_tpot_for_a_first_token_after_the_response(self) -> None:
        """An answer whose TTFT exceeds its response time has no TPOT (it would be negative): only the other
        answer's TPOT counts, in the window and the run."""
        events = [event(1, "s", "question_answered", T0, response_time_ms=10.0, time_to_first_token_ms=50.0,
                        output_tokens=5),
                  event(2, "s", "question_answered", T0 + 1, response_time_ms=50.0, time_to_first_token_ms=10.0,
                        output_tokens=5)]
        engine = build(events)
        assert engine.summary()["tpot_ms_p50"].to_list() == [10.0]
        assert engine.totals()["tpot_ms_mean"].to_list() == [10.0]

    def test_means_of_values_near_the_largest_double(self) -> None:
        """The mean of M, M, 0, 0 (M the largest double) is M / 2, not infinity, in the window, the session row
        and the run, though M + M overflows."""
        m = 1.7976931348623157e308
        events = [event(i, "s", "question_answered", T0 + i, response_time_ms=rt, time_to_first_token_ms=rt)
                  for i, rt in enumerate((m, m, 0.0, 0.0), 1)]
        engine = build(events)
        assert engine.summary()["response_time_ms_mean"].to_list() == [m / 2]
        assert engine.summary()["ttft_ms_mean"].to_list() == [m / 2]
        assert engine.session_rows(next(engine.windows()))["response_time_ms_mean"].to_list() == [m / 2]
        totals = engine.totals().row(0, named=True)
        assert (totals["response_time_ms_mean"], totals["ttft_ms_mean"]) == (m / 2, m / 2)

    def test_token_sums_beyond_64_bits(self, tmp_path: Path) -> None:
        """Token counts of 2**63 - 1 sum exactly (no wrap-around) in the window, the session row and the run, and
        the saved state (JSON) takes them back."""
        big = 2**63 - 1
        events = [event(i, "s", "question_answered", T0 + i, response_time_ms=1.0, input_tokens=big,
                        output_tokens=big) for i in range(1, 5)]
        engine = build(events)
        k = next(engine.windows())
        assert engine.summary()["output_tokens"].to_list() == [4 * big]
        assert engine.session_rows(k)["output_tokens"].to_list() == [4 * big]
        assert engine.totals()["input_tokens"].to_list() == [4 * big]
        again = Engine(60, store=engine.store)
        again.restore(orjson.loads(orjson.dumps(engine.state())))
        assert again.agg(k).chat["output_tokens"] == 4 * big
        assert again.totals()["output_tokens"].to_list() == [4 * big]

    @pytest.mark.parametrize(("part", "change", "message"), [
        ("ts_min", None, "first and last event times disagree"),
        ("sessions", [], "0 sessions for 4 events"),
        ("counts", {"question_answered": 5}, "5 events counted, but the windows saved hold 4"),
        ("ts_max", T0 + 3 * S, "a session's events outside the run's first and last event times"),
        ("carry", [10**9, []], "running totals of window 1000000000, outside the events' windows"),
    ])
    def test_a_state_whose_parts_disagree_is_refused(self, part: str, change: object, message: str) -> None:
        """A saved state whose parts contradict each other or the saved windows (a damaged checkpoint) is refused,
        naming the contradiction, rather than used."""
        engine = build([event(i, "s", "question_answered", T0 + i * S, response_time_ms=1.0) for i in range(1, 5)])
        engine.session_rows(next(engine.windows()))  # a carry saved
        state = orjson.loads(orjson.dumps(engine.state()))
        state[part] = change
        with pytest.raises(ValueError, match=re.escape(message)):
            Engine(60, store=engine.store).restore(state)

    @pytest.mark.parametrize("edit", ["drop a session", "add a session", "an earlier first event",
                                      "another first event of a session", "counts moved between types"])
    def test_a_state_that_is_not_its_rows_is_refused(self, edit: str) -> None:
        """Saved sessions, times and counts are checked against the saved rows: any edit that keeps them
        plausible (a session dropped or added, a time moved, counts swapped) is refused."""
        engine = build([event(1, "s1", "session_registered", T0, username="a", course_numbers=[1]),
                        event(2, "s1", "question_answered", T0 + S, response_time_ms=1.0),
                        event(3, "s2", "question_asked", T0 + 2 * S)])
        state = orjson.loads(orjson.dumps(engine.state()))
        if edit == "drop a session":
            state["sessions"] = [e for e in state["sessions"] if e[0] != "s2"]
        elif edit == "add a session":
            state["sessions"].append(["s9", T0, None, None, [], None, T0])
        elif edit == "an earlier first event":
            state["ts_min"] -= S
        elif edit == "another first event of a session":
            state["sessions"][1][1] += 1
        else:
            state["counts"] = {"session_registered": 1, "question_answered": 2}
        with pytest.raises(ValueError, match="engine state: "):
            Engine(60, store=engine.store).restore(state)
        Engine(60, store=engine.store).restore(orjson.loads(orjson.dumps(engine.state())))  # (unedited: fine)

    def test_counts_of_a_window_that_are_not_its_rows_are_refused(self) -> None:
        """A window's saved counts are checked against its rows: an edited count is refused."""
        engine = build([event(i, "s", "question_answered", T0 + i * S, response_time_ms=1.0) for i in range(1, 5)])
        k = next(engine.windows())
        engine.agg(k)
        state = orjson.loads(orjson.dumps(engine.state()))
        state["aggs"][str(k)][0][COUNTED_NAMES.index("questions_answered")] += 1
        with pytest.raises(ValueError, match=f"the figures saved for window {k} are not those of its rows"):
            Engine(60, store=engine.store).restore(state)

    def test_figures_of_a_window_without_rows_are_refused(self) -> None:
        """Saved figures of a window the saved rows do not have (the windows' entry lost) are refused."""
        engine = build([event(i, "s", "question_answered", T0 + i * S, response_time_ms=1.0) for i in range(1, 5)])
        k = next(engine.windows())
        engine.agg(k)
        state = orjson.loads(orjson.dumps(engine.state()))
        state["aggs"][str(k + 1)] = state["aggs"][str(k)]
        with pytest.raises(ValueError, match=re.escape(f"figures of windows whose rows the checkpoint does not name: "
                                                       f"[{k + 1}]")):
            Engine(60, store=engine.store).restore(state)

    def test_interval_must_be_whole_positive_seconds(self) -> None:
        """A zero, negative or fractional interval is refused with the value quoted."""
        for bad in (0, -5, 1.5):
            with pytest.raises(ValueError, match=f"interval_s: .* got {bad!r}"):
                Engine(bad)  # type: ignore[arg-type]

    def test_same_events_same_bytes(self, tmp_path: Path) -> None:
        """Writing the same events twice, in different order, gives identical bytes."""
        events = random_events([("s1", "question_answered", i * 977_777, i * 1.111, None) for i in range(300)])
        assert written(build(events, 7), tmp_path / "a") == written(build(events[::-1], 7), tmp_path / "b")

    def test_session_file_name_is_the_window_end(self) -> None:
        """Per-window files are stamped with the window's end in UTC."""
        assert session_file_name(T0 + 300 * S) == "session_tracking_report_20261124_220500.csv"
