"""Tests for tracker.live: windows close by event time or idle wall clock, and the files always equal replay's."""

from __future__ import annotations

import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import T0, event
from tests.test_engine import LOGS, random_events
from tracker.events import Event
from tracker.live import LiveReporter
from tracker.output import ERRORS_FILE, REPORT_HTML, SESSIONS_FILE_PREFIX, SUMMARY_FILE, TOTALS_FILE, session_file_name
from tracker.replayer import replay

S = 1_000_000
MS = 1_000
REG: dict[str, Any] = {"username": "u", "course_numbers": [1, 2]}


def _write_log(path: Path, events: list[Event]) -> None:
    path.write_bytes(b"".join(orjson.dumps(e.to_record()) + b"\n" for e in events))


def replay_files(base: Path, events: list[Event], interval_s: int) -> dict[str, bytes]:
    """Every file ``replay`` writes for ``events`` (as one log), by name, in a fresh folder under ``base``."""
    work = Path(tempfile.mkdtemp(dir=base, prefix="replay-"))
    log = work / "events.jsonl"
    _write_log(log, events)
    out = work / "out"
    replay([log], out, interval_s=interval_s, quarantine_path=work / "quarantine.jsonl")
    return disk_files(out)


def disk_files(folder: Path) -> dict[str, bytes]:
    """The report files in ``folder`` (not the hidden bookkeeping: the manifest of written files)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


def window_files(files: dict[str, bytes]) -> dict[str, bytes]:
    return {name: data for name, data in files.items() if name.startswith(SESSIONS_FILE_PREFIX)}


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def _micros(iso: str) -> int:
    moment = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return int(moment.timestamp()) * S


def _window_ends(summary: bytes) -> list[int]:
    """The window_end column of a summary CSV (its second column), in epoch microseconds."""
    return [_micros(line.split(b",")[1].decode()) for line in _lines(summary)[1:]]


def assert_closed_part_matches(live: Path, expected: dict[str, bytes], closed_until: int | None) -> None:
    """The live folder holds replay's files for the closed windows only: summary and errors rows, per-window files."""
    on_disk = disk_files(live)
    assert set(on_disk) - set(window_files(on_disk)) == {SUMMARY_FILE, TOTALS_FILE, ERRORS_FILE, REPORT_HTML}
    assert b'<meta http-equiv="refresh"' in on_disk[REPORT_HTML]  # live: the page reloads itself
    ends = _window_ends(expected[SUMMARY_FILE])
    closed = [] if closed_until is None else [end for end in ends if end <= closed_until]
    assert _lines(on_disk[SUMMARY_FILE]) == _lines(expected[SUMMARY_FILE])[:len(closed) + 1]
    assert on_disk[TOTALS_FILE] == expected[TOTALS_FILE]
    error_rows = [line for line in _lines(expected[ERRORS_FILE])[1:]
                  if closed_until is not None and _micros(line.split(b",")[1].decode()) <= closed_until]
    assert _lines(on_disk[ERRORS_FILE]) == _lines(expected[ERRORS_FILE])[:1] + error_rows
    assert sorted(window_files(on_disk)) == sorted(session_file_name(end) for end in closed)
    for name, data in window_files(on_disk).items():
        assert data == expected[name], name


def sample_events() -> list[Event]:
    """Three sessions over four 60 s windows, with answers and errors in every window."""
    return [
        event(1, "s1", "session_registered", T0 + 1 * S, **REG),
        event(2, "s2", "session_registered", T0 + 2 * S, **REG),
        event(3, "s1", "question_answered", T0 + 10 * S, response_time_ms=120.5),
        event(4, "s2", "error", T0 + 20 * S, error="boom", kind="timeout"),
        event(5, "s1", "question_answered", T0 + 70 * S, response_time_ms=300.0),
        event(6, "s3", "session_registered", T0 + 80 * S, **REG),
        event(7, "s2", "error", T0 + 90 * S, error="bad"),
        event(8, "s2", "session_unregistered", T0 + 100 * S, reason="done"),
        event(9, "s3", "question_answered", T0 + 130 * S, response_time_ms=999.9),
        event(10, "s3", "cycle_completed", T0 + 150 * S),
        event(11, "s1", "error", T0 + 190 * S, error="late boom"),
        event(12, "s1", "question_answered", T0 + 200 * S, response_time_ms=42.0),
    ]


