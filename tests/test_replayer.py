"""Tests for tracker.replay and ``tracker replay``: golden reports, merging, and the split property."""

from __future__ import annotations

import csv
import io
import os
import random
import shutil
import signal
import subprocess
import sys
from glob import glob
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import T0, event, record, wait_for
from tests.reference import reference_reports
from tests.test_engine import LOGS, assert_matches_reference, random_events
from tracker.cli import main
from tracker.decoder import Decoder, Rejected, decode_file
from tracker.errors import CheckpointError, ReportError
from tracker.events import Event, SessionUnregistered
from tracker.follow import Follower
from tracker.live import LiveReporter
from tracker.logs import expand_logs
from tracker.replayer import replay

S = 1_000_000
ROOT = Path(__file__).parent.parent
CASES = sorted(glob(str(ROOT / "fixtures" / "replay" / "*") + os.sep))


def _files(folder: Path) -> dict[str, bytes]:
    """The CSV files of a folder (the golden cases keep no HTML report: it is made from these files, 1.2 MB each,
    and tested in a browser by tests/test_html_report.py)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if not p.name.startswith(".") and p.name != "session_tracking_report.html"}


def _log_of(events: list[Event]) -> bytes:
    return b"".join(orjson.dumps(e.to_record()) + b"\n" for e in events)


def _write_log(path: Path, events: list[Event]) -> None:
    path.write_bytes(b"".join(orjson.dumps(e.to_record()) + b"\n" for e in events))


class TestGolden:
    @pytest.mark.parametrize("case", CASES, ids=lambda p: Path(p).name)
    def test_replay_reproduces_the_golden_files(
        self, case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """tracker replay on the fixture's logs writes exactly its expected files, byte for byte."""
        folder = Path(case)
        monkeypatch.chdir(ROOT)  # the quarantine's reasons name the logs as given
        logs = sorted(str(p.relative_to(ROOT)) for p in folder.glob("*.jsonl"))
        args = (folder / "args").read_text().split()
        status = main("replay", *logs, "--out", str(tmp_path), *args)
        expected = _files(folder / "expected")
        given = folder / "status"  # a case whose thresholds fail says so
        assert status == (int(given.read_text()) if given.exists() else 1 if "quarantine.jsonl" in expected else 0)
        assert _files(tmp_path) == expected
        assert "wrote" in capsys.readouterr().out

    @pytest.mark.parametrize("case", CASES, ids=lambda p: Path(p).name)
    def test_spilling_every_event_gives_the_same_files(
        self, case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With --memory 0 every block goes to disk and back: the files are still the golden ones, no spool left."""
        folder = Path(case)
        monkeypatch.chdir(ROOT)
        logs = sorted(str(p.relative_to(ROOT)) for p in folder.glob("*.jsonl"))
        args = (folder / "args").read_text().split()
        main("replay", *logs, "--out", str(tmp_path / "out"), *args, "--memory", "0",
             "--spool-dir", str(tmp_path / "spool"))
        assert _files(tmp_path / "out") == _files(folder / "expected")
        assert list((tmp_path / "spool").iterdir()) == []
        assert "wrote" in capsys.readouterr().out

    @pytest.mark.parametrize("case", CASES, ids=lambda p: Path(p).name)
    def test_golden_files_match_the_reference(self, case: str) -> None:
        """Each golden file agrees cell by cell with the independent computation over the fixture's events."""
        folder = Path(case)
        events: list[Event] = []
        seen: set[tuple[str, int]] = set()
        for log in sorted(folder.glob("*.jsonl")):
            for item in decode_file(log):
                if not isinstance(item, Rejected) and (item.event_id, item.ts) not in seen:
                    seen.add((item.event_id, item.ts))
                    events.append(item)
        options = _options((folder / "args").read_text().split())
        timeout = float(options["--session-timeout"]) if "--session-timeout" in options else None
        goodput = {name: float(limit) for name, _, limit in (item.partition("=") for item in
                                                              options["--goodput"].split(","))} \
            if "--goodput" in options else None
        assert_matches_reference(folder / "expected", events, int(options["--interval"]), timeout, goodput)
        thresholds = folder / "expected" / "session_tracking_thresholds.csv"
        if thresholds.exists():
            _check_verdicts(thresholds, reference_reports(events, int(options["--interval"]), timeout, goodput))

    def test_every_case_is_documented(self) -> None:
        """Each fixture case says in its README what it covers."""
        assert CASES
        for case in CASES:
            assert (Path(case) / "README.md").read_text().strip()


def _options(args: list[str]) -> dict[str, str]:
    """A fixture's args as option -> value (the last one of a repeated option)."""
    return dict(zip(args[::2], args[1::2], strict=True))


_OPS = {"<=": float.__le__, ">=": float.__ge__, "<": float.__lt__, ">": float.__gt__}


def _check_verdicts(path: Path, expected: dict[str, list[dict[str, object]]]) -> None:
    """Every verdict names the reference's value of its column in its window (or the run), and says rightly whether
    it holds."""
    by_window = {str(row["window_start"]): row for row in expected["summary"]}
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert rows
    for row in rows:
        text = row["threshold"].split(":")[-1]
        op = next(op for op in _OPS if op in text)  # the two-character ones are tried first
        column, limit = text.split(op)
        value = (expected["totals"][0] if row["scope"] == "run" else by_window[row["scope"]])[column]
        assert isinstance(value, int | float)
        assert float(row["value"]) == pytest.approx(value, abs=0.0005), row
        assert row["ok"] == ("true" if _OPS[op](round(float(value), 4), float(limit)) else "false"), row


class TestSplitProperty:
    @settings(max_examples=20, deadline=None)
    @given(LOGS, st.integers(1, 4), st.sampled_from([1, 60, 300]), st.randoms(use_true_random=False))
    def test_split_logs_give_the_same_reports(
        self, tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[Any, ...]],
        parts: int, interval: int, rnd: random.Random,
    ) -> None:
        """Splitting a log into shuffled files (with a duplicate), read in any block size and spilled to disk
        or not, gives the same bytes as the single file."""
        events = random_events(steps)
        base = tmp_path_factory.mktemp("split")
        _write_log(base / "all.jsonl", events)
        buckets: list[list[Event]] = [[] for _ in range(parts)]
        for e in events:
            buckets[rnd.randrange(parts)].append(e)
        buckets[rnd.randrange(parts)].append(rnd.choice(events))  # the same event twice
        for n, bucket in enumerate(buckets):
            rnd.shuffle(bucket)
            _write_log(base / f"part{n}.jsonl", bucket)
        one = replay([base / "all.jsonl"], base / "one", interval_s=interval)
        many = replay(sorted(base.glob("part*.jsonl")), base / "many", interval_s=interval,
                      memory_bytes=rnd.choice([0, 2000, 1 << 30]), block_bytes=rnd.choice([2000, 1 << 20]))
        assert _files(base / "one") == _files(base / "many")
        assert many.read.duplicates == 1
        assert one.read.events == many.read.events == len(events)


