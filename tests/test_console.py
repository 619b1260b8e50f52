"""Tests for tracker.console: the snapshot's figures against a plain-Python computation, and what the view writes.

The clock is a value the test sets (given to the tail, for the read times it records, and to the view): nothing
sleeps.
"""

from __future__ import annotations

import io
import logging
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from rich.cells import cell_len
from rich.console import Console

from tests.helpers import T0, record
from tracker.console import Figures, LiveView, render, snapshot, warnings_to_stderr
from tracker.events import format_ts
from tracker.tail import Tail

S = 1_000_000
REG = {"username": "u", "course_numbers": [1]}
ALT_ON, ALT_OFF = "\x1b[?1049h", "\x1b[?1049l"
Script = list[tuple[float, str, str, dict[str, Any]]]

#: (second after T0, session, type, fields): the log the tail reads, in order.
SCRIPT: Script = [
    (0, "s1", "session_registered", REG),
    (1, "s2", "session_registered", REG),
    (2, "s3", "session_registered", REG),
    (5, "s1", "question_answered", {"response_time_ms": 9000.0}),
    (10, "s1", "question_answered", {"response_time_ms": 9500.0}),
    (30, "s1", "error", {"error": "old"}),
    (50, "s4", "session_registered", REG),
    (60, "s1", "question_asked", {}),
    (61, "s1", "question_answered", {"response_time_ms": 100.0}),
    (62, "s1", "question_answered", {"response_time_ms": 300.0}),
    (65, "s3", "question_asked", {}),
    (70, "s2", "session_unregistered", {"reason": "done"}),
    (70.5, "s3", "question_answered", {"response_time_ms": 1000.0}),
    (80, "s3", "question_answered", {"response_time_ms": 2000.0}),
    (90, "s3", "question_answered", {"response_time_ms": 4000.0}),
    (95, "s3", "cycle_completed", {}),
    (100, "s4", "question_answered", {"response_time_ms": 50.0}),
    (110, "s4", "error", {"error": "boom", "kind": "timeout"}),
    (120, "s4", "cycle_completed", {}),
]
BAD_LINES = [b"not json at all\n", b'{"v": 1, "type": "question_asked"}\n']
NEWEST = T0 + 120 * S
#: Late: for the window [T0, T0+60 s), closed once T0+120 s was read.
LATE: tuple[float, str, str, dict[str, Any]] = (30, "s3", "question_asked", {})
#: When the view starts, and when the fed tail read its three batches (seconds on the test's clock).
START, FIRST, SECOND, THIRD = 1000.0, 1000.0, 1030.0, 1040.0
#: What the fed tail read, and when: the rolling figures go by these read times, not by the events' times.
BATCHES: list[tuple[float, Script]] = [(FIRST, SCRIPT[:10]), (SECOND, SCRIPT[10:]), (THIRD, [LATE])]