class TestClosingWindows:
    def test_event_time_plus_grace_closes_a_window(self, tmp_path: Path) -> None:
        """Interval 60 s, grace 5 s: events at we+4.9 s and just before we+5 s leave [ws, we) open; we+5 s closes it."""
        live = LiveReporter(tmp_path, interval_s=60, grace_s=5)
        live.add_events([event(1, "s", "question_asked", T0 + 10 * S)])
        live.advance()
        assert live.closed_until is not None
        assert live.closed_until < T0 + 60 * S
        live.add_events([event(2, "s", "question_asked", T0 + 64_900 * MS)])
        assert live.advance() is False
        assert live.closed_until < T0 + 60 * S
        live.add_events([event(4, "s", "question_asked", T0 + 65 * S - 1)])
        live.advance()
        assert live.closed_until < T0 + 60 * S
        live.add_events([event(3, "s", "question_asked", T0 + 65 * S)])
        assert live.advance() is True
        assert live.closed_until == T0 + 60 * S

    def test_closed_until_never_goes_back(self, tmp_path: Path) -> None:
        """Older events, or an idle wall clock before the newest event, never move closed_until back."""
        live = LiveReporter(tmp_path, interval_s=60, grace_s=5)
        live.add_events([event(1, "s", "question_asked", T0 + 200 * S)])
        live.advance()
        assert live.closed_until == T0 + 180 * S
        live.add_events([event(2, "s", "question_asked", T0 + 10 * S)])
        assert live.advance() is False
        assert live.closed_until == T0 + 180 * S
        assert live.advance(now_us=T0, idle=True) is False
        assert live.closed_until == T0 + 180 * S

    def test_wall_clock_closes_only_when_idle(self, tmp_path: Path) -> None:
        """A far-future wall clock closes nothing beyond event time unless idle; idle, windows ending by now-grace."""
        live = LiveReporter(tmp_path, interval_s=60, grace_s=5)
        live.add_events([event(1, "s", "question_asked", T0 + 10 * S)])
        live.advance(now_us=T0 + 100_000 * S, idle=False)
        assert live.closed_until == T0
        assert live.advance(now_us=T0 + 124_900 * MS, idle=True) is True
        assert live.closed_until == T0 + 60 * S
        assert live.advance(now_us=T0 + 125 * S, idle=True) is True
        assert live.closed_until == T0 + 120 * S

    def test_late_events_are_counted(self, tmp_path: Path) -> None:
        """An event for a window already closed is counted as late, by add_events and in ``late``."""
        live = LiveReporter(tmp_path, interval_s=60, grace_s=5)
        live.add_events([event(1, "s", "question_asked", T0 + 65 * S)])
        live.advance()
        assert live.late == 0
        assert live.add_events([event(2, "s", "question_asked", T0 + 59 * S),
                                event(3, "s", "question_asked", T0 + 60 * S)]) == 1
        assert live.late == 1


