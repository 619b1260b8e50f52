"""Tests for tracker.console: the snapshot's figures against a plain-Python computation, and what the view writes."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers import T0, record
from tracker.console import LiveView, snapshot
from tracker.events import format_ts
from tracker.tail import Tail

S = 1_000_000
CLEAR = "\x1b[H\x1b[J"
REG = {"username": "u", "course_numbers": [1]}

#: (second after T0, session, type, fields): the log the tail reads, in order.
SCRIPT: list[tuple[float, str, str, dict[str, Any]]] = [
    (0, "s1", "session_registered", REG),
    (1, "s2", "session_registered", REG),
    (2, "s3", "session_registered", REG),
    (5, "s1", "question_answered", {"response_time_ms": 9000.0}),  # older than the last 60 s
    (10, "s1", "question_answered", {"response_time_ms": 9500.0}),
    (30, "s1", "error", {"error": "old"}),
    (50, "s4", "session_registered", REG),
    (60, "s1", "question_asked", {}),  # exactly 60 s before the newest event: inside
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


def _lines(script: list[tuple[float, str, str, dict[str, Any]]], first_seq: int = 1) -> bytes:
    return b"".join(orjson.dumps(record(seq, sid, kind, T0 + int(sec * S), **fields)) + b"\n"
                    for seq, (sec, sid, kind, fields) in enumerate(script, first_seq))


def quantile(values: list[float], q: float) -> float:
    """The linearly interpolated quantile (numpy's default method)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def expected_figures(script: list[tuple[float, str, str, dict[str, Any]]]) -> dict[str, Any]:
    """The rolling figures over the events within 60 s of the newest, computed independently."""
    newest = max(sec for sec, *_ in script)
    recent = [item for item in script if item[0] >= newest - 60]
    span = max(1.0, min(60.0, newest - min(sec for sec, *_ in recent)))

    def rate(kind: str) -> float:
        return sum(1 for _, _, k, _ in recent if k == kind) / span

    answers = [(sid, fields["response_time_ms"]) for _, sid, k, fields in recent if k == "question_answered"]
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


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "events.jsonl"


@pytest.fixture
def tail(tmp_path: Path, log: Path) -> Iterator[Tail]:
    """A tail on one (still empty) log, closed at the end of the test."""
    log.parent.mkdir()
    log.write_bytes(b"")
    made = Tail([log], tmp_path / "out", interval_s=60)
    yield made
    made.close()


@pytest.fixture
def fed(tail: Tail, log: Path) -> Tail:
    """The tail after reading SCRIPT and two bad lines, closing the first window, then one late event."""
    with open(log, "ab") as stream:
        stream.write(_lines(SCRIPT[:8]) + BAD_LINES[0] + _lines(SCRIPT[8:], 9) + BAD_LINES[1])
    assert tail.step(now=NEWEST / S) is True  # the newest event closes [T0, T0+60 s)
    with open(log, "ab") as stream:
        stream.write(_lines([LATE], 100))
    assert tail.poll() == 1
    return tail


class TestSnapshot:
    def test_rolling_figures_cover_sixty_seconds_however_the_log_is_read(self, tail: Tail, log: Path) -> None:
        """1,000 answers in 10 s, read one at a time: the percentiles cover all of them (the last 60 s), not the
        last few hundred reads."""
        script = [(i / 100, "s1", "question_answered", {"response_time_ms": float(i)}) for i in range(1, 1001)]
        data = _lines(script).splitlines(keepends=True)
        for n, line in enumerate(data, 1):
            with open(log, "ab") as stream:
                stream.write(line)
            assert tail.poll() == 1, n
        f = snapshot(tail)
        assert f["rt"]["p50"] == pytest.approx(quantile([float(i) for i in range(1, 1001)], 0.5))  # type: ignore[index]

    def test_counts(self, fed: Tail) -> None:
        """Active sessions (registered minus unregistered), events, rejected lines and late events are as written."""
        f = snapshot(fed)
        assert f["active"] == 3
        assert f["events"] == len(SCRIPT) + 1
        assert f["rejected"] == len(BAD_LINES)
        assert f["late"] == 1
        assert f["windows"] == 1
        assert f["newest"] == NEWEST

    def test_rates_and_percentiles(self, fed: Tail) -> None:
        """Per-second rates, response-time percentiles and per-session rows cover the last 60 s of event time."""
        f = snapshot(fed)
        want = expected_figures([*SCRIPT, LATE])
        for name in ("questions_per_s", "answers_per_s", "cycles_per_s", "errors_per_s"):
            assert f[name] == pytest.approx(want[name]), name
        assert want["answers_per_s"] == pytest.approx(6 / 60)
        rt = f["rt"]
        assert isinstance(rt, dict)
        assert rt == pytest.approx(want["rt"])
        assert rt["p95"] == pytest.approx(3500.0)
        for name in ("slowest", "busiest"):
            rows = f[name]
            assert isinstance(rows, list)
            assert [(sid, n) for sid, n, _ in rows] == [(sid, n) for sid, n, _ in want[name]], name
            assert [mean for *_, mean in rows] == pytest.approx([mean for *_, mean in want[name]]), name
        assert [row[0] for row in want["slowest"]] == ["s3", "s1", "s4"]

    def test_rates_over_a_short_span(self, tail: Tail, log: Path) -> None:
        """With events spanning 10 s, rates are counts over those 10 s; percentiles interpolate linearly."""
        script: list[tuple[float, str, str, dict[str, Any]]] = [
            (float(sec), "s1", "question_answered", {"response_time_ms": float(sec * 10 + 1)}) for sec in range(11)]
        log.write_bytes(_lines(script))
        assert tail.poll() == len(script)
        f = snapshot(tail)
        want = expected_figures(script)
        assert f["answers_per_s"] == pytest.approx(want["answers_per_s"])
        assert want["answers_per_s"] == pytest.approx(1.1)
        assert f["rt"] == pytest.approx(want["rt"])

    def test_no_events(self, tail: Tail) -> None:
        """Before any event: zero counts, no newest event and no rolling figures."""
        tail.poll()
        f = snapshot(tail)
        assert (f["active"], f["events"], f["rejected"], f["late"], f["newest"]) == (0, 0, 0, 0, None)
        assert "answers_per_s" not in f
        assert "rt" not in f


class TestLiveView:
    def _line(self, fed: Tail) -> str:
        want = expected_figures([*SCRIPT, LATE])
        return (f"active 3 events {len(SCRIPT) + 1} answers/s {want['answers_per_s']:.1f} "
                f"p95 {want['rt']['p95']:,.0f} ms errors/s {want['errors_per_s']:.2f} late 1 "
                f"rejected {len(BAD_LINES)} windows 1\n")

    def test_one_line_per_forced_update(self, fed: Tail) -> None:
        """Not on a terminal: each forced update writes exactly one line in the documented format."""
        stream = io.StringIO()
        view = LiveView("run", stream, tty=False, line_every_s=3600)
        view.update(fed, force=True)
        assert stream.getvalue() == self._line(fed)
        assert stream.getvalue() == "active 3 events 20 answers/s 0.1 p95 3,500 ms errors/s 0.02 late 1 " \
                                    "rejected 2 windows 1\n"
        view.update(fed, force=True)
        assert stream.getvalue() == self._line(fed) * 2

    def test_no_line_within_the_period(self, fed: Tail) -> None:
        """An update within line_every_s of the last one, not forced, writes nothing."""
        stream = io.StringIO()
        view = LiveView("run", stream, tty=False, line_every_s=3600)
        view.update(fed, force=True)
        view.update(fed)
        view.update(fed)
        assert stream.getvalue() == self._line(fed)

    def test_unforced_line_after_the_period(self, fed: Tail) -> None:
        """With a zero period, every unforced update writes its line."""
        stream = io.StringIO()
        view = LiveView("run", stream, tty=False, line_every_s=0)
        view.update(fed)
        view.update(fed)
        assert stream.getvalue() == self._line(fed) * 2

    def test_line_before_events(self, tail: Tail) -> None:
        """Before any event the line shows zero rates and no p95."""
        stream = io.StringIO()
        LiveView("run", stream, tty=False).update(tail, force=True)
        assert stream.getvalue() == ("active 0 events 0 answers/s 0.0 p95 - ms errors/s 0.00 late 0 "
                                     "rejected 0 windows 0\n")

    def test_screen(self, fed: Tail) -> None:
        """On a terminal: clear the screen, then the title, sessions, rates, percentiles, slowest and busiest."""
        stream = io.StringIO()
        LiveView("stress run", stream, tty=True, refresh_s=3600).update(fed, force=True)
        text = stream.getvalue()
        assert text.startswith(CLEAR)
        assert text.count(CLEAR) == 1
        lines = text[len(CLEAR):].splitlines()
        want = expected_figures([*SCRIPT, LATE])
        assert lines[0].startswith(f"stress run   newest event {format_ts(NEWEST)}")
        assert "active sessions 3" in lines[1]
        assert f"events {len(SCRIPT) + 1}" in lines[1]
        assert "late 1" in lines[1]
        assert f"rejected lines {len(BAD_LINES)}" in lines[1]
        assert "windows written 1" in lines[1]
        rates = next(line for line in lines if line.startswith("last 60 s:"))
        assert f"questions {want['questions_per_s']:.1f}/s" in rates
        assert f"answers {want['answers_per_s']:.1f}/s" in rates
        assert f"cycles {want['cycles_per_s']:.1f}/s" in rates
        assert f"errors {want['errors_per_s']:.2f}/s" in rates
        response = next(line for line in lines if line.startswith("response ms:"))
        for name, value in want["rt"].items():
            assert f"{name} {value:,.0f}" in response, name
        assert "p95 3,500" in response
        slowest = next(line for line in lines if line.startswith("slowest sessions"))
        assert slowest.endswith("   ".join(f"{sid} {mean:,.0f}" for sid, _, mean in want["slowest"]))
        assert "s3 2,333   s1 200   s4 50" in slowest
        busiest = next(line for line in lines if line.startswith("busiest sessions"))
        assert busiest.endswith("   ".join(f"{sid} {n}" for sid, n, _ in want["busiest"]))
        assert "s3 3   s1 2   s4 1" in busiest
        assert "waiting for events..." not in text

    def test_screen_before_events(self, tail: Tail) -> None:
        """On a terminal, before any event, the screen says it is waiting for events."""
        tail.poll()
        stream = io.StringIO()
        LiveView("stress run", stream, tty=True).update(tail, force=True)
        text = stream.getvalue()
        assert text.startswith(CLEAR)
        lines = text[len(CLEAR):].splitlines()
        assert lines[-1] == "waiting for events..."
        assert "newest event -" in lines[0]
        assert "active sessions 0" in lines[1]