class TestReplay:
    def test_matches_reference_on_a_generated_run(self, tmp_path: Path) -> None:
        """A larger generated run (many sessions, windows, errors) agrees with the reference."""
        rnd = random.Random(5)
        kinds = ["question_asked", "question_answered", "cycle_completed", "error", "session_registered",
                 "session_unregistered"]
        steps = [(f"s{rnd.randrange(40)}", rnd.choices(kinds, [5, 5, 4, 1, 1, 1])[0], rnd.randrange(3600 * 10**6),
                  round(rnd.lognormvariate(6.5, 0.5), 3), rnd.choice([None, "timeout"])) for _ in range(3000)]
        events = random_events(steps)
        _write_log(tmp_path / "log.jsonl", events)
        replay([tmp_path / "log.jsonl"], tmp_path / "out", interval_s=300)
        assert_matches_reference(tmp_path / "out", events, 300)

    def test_removes_only_files_an_earlier_run_wrote(self, tmp_path: Path) -> None:
        """Per-window files an earlier replay wrote and this one does not are removed; a user's files are kept
        (a user's file named exactly like a report makes replay refuse the folder: see test_cli)."""
        _write_log(tmp_path / "old.jsonl", random_events([("s1", "cycle_completed", 0, 0.0, None)], t0=T0 - 3600 * S))
        _write_log(tmp_path / "log.jsonl", random_events([("s1", "cycle_completed", 0, 0.0, None)]))
        out = tmp_path / "out"
        old = replay([tmp_path / "old.jsonl"], out, interval_s=60)
        out_names = sorted(p.name for p in out.glob("session_tracking_report_2*.csv"))
        (out / "notes.txt").write_text("mine")
        (out / "session_tracking_report_mine.csv").write_text("mine")
        result = replay([tmp_path / "log.jsonl"], out, interval_s=60)
        assert sorted(p.name for p in result.removed) == out_names
        assert old.written
        for name in ("notes.txt", "session_tracking_report_mine.csv"):
            assert (out / name).read_text().startswith("mine"), name

    def test_spool_is_removed_when_a_replay_fails(self, tmp_path: Path, small_disk: Path) -> None:
        """A replay failing after its events were spilled (the reports cannot be written: a full disk) leaves no
        spool folder."""
        _write_log(tmp_path / "log.jsonl",
                   random_events([("s1", "cycle_completed", i * 60 * S, 0.0, None) for i in range(50)]))
        (tmp_path / "spool").mkdir()

        def fill_the_disk(*_: int) -> None:  # once the replay has claimed its folder and is reading
            if not (small_disk / "ballast").exists():
                with open(small_disk / "ballast", "wb") as stream, pytest.raises(OSError, match="No space"):
                    stream.write(b"x" * (8 << 20))

        with pytest.raises(OSError, match="report files could not be written"):
            replay([tmp_path / "log.jsonl"], small_disk / "out", memory_bytes=0, spool_dir=tmp_path / "spool",
                   quarantine_path=tmp_path / "q.jsonl", block_bytes=1000, on_block=fill_the_disk)
        assert list((tmp_path / "spool").iterdir()) == []

    def test_missing_log_is_found_before_anything_is_read(self, tmp_path: Path) -> None:
        """A missing log among others raises, naming it, before any log is read or anything written."""
        _write_log(tmp_path / "log.jsonl", random_events([("s1", "cycle_completed", 0, 0.0, None)]))
        with pytest.raises(FileNotFoundError, match=r"missing\.jsonl"):
            replay([tmp_path / "log.jsonl", tmp_path / "missing.jsonl"], tmp_path / "out")
        assert not (tmp_path / "out").exists()

    def test_max_line_bytes(self, tmp_path: Path) -> None:
        """replay(max_line_bytes=N) rejects longer lines as too_long, keeping their first N bytes."""
        events = random_events([("s1", "cycle_completed", 0, 0.0, None), ("s1", "cycle_completed", S, 0.0, None)])
        lines = [orjson.dumps(e.to_record()) + b"\n" for e in events]
        (tmp_path / "log.jsonl").write_bytes(lines[0] + b"x" * 500 + b"\n" + lines[1])
        result = replay([tmp_path / "log.jsonl"], tmp_path / "out", max_line_bytes=300)
        assert (result.read.events, dict(result.rejected)) == (2, {"too_long": 1})
        assert (tmp_path / "out" / "quarantine.jsonl").read_bytes() == b"x" * 300 + b"\n"

    @pytest.mark.parametrize("target", ["quarantine", "reasons", "report", "symlink"])
    def test_an_output_that_is_a_log_is_refused(self, tmp_path: Path, target: str) -> None:
        """A quarantine file, its reasons file or a report file that is one of the logs (same path, hard link or
        symlink) raises before anything is removed or written."""
        from tracker.errors import OutputIsInputError
        data = orjson.dumps(random_events([("s1", "cycle_completed", 0, 0.0, None)])[0].to_record()) + b"\n"
        out = tmp_path / "out"
        out.mkdir()
        log = tmp_path / "log.jsonl"
        log.write_bytes(data)
        quarantine = tmp_path / "q.jsonl"
        if target == "quarantine":
            os.link(log, quarantine)
        elif target == "reasons":
            os.link(log, tmp_path / "q.jsonl.reasons.jsonl")
        elif target == "report":
            log = out / "session_tracking_errors.csv"
            log.write_bytes(data)
        else:
            quarantine.symlink_to(log)
        with pytest.raises(OutputIsInputError, match="it would be overwritten"):
            replay([log], out, quarantine_path=quarantine)
        assert log.read_bytes() == data
        assert sorted(p.name for p in out.iterdir()) == (["session_tracking_errors.csv"] if target == "report" else [])


    @pytest.mark.parametrize("memory", [0, 1 << 30])
    def test_reused_event_id_counts_like_live(self, tmp_path: Path, memory: int) -> None:
        """A line reusing another's event_id and ts for another session is an event of its own, as live counts it."""
        first = event(1, "A", "session_registered", T0, username="alice", course_numbers=[1])
        asked = event(2, "A", "question_asked", T0 + 10)
        reused = SessionUnregistered(event_id=asked.event_id, ts=asked.ts, writer=asked.writer, seq=asked.seq,
                                     session_id="B", reason="x")
        events = [first, asked, reused, asked, event(3, "A", "cycle_completed", T0 + 20)]
        (tmp_path / "a.jsonl").write_bytes(b"".join(orjson.dumps(e.to_record()) + b"\n" for e in events[:3]))
        (tmp_path / "b.jsonl").write_bytes(b"".join(orjson.dumps(e.to_record()) + b"\n" for e in events[3:]))
        result = replay([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], tmp_path / "out", interval_s=60,
                        memory_bytes=memory)
        live = LiveReporter(tmp_path / "live", interval_s=60)
        live.add_events(events)
        live.flush(final=True)
        assert result.read.duplicates == 1
        assert result.tables.totals["sessions"].item() == 2
        assert _files(tmp_path / "out") == _files(tmp_path / "live")

    def test_block_size_must_be_positive(self, tmp_path: Path) -> None:
        """A block size below 1 (which would read nothing) is refused before anything is read or written."""
        with pytest.raises(ValueError, match="block_bytes: must be a whole number >= 1, got 0"):
            replay([tmp_path / "log.jsonl"], tmp_path / "out", block_bytes=0)
        assert not (tmp_path / "out").exists()

    def test_glob_patterns(self, tmp_path: Path) -> None:
        """Glob patterns expand to sorted files; a pattern matching nothing is an error naming it."""
        for name in ("b.jsonl", "a.jsonl"):
            (tmp_path / name).write_bytes(b"")
        assert expand_logs([str(tmp_path / "*.jsonl")]) == [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
        with pytest.raises(FileNotFoundError, match=r"no log matches this pattern: '.*\*\.log'"):
            expand_logs([str(tmp_path / "*.log")])


class TestInputs:
    def test_an_empty_out_dir_is_refused(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """replay(logs, "") is a ValueError, not a replay into the current folder."""
        log = tmp_path / "log.jsonl"
        log.write_bytes(orjson.dumps(record(1, "s1", "cycle_completed")) + b"\n")
        (tmp_path / "cwd").mkdir()
        monkeypatch.chdir(tmp_path / "cwd")
        with pytest.raises(ValueError, match="an empty path: the reports need a folder, give its path"):
            replay([log], "")
        assert list((tmp_path / "cwd").iterdir()) == []

    def test_a_folder_is_what_tail_follows(self, tmp_path: Path) -> None:
        """A folder gives its *.jsonl regular files (symlinks to one too), sorted, as tracker tail follows it;
        the caller's own outputs are left out."""
        run = tmp_path / "run"
        (run / "sub.jsonl").mkdir(parents=True)
        for name in ("b.jsonl", "a.jsonl", ".hidden.jsonl", "notes.txt", "quarantine.jsonl"):
            (run / name).write_bytes(b"")
        (tmp_path / "elsewhere.log").write_bytes(b"")
        (run / "link.jsonl").symlink_to(tmp_path / "elsewhere.log")
        (run / "dangling.jsonl").symlink_to(tmp_path / "nowhere")
        os.mkfifo(run / "fifo.jsonl")
        own = [run / "quarantine.jsonl"]
        follower = Follower([run], Decoder(), lambda frame, rejected: None, exclude=own)
        assert expand_logs([run], exclude=own) == follower.paths()
        assert [p.name for p in expand_logs([run], exclude=own)] == [".hidden.jsonl", "a.jsonl", "b.jsonl",
                                                                    "link.jsonl"]

    @pytest.mark.parametrize(("kind", "message"), [("fifo", "it is a FIFO"), ("folder", "Is a directory")])
    def test_a_named_log_must_be_a_regular_file(self, tmp_path: Path, kind: str, message: str) -> None:
        """A log named by its path that is a FIFO is refused without opening it; a folder is read as one only
        when it holds *.jsonl files (a folder without any is an error)."""
        path = tmp_path / "events.jsonl"
        if kind == "fifo":
            os.mkfifo(path)
        else:
            path.mkdir()
        with pytest.raises(OSError, match=message if kind == "fifo" else "no \\*\\.jsonl log in this folder"):
            expand_logs([path])

    def test_a_pattern_skips_folders_and_refuses_fifos(self, tmp_path: Path) -> None:
        """A pattern's folders are skipped; a FIFO it matches is refused, naming it."""
        (tmp_path / "a.jsonl").write_bytes(b"")
        (tmp_path / "b.jsonl").mkdir()
        assert expand_logs([tmp_path / "*.jsonl"]) == [tmp_path / "a.jsonl"]
        os.mkfifo(tmp_path / "c.jsonl")
        with pytest.raises(OSError, match=r"c\.jsonl.*it is a FIFO|it is a FIFO.*c\.jsonl"):
            expand_logs([tmp_path / "*.jsonl"])

    def test_a_pattern_of_folders_only_matches_no_log(self, tmp_path: Path) -> None:
        """A pattern that matches only folders matches no log."""
        (tmp_path / "b.jsonl").mkdir()
        with pytest.raises(FileNotFoundError, match="no log matches this pattern"):
            expand_logs([tmp_path / "*.jsonl"])

class TestReplayCommand:
    def test_output_and_exit_status(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """replay prints what it read, where the reports went and the whole run; 0 without rejected lines."""
        events = random_events([("s1", "session_registered", 0, 0.0, None), ("s1", "question_answered", 10**6,
                                 250.0, None), ("s1", "question_answered", 61 * 10**6, 750.0, None)])
        _write_log(tmp_path / "log.jsonl", events)
        out = tmp_path / "out"
        assert main("replay", str(tmp_path / "log.jsonl"), "--out", str(out), "--interval", "60") == 0
        assert capsys.readouterr().out == (
            "read 1 log: 3 events, 0 rejected, 0 duplicates\n"
            f"wrote 6 files to {out}: the summary, totals, errors, 2 per-window session reports and the HTML report, "
            "session_tracking_report.html\n"
            "whole run: 2026-11-24T22:00:00Z to 2026-11-24T22:01:01Z (61.0 s), 2 windows of 60 s\n"
            "  sessions 1 (at most 1 active), questions 0, answers 2 (0.033/s), cycles 0, errors 0 (error rate 0.00%)\n"
            "  response time ms: mean 500.0, p50 500.0, p95 725.0, p99 745.0, max 750.0\n"
        )

    def test_rejected_lines_exit_1_and_are_quarantined(self, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
        """Rejected lines are counted by reason, quarantined where --quarantine says, and give exit status 1."""
        shutil.copy(ROOT / "fixtures" / "rejects" / "not_object.jsonl", tmp_path / "log.jsonl")
        quarantine = tmp_path / "bad.jsonl"
        assert main("replay", str(tmp_path / "log.jsonl"), "--out", str(tmp_path / "out"),
                    "--quarantine", str(quarantine)) == 1
        out = capsys.readouterr().out
        assert out.startswith("read 1 log: 4 events, 1 rejected, 0 duplicates\n"
                              f"  rejected lines (not_object 1) in {quarantine}\n")
        assert quarantine.read_bytes() == b"[1, 2, 3]\n"

    @pytest.mark.parametrize("checkpoint_dir", [None, "elsewhere"])
    def test_refused_while_a_tail_writes_into_the_folder(self, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         checkpoint_dir: str | None) -> None:
        """A replay into the --out of a running tail (wherever its checkpoint is) is refused, exit 2, nothing
        written; once the tail is gone, it runs."""
        from tracker.tail import Tail

        log = tmp_path / "log.jsonl"
        _write_log(log, [event(1, "s1", "question_answered", response_time_ms=250.0)])
        tail = Tail([log], tmp_path / "out", interval_s=60,
                    checkpoint_dir=None if checkpoint_dir is None else tmp_path / checkpoint_dir)
        try:
            assert main("replay", str(log), "--out", str(tmp_path / "out")) == 2
            assert capsys.readouterr().err == (
                f"tracker replay: error: {tmp_path / 'out'} is in use by a tracker tail or another replay writing its "
                "reports there; both would write the same files: stop it, or give this replay another --out\n")
            assert not list((tmp_path / "out").glob("session_tracking_*"))
        finally:
            tail.release()
        assert main("replay", str(log), "--out", str(tmp_path / "out")) == 0

    def test_a_tail_is_refused_while_a_replay_writes_into_the_folder(self, tmp_path: Path) -> None:
        """A tail started on the --out of a running replay (it holds the folder) is refused, naming both."""
        from tracker.logs import lock_output_folder
        from tracker.tail import Tail

        log = tmp_path / "log.jsonl"
        _write_log(log, [event(1, "s1", "question_answered", response_time_ms=250.0)])
        held = lock_output_folder(tmp_path / "out", "a replay", "")
        try:
            with pytest.raises(CheckpointError, match=f"{tmp_path / 'out'} is in use by a tracker replay or another "
                                                      "tail writing its reports there"):
                Tail([log], tmp_path / "out", interval_s=60)
        finally:
            os.close(held)
        Tail([log], tmp_path / "out", interval_s=60).release()  # (and its own checkpoint lock was let go)

    def test_a_replay_that_stops_early_makes_a_tail_checkpoint_unusable(self, tmp_path: Path) -> None:
        """A replay into a stopped tail's folder that fails half-way (after emptying the quarantine) still makes the
        tail's checkpoint unusable: the tail reads again, its quarantine whole, no other run's line in it."""
        from tracker.tail import Tail

        log = tmp_path / "a.jsonl"
        log.write_bytes(_log_of([event(i, "s1", "question_answered", T0 + i * S, response_time_ms=1.0)
                                 for i in range(1, 6)]) + b"bad a\n")
        first = Tail([log], tmp_path / "out", interval_s=60)
        first.poll()
        first.checkpoint()
        first.release()  # killed
        other = tmp_path / "b.jsonl"  # other events, across more windows than a report may have
        other.write_bytes(_log_of([event(1, "x", "cycle_completed", T0), event(2, "x", "cycle_completed",
                                                                              T0 + 200_000 * 60 * S)]) + b"bad b\n")
        with pytest.raises(ReportError, match="more than 100,000"):
            replay([other], tmp_path / "out", interval_s=60)
        second = Tail([log], tmp_path / "out", interval_s=60)
        try:
            assert [w for w in second.warnings if "unusable" in w] == [
                f"checkpoint {tmp_path / 'out' / '.tracker-checkpoint' / 'checkpoint.json'} is unusable (tracker "
                f"replay wrote its reports into {tmp_path / 'out'} since); reading every log from the start"]
            assert not [w for w in second.warnings if "shorter" in w]
            assert second.poll() == 5
        finally:
            second.close()
        assert (tmp_path / "out" / "quarantine.jsonl").read_bytes() == b"bad a\n"

    def test_a_fifo_quarantine_is_refused(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A --quarantine that is a FIFO is a usage error naming it; it is left as it was (never replaced)."""
        shutil.copy(ROOT / "fixtures" / "rejects" / "not_object.jsonl", tmp_path / "log.jsonl")
        os.mkfifo(tmp_path / "q.jsonl")
        assert main("replay", str(tmp_path / "log.jsonl"), "--out", str(tmp_path / "out"),
                    "--quarantine", str(tmp_path / "q.jsonl")) == 2
        assert capsys.readouterr().err == (
            f"tracker replay: error: cannot use {str(tmp_path / 'q.jsonl')!r}: it is a FIFO, not a regular file: the "
            "quarantine appends rejected lines to its file and empties it for a new read; give a file name\n")
        assert (tmp_path / "q.jsonl").is_fifo()

    def test_a_quarantine_that_cannot_be_written(self, tmp_path: Path) -> None:
        """A quarantine that fills up (a file size limit, as a full disk) is said; the replay goes on, writes the
        reports, exits 1 and leaves the quarantine's two files paired line by line."""
        bad = b"".join(b"not json " + str(n).encode() + b" " + b"x" * 1000 + b"\n" for n in range(3000))
        good = _log_of([event(1, "s1", "question_answered", response_time_ms=250.0)])
        (tmp_path / "log.jsonl").write_bytes(good + bad)
        limit = 2 << 20  # the HTML report (1.2 MB) fits; the rejected lines (3 MB) do not
        script = ("import os, resource, signal, sys\n"
                  "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
                  "hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]\n"
                  f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, hard))\n"
                  "os.execv(sys.executable, [sys.executable, '-m', 'tracker', *sys.argv[1:]])\n")
        done = subprocess.run([sys.executable, "-c", script, "replay", str(tmp_path / "log.jsonl"), "--out",
                               str(tmp_path / "out"), "--quarantine", str(tmp_path / "q.jsonl"), "--quiet"],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert done.returncode == 1, done.stderr
        lines = (tmp_path / "q.jsonl").read_bytes().splitlines()
        reasons = (tmp_path / "q.jsonl.reasons.jsonl").read_bytes().splitlines()
        assert 0 < len(lines) == len(reasons) < 3000
        assert [orjson.loads(r)["line"] for r in reasons] == list(range(2, len(lines) + 2))
        first = len(lines) + 2  # the first line not quarantined (the good line first)
        offset = len(good) + sum(len(line) + 1 for line in bad.splitlines()[:first - 2])
        assert done.stderr == (
            f"tracker: WARNING: {tmp_path / 'log.jsonl'}:{first}: rejected (invalid_json) but not quarantined: "
            f"cannot write {tmp_path / 'q.jsonl'} (File too large); the line is at byte {offset}, and later rejected "
            "lines are counted until it can be written (they are still in their logs)\n"
            f"tracker replay: {3000 - len(lines)} of the rejected lines could not be written to "
            f"{tmp_path / 'q.jsonl'} (see the warnings above); they are still in their logs\n")
        assert (tmp_path / "out" / "session_tracking_summary.csv").read_text().count("\n") == 2

    @pytest.mark.parametrize(("args", "message"), [
        (["--interval", "0"], "argument --interval: must be >= 1 s, got '0'"),
        (["--interval", "1.5"], "argument --interval: must be whole seconds, got '1.5'"),
        (["--memory", "-1"], "argument --memory: must be >= 0, got '-1'"),
        (["--memory", "lots"], "argument --memory: expected a number, got 'lots'"),
        (["--interval", "99999999999999999999"], "argument --interval: must be at most 366d (31622400 s)"),
    ])
    def test_bad_number(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                        message: str) -> None:
        """A bad --interval or --memory is a usage error (exit 2) quoting the value."""
        with pytest.raises(SystemExit) as info:
            main("replay", "x.jsonl", "--out", str(tmp_path), *args)
        assert info.value.code == 2
        assert message in capsys.readouterr().err

    def test_event_in_the_last_window_before_year_10000(self, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
        """A ts whose window would end in the year 10000 is no traceback: the line is rejected (implausible_time),
        exit status 1."""
        last = event(1, "s1", "cycle_completed", T0)
        (tmp_path / "log.jsonl").write_bytes(orjson.dumps({**last.to_record(), "ts": 253_402_300_799_999_999}) + b"\n")
        assert main("replay", str(tmp_path / "log.jsonl"), "--out", str(tmp_path / "out")) == 1
        assert capsys.readouterr().out.startswith("read 1 log: 0 events, 1 rejected, 0 duplicates\n"
                                                  "  rejected lines (implausible_time 1) in ")

    def test_output_closed_early_is_no_traceback(self, tmp_path: Path) -> None:
        """tracker replay ... | head -1: the reader goes away; no BrokenPipeError traceback."""
        _write_log(tmp_path / "log.jsonl", random_events([("s1", "cycle_completed", 0, 0.0, None)]))
        done = subprocess.run(f"{sys.executable} -m tracker replay {tmp_path / 'log.jsonl'} --out {tmp_path / 'out'}"
                              " | head -c 1", shell=True, capture_output=True, text=True, timeout=120)
        assert "Traceback" not in done.stderr
        assert "BrokenPipe" not in done.stderr

    def test_missing_log(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A missing log is an error with exit status 2 naming it, and nothing is written."""
        assert main("replay", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "out")) == 2
        assert capsys.readouterr().err == (
            f"tracker replay: error: cannot use '{tmp_path / 'nope.jsonl'}': No such file or directory\n")
        assert not (tmp_path / "out").exists()

    def test_sigterm_stops_with_status_130_and_cleans_up(self, tmp_path: Path) -> None:
        """SIGTERM during a replay (here: while it writes hundreds of windows) exits 130 and leaves no spool
        folder."""
        events = random_events([("s1", "question_answered", i * 7 * S, float(i % 900), None) for i in range(2000)])
        log, spool, out = tmp_path / "log.jsonl", tmp_path / "spool", tmp_path / "out"
        _write_log(log, events)
        spool.mkdir()
        proc = subprocess.Popen([sys.executable, "-m", "tracker", "replay", str(log), "--out", str(out),
                                 "--interval", "60", "--memory", "0", "--spool-dir", str(spool)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:  # the first report written: the replay's handler is installed and hundreds of windows are left
            wait_for(lambda: proc.poll() is not None or any(out.glob("session_tracking_report_*.csv")))
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        assert proc.returncode == 130
        assert err == "tracker replay: stopped before the end; the reports in the folder are incomplete\n"
        assert list(spool.iterdir()) == []

    def test_ctrl_c_as_the_spool_is_removed_still_removes_it(self, tmp_path: Path) -> None:
        """A SIGINT just as the replay closes its spool (here: sent once, as WindowStore.close begins) exits 130 and
        leaves no spool folder (it was left, the interrupt raised before the folder was removed)."""
        events = random_events([("s1", "question_answered", i * 7 * S, float(i % 900), None) for i in range(200)])
        log, spool, out = tmp_path / "log.jsonl", tmp_path / "spool", tmp_path / "out"
        _write_log(log, events)
        spool.mkdir()
        code = ("import os, signal\n"
                "from tracker.store import WindowStore\n"
                "close, sent = WindowStore.close, []\n"
                "def interrupted(store):\n"
                "    if not sent:\n"
                "        sent.append(True)\n"
                "        os.kill(os.getpid(), signal.SIGINT)\n"
                "    close(store)\n"
                "WindowStore.close = interrupted\n"
                "from tracker.cli import _entry\n"
                f"_entry(['replay', {str(log)!r}, '--out', {str(out)!r}, '--memory', '0', '--spool-dir', "
                f"{str(spool)!r}])\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 130, done.stderr
        assert done.stderr == "tracker replay: stopped before the end; the reports in the folder are incomplete\n"
        assert list(spool.iterdir()) == []

    def test_replaying_twice_gives_the_same_quarantine(self, tmp_path: Path) -> None:
        """A second replay into the same folder replaces the quarantine instead of appending to it."""
        shutil.copy(ROOT / "fixtures" / "rejects" / "not_object.jsonl", tmp_path / "log.jsonl")
        for _ in range(2):
            replay([tmp_path / "log.jsonl"], tmp_path / "out", interval_s=60)
        assert (tmp_path / "out" / "quarantine.jsonl").read_bytes() == b"[1, 2, 3]\n"

    def test_too_many_windows_is_a_clear_error(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A ts decades away from the others (a clock error) spans millions of windows: exit 2 saying so."""
        events = random_events([("s1", "cycle_completed", 0, 0.0, None)])
        _write_log(tmp_path / "log.jsonl", events)
        early = 946_771_200_000_000  # 2000-01-02T00:00:00Z
        with open(tmp_path / "log.jsonl", "ab") as stream:
            stream.write(orjson.dumps({**events[0].to_record(), "event_id": "x-1", "ts": early}) + b"\n")
        assert main("replay", str(tmp_path / "log.jsonl"), "--out", str(tmp_path / "out")) == 2
        err = capsys.readouterr().err
        every = 300 * 10**6
        windows = events[0].ts // every - early // every + 1
        assert err.startswith(f"tracker replay: error: the events span {windows:,} windows of 300 s")
        assert "is some writer's clock far off?" in err

    def test_no_events_still_writes_reports(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An empty log gives header-only reports and says so."""
        (tmp_path / "log.jsonl").write_bytes(b"")
        assert main("replay", str(tmp_path / "log.jsonl"), "--out", str(tmp_path / "out")) == 0
        assert capsys.readouterr().out.endswith("whole run: no events\n")
        assert (tmp_path / "out" / "session_tracking_summary.csv").read_bytes().count(b"\n") == 1