class TestFlush:
    def test_flush_writes_only_closed_windows_equal_to_replay(self, tmp_path: Path) -> None:
        """A flush writes the closed windows' files and summary rows, byte-equal to replay's for the same events."""
        events = sample_events()
        out = tmp_path / "live"
        live = LiveReporter(out, interval_s=60, grace_s=5)
        live.add_events(events)
        live.advance()  # newest event T0+200 s: windows ending by T0+180 s are closed
        assert live.closed_until == T0 + 180 * S
        result = live.flush()
        assert result.closed_until == T0 + 180 * S
        expected = replay_files(tmp_path, events, 60)
        assert sorted(window_files(expected)) == [session_file_name(T0 + k * 60 * S) for k in (1, 2, 3, 4)]
        on_disk = disk_files(out)
        assert sorted(window_files(on_disk)) == [session_file_name(T0 + k * 60 * S) for k in (1, 2, 3)]
        for name, data in window_files(on_disk).items():
            assert data == expected[name], name
        assert _lines(on_disk[SUMMARY_FILE]) == _lines(expected[SUMMARY_FILE])[:4]
        assert b"late boom" in expected[ERRORS_FILE]
        assert b"late boom" not in on_disk[ERRORS_FILE]
        assert_closed_part_matches(out, expected, live.closed_until)
        assert sorted(p.name for p in result.written) == sorted(on_disk)
        assert live.windows_written == 3

    def test_nothing_closed_writes_no_window(self, tmp_path: Path) -> None:
        """Before any window closes, a flush writes header-only summary and errors, and no per-window file."""
        events = sample_events()[:3]
        live = LiveReporter(tmp_path / "live", interval_s=60, grace_s=5)
        live.add_events(events)
        live.flush()
        expected = replay_files(tmp_path, events, 60)
        assert_closed_part_matches(tmp_path / "live", expected, None)
        assert not window_files(disk_files(tmp_path / "live"))

    def test_second_flush_without_news_writes_nothing(self, tmp_path: Path) -> None:
        """A flush with nothing new (and no window newly closed) writes no file."""
        live = LiveReporter(tmp_path, interval_s=60, grace_s=5)
        live.add_events(sample_events())
        live.advance()
        assert live.flush().written
        assert not live.dirty
        assert live.flush().written == ()
        assert live.advance(now_us=T0 + 190 * S, idle=True) is False
        assert live.flush().written == ()

    def test_late_event_rewrites_its_window(self, tmp_path: Path) -> None:
        """A late event rewrites its closed window's file (and the summary) with replay's new bytes, nothing else."""
        events = sample_events()[:6]  # up to T0+80 s: window [T0, T0+60 s) closes
        out = tmp_path / "live"
        live = LiveReporter(out, interval_s=60, grace_s=5)
        live.add_events(events)
        live.advance()
        assert live.closed_until == T0 + 60 * S
        live.flush()
        first = session_file_name(T0 + 60 * S)
        before = (out / first).read_bytes()
        late = event(99, "s2", "question_answered", T0 + 30 * S, response_time_ms=777.0)
        assert live.add_events([late]) == 1
        assert live.late == 1
        result = live.flush()
        # The HTML report is not built again within a reload period of the last build (60 s here): the next one has it.
        assert sorted(p.name for p in result.written) == sorted([first, SUMMARY_FILE, TOTALS_FILE])
        assert (out / first).read_bytes() != before
        expected = replay_files(tmp_path, [*events, late], 60)
        assert (out / first).read_bytes() == expected[first]
        assert_closed_part_matches(out, expected, live.closed_until)

    def test_final_flush_equals_replay(self, tmp_path: Path) -> None:
        """flush(final=True) writes every window: the folder equals replay's, file for file, byte for byte."""
        events = sample_events()
        out = tmp_path / "live"
        live = LiveReporter(out, interval_s=60, grace_s=5)
        live.add_events(events[:7])
        live.advance()
        live.flush()
        live.add_events(events[7:])
        result = live.flush(final=True)
        assert result.closed_until is None
        expected = replay_files(tmp_path, events, 60)
        assert disk_files(out) == expected
        assert live.windows_written == 4
        assert live.closed_until is not None
        assert live.closed_until >= T0 + 240 * S

    def test_final_flush_without_events_equals_replay(self, tmp_path: Path) -> None:
        """With no events, the final flush writes what replay of an empty log writes."""
        live = LiveReporter(tmp_path / "live", interval_s=60)
        live.flush(final=True)
        assert disk_files(tmp_path / "live") == replay_files(tmp_path, [], 60)

    def test_duplicates_are_counted_once(self, tmp_path: Path) -> None:
        """The same event_id added twice (in two batches) counts once in the reports."""
        events = sample_events()
        live = LiveReporter(tmp_path / "live", interval_s=60, grace_s=5)
        live.add_events(events)
        live.add_events(events[2:5])
        live.flush(final=True)
        assert live.engine.summary()["questions_answered"].sum() == 4
        assert live.engine.totals()["errors"].to_list() == [3]
        assert (live.engine.counts.total(), live.engine.duplicates) == (len(events), 3)
        assert disk_files(tmp_path / "live") == replay_files(tmp_path, events, 60)

    def test_no_temporary_files_left(self, tmp_path: Path) -> None:
        """Flushes rename their temporary files: none is left in the folder."""
        live = LiveReporter(tmp_path, interval_s=60, grace_s=5)
        live.add_events(sample_events())
        live.advance()
        live.flush()
        live.flush(final=True)
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