class Clock:
    """A clock the test sets."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _lines(script: Script, first_seq: int = 1) -> bytes:
    return b"".join(orjson.dumps(record(seq, sid, kind, T0 + int(sec * S), **fields)) + b"\n"
                    for seq, (sec, sid, kind, fields) in enumerate(script, first_seq))


def quantile(values: list[float], q: float) -> float:
    """The linearly interpolated quantile (numpy's default method)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def expected_figures(batches: list[tuple[float, Script]], now: float, since: float | None = None) -> dict[str, Any]:
    """The rolling figures over the events read within 60 s before ``now``, computed independently."""
    kept = [(at, script) for at, script in batches if at >= now - 60]
    read = [item for _, script in kept for item in script]
    first = min(at for at, _ in kept)
    span = max(1.0, min(60.0, now - (first if since is None else min(since, first))))

    def rate(kind: str) -> float:
        return sum(1 for _, _, k, _ in read if k == kind) / span

    answers = [(sid, fields["response_time_ms"]) for _, sid, k, fields in read if k == "question_answered"]
    rts = [rt for _, rt in answers]
    per_session: dict[str, list[float]] = {}
    for sid, rt in answers:
        per_session.setdefault(sid, []).append(rt)
    rows = [(sid, len(v), sum(v) / len(v)) for sid, v in per_session.items()]
    return {
        "questions_per_s": rate("question_asked"),
        "answers_per_s": rate("question_answered"),
        "cycles_per_s": rate("cycle_completed"),
        "errors_per_s": rate("error"),
        "rt": {"p50": quantile(rts, 0.5), "p90": quantile(rts, 0.9), "p95": quantile(rts, 0.95),
               "p99": quantile(rts, 0.99), "max": max(rts)},
        "slowest": sorted(rows, key=lambda r: (-r[2], r[0]))[:5],
        "busiest": sorted(rows, key=lambda r: (-r[1], r[0]))[:5],
    }


def _with(f: Figures, **changes: Any) -> Figures:
    """``f`` with some figures changed."""
    return cast(Figures, {**f, **changes})


def _text(console: Console) -> str:
    """What a recording console showed, as plain text."""
    return console.export_text()


def _terminal() -> Console:
    """A terminal of 80 columns that records what is written to it."""
    return Console(file=io.StringIO(), force_terminal=True, width=80, height=30, color_system="standard")


def _written(console: Console) -> str:
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "events.jsonl"


@pytest.fixture
def tail(tmp_path: Path, log: Path, clock: Clock) -> Iterator[Tail]:
    """A tail on one (still empty) log, on the test's clock, closed at the end of the test."""
    log.parent.mkdir()
    log.write_bytes(b"")
    made = Tail([log], tmp_path / "out", interval_s=60)
    made.clock = clock
    yield made
    made.close()


@pytest.fixture
def fed(tail: Tail, log: Path, clock: Clock) -> Tail:
    """The tail after reading BATCHES at their times (two bad lines among them; the second batch closes the first
    window, so the third is a late event); the clock is left at the third read."""
    clock.now = FIRST
    with open(log, "ab") as stream:
        stream.write(_lines(SCRIPT[:8]) + BAD_LINES[0] + _lines(SCRIPT[8:10], 9))
    assert tail.poll() == 10
    clock.now = SECOND
    with open(log, "ab") as stream:
        stream.write(_lines(SCRIPT[10:], 11) + BAD_LINES[1])
    assert tail.step(now=NEWEST / S) is True  # the newest event closes [T0, T0+60 s)
    clock.now = THIRD
    with open(log, "ab") as stream:
        stream.write(_lines([LATE], 100))
    assert tail.poll() == 1
    return tail


def _assert_rolling(f: Figures, want: dict[str, Any]) -> None:
    for name in ("questions_per_s", "answers_per_s", "cycles_per_s", "errors_per_s"):
        assert f[name] == pytest.approx(want[name]), name
    assert f["rt"] == pytest.approx(want["rt"])
    for name in ("slowest", "busiest"):
        rows = f[name]  # type: ignore[literal-required]
        assert [(sid, n) for sid, n, _ in rows] == [(sid, n) for sid, n, _ in want[name]], name
        assert [mean for *_, mean in rows] == pytest.approx([mean for *_, mean in want[name]]), name


class TestSnapshot:
    def test_counts(self, fed: Tail) -> None:
        """Active sessions, events, rejected lines, late events, windows and the newest event time are as read."""
        f = snapshot(fed)
        assert f["active"] == 3
        assert f["events"] == len(SCRIPT) + 1
        assert f["rejected"] == len(BAD_LINES)
        assert f["late"] == 1
        assert f["windows"] == 1
        assert (f["rotations"], f["truncations"]) == (0, 0)
        assert f["newest"] == NEWEST

    def test_rolling_figures_cover_what_was_read_in_the_last_60_s(self, fed: Tail, clock: Clock) -> None:
        """75 s after the first read only the last two batches count, whatever their event times; the rates are
        over 60 s once reading began 60 s ago or more."""
        clock.now = FIRST + 75
        f = snapshot(fed, since=START)
        want = expected_figures(BATCHES, clock.now, since=START)
        _assert_rolling(f, want)
        assert f["answers_per_s"] == pytest.approx(4 / 60)  # s3's three answers and s4's one, not s1's four
        assert f["questions_per_s"] == pytest.approx(2 / 60)  # s3's, and the late one
        assert f["rt"] is not None
        assert f["rt"]["p95"] == pytest.approx(3700.0)
        assert [row[0] for row in f["slowest"]] == ["s3", "s4"]
        assert f["idle_s"] == pytest.approx(75 - (THIRD - FIRST))

    def test_rates_span_the_time_since_reading_began(self, fed: Tail, clock: Clock) -> None:
        """Within the first minute the rates are counts over the time since the view started (at least 1 s), or
        since the first read in the window when no start is given."""
        clock.now = THIRD + 5
        for since in (START, START - 10, None):
            want = expected_figures(BATCHES, clock.now, since=since)
            _assert_rolling(snapshot(fed, since=since), want)
        assert snapshot(fed, since=START)["answers_per_s"] == pytest.approx(8 / 45)
        assert snapshot(fed, now=FIRST + 0.25, since=START)["answers_per_s"] == pytest.approx(8.0)

    def test_rates_fall_to_zero_when_the_log_goes_quiet(self, fed: Tail, clock: Clock) -> None:
        """61 s after the last read the rates are 0 and there are no percentiles or top sessions; the counts stay."""
        clock.now = THIRD + 61
        f = snapshot(fed, since=START)
        assert (f["questions_per_s"], f["answers_per_s"], f["cycles_per_s"], f["errors_per_s"]) == (0, 0, 0, 0)
        assert f["rt"] is None
        assert (f["slowest"], f["busiest"]) == ([], [])
        assert f["idle_s"] == pytest.approx(61.0)
        assert (f["events"], f["late"], f["newest"]) == (len(SCRIPT) + 1, 1, NEWEST)

    def test_percentiles_cover_every_answer_read(self, tail: Tail, log: Path, clock: Clock) -> None:
        """100 answers read one at a time over 59.4 s: the percentiles cover all of them, not the last few reads."""
        script: Script = [(i / 10, "s1", "question_answered", {"response_time_ms": float(i)}) for i in range(1, 101)]
        for n, line in enumerate(_lines(script).splitlines(keepends=True)):
            clock.now = START + n * 0.6
            with open(log, "ab") as stream:
                stream.write(line)
            assert tail.poll() == 1, n
        f = snapshot(tail)
        assert f["rt"] is not None
        assert f["rt"] == pytest.approx({name: quantile([float(i) for i in range(1, 101)], q) for name, q in
                                         (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))})
        assert [(sid, n) for sid, n, _ in f["busiest"]] == [("s1", 100)]
        assert f["busiest"][0][2] == pytest.approx(50.5)
        assert f["answers_per_s"] == pytest.approx(100 / 59.4)

    def test_no_events(self, tail: Tail) -> None:
        """Before any event: zero counts and rates, no newest event, no idle time, no percentiles."""
        tail.poll()
        f = snapshot(tail)
        assert (f["active"], f["events"], f["rejected"], f["late"], f["newest"], f["idle_s"]) == (0, 0, 0, 0, None,
                                                                                                  None)
        assert (f["answers_per_s"], f["rt"], f["slowest"]) == (0.0, None, [])

    def test_the_tail_keeps_the_batches_read_in_the_last_60_s(self, tail: Tail, log: Path, clock: Clock) -> None:
        """Tail.recent holds each batch with its read time on the tail's clock, dropping those read over 60 s
        before the newest."""
        for at, script in ((0.0, SCRIPT[:3]), (30.0, SCRIPT[3:5]), (70.0, SCRIPT[5:6])):
            clock.now = at
            with open(log, "ab") as stream:
                stream.write(_lines(script))
            tail.poll()
        assert [(batch.at, sum(batch.counts.values())) for batch in tail.recent] == [(30.0, 2), (70.0, 1)]


    def test_a_backlog_keeps_its_counts_and_only_the_newest_answers(self, tail: Tail, log: Path,
                                                                    clock: Clock) -> None:
        """Rates count every event read in the last 60 s; the rows kept for percentiles stop at answers_kept,
        the newest (a backlog of millions read in a minute held them all: 1 GB at 10M events)."""
        tail.reads.answers_kept = 5
        answers: Script = [(i, "s1", "question_answered", {"response_time_ms": float(i)}) for i in range(12)]
        for first, part in ((0, answers[:4]), (4, answers[4:9]), (9, answers[9:])):
            clock.now = float(first)
            with open(log, "ab") as stream:
                stream.write(_lines(part, first_seq=first + 1))
            tail.poll()
        assert sum(sum(batch.counts.values()) for batch in tail.recent) == 12
        kept = [v for batch in tail.recent for v in batch.answers["response_time_ms"].to_list()]
        assert kept == [9.0, 10.0, 11.0]  # the oldest batches' answers went whole, once more than 5 were kept
        figures = snapshot(tail, now=9.0, since=0.0)
        assert figures["answers_per_s"] == 12 / 9.0
        assert figures["rt"] is not None
        assert figures["rt"]["max"] == 11.0


