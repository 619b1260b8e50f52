"""Tests for tracker.tail: following real files through partial lines, rotation, truncation and restarts."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import T0, TIMEOUT, record, wait_for
from tracker import follow as follow_module
from tracker.checkpoint import CHECKPOINT_FILE, WINDOWS_DIR
from tracker.cli import main
from tracker.errors import CheckpointError, ReportError
from tracker.replayer import replay
from tracker.store import WindowStore
from tracker.tables import schemas
from tracker.tail import CHECKPOINT_DIR, Tail
from tracker.thresholds import Threshold, parse_threshold

S = 1_000_000


@pytest.fixture(autouse=True)
def _release_tails(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every Tail a test makes has its files closed at the end, as if its process ended."""
    made: list[Tail] = []
    original = Tail.__init__

    def tracking_init(self: Tail, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(Tail, "__init__", tracking_init)
    yield
    for tail in made:
        tail.release()


def line(seq: int, second: float = 0.0, session: str = "s1", writer: str = "w:1:t") -> bytes:
    """One valid question_answered line at T0 + second."""
    rec = record(seq, session, "question_answered", T0 + int(second * S), writer, response_time_ms=float(seq))
    return orjson.dumps(rec) + b"\n"


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as stream:
        stream.write(data)


def csv_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.csv"))}


def assert_same_as_replay(logs: list[Path], out: Path, tmp: Path, interval_s: int) -> None:
    """The tail's files equal what replay writes for the same logs."""
    replay(logs, tmp / "replayed", interval_s=interval_s)
    assert csv_files(out) == csv_files(tmp / "replayed")


class TestReading:
    def test_partial_line_is_held_back(self, tmp_path: Path) -> None:
        """Half a line is not read (nor rejected) until its newline arrives."""
        log = tmp_path / "events.jsonl"
        whole = line(1)
        log.write_bytes(whole[:30])
        tail = Tail([log], tmp_path / "out", interval_s=60)
        assert tail.poll() == 0
        append(log, whole[30:])
        assert tail.poll() == 1
        assert tail.decoder.rejected.total() == 0

    def test_missing_file_is_waited_for(self, tmp_path: Path) -> None:
        """A log that does not exist yet is read once it appears."""
        log = tmp_path / "later" / "events.jsonl"
        tail = Tail([log], tmp_path / "out", interval_s=60)
        assert tail.poll() == 0
        log.parent.mkdir()
        log.write_bytes(line(1))
        assert tail.poll() == 1

    def test_small_file_is_read(self, tmp_path: Path) -> None:
        """A file far below the fingerprint size is read all the same."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1))
        assert log.stat().st_size < 1024
        assert Tail([log], tmp_path / "out", interval_s=60).poll() == 1

    def test_new_files_in_a_watched_folder(self, tmp_path: Path) -> None:
        """Given a folder, every *.jsonl in it is followed, including files created later."""
        (tmp_path / "logs").mkdir()
        (tmp_path / "logs" / "a.jsonl").write_bytes(line(1, writer="w:1:a"))
        tail = Tail([tmp_path / "logs"], tmp_path / "out", interval_s=60)
        assert tail.poll() == 1
        (tmp_path / "logs" / "b.jsonl").write_bytes(line(1, writer="w:1:b"))
        (tmp_path / "logs" / "notes.txt").write_bytes(b"not a log\n")
        assert tail.poll() == 1
        assert tail.decoder.rejected.total() == 0

    def test_bad_lines_are_quarantined_and_do_not_stop_the_tail(self, tmp_path: Path) -> None:
        """Rejected lines go to the quarantine with their reason; following goes on."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1) + b"garbage\n" + line(2))
        tail = Tail([log], tmp_path / "out", interval_s=60)
        assert tail.poll() == 2
        tail.close()
        assert (tmp_path / "out" / "quarantine.jsonl").read_bytes() == b"garbage\n"
        reasons = (tmp_path / "out" / "quarantine.jsonl.reasons.jsonl").read_bytes()
        assert orjson.loads(reasons)["reason"] == "invalid_json"

    def test_endless_line_is_rejected_and_skipped(self, tmp_path: Path) -> None:
        """A line longer than the limit is rejected before its end and skipped, and the offset moves on."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"x" * 5000)
        tail = Tail([log], tmp_path / "out", interval_s=60, max_line_bytes=1000)
        tail.poll()
        assert tail.decoder.rejected["too_long"] == 1
        append(log, b"y" * 3000 + b"\n" + line(1))
        assert tail.poll() == 1
        tail.checkpoint()
        saved = orjson.loads((tmp_path / "out" / CHECKPOINT_DIR / CHECKPOINT_FILE).read_bytes())
        assert saved["files"][0]["offset"] == log.stat().st_size



class TestEmptyPaths:
    @pytest.mark.parametrize("given", [{"checkpoint_dir": ""}, {"quarantine_path": ""}, {"targets": ["", "x"]}])
    def test_an_empty_path_is_refused(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      given: dict[str, Any]) -> None:
        """Tail(...) with an empty path is a ValueError naming the parameter, nothing written to the current
        folder (an empty checkpoint_dir put the checkpoint there)."""
        (tmp_path / "cwd").mkdir()
        monkeypatch.chdir(tmp_path / "cwd")
        targets = given.pop("targets", [tmp_path / "events.jsonl"])
        name = "targets" if "" in targets else next(iter(given))
        with pytest.raises(ValueError, match=f"{name}: an empty path"):
            Tail(targets, tmp_path / "out", interval_s=60, **given)
        assert list((tmp_path / "cwd").iterdir()) == []

class TestCommand:
    def test_duplicates_are_one_event(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A line read twice counts once in the events and is reported as a duplicate."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1) + line(1) + line(2))
        tail = Tail([log], tmp_path / "out", interval_s=60)
        assert tail.poll() == 2
        assert (tail.stats.events, tail.reporter.engine.duplicates) == (2, 1)

    def test_out_that_is_a_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--out naming a file is a usage error (exit 2) naming it, not a traceback."""
        (tmp_path / "out").write_text("a file")
        assert main("tail", str(tmp_path / "events.jsonl"), "--out", str(tmp_path / "out"), "--quiet") == 2
        err = capsys.readouterr().err
        assert "cannot use" in err
        assert "Traceback" not in err


class TestOwnOutputs:
    def test_out_folder_as_the_followed_folder(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """tracker tail run/ --out run: the quarantine files are never followed, so one bad line stays one."""
        monkeypatch.setattr(follow_module, "POLL_BYTES", 4096)  # were it followed, a poll would stop, not loop
        run = tmp_path / "run"
        run.mkdir()
        (run / "events.jsonl").write_bytes(line(1) + b"bad line\n" + line(2))
        tail = Tail([run], run, interval_s=60)
        for _ in range(5):
            tail.poll()
        assert (tail.stats.events, tail.decoder.rejected.total()) == (2, 1)
        tail.close()
        assert (run / "quarantine.jsonl").read_bytes() == b"bad line\n"
        assert len((run / "quarantine.jsonl.reasons.jsonl").read_bytes().splitlines()) == 1

    def test_quarantine_pairs_up_after_a_crash_and_restart(self, tmp_path: Path) -> None:
        """Bad lines read after the last checkpoint are quarantined once, not twice, after a restart."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1) + b"bad one\n")
        first = Tail([log], tmp_path / "out", interval_s=60)
        first.poll()
        first.checkpoint()
        append(log, b"bad two\n" + line(2))
        first.poll()  # quarantined, then it dies before the next checkpoint
        first.release()
        second = Tail([log], tmp_path / "out", interval_s=60)
        assert second.warnings == []
        second.poll()
        second.close()
        out = tmp_path / "out"
        assert (out / "quarantine.jsonl").read_bytes() == b"bad one\nbad two\n"
        reasons = [orjson.loads(r)["line"] for r in (out / "quarantine.jsonl.reasons.jsonl").read_bytes().splitlines()]
        assert reasons == [2, 3]

    def test_fifo_and_symlink_loop_named_as_logs(self, tmp_path: Path) -> None:
        """tracker tail with a FIFO and a symlink loop beside a good log writes its reports and stops on SIGTERM."""
        good, fifo, loop = tmp_path / "good.jsonl", tmp_path / "fifo.jsonl", tmp_path / "loop.jsonl"
        good.write_bytes(b"".join(line(i, i * 30) for i in range(1, 20)))
        os.mkfifo(fifo)
        loop.symlink_to(loop)
        out = tmp_path / "out"
        tail = subprocess.Popen([sys.executable, "-m", "tracker", "tail", str(fifo), str(loop), str(good), "--out",
                                 str(out), "--interval", "60", "--grace", "0", "--quiet"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: (out / "session_tracking_summary.csv").exists()
                 and (out / "session_tracking_summary.csv").read_bytes().count(b"\n") > 5)
        tail.send_signal(signal.SIGTERM)
        stdout, stderr = tail.communicate(timeout=TIMEOUT)
        assert tail.returncode == 0, stderr
        assert "fifo.jsonl" in stderr
        assert "loop.jsonl" in stderr
        assert stdout.startswith("stopped: 19 events, 0 rejected lines")


class TestFullDisk:
    def test_full_disk_under_out_loses_nothing(self, tmp_path: Path, small_disk: Path) -> None:
        """--out on a full disk: warnings, no traceback, no temporary file left; once there is room, every file
        is written and equals replay's."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"".join(line(i, i * 3, session=f"s{i % 7}") for i in range(1, 300)))
        ballast = small_disk / "ballast"
        with open(ballast, "wb") as stream, pytest.raises(OSError, match="No space"):
            stream.write(b"x" * (8 << 20))
        tail = Tail([log], small_disk / "out", interval_s=60, grace_s=0, checkpoint_every_s=0)
        for now in (0, 1, 2):
            tail.step(now=now)
        assert any("cannot write" in w for w in tail.warnings)
        assert any("checkpoint not saved" in w for w in tail.warnings)
        assert tail.stats.events == 299
        leftovers = [p for p in small_disk.rglob("*") if p.name.endswith(".tmp")]
        assert leftovers == []
        ballast.unlink()
        append(log, line(300, 900))
        tail.step(now=3)
        tail.close()
        assert any("written again" in w for w in tail.warnings)
        assert_same_as_replay([log], small_disk / "out", tmp_path, 60)


    def test_bad_line_on_a_full_disk_is_a_warning(self, tmp_path: Path, small_disk: Path) -> None:
        """A rejected line that cannot be quarantined (a full disk) is a warning naming it, not a crash."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1) + b"bad line\n" + line(2) + b"bad line\n" * 1000)
        tail = Tail([log], small_disk / "out", interval_s=60)
        with open(small_disk / "ballast", "wb") as stream, pytest.raises(OSError, match="No space"):
            stream.write(b"x" * (8 << 20))
        assert tail.poll() == 2
        said = [w for w in tail.warnings if "quarantine" in w]
        assert len(said) == 1  # once, not once a line
        assert "not quarantined" in said[0]
        assert ":2:" in said[0]
        assert tail.decoder.rejected.total() == 1001
        (small_disk / "ballast").unlink()
        append(log, b"bad again\n")
        assert tail.poll() == 0
        assert tail.warnings[-1] == (f"{small_disk / 'out' / 'quarantine.jsonl'} written again; 1001 rejected lines "
                                     "could not be quarantined meanwhile (they are still in their logs)")
        assert tail.quarantine.path.read_bytes().endswith(b"bad again\n")


class TestRotation:
    def test_rename_rotation_drains_the_old_file_first(self, tmp_path: Path) -> None:
        """After a rename, lines still appended to the old file are read, then the new file from its start."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1))
        tail = Tail([log], tmp_path / "out", interval_s=60)
        assert tail.poll() == 1
        with open(log, "ab") as old_writer:
            log.rename(tmp_path / "events.jsonl.1")
            old_writer.write(line(2))  # the writer still holds the old file
        log.write_bytes(line(3))
        assert tail.poll() == 2
        assert tail.stats.rotations == 1
        tail.close()
        assert_same_as_replay([tmp_path / "events.jsonl.1", log], tmp_path / "out", tmp_path, 60)

    def test_copytruncate(self, tmp_path: Path) -> None:
        """A file truncated in place (copytruncate) is read again from its start, with a warning."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1) + line(2))
        tail = Tail([log], tmp_path / "out", interval_s=60)
        assert tail.poll() == 2
        shutil.copy(log, tmp_path / "events.jsonl.1")
        with open(log, "r+b") as stream:
            stream.truncate(0)
        append(log, line(3))
        assert tail.poll() == 1
        assert tail.stats.truncations == 1
        assert any("truncated" in w for w in tail.warnings)

    def test_copytruncate_with_lines_not_read_yet(self, tmp_path: Path) -> None:
        """Lines written between the last read and a copytruncate are read from the copy: the files equal a
        replay of the copy and the log."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"".join(line(i, i) for i in range(1, 6)))
        tail = Tail([tmp_path], tmp_path / "out", interval_s=60)
        assert tail.poll() == 5
        append(log, b"".join(line(i, i) for i in range(6, 11)))
        shutil.copy(log, tmp_path / "events.jsonl.1")
        os.truncate(log, 0)
        append(log, b"".join(line(i, i) for i in range(11, 14)))
        assert tail.poll() == 8
        tail.close()
        assert tail.stats.events == 13
        assert_same_as_replay([tmp_path / "events.jsonl.1", log], tmp_path / "out", tmp_path, 60)

    def test_truncated_and_regrown_past_the_offset(self, tmp_path: Path) -> None:
        """Truncation is seen by the first bytes even when the file grew back beyond the old offset."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1))
        tail = Tail([log], tmp_path / "out", interval_s=60)
        assert tail.poll() == 1
        with open(log, "r+b") as stream:
            stream.truncate(0)
        append(log, line(5, session="other") + line(6, session="other") + line(7, session="other"))
        assert tail.poll() == 3
        assert tail.stats.truncations == 1

    def test_delete_and_recreate(self, tmp_path: Path) -> None:
        """A deleted log is let go; a new file at the same path is read from its start."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1))
        tail = Tail([log], tmp_path / "out", interval_s=60)
        assert tail.poll() == 1
        log.unlink()
        assert tail.poll() == 0
        log.write_bytes(line(2) + line(3))
        assert tail.poll() == 2

    def test_unterminated_line_of_a_rotated_file_is_rejected(self, tmp_path: Path) -> None:
        """When a rotated file ends mid-line, that fragment is rejected as unterminated, not lost in silence."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1) + line(2)[:20])
        tail = Tail([log], tmp_path / "out", interval_s=60)
        tail.poll()
        log.rename(tmp_path / "old.jsonl.1")
        log.write_bytes(line(3))
        assert tail.poll() == 1
        assert tail.decoder.rejected["unterminated"] == 0  # its writer may still finish the line
        tail.close()
        assert tail.decoder.rejected["unterminated"] == 1

    def test_writes_to_the_old_file_after_rotation_are_read(self, tmp_path: Path) -> None:
        """A writer still holding the renamed file keeps appending there: those events are read too."""
        log = tmp_path / "events.jsonl"
        old_writer = open(log, "ab")  # noqa: SIM115 - held open across the rotation on purpose
        old_writer.write(line(1))
        old_writer.flush()
        tail = Tail([log], tmp_path / "out", interval_s=60)
        assert tail.poll() == 1
        log.rename(tmp_path / "events.jsonl.1")
        log.write_bytes(line(2))
        assert tail.poll() == 1
        old_writer.write(line(3))  # after the tail saw the rotation
        old_writer.close()
        assert tail.poll() == 1
        tail.checkpoint()
        old_writer2 = open(tmp_path / "events.jsonl.1", "ab")  # noqa: SIM115
        old_writer2.write(line(4))
        old_writer2.close()
        tail.release()  # it died: its files and its lock are closed
        again = Tail([log], tmp_path / "out", interval_s=60)  # restarted: the retired file is found again
        assert again.poll() == 1
        again.close()
        assert_same_as_replay([tmp_path / "events.jsonl.1", log], tmp_path / "out", tmp_path, 60)


class TestLateEvents:
    def test_late_rewrites_are_spaced(self, tmp_path: Path) -> None:
        """Late events rewrite their windows at most every late_flush_s (a backfill does not rewrite at every read);
        nothing is lost: the final files equal replay's."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1, 10) + line(2, 130))
        tail = Tail([log], tmp_path / "out", interval_s=60, grace_s=0, late_flush_s=3600)
        assert tail.step(now=0)
        first = (tmp_path / "out" / "session_tracking_report_20261124_220100.csv").read_bytes()
        for n in range(3, 8):
            append(log, line(n, 20 + n))
            assert not tail.step(now=0)
        assert (tmp_path / "out" / "session_tracking_report_20261124_220100.csv").read_bytes() == first
        assert tail.reporter.late == 5
        tail.late_flush_s = 0
        assert tail.step(now=0)
        assert (tmp_path / "out" / "session_tracking_report_20261124_220100.csv").read_bytes() != first
        tail.close()
        assert_same_as_replay([log], tmp_path / "out", tmp_path, 60)

    def test_late_event_rewrites_its_window(self, tmp_path: Path) -> None:
        """An event for a window already written is counted late, and that window's file is rewritten."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1, 10) + line(2, 130))
        tail = Tail([log], tmp_path / "out", interval_s=60, grace_s=0, late_flush_s=0)
        tail.step(now=0)
        first = (tmp_path / "out" / "session_tracking_report_20261124_220100.csv").read_bytes()
        append(log, line(3, 20))
        assert tail.step(now=0)
        assert tail.reporter.late == 1
        second = (tmp_path / "out" / "session_tracking_report_20261124_220100.csv").read_bytes()
        assert second != first
        assert second.count(b"\n") == first.count(b"\n")  # same session, one more answer
        tail.close()
        assert_same_as_replay([log], tmp_path / "out", tmp_path, 60)


class TestRunFigures:
    def test_a_window_closed_while_idle_is_rewritten_when_the_run_goes_on(self, tmp_path: Path) -> None:
        """A window closed by the clock while the log was idle is covered only up to the last event; the next
        event moves the run's end, so its covered seconds and rates are written again (as replay has them)."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1, 10) + line(2, 30))
        tail = Tail([log], tmp_path / "out", interval_s=60, grace_s=0)
        assert not tail.step(now=T0 / S + 100)  # reads the two events
        assert tail.step(now=T0 / S + 100)  # idle: the clock closes [0 s, 60 s), covered from 10 s to 30 s
        summary = tmp_path / "out" / "session_tracking_summary.csv"
        assert summary.read_text().splitlines()[1].split(",")[16] == "20.000"
        append(log, line(3, 70))  # the run now ends at 70 s: the first window is covered from 10 s to 60 s
        assert tail.step(now=T0 / S + 101)
        assert summary.read_text().splitlines()[1].split(",")[16] == "50.000"
        tail.close()
        assert_same_as_replay([log], tmp_path / "out", tmp_path, 60)


class TestCheckpoints:
    def test_restart_resumes_without_loss_or_double_count(self, tmp_path: Path) -> None:
        """A new tail on the same checkpoint goes on from the saved offsets: reports equal replay's."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"".join(line(i, i * 7) for i in range(1, 40)))
        first = Tail([log], tmp_path / "out", interval_s=60)
        first.step(now=0)
        first.checkpoint()  # and then it dies: no close
        append(log, b"".join(line(i, i * 7) for i in range(40, 80)))
        first.release()  # it died: its files and its lock are closed
        second = Tail([log], tmp_path / "out", interval_s=60)
        assert second.warnings == []
        assert second.poll() == 40
        second.close()
        assert second.stats.events == 79
        assert_same_as_replay([log], tmp_path / "out", tmp_path, 60)

    def test_checkpoint_of_the_version_before_rotated_siblings_means_full_reread(self, tmp_path: Path) -> None:
        """A version 7 checkpoint (before every rotated sibling was remembered) is said unusable and the logs are read
        again in full, naming the rotated files beside them; no crash."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"".join(line(i, i * 7) for i in range(1, 30)))
        (tmp_path / "events.jsonl.1").write_bytes(line(100))
        first = Tail([log], tmp_path / "out", interval_s=60)
        first.step(now=0)
        first.checkpoint()
        path = tmp_path / "out" / CHECKPOINT_DIR / CHECKPOINT_FILE
        state = orjson.loads(path.read_bytes())
        state["version"] = 7
        state["files"] = [{k: v for k, v in e.items() if k != "rotated"} for e in state["files"] if not e["rotated"]]
        path.write_bytes(orjson.dumps(state))
        first.release()
        second = Tail([log], tmp_path / "out", interval_s=60)
        (warning,) = [w for w in second.warnings if "unusable" in w]
        assert "version 7" in warning
        assert "events.jsonl.1" in warning
        assert second.poll() == 29

    @pytest.mark.parametrize("damage", [b"{not json", b'{"version": 99}', b""])
    def test_corrupt_checkpoint_means_full_reread(self, tmp_path: Path, damage: bytes) -> None:
        """An unusable checkpoint gives a warning and a full re-read, not a crash; reports stay right."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"".join(line(i, i * 7) for i in range(1, 30)))
        first = Tail([log], tmp_path / "out", interval_s=60)
        first.step(now=0)
        first.checkpoint()
        (tmp_path / "out" / CHECKPOINT_DIR / CHECKPOINT_FILE).write_bytes(damage)
        first.release()  # it died: its files and its lock are closed
        second = Tail([log], tmp_path / "out", interval_s=60)
        assert any("unusable" in w for w in second.warnings)
        assert second.poll() == 29
        second.close()
        assert_same_as_replay([log], tmp_path / "out", tmp_path, 60)

    def test_a_full_reread_names_the_rotated_files_it_does_not_read(self, tmp_path: Path) -> None:
        """The full re-read after an unusable checkpoint reads the logs, not their rotated files: the warning
        names those beside them, to replay."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"".join(line(i, i * 7) for i in range(1, 5)))
        (tmp_path / "events.jsonl.1").write_bytes(b"".join(line(i, i * 7) for i in range(5, 9)))
        first = Tail([log], tmp_path / "out", interval_s=60)
        first.step(now=0)
        first.checkpoint()
        (tmp_path / "out" / CHECKPOINT_DIR / CHECKPOINT_FILE).write_bytes(b"{not json")
        first.release()
        second = Tail([log], tmp_path / "out", interval_s=60)
        (warning,) = [w for w in second.warnings if "unusable" in w]
        assert warning.endswith("reading every log from the start; not the rotated files beside them "
                                "(events.jsonl.1): replay them with the logs to count them")
        second.release()

    @pytest.mark.parametrize("damage", [b"[]", b'{"version": 1, "interval_s": 60, "segments": [], "files": '
                                        b'[{"path": "x", "dev": 1, "ino": 2, "offset": 0, "line_no": 0, '
                                        b'"head": "zz"}]}'])
    def test_damaged_checkpoint_shapes(self, tmp_path: Path, damage: bytes) -> None:
        """A checkpoint of the wrong shape or with a damaged file entry is unusable, not a crash."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1))
        (tmp_path / "out" / CHECKPOINT_DIR).mkdir(parents=True)
        (tmp_path / "out" / CHECKPOINT_DIR / CHECKPOINT_FILE).write_bytes(damage)
        tail = Tail([log], tmp_path / "out", interval_s=60)
        assert any("unusable" in w for w in tail.warnings)
        assert tail.poll() == 1

    def test_unusable_checkpoint_removes_only_its_own_files(self, tmp_path: Path) -> None:
        """A checkpoint folder shared with other files: only checkpoint files are removed, never a log."""
        log = tmp_path / "run" / "events.jsonl"
        log.parent.mkdir()
        log.write_bytes(line(1))
        first = Tail([log], tmp_path / "out", interval_s=60, checkpoint_dir=log.parent)
        first.step(now=0)
        first.checkpoint()
        first.release()  # it died: its files and its lock are closed
        second = Tail([log], tmp_path / "out", interval_s=30, checkpoint_dir=log.parent)  # another interval
        assert any("unusable" in w for w in second.warnings)
        assert log.read_bytes() == line(1)
        assert not list(log.parent.glob("segment-*"))

    @pytest.mark.parametrize(("part", "value", "said"), [
        ("events", 7, "its events counter (7) is not the events its windows hold"),
        ("rejected", {}, "its rejected lines by reason ({}) are fewer than its quarantine holds"),
    ])
    def test_counters_that_disagree_with_the_state(self, tmp_path: Path, part: str, value: object,
                                                   said: str) -> None:
        """A checkpoint whose counters are not those of its windows or its quarantine is unusable: a full re-read,
        and the counts printed at the end are the log's."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"".join(line(i, i) for i in range(1, 20)) + b"bad\n" * 3)
        first = Tail([log], tmp_path / "out", interval_s=60)
        first.poll()
        first.checkpoint()
        first.release()
        path = tmp_path / "out" / CHECKPOINT_DIR / CHECKPOINT_FILE
        state = orjson.loads(path.read_bytes())
        state[part] = value
        path.write_bytes(orjson.dumps(state))
        second = Tail([log], tmp_path / "out", interval_s=60)
        try:
            assert any(said in w for w in second.warnings if "unusable" in w)
            second.poll()
            assert (second.stats.events, second.decoder.rejected.total()) == (19, 3)
        finally:
            second.release()

    def test_a_start_without_checkpoint_empties_the_quarantine(self, tmp_path: Path) -> None:
        """A tail starting without a checkpoint (after a replay into its folder, or killed before its first one)
        keeps only this run's rejected lines; restarted from its checkpoint, it warns of nothing."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1) + b"bad here\n")
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "quarantine.jsonl").write_bytes(b"an earlier run's line\n")
        (tmp_path / "out" / "quarantine.jsonl.reasons.jsonl").write_bytes(
            b'{"source":"old.jsonl","line":1,"offset":0,"reason":"invalid_json","detail":"not JSON"}\n')
        first = Tail([log], tmp_path / "out", interval_s=60)
        first.poll()
        first.checkpoint()
        first.release()
        assert (tmp_path / "out" / "quarantine.jsonl").read_bytes() == b"bad here\n"
        second = Tail([log], tmp_path / "out", interval_s=60)
        try:
            assert second.warnings == []
        finally:
            second.release()

    def test_a_stopped_replays_mark_does_not_outlive_the_next_tail(self, tmp_path: Path) -> None:
        """The manifest of a replay stopped before it wrote anything: a tail starting there makes the folder its own
        at once, so its checkpoints are used after a restart, even before it wrote a report."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"")
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / ".tracker-reports.json").write_bytes(b'{"files":[],"writer":"replay"}')
        first = Tail([log], tmp_path / "out", interval_s=60)
        first.poll()
        first.checkpoint()
        first.release()
        second = Tail([log], tmp_path / "out", interval_s=60)
        try:
            assert second.warnings == []
        finally:
            second.release()

    def test_lines_not_quarantined_are_still_counted_after_a_restart(self, tmp_path: Path, small_disk: Path) -> None:
        """The count of rejected lines a full quarantine could not keep is saved with the checkpoint."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1) + b"bad\n" * 4)
        with open(small_disk / "ballast", "wb") as stream, pytest.raises(OSError, match="No space"):
            stream.write(b"x" * (8 << 20))
        first = Tail([log], tmp_path / "out", interval_s=60, quarantine_path=small_disk / "q.jsonl")
        first.poll()
        assert first.quarantine.lost == 4
        first.checkpoint()
        first.release()
        second = Tail([log], tmp_path / "out", interval_s=60, quarantine_path=small_disk / "q.jsonl")
        try:
            assert second.quarantine.lost == 4
        finally:
            second.release()

    def test_files_set_aside_in_one_second_are_all_kept(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Two other programs' checkpoint.json set aside within one second both stay, under two names."""
        monkeypatch.setattr(time, "strftime", lambda form, when=None: "20261128T000000Z")
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1))
        folder = tmp_path / "ck"
        folder.mkdir()
        for n in (1, 2):
            (folder / CHECKPOINT_FILE).write_bytes(b'{"mine": %d}' % n)
            Tail([log], tmp_path / "out", interval_s=60, checkpoint_dir=folder).release()
        kept = sorted(p.read_bytes() for p in folder.glob(f"{CHECKPOINT_FILE}.not-a-checkpoint-*"))
        assert kept == [b'{"mine": 1}', b'{"mine": 2}']

    def test_a_user_file_in_the_checkpoint_folder_stays(self, tmp_path: Path) -> None:
        """A --checkpoint-dir holding a user's files (one named like an old tracker's segment file, one named
        checkpoint.json): none is removed; the one at checkpoint.json is set aside under another name."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1))
        folder = tmp_path / "userdata"
        folder.mkdir()
        (folder / "segment-2024.parquet").write_bytes(b"my data")
        (folder / CHECKPOINT_FILE).write_bytes(b'{"epoch": 12}')  # another program's file of that name
        tail = Tail([log], tmp_path / "out", interval_s=60, checkpoint_dir=folder)
        try:
            assert any("unusable" in w for w in tail.warnings)
            assert (folder / "segment-2024.parquet").read_bytes() == b"my data"
            (aside,) = folder.glob(f"{CHECKPOINT_FILE}.not-a-checkpoint-*")
            assert aside.read_bytes() == b'{"epoch": 12}'
            assert any(f"is not a tracker checkpoint (or is damaged): kept as {aside.name}" in w for w in tail.warnings)
            tail.poll()
            tail.checkpoint()
            assert orjson.loads((folder / CHECKPOINT_FILE).read_bytes())["events"] == 1
        finally:
            tail.release()

    def test_a_socket_as_the_checkpoint_file_is_said_so(self, tmp_path: Path) -> None:
        """A socket at checkpoint.json: unusable, and the warning says it is a socket."""
        import socket

        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1))
        path = tmp_path / "out" / CHECKPOINT_DIR / CHECKPOINT_FILE
        path.parent.mkdir(parents=True)
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(path))
            tail = Tail([log], tmp_path / "out", interval_s=60)
            try:
                assert any("unusable (it is a socket, not a regular file)" in w for w in tail.warnings)
                assert tail.poll() == 1
            finally:
                tail.release()

    def test_a_fifo_as_the_checkpoint_file_is_left_alone(self, tmp_path: Path) -> None:
        """A FIFO at checkpoint.json: the tail starts at once (reading it would wait for ever), says it is unusable,
        reads the log from the start, never saves over it (a warning says why) and leaves it a FIFO."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1))
        fifo = tmp_path / "out" / CHECKPOINT_DIR / CHECKPOINT_FILE
        fifo.parent.mkdir(parents=True)
        os.mkfifo(fifo)
        made: list[Tail] = []
        starting = threading.Thread(target=lambda: made.append(Tail([log], tmp_path / "out", interval_s=60)),
                                    daemon=True)
        starting.start()
        starting.join(TIMEOUT)
        if starting.is_alive():  # blocked reading the FIFO: give it an end, then fail
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            starting.join(TIMEOUT)
            pytest.fail("the tail waited on the FIFO")
        (tail,) = made
        try:
            assert any("unusable (it is a FIFO, not a regular file)" in w for w in tail.warnings)
            assert tail.poll() == 1
            tail.checkpoint()
            assert any("checkpoint not saved" in w and "not a regular file" in w for w in tail.warnings)
            assert fifo.is_fifo()
        finally:
            tail.release()

    def test_missing_window_file_means_full_reread(self, tmp_path: Path) -> None:
        """A checkpoint whose window file is gone is unusable: warning and full re-read."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1))
        first = Tail([log], tmp_path / "out", interval_s=60)
        first.step(now=0)
        first.checkpoint()
        files = list((tmp_path / "out" / CHECKPOINT_DIR / WINDOWS_DIR).glob("*.parquet"))
        assert files
        for path in files:
            path.unlink()
        first.release()  # it died: its files and its lock are closed
        second = Tail([log], tmp_path / "out", interval_s=60)
        assert any("window file" in w and "missing" in w for w in second.warnings)
        assert second.poll() == 1

    def test_state_of_another_run_is_not_merged(self, tmp_path: Path) -> None:
        """A checkpoint made for another log is not used: a warning, a full re-read, no foreign events."""
        other, log = tmp_path / "other.jsonl", tmp_path / "events.jsonl"
        other.write_bytes(b"".join(line(i, i, session="old") for i in range(1, 41)))
        log.write_bytes(b"".join(line(i, i) for i in range(1, 31)))
        first = Tail([other], tmp_path / "out", interval_s=60)
        first.close()
        second = Tail([log], tmp_path / "out", interval_s=60)
        assert any("other logs" in w for w in second.warnings)
        assert second.poll() == 30
        second.close()
        assert second.reporter.engine.counts.total() == 30
        assert_same_as_replay([log], tmp_path / "out", tmp_path, 60)

    def test_out_folder_of_an_earlier_run_starts_clean(self, tmp_path: Path) -> None:
        """A new run into the folder of an earlier one removes that run's report files and says so: no old window
        or session is mixed into the new reports."""
        old, log = tmp_path / "old.jsonl", tmp_path / "events.jsonl"
        old.write_bytes(b"".join(line(i, 3600 + i * 7, session=f"old{i % 5}") for i in range(1, 200)))
        log.write_bytes(b"".join(line(i, i * 7) for i in range(1, 30)))
        Tail([old], tmp_path / "out", interval_s=60).close()
        (tmp_path / "out" / CHECKPOINT_DIR / CHECKPOINT_FILE).unlink()  # as after --checkpoint-dir elsewhere
        (tmp_path / "out" / "notes.txt").write_text("mine")
        second = Tail([log], tmp_path / "out", interval_s=60)
        assert any("earlier run" in w and "starts clean" in w for w in second.warnings)
        second.close()
        assert_same_as_replay([log], tmp_path / "out", tmp_path, 60)
        assert (tmp_path / "out" / "notes.txt").read_text() == "mine"

    def test_out_folder_with_reports_tracker_did_not_write_is_refused(self, tmp_path: Path) -> None:
        """Report files no manifest lists (another tool's) are neither removed nor mixed in: a clear error."""
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "session_tracking_summary.csv").write_text("someone else's")
        with pytest.raises(ReportError, match=r"did not list as its own.*session_tracking_summary\.csv"):
            Tail([tmp_path / "events.jsonl"], tmp_path / "out", interval_s=60)
        assert (tmp_path / "out" / "session_tracking_summary.csv").read_text() == "someone else's"

    @pytest.mark.parametrize("damage", [
        {"engine": {"interval_s": 60, "ts_min": "x"}},
        {"engine": {"interval_s": 60, "ts_min": None, "ts_max": None, "counts": {}, "duplicates": 0,
                    "sessions": [["s", "not a time", None, None, [], None]]}},
        {"windows": {"12": {"files": ["../../etc/passwd"], "rows": 1}}},
        {"windows": []},
        {"late": "many"},
        {"files": [{"path": 5}]},
    ])
    def test_damaged_state_of_the_right_shape_is_unusable(self, tmp_path: Path, damage: dict[str, Any]) -> None:
        """Fields of the wrong type or value anywhere in the state: a warning and a full re-read, never a crash."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"".join(line(i, i) for i in range(1, 11)))
        first = Tail([log], tmp_path / "out", interval_s=60)
        first.close()
        path = tmp_path / "out" / CHECKPOINT_DIR / CHECKPOINT_FILE
        state = orjson.loads(path.read_bytes())
        for key, value in damage.items():
            state[key] = {**state[key], **value} if isinstance(value, dict) and key == "engine" else value
        path.write_bytes(orjson.dumps(state))
        second = Tail([log], tmp_path / "out", interval_s=60)
        assert any("unusable" in w for w in second.warnings)
        assert second.poll() == 10
        second.close()
        assert_same_as_replay([log], tmp_path / "out", tmp_path, 60)

    def test_replaced_file_with_stale_checkpoint_is_reread(self, tmp_path: Path) -> None:
        """A checkpoint whose file identity matches but whose first bytes differ is not trusted."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1) + line(2))
        first = Tail([log], tmp_path / "out", interval_s=60)
        first.step(now=0)
        first.checkpoint()
        with open(log, "r+b") as stream:  # same inode, new content
            stream.truncate(0)
            stream.write(line(9, session="new") + line(10, session="new") + line(11, session="new"))
        first.release()  # it died: its files and its lock are closed
        second = Tail([log], tmp_path / "out", interval_s=60)
        assert second.poll() == 3
        assert any("changed since the checkpoint" in w for w in second.warnings)

    def test_file_rotated_while_down_is_finished(self, tmp_path: Path) -> None:
        """Lines appended to a file that was rotated away while the tail was down are still read."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1))
        first = Tail([log], tmp_path / "out", interval_s=60)
        first.step(now=0)
        first.checkpoint()
        append(log, line(2))
        log.rename(tmp_path / "events.jsonl.1")
        log.write_bytes(line(3))
        first.release()  # it died: its files and its lock are closed
        second = Tail([log], tmp_path / "out", interval_s=60)
        assert second.poll() == 2
        second.close()
        assert_same_as_replay([tmp_path / "events.jsonl.1", log], tmp_path / "out", tmp_path, 60)


    def test_copytruncates_while_down_are_read_from_the_copies(self, tmp_path: Path) -> None:
        """Two copytruncates while the tail was down: the checkpointed file goes on in NAME.2, NAME.1 is read in
        full, then NAME: the files equal a replay of the three."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"".join(line(i, i) for i in range(1, 6)))
        first = Tail([tmp_path], tmp_path / "out", interval_s=60)
        first.step(now=0)
        first.checkpoint()
        first.release()  # it died: its files and its lock are closed
        for generation in range(2):
            append(log, b"".join(line(i, i) for i in range(6 + 5 * generation, 11 + 5 * generation)))
            if generation:
                (tmp_path / "events.jsonl.1").rename(tmp_path / "events.jsonl.2")
            shutil.copy(log, tmp_path / "events.jsonl.1")
            os.truncate(log, 0)
        append(log, b"".join(line(i, i) for i in range(16, 19)))
        second = Tail([tmp_path], tmp_path / "out", interval_s=60)
        assert second.poll() == 13
        assert not any("could not be read" in w for w in second.warnings)
        second.close()
        assert second.stats.events == 18
        rotated = [tmp_path / "events.jsonl.2", tmp_path / "events.jsonl.1"]
        assert_same_as_replay([*rotated, log], tmp_path / "out", tmp_path, 60)

    def test_checkpoints_name_window_files_and_compact_them(self, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
        """Each checkpoint adds only new rows; past the file limit a window is compacted; a restart still agrees."""
        monkeypatch.setattr(WindowStore, "MAX_FILES", 3)
        log = tmp_path / "events.jsonl"
        tail = Tail([log], tmp_path / "out", interval_s=60)
        folder = tmp_path / "out" / CHECKPOINT_DIR / WINDOWS_DIR
        for i in range(1, 8):
            append(log, line(i, i))
            tail.poll()
            tail.checkpoint()
            assert len(list(folder.glob("*.parquet"))) <= 3
        tail.release()  # it died: its files and its lock are closed
        again = Tail([log], tmp_path / "out", interval_s=60)
        assert (again.warnings, again.poll(), again.reporter.engine.counts.total()) == ([], 0, 7)
        again.close()
        assert_same_as_replay([log], tmp_path / "out", tmp_path, 60)

    def test_checkpoint_holds_no_copy_of_the_log(self, tmp_path: Path) -> None:
        """The checkpoint keeps the engine's compact rows, not the events: no event_id, writer or text in it."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"".join(line(i, i) for i in range(1, 50)))
        tail = Tail([log], tmp_path / "out", interval_s=60)
        tail.close()
        folder = tmp_path / "out" / CHECKPOINT_DIR
        columns = {c for p in (folder / WINDOWS_DIR).glob("*.parquet") for c in pl.read_parquet_schema(p)}
        assert columns == {"key", "session_id", "type", "response_time_ms", "time_to_first_token_ms", "input_tokens",
                           "output_tokens", "error", "kind"}
        assert b"w:1:t" not in (folder / CHECKPOINT_FILE).read_bytes()

    def test_restart_writes_nothing_that_did_not_change(self, tmp_path: Path) -> None:
        """After a restart from a checkpoint, a flush with nothing new writes no file (nothing is derived again)."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"".join(line(i, i * 7) for i in range(1, 60)))
        first = Tail([log], tmp_path / "out", interval_s=60)
        first.step(now=0)
        first.checkpoint()
        first.release()
        second = Tail([log], tmp_path / "out", interval_s=60)
        assert second.warnings == []
        assert second.reporter.flush().written == ()

    def test_a_late_event_read_after_the_last_flush_survives_a_restart(self, tmp_path: Path) -> None:
        """A late event folded in and checkpointed, but not yet written, is written after a restart."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"".join(line(i, i * 7) for i in range(1, 30)))
        first = Tail([log], tmp_path / "out", interval_s=60)
        first.step(now=0)  # closes and writes the first windows
        append(log, line(99, 1, session="late"))
        first.poll()
        first.checkpoint()  # a periodic checkpoint, before the window is written again
        first.release()
        second = Tail([log], tmp_path / "out", interval_s=60)
        second.close()
        assert_same_as_replay([log], tmp_path / "out", tmp_path, 60)

    def test_chat_figures_survive_a_restart(self, tmp_path: Path) -> None:
        """TTFT, TPOT and token totals of events read before a restart are in the whole run's figures after it."""
        def chat(seq: int, second: int) -> bytes:
            return orjson.dumps(record(seq, "s1", "question_answered", T0 + second * S, "w:1:t",
                                       response_time_ms=1000.0 + seq, time_to_first_token_ms=100.0 * seq,
                                       input_tokens=seq, output_tokens=10 * seq)) + b"\n"

        log = tmp_path / "events.jsonl"
        log.write_bytes(b"".join(chat(i, 20 * i) for i in range(1, 6)))
        first = Tail([log], tmp_path / "out", interval_s=60)
        first.step(now=0)
        first.checkpoint()
        first.release()
        append(log, b"".join(chat(i, 20 * i) for i in range(6, 9)))
        second = Tail([log], tmp_path / "out", interval_s=60)
        assert second.warnings == []
        second.close()
        header, row = ((tmp_path / "out" / "session_tracking_totals.csv").read_text().splitlines())
        totals = dict(zip(header.split(","), row.split(","), strict=True))
        assert (totals["input_tokens"], totals["output_tokens"]) == (str(sum(range(1, 9))), str(10 * sum(range(1, 9))))
        assert_same_as_replay([log], tmp_path / "out", tmp_path, 60)

    def test_late_count_survives_a_restart(self, tmp_path: Path) -> None:
        """The count of late events read before a restart is not lost with it."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1, 10) + line(2, 130))
        first = Tail([log], tmp_path / "out", interval_s=60, grace_s=0)
        first.step(now=0)
        append(log, line(3, 20) + line(4, 30))
        first.step(now=0)
        assert first.reporter.late == 2
        first.checkpoint()
        first.release()
        second = Tail([log], tmp_path / "out", interval_s=60, grace_s=0)
        assert second.reporter.late == 2
        second.close()

    def test_report_files_removed_while_down_are_written_again(self, tmp_path: Path) -> None:
        """A restart trusts a saved hash only for a file that still holds those bytes."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"".join(line(i, i * 7) for i in range(1, 40)))
        Tail([log], tmp_path / "out", interval_s=60).close()
        for report in (tmp_path / "out").glob("session_tracking_*.csv"):
            report.unlink()
        (tmp_path / "out" / "session_tracking_summary.csv").write_text("replaced")
        Tail([log], tmp_path / "out", interval_s=60).close()
        assert_same_as_replay([log], tmp_path / "out", tmp_path, 60)

    def test_a_second_tail_on_the_same_folder_is_refused(self, tmp_path: Path) -> None:
        """Two tails writing one checkpoint folder would mix their events: the second is refused, naming it."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1))
        first = Tail([log], tmp_path / "out", interval_s=60)
        with pytest.raises(CheckpointError, match="in use by another tracker tail"):
            Tail([log], tmp_path / "out", interval_s=60)
        first.close()
        Tail([log], tmp_path / "out", interval_s=60).close()  # free again once the first is gone

    def test_state_that_cannot_make_reports_is_a_warning(self, tmp_path: Path) -> None:
        """A checkpoint whose events span too many windows (a writer's clock 26 years off) is unusable on restart,
        not a crash at every start."""
        log = tmp_path / "events.jsonl"
        year_2000 = 946_771_200 * S  # 2000-01-02, a plausible time: more than 100,000 windows of 60 s before T0
        seconds = orjson.dumps(record(2, "s1", "question_answered", year_2000, "w:2:u", response_time_ms=1.0)) + b"\n"
        log.write_bytes(line(1) + seconds)
        first = Tail([log], tmp_path / "out", interval_s=60)
        first.step(now=0)
        assert any("reports not written" in w for w in first.warnings)
        first.checkpoint()
        first.release()
        second = Tail([log], tmp_path / "out", interval_s=60)
        assert any("unusable" in w and "windows" in w for w in second.warnings)

    def test_window_file_with_other_rows_is_unusable(self, tmp_path: Path) -> None:
        """A window file whose rows do not match the count the checkpoint names is not used."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"".join(line(i, i) for i in range(1, 20)))
        Tail([log], tmp_path / "out", interval_s=60).close()
        window = next((tmp_path / "out" / CHECKPOINT_DIR / WINDOWS_DIR).glob("*.parquet"))
        pl.read_parquet(window).head(3).write_parquet(window)
        second = Tail([log], tmp_path / "out", interval_s=60)
        assert any("should hold 19 rows" in w for w in second.warnings)
        second.close()
        assert_same_as_replay([log], tmp_path / "out", tmp_path, 60)

    def test_huge_figures_survive_a_restart(self, tmp_path: Path) -> None:
        """A mean that overflows to infinity (two answers of 1.7e308 ms) is the same after a restart."""
        log = tmp_path / "events.jsonl"
        big = [orjson.dumps(record(i, "s1", "question_answered", T0 + i, response_time_ms=1.7e308)) + b"\n"
               for i in (1, 2)]
        log.write_bytes(b"".join(big) + line(3, 200))
        first = Tail([log], tmp_path / "out", interval_s=60)
        first.step(now=0)
        first.checkpoint()
        first.release()
        Tail([log], tmp_path / "out", interval_s=60).close()
        assert_same_as_replay([log], tmp_path / "out", tmp_path, 60)

    def test_checkpoints_are_spaced(self, tmp_path: Path) -> None:
        """Between window flushes, a checkpoint is written at most every checkpoint_every_s seconds."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1))
        tail = Tail([log], tmp_path / "out", interval_s=3600, grace_s=3600, checkpoint_every_s=3600)
        tail.step(now=0)
        assert not (tmp_path / "out" / CHECKPOINT_DIR / CHECKPOINT_FILE).exists()
        tail.checkpoint_every_s = 0
        append(log, line(2))
        tail.step(now=0)
        assert (tmp_path / "out" / CHECKPOINT_DIR / CHECKPOINT_FILE).exists()


class TestWatching:
    def test_bursts_and_trickles_with_watchfiles(self, tmp_path: Path) -> None:
        """With real watchfiles, a burst and then single lines are each read soon after they are written."""
        log = tmp_path / "events.jsonl"
        tail = Tail([log], tmp_path / "out", interval_s=1, grace_s=0)
        stop = threading.Event()
        runner = threading.Thread(target=tail.run, args=(stop,))
        runner.start()
        try:
            append(log, b"".join(line(i, i / 100) for i in range(1, 501)))
            wait_for(lambda: tail.stats.events == 500)
            for i in range(501, 531):
                append(log, line(i, i / 100)[:25])
                append(log, line(i, i / 100)[25:])
                wait_for(lambda i=i: tail.stats.events == i)  # type: ignore[misc]
        finally:
            stop.set()
            runner.join()
        tail.close()
        assert tail.decoder.rejected.total() == 0
        assert_same_as_replay([log], tmp_path / "out", tmp_path, 1)


_WRITER = """
import sys, time
from tracker.emitter import EventLog
log = EventLog(sys.argv[1])
for i in range(int(sys.argv[2])):
    log.emit("question_answered", f"s{i % 5}", response_time_ms=float(i), ts=1795557600000000 + i * 50000)
"""


class TestKillAndRestart:
    def test_kill_9_and_restart(self, tmp_path: Path) -> None:
        """tracker tail killed with SIGKILL and started again ends with replay's files: nothing lost or doubled."""
        log = tmp_path / "events.jsonl"
        out = tmp_path / "out"
        command = [sys.executable, "-m", "tracker", "tail", str(log), "--out", str(out), "--interval", "1",
                   "--grace", "0", "--quiet"]
        subprocess.run([sys.executable, "-c", _WRITER, str(log), "3000"], check=True)
        first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        checkpoint = out / CHECKPOINT_DIR / CHECKPOINT_FILE
        wait_for(lambda: checkpoint.exists() and orjson.loads(checkpoint.read_bytes() or b"{}").get("events", 0) > 0)
        first.send_signal(signal.SIGKILL)
        first.wait()
        subprocess.run([sys.executable, "-c", _WRITER.replace("range(", "range(3000, "), str(log), "6000"],
                       check=True)
        second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: checkpoint.exists() and orjson.loads(checkpoint.read_bytes() or b"{}").get("events") == 6000)
        second.send_signal(signal.SIGINT)
        stdout, stderr = second.communicate(timeout=TIMEOUT)
        assert second.returncode == 0, stderr
        assert stdout.startswith("stopped: 6000 events, 0 rejected lines")
        assert_same_as_replay([log], out, tmp_path, 1)


    def test_killed_before_reading_anything_then_copytruncated(self, tmp_path: Path) -> None:
        """A tail started on an empty log saves positions at once: killed before it read anything, the lines
        written and copied away (copytruncate) while it was down are read from the copy at the next start."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"")
        out = tmp_path / "out"
        command = [sys.executable, "-m", "tracker", "tail", str(log), "--out", str(out), "--interval", "1",
                   "--grace", "0", "--quiet"]
        first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        checkpoint = out / CHECKPOINT_DIR / CHECKPOINT_FILE
        try:
            wait_for(checkpoint.exists)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        subprocess.run([sys.executable, "-c", _WRITER, str(log), "300"], check=True)
        shutil.copy(log, tmp_path / "events.jsonl.1")
        os.truncate(log, 0)
        subprocess.run([sys.executable, "-c", _WRITER.replace("range(", "range(300, "), str(log), "600"], check=True)
        second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: checkpoint.exists() and orjson.loads(checkpoint.read_bytes() or b"{}").get("events") == 600)
        second.send_signal(signal.SIGINT)
        stdout, stderr = second.communicate(timeout=TIMEOUT)
        assert second.returncode == 0, stderr
        assert stdout.startswith("stopped: 600 events, 0 rejected lines")
        assert_same_as_replay([tmp_path / "events.jsonl.1", log], out, tmp_path, 1)


class TestLiveEqualsReplay:
    @settings(max_examples=3, deadline=None)
    @given(st.integers(0, 2**32))
    def test_random_streams_with_faults(self, tmp_path_factory: pytest.TempPathFactory, seed: int) -> None:
        """Random appends (partial lines, bad lines, late and duplicate events), polled at random: the files
        on disk always equal replay's for the closed windows, and replay's entirely after close."""
        rnd = random.Random(seed)
        tmp = tmp_path_factory.mktemp("live")
        log = tmp / "events.jsonl"
        log.write_bytes(b"")
        tail = Tail([log], tmp / "out", interval_s=10, grace_s=rnd.choice([0, 3]), late_flush_s=0)
        written = b""
        for step in range(rnd.randint(1, 30)):
            lines = []
            for n in range(rnd.randint(0, 20)):
                seq = step * 100 + n + 1
                roll = rnd.random()
                if roll < 0.05:
                    lines.append(b"bad line\n")
                elif roll < 0.1 and written:
                    lines.append(rnd.choice(written.splitlines(keepends=True)))  # a duplicate (or bad) line
                else:
                    second = step * 4 + rnd.uniform(-15, 5)  # some events late
                    lines.append(line(seq, max(0.0, second), session=f"s{rnd.randrange(4)}"))
            data = b"".join(lines)
            cut = rnd.randrange(len(data) + 1)
            append(log, data[:cut])
            written += data[:cut]
            tail.step(now=(T0 / S) + rnd.uniform(0, 200))
            append(log, data[cut:])
            written += data[cut:]
            complete = written[: written.rfind(b"\n") + 1]
            (tmp / "prefix.jsonl").write_bytes(complete)
            flushed = tail.step(now=(T0 / S) + rnd.uniform(0, 200))
            replay([tmp / "prefix.jsonl"], tmp / "prefix", interval_s=10)
            expected = csv_files(tmp / "prefix")
            on_disk = csv_files(tmp / "out")
            windows = [name for name in on_disk if name.startswith("session_tracking_report_")]
            for name in windows:
                assert on_disk[name] == expected[name], name
            if "session_tracking_summary.csv" in on_disk:  # the closed windows' rows: a prefix of replay's
                rows = on_disk["session_tracking_summary.csv"].splitlines()
                assert rows == expected["session_tracking_summary.csv"].splitlines()[: len(rows)]
                assert len(rows) - 1 == len(windows)
                if flushed:  # totals cover everything read, as of the last write
                    assert on_disk["session_tracking_totals.csv"] == expected["session_tracking_totals.csv"]
        tail.close()
        replay([log], tmp / "final", interval_s=10)
        assert csv_files(tmp / "out") == csv_files(tmp / "final")


def thresholds(*texts: str, goodput: bool = False) -> list[Threshold]:
    return [parse_threshold(text, *schemas(goodput)) for text in texts]


MAX_BELOW_5 = "response_time_ms_max<5"
HEADER = "scope,threshold,value,ok\n"


def breach(window: str, value: str) -> str:
    return f"threshold {MAX_BELOW_5} failed in the window from 2026-11-24T{window}Z: {value}"


def said(tail: Tail) -> list[str]:
    return [w for w in tail.warnings if w.startswith("threshold ")]


class TestThresholds:
    """A window that breaks a threshold is said once, when it closes; the verdicts file follows the closed windows."""

    def test_a_breach_is_said_once_when_its_window_closes(self, tmp_path: Path) -> None:
        """The window of 22:00 (answers of 1 and 9 ms) breaks max<5: said when an event past its end closes it,
        not before and never again (a late event rewriting it, later windows, close); the file follows."""
        log, out = tmp_path / "events.jsonl", tmp_path / "out"
        log.write_bytes(line(1, 10) + line(9, 20))
        tail = Tail([log], out, interval_s=60, grace_s=0, late_flush_s=0, thresholds=thresholds(MAX_BELOW_5))
        assert not tail.step(now=0)  # 22:00 is still open
        assert (said(tail), (out / "session_tracking_thresholds.csv").exists()) == ([], False)
        append(log, line(2, 70))  # 22:01:10 closes the window of 22:00 (no grace)
        assert tail.step(now=0)
        assert said(tail) == [breach("22:00:00", "9.000")]
        assert (out / "session_tracking_thresholds.csv").read_text() == (
            HEADER
            + f"2026-11-24T22:00:00Z,{MAX_BELOW_5},9.000,false\n"
            + f"run,{MAX_BELOW_5},9.000,false\n")
        append(log, line(10, 30) + line(3, 130))  # late into 22:00 (still failing); 22:02:10 closes 22:01
        assert tail.step(now=0)
        assert tail.reporter.late == 1
        assert said(tail) == [breach("22:00:00", "9.000")]
        assert (out / "session_tracking_thresholds.csv").read_text() == (
            HEADER
            + f"2026-11-24T22:00:00Z,{MAX_BELOW_5},10.000,false\n"
            + f"2026-11-24T22:01:00Z,{MAX_BELOW_5},2.000,true\n"
            + f"run,{MAX_BELOW_5},10.000,false\n")
        assert not tail.step(now=0)
        final = tail.close()
        assert final is not None
        assert final.breaches == ()
        assert said(tail) == [breach("22:00:00", "9.000")]
        assert (out / "session_tracking_thresholds.csv").read_text() == (
            HEADER
            + f"2026-11-24T22:00:00Z,{MAX_BELOW_5},10.000,false\n"
            + f"2026-11-24T22:01:00Z,{MAX_BELOW_5},2.000,true\n"
            + f"2026-11-24T22:02:00Z,{MAX_BELOW_5},3.000,true\n"
            + f"run,{MAX_BELOW_5},10.000,false\n")
        replay([log], tmp_path / "replayed", interval_s=60, thresholds=thresholds(MAX_BELOW_5))
        assert csv_files(out) == csv_files(tmp_path / "replayed")

    def test_a_late_event_that_breaks_a_closed_window_is_said(self, tmp_path: Path) -> None:
        """22:00 closes passing (1 ms); a late answer of 9 ms into it makes it fail: said at the rewrite, once, and
        not again after a restart."""
        log, out = tmp_path / "events.jsonl", tmp_path / "out"
        log.write_bytes(line(1, 10) + line(2, 70))
        tail = Tail([log], out, interval_s=60, grace_s=0, late_flush_s=0, thresholds=thresholds(MAX_BELOW_5))
        assert tail.step(now=0)
        assert said(tail) == []
        append(log, line(9, 20))  # late into the closed window of 22:00
        tail.step(now=0)
        assert said(tail) == [breach("22:00:00", "9.000")]
        tail.close()
        again = Tail([log], out, interval_s=60, grace_s=0, late_flush_s=0, thresholds=thresholds(MAX_BELOW_5))
        append(log, line(3, 130))
        again.step(now=0)
        again.close()
        assert said(again) == []

    def test_close_says_the_breach_of_the_open_window(self, tmp_path: Path) -> None:
        """A breach in the window still open when the tail stops is said by close(), which writes the verdicts."""
        log, out = tmp_path / "events.jsonl", tmp_path / "out"
        log.write_bytes(line(1, 10) + line(7, 70))
        tail = Tail([log], out, interval_s=60, grace_s=0, thresholds=thresholds(MAX_BELOW_5))
        tail.step(now=0)
        assert said(tail) == []
        tail.close()
        assert said(tail) == [breach("22:01:00", "7.000")]
        assert (out / "session_tracking_thresholds.csv").read_text() == (
            HEADER
            + f"2026-11-24T22:00:00Z,{MAX_BELOW_5},1.000,true\n"
            + f"2026-11-24T22:01:00Z,{MAX_BELOW_5},7.000,false\n"
            + f"run,{MAX_BELOW_5},7.000,false\n")

    def test_restart_does_not_say_an_old_breach_again(self, tmp_path: Path) -> None:
        """Restarted from the checkpoint of a closed tail, the breach said before is not said again; a new
        window's breach is, once."""
        log, out = tmp_path / "events.jsonl", tmp_path / "out"
        log.write_bytes(line(9, 10) + line(1, 70))
        first = Tail([log], out, interval_s=60, grace_s=0, thresholds=thresholds(MAX_BELOW_5))
        first.close()
        assert said(first) == [breach("22:00:00", "9.000")]
        second = Tail([log], out, interval_s=60, grace_s=0, thresholds=thresholds(MAX_BELOW_5))
        assert second.warnings == []
        append(log, line(2, 130))
        second.step(now=0)
        append(log, line(20, 250))
        second.step(now=0)
        second.close()
        assert said(second) == [breach("22:04:00", "20.000")]
        replay([log], tmp_path / "replayed", interval_s=60, thresholds=thresholds(MAX_BELOW_5))
        assert csv_files(out) == csv_files(tmp_path / "replayed")

    def test_restart_after_a_crash_does_not_say_it_again(self, tmp_path: Path) -> None:
        """A tail that said a breach, checkpointed and died: its successor does not say that breach again."""
        log, out = tmp_path / "events.jsonl", tmp_path / "out"
        log.write_bytes(line(9, 10) + line(1, 70))
        first = Tail([log], out, interval_s=60, grace_s=0, thresholds=thresholds(MAX_BELOW_5))
        assert first.step(now=0)  # closes and checkpoints the window of 22:00
        assert said(first) == [breach("22:00:00", "9.000")]
        first.release()  # it died
        second = Tail([log], out, interval_s=60, grace_s=0, thresholds=thresholds(MAX_BELOW_5))
        append(log, line(2, 130))
        second.step(now=0)
        second.close()
        assert said(second) == []
        assert second.warnings == []

    def test_restart_without_thresholds_removes_their_file(self, tmp_path: Path) -> None:
        """Restarted without the thresholds the run had, the tail leaves no verdicts file of those thresholds
        behind: its folder holds what replay writes (as a replay into an earlier replay's folder does)."""
        log, out = tmp_path / "events.jsonl", tmp_path / "out"
        log.write_bytes(line(9, 10) + line(1, 70))
        Tail([log], out, interval_s=60, grace_s=0, thresholds=thresholds(MAX_BELOW_5)).close()
        assert (out / "session_tracking_thresholds.csv").exists()
        second = Tail([log], out, interval_s=60, grace_s=0)
        assert second.warnings == []
        second.close()
        assert not (out / "session_tracking_thresholds.csv").exists()
        assert_same_as_replay([log], out, tmp_path, 60)
        third = Tail([log], out, interval_s=60, grace_s=0)  # the manifest no longer names it: nothing to say
        assert third.warnings == []
        third.close()

    def test_restart_with_other_thresholds(self, tmp_path: Path) -> None:
        """Thresholds are not part of the checkpoint: a restart with others writes their verdicts, equal to
        replay's with those."""
        log, out = tmp_path / "events.jsonl", tmp_path / "out"
        log.write_bytes(line(9, 10) + line(1, 70))
        Tail([log], out, interval_s=60, grace_s=0, thresholds=thresholds(MAX_BELOW_5)).close()
        other = thresholds("run:questions_answered>=3")
        second = Tail([log], out, interval_s=60, grace_s=0, thresholds=other)
        assert second.warnings == []
        second.close()
        assert (out / "session_tracking_thresholds.csv").read_text() == (
            HEADER + "run,run:questions_answered>=3,2,false\n")
        replay([log], tmp_path / "replayed", interval_s=60, thresholds=other)
        assert csv_files(out) == csv_files(tmp_path / "replayed")

    @pytest.mark.parametrize(("before", "after", "reason"), [
        ({"goodput": {"ttft_ms": 500.0}}, {"goodput": {"ttft_ms": 100.0}}, "--goodput {'ttft_ms': 500.0}"),
        ({}, {"goodput": {"response_time_ms": 3.0}}, "--goodput None"),
        ({"goodput": {"tpot_ms": 1.0}}, {}, "--goodput {'tpot_ms': 1.0}"),
        ({"session_timeout_s": 60.0}, {"session_timeout_s": 30.0}, "--session-timeout 60.0"),
        ({}, {"session_timeout_s": 30.0}, "--session-timeout None"),
        ({"session_timeout_s": 30.0}, {}, "--session-timeout 30.0"),
    ])
    def test_checkpoint_of_other_options_is_not_used(self, tmp_path: Path, before: dict[str, Any],
                                                     after: dict[str, Any], reason: str) -> None:
        """A checkpoint made with another --goodput or --session-timeout is not used: a warning says which, every
        log is read again, and the files equal a fresh replay's with the new options."""
        def chat(seq: int, second: int, session: str) -> bytes:
            return orjson.dumps(record(seq, session, "question_answered", T0 + second * S, "w:1:t",
                                       response_time_ms=2.0 * seq, time_to_first_token_ms=200.0 * (seq % 3),
                                       output_tokens=seq)) + b"\n"

        log, out = tmp_path / "events.jsonl", tmp_path / "out"
        log.write_bytes(b"".join(chat(i, 20 * i, f"s{i % 3 if i < 6 else 0}") for i in range(1, 12)))
        gates = ("ttft_ms_p95<300", "run:goodput_ratio>=0.5") if "goodput" in after else ("ttft_ms_p95<300",)
        first = Tail([log], out, interval_s=60, grace_s=0, thresholds=thresholds("ttft_ms_p95<300"), **before)
        first.step(now=0)
        first.close()
        second = Tail([log], out, interval_s=60, grace_s=0,
                      thresholds=thresholds(*gates, goodput="goodput" in after), **after)
        assert [w for w in second.warnings if "unusable" in w] == [
            f"checkpoint {out / CHECKPOINT_DIR / CHECKPOINT_FILE} is unusable (it was made with {reason}); reading "
            "every log from the start"]
        assert second.poll() == 11
        second.close()
        assert second.stats.events == 11
        replay([log], tmp_path / "replayed", interval_s=60, thresholds=thresholds(*gates, goodput="goodput" in after),
               **after)
        assert csv_files(out) == csv_files(tmp_path / "replayed")