class TestArguments:
    @pytest.mark.parametrize("bad", [0, -60, 1.5])
    def test_bad_interval(self, tmp_path: Path, bad: object) -> None:
        """A zero, negative or fractional interval is refused, quoting the value."""
        with pytest.raises(ValueError, match=re.escape(f"got {bad!r}")):
            LiveReporter(tmp_path, interval_s=bad)  # type: ignore[arg-type]

    @pytest.mark.parametrize("bad", [-1, -0.5, float("nan")])
    def test_negative_grace(self, tmp_path: Path, bad: float) -> None:
        """A negative (or NaN) grace is refused, quoting the value."""
        with pytest.raises(ValueError, match=re.escape(f"grace_s: must be >= 0, got {bad!r}")):
            LiveReporter(tmp_path, interval_s=60, grace_s=bad)

    def test_zero_grace_is_allowed(self, tmp_path: Path) -> None:
        """Grace 0: an event exactly at a window's end closes it."""
        live = LiveReporter(tmp_path, interval_s=60, grace_s=0)
        live.add_events([event(1, "s", "question_asked", T0 + 60 * S)])
        live.advance()
        assert live.closed_until == T0 + 60 * S


class TestLiveEqualsReplay:
    @settings(max_examples=15, deadline=None)
    @given(LOGS, st.sampled_from([7, 60, 300]), st.sampled_from([0, 5, 30]), st.data())
    def test_random_batches(self, tmp_path_factory: pytest.TempPathFactory,
                            steps: list[tuple[Any, ...]], interval_s: int, grace_s: int,
                            data: st.DataObject) -> None:
        """Random batches, advances and flushes: after each flush the closed part equals replay's; finally, all."""
        events = random_events(steps)
        base = tmp_path_factory.mktemp("live")
        out = base / "live"
        live = LiveReporter(out, interval_s=interval_s, grace_s=grace_s)
        read: list[Event] = []
        rest = list(events)
        previous: int | None = None
        while rest:
            size = data.draw(st.integers(1, len(rest)), label="batch")
            batch, rest = rest[:size], rest[size:]
            duplicate: bool = data.draw(st.booleans(), label="duplicate")
            if read and duplicate:
                batch.append(read[data.draw(st.integers(0, len(read) - 1), label="which")])
            live.add_events(batch)
            read.extend(batch)
            for _ in range(data.draw(st.integers(0, 2), label="advances")):
                now = T0 + data.draw(st.integers(-60 * S, 1200 * S), label="now")
                live.advance(now_us=now, idle=data.draw(st.booleans(), label="idle"))
                assert live.closed_until is not None
                assert previous is None or live.closed_until >= previous
                previous = live.closed_until
            if data.draw(st.booleans(), label="flush"):
                live.flush()
                assert_closed_part_matches(out, replay_files(base, read, interval_s), live.closed_until)
        live.flush(final=True)
        assert disk_files(out) == replay_files(base, events, interval_s)