class TestRender:
    BIG = Figures(
        active=1_234_567, events=123_456_789_012, rejected=98_765_432, late=7_654_321, windows=65_432,
        rotations=4_321, truncations=321, newest=NEWEST, idle_s=1.0,
        questions_per_s=123_456.7, answers_per_s=98_765.4, cycles_per_s=87_654.3, errors_per_s=12_345.67,
        rt={"p50": 1_234_567.0, "p90": 2_345_678.0, "p95": 3_456_789.0, "p99": 4_567_890.0, "max": 98_765_432.0},
        slowest=[(f"session-with-a-very-long-identifier-{i}", 1_234_567, 9_876_543.0) for i in range(5)],
        busiest=[(f"s{i}", 12_345_678, 1.0) for i in range(5)],
        thresholds=3, failing=["ttft_ms_p95<500 (12,345 windows, run)", "run:error_rate<=0.01 (run)"],
    )

    def _render(self, f: Figures, title: str = "tracker tail logs -> out") -> str:
        console = Console(width=80, record=True, file=io.StringIO())
        console.print(render(title, f, warning="a warning " * 20))
        return _text(console)

    def test_failing_thresholds_are_shown(self) -> None:
        """The failing thresholds are listed with where they failed; with none failing, all are said to pass."""
        text = " ".join(self._render(self.BIG).split())
        assert "thresholds failing: ttft_ms_p95<500 (12,345 windows, run); run:error_rate<=0.01 (run)" in text
        passing = self._render(Figures(**{**self.BIG, "failing": []}))
        assert "thresholds: all 3 passing" in passing
        assert "thresholds" not in self._render(Figures(**{**self.BIG, "thresholds": 0, "failing": []}))

    def test_fits_80_columns_and_cuts_no_number(self) -> None:
        """With a long title, long session ids and huge figures, no line is wider than 80 cells and every number
        is shown whole (the title and the ids are cut with an ellipsis)."""
        text = self._render(self.BIG, title="tracker tail " + "/a/long/path/to/the/logs" * 5 + " -> out")
        assert max(cell_len(line) for line in text.splitlines()) <= 80
        f = self.BIG
        assert f["rt"] is not None
        numbers = [f"{f[name]:,}" for name in ("active", "events", "rejected", "late", "windows", "rotations",
                                                "truncations")]
        numbers += ["123,456.7", "98,765.4", "87,654.3", "12,345.67", "1,234,567", "12,345,678", "9,876,543"]
        numbers += [f"{value:,.0f}" for value in f["rt"].values()]
        for number in numbers:
            assert re.search(rf"(?<![\d,.]){re.escape(number)}(?![\d,.])", text), number
        assert format_ts(NEWEST) in text
        assert "session-with-a-…" in text
        assert "Ctrl-C stops" in text
        assert "…" in text.splitlines()[0]

    def test_shows_every_figure(self, fed: Tail, clock: Clock) -> None:
        """The screen of the fed tail shows its counts, newest event, rates, percentiles and top sessions."""
        clock.now = FIRST + 75
        text = self._render(snapshot(fed, since=START))
        assert max(cell_len(line) for line in text.splitlines()) <= 80
        for label, value in (("active sessions", 3), ("events read", 20), ("rejected lines", 2), ("late events", 1),
                             ("windows written", 1), ("rotations", 0), ("truncations", 0)):
            assert re.search(rf"{label} +{value}\b", text), label
        assert f"newest event (UTC) {format_ts(NEWEST)}" in text
        assert re.search(r"per second +0\.0 +0\.1 +0\.0 +0\.02\b", text)  # 2, 4, 2 and 1 in 60 s
        assert re.search(r"answers +1,500 +3,400 +3,700 +3,940 +4,000\b", text)
        assert re.search(r"s3 +3 +2,333 +s3 +3 +2,333\n", text)
        assert re.search(r"s4 +1 +50 +s4 +1 +50\n", text)

    def test_no_events_line(self) -> None:
        """After more than 5 s without an event read, the screen says for how long; not before."""
        assert "no events for 6 s" in self._render(_with(self.BIG, idle_s=6.2))
        assert "no events for" not in self._render(_with(self.BIG, idle_s=4.9))

    def test_no_answers(self) -> None:
        """Without answers in the last 60 s, the percentiles are dashes and the screen says there were none."""
        quiet = _with(self.BIG, rt=None, slowest=[], busiest=[], answers_per_s=0.0)
        text = self._render(quiet)
        assert re.search(r"answers +- +- +- +- +-\n", text)
        assert "no answers read in the last 60 s" in text


