"""Tests for tracker.output: what the writer writes, and a full disk that loses nothing."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from tests.helpers import T0, event
from tracker import tables
from tracker.engine import Engine
from tracker.events import Event
from tracker.frames import events_frame
from tracker.output import SUMMARY_FILE, ReportWriter, remove_temporaries

S = 1_000_000


def events(n: int) -> list[Event]:
    return [event(i, f"session-{i % 50:03d}", "question_answered", T0 + i * S // 10, response_time_ms=float(i))
            for i in range(1, n + 1)]


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


class TestReportWriter:
    def test_second_flush_writes_only_what_changed(self, tmp_path: Path) -> None:
        """After a flush, new events in the last window rewrite that window's file, the run files and the HTML report
        made from them, no other."""
        engine = Engine(60)
        engine.add(events_frame(events(2999)))
        writer = ReportWriter(engine, tmp_path)
        first = writer.flush()
        assert len(first.written) == 3 + 5 + 1  # the run's files, the windows' and the HTML report
        engine.add(events_frame([event(9999, "s-new", "question_asked", T0 + 299 * S)]))
        second = writer.flush()
        assert sorted(p.name for p in second.written) == sorted([
            "session_tracking_report_20261124_220500.csv", "session_tracking_summary.csv",
            "session_tracking_totals.csv", "session_tracking_report.html"])

    def test_one_flush_derives_each_window_once(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A replay's single flush of 20 windows aggregates each window's rows once: the summary is made after the
        windows' files, from the figures they cached (made before them, it derived every window twice)."""
        calls: list[int] = []
        real = tables.aggregate

        def counted(rows: pl.DataFrame, goodput: dict[str, float] | None = None) -> object:
            calls.append(rows.height)
            return real(rows, goodput)

        monkeypatch.setattr("tracker.engine.aggregate", counted)
        engine = Engine(1)
        engine.add(events_frame([event(i, f"s{i % 3}", "question_answered", T0 + (i - 1) // 4 * S,
                                       response_time_ms=1.0)
                                 for i in range(1, 81)]))
        ReportWriter(engine, tmp_path / "out", once=True).flush()
        assert len(calls) == 20

    def test_a_restored_writer_ends_the_live_page(self, tmp_path: Path) -> None:
        """A live page written, the writer's state restored by a new writer (a tail restarted), and a final flush
        with nothing new: the page no longer reloads itself, and equals a fresh final write's."""
        engine = Engine(60)
        engine.add(events_frame(events(300)))
        first = ReportWriter(engine, tmp_path / "out")
        first.flush(reload_s=5)
        page = tmp_path / "out" / "session_tracking_report.html"
        assert b'http-equiv="refresh"' in page.read_bytes()
        second = ReportWriter(engine, tmp_path / "out")
        second.restore(first.state())
        second.flush()
        assert b'http-equiv="refresh"' not in page.read_bytes()
        ReportWriter(engine, tmp_path / "fresh").flush()
        assert page.read_bytes() == (tmp_path / "fresh" / "session_tracking_report.html").read_bytes()

    def test_a_replay_since_the_state_makes_it_unusable(self, tmp_path: Path) -> None:
        """A live writer's state is refused (ValueError) once a replay wrote into the folder: its files and manifest
        are no longer the live run's; a live writer's own later writes do not refuse it."""
        engine = Engine(60)
        engine.add(events_frame(events(300)))
        live = ReportWriter(engine, tmp_path / "out")
        live.flush()
        state = live.state()
        ReportWriter(engine, tmp_path / "out").flush()  # the same tail, written again after its checkpoint
        ReportWriter(engine, tmp_path / "out").restore(state)
        ReportWriter(engine, tmp_path / "out", once=True).flush()  # a replay
        with pytest.raises(ValueError, match=f"tracker replay wrote its reports into {tmp_path / 'out'} since"):
            ReportWriter(engine, tmp_path / "out").restore(state)

    def test_temporaries_of_a_killed_writer_are_removed(self, tmp_path: Path) -> None:
        """The .NAME.PID.tmp of a report file or the manifest (a process killed mid-write) goes; a user's file of
        that shape, and this process's own, stay."""
        ours = [".session_tracking_summary.csv.4242.tmp", ".session_tracking_report_20261124_220500.csv.7.tmp",
                "..tracker-reports.json.99.tmp"]
        kept = [".notes.txt.4242.tmp", ".session_tracking_summary.csv.tmp", ".session_tracking_summary.csv.x1.tmp",
                f".session_tracking_summary.csv.{os.getpid()}.tmp", "session_tracking_summary.csv.4242.tmp"]
        for name in ours + kept:
            (tmp_path / name).write_bytes(b"x")
        assert sorted(p.name for p in remove_temporaries(tmp_path)) == sorted(ours)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)

    def test_a_writer_that_flushes_once_does_not_promise_a_next_flush(self, small_disk: Path) -> None:
        """A replay's writer (once) says the replay fails, not that the files come at a next flush it never has."""
        warnings: list[str] = []
        engine = Engine(10)
        engine.add(events_frame(events(4000)))
        with open(small_disk / "ballast", "wb") as stream, pytest.raises(OSError, match="No space"):
            stream.write(b"x" * (8 << 20))
        assert ReportWriter(engine, small_disk / "out", warn=warnings.append, once=True).flush().failed
        (full,) = [w for w in warnings if "No space left" in w]
        assert full.endswith("this replay fails: run it again once they can be written")

    def test_a_file_for_the_folder_is_said_so(self, tmp_path: Path) -> None:
        """The original API's writer given a file for its folder: the warning says it is a file (not 'File
        exists'), the file is left as it was, and the flush reports every file as failed."""
        (tmp_path / "out").write_bytes(b"mine")
        said: list[str] = []
        engine = Engine(60)
        engine.add(events_frame(events(10)))
        result = ReportWriter(engine, tmp_path / "out", warn=said.append).flush()
        assert said == [f"cannot write the reports into {tmp_path / 'out'} (it is a file, not a folder); they will "
                        "be written again at the next flush"]
        assert len(result.failed) == 5
        assert not result.written
        assert (tmp_path / "out").read_bytes() == b"mine"

    def test_full_disk_is_a_warning_and_the_files_come_later(self, tmp_path: Path, small_disk: Path) -> None:
        """Writes to a full disk fail with a warning, leave no temporary file, and succeed at the next flush."""
        warnings: list[str] = []
        engine = Engine(10)
        engine.add(events_frame(events(4000)))
        ballast = small_disk / "ballast"
        with open(ballast, "wb") as stream, pytest.raises(OSError, match="No space"):
            stream.write(b"x" * (8 << 20))
        writer = ReportWriter(engine, small_disk / "out", warn=warnings.append)
        result = writer.flush()
        assert result.failed
        full = [w for w in warnings if "No space left" in w]
        assert len(full) == 1  # said once for the folder, not once a file
        assert "written again at the next flush" in full[0]
        assert not [p for p in (small_disk / "out").iterdir() if p.name.endswith(".tmp")]
        ballast.unlink()
        again = writer.flush()
        assert not again.failed
        expected = tmp_path / "expected"
        ReportWriter(engine, expected).flush()
        assert files(small_disk / "out") == files(expected)
        assert any("written again" in w for w in warnings[-1:])
        assert SUMMARY_FILE in files(expected)

    def test_a_flush_stopped_half_way_is_done_again_whole(self, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
        """Ctrl-C (or any exception) in the middle of a flush: the next flush writes every file it had to."""
        engine = Engine(60)
        engine.add(events_frame(events(2999)))
        writer = ReportWriter(engine, tmp_path / "out")
        derive = engine.session_rows
        calls = []

        def interrupted(k: int) -> pl.DataFrame:
            calls.append(k)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return derive(k)

        monkeypatch.setattr(engine, "session_rows", interrupted)
        with pytest.raises(KeyboardInterrupt):
            writer.flush()
        monkeypatch.setattr(engine, "session_rows", derive)
        writer.flush()
        expected = tmp_path / "expected"
        ReportWriter(engine, expected).flush()
        assert files(tmp_path / "out") == files(expected)