class TestLiveView:
    def test_non_terminal_writes_plain_lines(self, fed: Tail, clock: Clock) -> None:
        """Not on a terminal: a plain line a period, without escape codes, and the quiet time once past 5 s."""
        stream = io.StringIO()
        view = LiveView("run", stream, clock=clock)
        for now in (THIRD + 2, THIRD + 7, THIRD + 12):  # the second is within the 10 s period: no line
            clock.now = now
            view.update(fed)
        view.close()  # a last line
        assert "\x1b" not in stream.getvalue()
        lines = []
        quiet = " (no events for 12 s)"
        for now, note in ((THIRD + 2, ""), (THIRD + 12, quiet), (THIRD + 12, quiet)):
            want = expected_figures(BATCHES, now, since=START)
            lines.append(f"active 3 events 20 answers/s {want['answers_per_s']:.1f} p95 {want['rt']['p95']:,.0f} ms "
                         f"errors/s {want['errors_per_s']:.2f} late 1 rejected 2 windows 1{note}")
        assert stream.getvalue().splitlines() == lines
        assert lines[0] == "active 3 events 20 answers/s 0.2 p95 9,325 ms errors/s 0.05 late 1 rejected 2 windows 1"

    def test_non_terminal_line_before_events(self, tail: Tail) -> None:
        """Before any event the line shows zero rates and no p95."""
        stream = io.StringIO()
        LiveView("run", stream, tty=False).update(tail, force=True)
        assert stream.getvalue() == "active 0 events 0 answers/s 0.0 p95 - ms errors/s 0.00 late 0 rejected 0 " \
                                    "windows 0\n"

    def test_alternate_screen_on_a_terminal(self, fed: Tail, clock: Clock) -> None:
        """On a terminal the view is drawn on the alternate screen; closing it leaves that screen and prints a
        plain summary on the normal one."""
        console = _terminal()
        view = LiveView("stress run", console=console, clock=clock)
        view.update(fed)
        shown = _written(console)
        assert shown.startswith(ALT_ON)
        assert ALT_OFF not in shown
        assert "stress run" in shown
        assert "active sessions" in shown
        view.close()
        written = _written(console)
        assert written.count(ALT_ON) == written.count(ALT_OFF) == 1
        after = written.split(ALT_OFF)[1]
        assert "\x1b" not in after
        want = expected_figures(BATCHES, THIRD, since=START)  # all three batches, over the 40 s since the start
        assert after.splitlines() == [
            "stress run",
            "  active sessions 3, events read 20, rejected lines 2, late events 1",
            f"  windows written 1, rotations 0, truncations 0, newest event {format_ts(NEWEST)}",
            f"  last 60 s: questions {want['questions_per_s']:.1f}/s, answers {want['answers_per_s']:.1f}/s, "
            f"cycles {want['cycles_per_s']:.1f}/s, errors {want['errors_per_s']:.2f}/s",
            "  response ms: " + ", ".join(f"{name} {value:,.0f}" for name, value in want["rt"].items()),
            "  slowest sessions (mean ms): " + ", ".join(f"{sid} {mean:,.0f}" for sid, _, mean in want["slowest"]),
            "  busiest sessions (answers): " + ", ".join(f"{sid} {n}" for sid, n, _ in want["busiest"]),
        ]
        assert after.splitlines()[3:5] == ["  last 60 s: questions 0.1/s, answers 0.2/s, cycles 0.1/s, errors 0.05/s",
                                           "  response ms: p50 1,500, p90 9,150, p95 9,325, p99 9,465, max 9,500"]
        view.update(fed, force=True)
        assert _written(console) == written  # closed: nothing more

    def test_redraws_about_twice_a_second(self, fed: Tail, clock: Clock) -> None:
        """Updates every 0.1 s redraw the screen every 0.5 s."""
        console = _terminal()
        view = LiveView("stress run", console=console, clock=clock)
        for tenth in range(11):
            clock.now = THIRD + tenth / 10
            view.update(fed)
        view.close()
        assert _written(console).split(ALT_OFF)[0].count("stress run") == 3

    def test_quiet_log_on_the_screen(self, fed: Tail, clock: Clock) -> None:
        """61 s after the last read the screen says no events for 61 s, in yellow, and the rates are 0."""
        console = _terminal()
        view = LiveView("stress run", console=console, clock=clock, refresh_s=0)
        clock.now = THIRD + 61
        view.update(fed)
        screen = _written(console)
        assert "\x1b[1;33mno events for 61 s" in screen
        assert re.search(r"per second +0\.0 +0\.0 +0\.0 +0\.00", re.sub(r"\x1b\[[0-9;]*m", "", screen))
        view.close()

    def test_forced_update_ends_the_view(self, fed: Tail, clock: Clock) -> None:
        """On a terminal a forced update (the one made after the tail stopped) leaves the alternate screen and prints
        the summary."""
        console = _terminal()
        view = LiveView("stress run", console=console, clock=clock)
        view.update(fed)
        view.update(fed, force=True)
        written = _written(console)
        assert written.count(ALT_OFF) == 1
        assert written.split(ALT_OFF)[1].startswith("stress run\n  active sessions 3, events read 20")

    def test_with_block_leaves_the_alternate_screen_on_error(self, fed: Tail, clock: Clock) -> None:
        """An error inside a with block still leaves the alternate screen."""
        console = _terminal()

        def run() -> None:
            with LiveView("stress run", console=console, clock=clock) as view:
                view.update(fed)
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            run()
        assert _written(console).count(ALT_OFF) == 1

    def test_warnings_while_live_are_kept_in_the_summary(self, tail: Tail, log: Path, clock: Clock) -> None:
        """A warning made while the live screen was on is shown on it, and kept in the summary."""
        console = _terminal()
        view = LiveView("stress run", console=console, clock=clock, refresh_s=0)
        log.write_bytes(_lines(SCRIPT[:5]))
        tail.poll()
        view.update(tail)
        log.write_bytes(_lines(SCRIPT[5:6]))  # truncated in place, then written again
        tail.poll()
        view.update(tail)
        assert "truncated" in _written(console).split(ALT_OFF)[0]
        view.close()
        summary = _written(console).split(ALT_OFF)[1].splitlines()
        assert summary[-2] == "  1 warning while the live view was on:"
        assert "truncated or replaced" in summary[-1]


class TestWarningsToStderr:
    def test_warnings_go_to_stderr_as_it_is_now(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The tail's warnings go to sys.stderr as it is when they come, not to a stream replaced (and closed) since."""
        logger = logging.getLogger("tracker")
        monkeypatch.setattr(logger, "handlers", [])
        monkeypatch.setattr(logger, "propagate", True)
        warnings_to_stderr()
        first = io.StringIO()
        monkeypatch.setattr(sys, "stderr", first)
        logging.getLogger("tracker.tail").warning("one")
        first.close()
        second = io.StringIO()
        monkeypatch.setattr(sys, "stderr", second)
        logging.getLogger("tracker.tail").warning("two")
        assert second.getvalue() == "tracker: WARNING: two\n"
