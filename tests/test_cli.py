"""Tests for tracker.cli: exit status and exact output of each command."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import orjson
import pytest

from tests.helpers import T0, TIMEOUT, record
from tracker import cli as cli_module
from tracker.cli import main
from tracker.options import GOODPUT_NAMES
from tracker.tables import GOODPUT_LIMITS
from tracker.version import VERSION

FIXTURES = Path(__file__).parent.parent / "fixtures"


class TestEmitCommand:
    def test_appends_a_typed_event(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Fields are parsed by their schema type; the command is silent and exits 0."""
        log = tmp_path / "log.jsonl"
        assert main("emit", "session_registered", "s1", "username=ann", "course_numbers=101,202",
                    "--log", str(log), "--ts", "2026-11-24T22:00:00Z") == 0
        assert main("emit", "question_answered", "s1", "response_time_ms=2150.5", "input_tokens=12",
                    "--log", str(log), "--ts", "1795557601000000") == 0
        assert capsys.readouterr() == ("", "")
        first, second = (orjson.loads(line) for line in log.read_bytes().splitlines())
        assert (first["username"], first["course_numbers"], first["ts"]) == ("ann", [101, 202], 1795557600000000)
        assert (second["response_time_ms"], second["input_tokens"], second["ts"]) == (2150.5, 12, 1795557601000000)

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["bogus", "s1"], "tracker emit: error: unknown event type 'bogus' (one of session_registered, "
                              "question_asked, question_answered, cycle_completed, error, session_unregistered)\n"),
            (["question_answered", "s1", "response_time_ms=abc"],
             "tracker emit: error: response_time_ms: expected number, got 'abc'\n"),
            (["question_answered", "s1", "response_time_ms=nan"],
             "tracker emit: error: response_time_ms: must be a finite number >= 0, got nan\n"),
            (["question_answered", "s1"],
             "tracker emit: error: response_time_ms: is required for 'question_answered' events\n"),
            (["cycle_completed", "s1", "colour=red"],
             "tracker emit: error: 'colour' is not a field of 'cycle_completed' events (allowed: none)\n"),
            (["cycle_completed", "s1", "oops"], "tracker emit: error: expected key=value, got 'oops'\n"),
            (["cycle_completed", "s1", "--ts", "yesterday"],
             "tracker emit: error: --ts: expected ISO-8601 with a UTC offset or epoch microseconds, "
             "got 'yesterday'\n"),
            (["cycle_completed", "s1", "--ts", "2026-11-24T22:00:00"],
             "tracker emit: error: ts: must be timezone-aware (naive datetimes are ambiguous; use UTC), "
             "got datetime.datetime(2026, 11, 24, 22, 0)\n"),
        ],
    )
    def test_bad_input_exits_2_and_writes_nothing(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
    ) -> None:
        """A bad event is reported on stderr with exit status 2, and the log stays empty."""
        log = tmp_path / "log.jsonl"
        assert main("emit", *args, "--log", str(log)) == 2
        assert capsys.readouterr() == ("", message)
        assert not log.exists() or log.read_bytes() == b""


class TestValidateCommand:
    def test_sigterm_stops_with_status_130(self, tmp_path: Path) -> None:
        """SIGTERM while validate reads (sent once it has finished a first log and reads a long second one): exit
        130 and a message saying the counts are partial, no traceback."""
        small, big = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
        small.write_bytes(_log_line(1))
        line = _log_line(2)
        big.write_bytes(b"".join(line.replace(b'"seq":2', b'"seq":%d' % i).replace(b'"t-2"', b'"t-%d"' % i)
                                 for i in range(2, 800_002)))
        child = subprocess.Popen([sys.executable, "-u", "-m", "tracker", "validate", str(small), str(big)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            assert child.stdout is not None
            first = child.stdout.readline()  # the first log's line: it now reads the second
            assert first.startswith(str(small).encode()), first
            child.send_signal(signal.SIGTERM)
            out, err = child.communicate(timeout=TIMEOUT)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == 130, (out, err)
        assert err == b"tracker validate: stopped before the end: the counts above cover the logs read so far\n"

    def test_clean_log(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A clean log prints its counts by type and exits 0."""
        log = tmp_path / "log.jsonl"
        main("emit", "cycle_completed", "s1", "--log", str(log))
        main("emit", "cycle_completed", "s2", "--log", str(log))
        capsys.readouterr()
        assert main("validate", str(log)) == 0
        assert capsys.readouterr().out == (
            f"{log}: 2 events, 0 rejected, 0 duplicates\n"
            "events by type:\n"
            "  cycle_completed          2\n"
        )

    def test_rejected_line_exits_1(self, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        """Each rejected line is listed with line number, offset and reason; exit status 1."""
        path = FIXTURES / "rejects" / "schema.jsonl"
        quarantine = tmp_path / "q.jsonl"
        assert main("validate", str(path), "--quarantine", str(quarantine)) == 1
        assert capsys.readouterr().out == (
            f"  {path}:4 (byte 623): schema: response_time_ms: must be a finite number >= 0, got -5.0\n"
            f"{path}: 4 events, 1 rejected, 0 duplicates\n"
            "events by type:\n"
            "  cycle_completed             1\n"
            "  question_answered           1\n"
            "  question_asked              1\n"
            "  session_registered          1\n"
            "rejected lines by reason:\n"
            "  schema          1\n"
            "writers with missing sequence numbers:\n"
            "  fixture-host:100:aaaa0000aaaa0000          1\n"
            f"1 rejected lines written to {quarantine} (reasons in {quarantine}.reasons.jsonl)\n"
        )
        assert quarantine.read_bytes() == path.read_bytes().splitlines(keepends=True)[3]

    def test_several_logs_and_duplicates(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Logs are read as one: an event present in two files is a duplicate, and a total line is printed."""
        path = FIXTURES / "rejects" / "schema.jsonl"
        copy = tmp_path / "copy.jsonl"
        copy.write_bytes(path.read_bytes().splitlines(keepends=True)[0])
        assert main("validate", str(path), str(copy)) == 1
        out = capsys.readouterr().out
        assert f"{copy}: 0 events, 0 rejected, 1 duplicates\n" in out
        assert "total: 4 events, 1 rejected, 1 duplicates\n" in out

    def test_missing_file_exits_2(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A log that cannot be read is an error with exit status 2, naming the file."""
        assert main("validate", str(tmp_path / "nope.jsonl")) == 2
        assert capsys.readouterr().err == (
            f"tracker validate: error: cannot read '{tmp_path / 'nope.jsonl'}': No such file or directory\n")


class TestGeneral:
    def test_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--version prints the version and exits 0."""
        with pytest.raises(SystemExit) as info:
            main("--version")
        assert (info.value.code, capsys.readouterr().out) == (0, f"tracker {VERSION}\n")

    @pytest.mark.parametrize("command", [[], ["emit"], ["validate"], ["replay"], ["tail"], ["demo"]])
    def test_help(self, command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
        """Every command has --help, which exits 0 and shows its usage."""
        with pytest.raises(SystemExit) as info:
            main(*command, "--help")
        assert info.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: tracker {' '.join(command)}".rstrip())

    def test_python_m_tracker(self) -> None:
        """python -m tracker runs the same command line."""
        result = subprocess.run([sys.executable, "-m", "tracker", "--version"], capture_output=True, text=True,
                                check=False)
        assert (result.returncode, result.stdout) == (0, f"tracker {VERSION}\n")


class TestDemoCommand:
    def test_runs_and_reports_every_session(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The demo writes a valid log and prints a row for every simulated session."""
        assert main("demo", "--sessions", "4", "--duration", "1", "--out", str(tmp_path)) == 0
        out = capsys.readouterr().out
        assert all(f"session-000{i}" in out for i in range(4))
        html = tmp_path / "reports" / "session_tracking_report.html"
        assert out.endswith(f"the HTML report:     {html}\n")  # the last line: what to open
        assert html.read_bytes().startswith(b"<!DOCTYPE html>")
        assert main("validate", str(tmp_path / "events.jsonl")) == 0


def _log_line(seq: int, session: str = "s1", second: int = 0) -> bytes:
    """One valid cycle_completed line, ``second`` seconds after 2026-11-24T22:00:00Z."""
    return orjson.dumps({"v": 1, "ts": 1_795_557_600_000_000 + second * 1_000_000, "event_id": f"t-{seq}",
                         "writer": "w:1:t", "seq": seq, "session_id": session, "type": "cycle_completed"}) + b"\n"


@contextlib.contextmanager
def _sigterm_once_following(before: Callable[[], object] | None = None) -> Iterator[None]:
    """Send this process SIGTERM once ``tracker tail`` (run by main() here) has installed its handler, so that
    it stops (calling ``before`` first); nothing is sent when main() returns before that."""
    original, done = signal.getsignal(signal.SIGTERM), threading.Event()

    def send() -> None:
        deadline = time.monotonic() + TIMEOUT
        installed_at = None
        while not done.is_set() and time.monotonic() < deadline:
            installed = signal.getsignal(signal.SIGTERM) is not original
            installed_at = (installed_at or time.monotonic()) if installed else None
            if installed_at is not None and time.monotonic() - installed_at > 0.3:  # following for a while
                if before is not None:
                    before()
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.01)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        yield
    finally:
        done.set()
        sender.join()


@contextlib.contextmanager
def _fifo_unblocked_later(fifo: Path, after: float = 5.0) -> Iterator[None]:
    """Should a reader wait on ``fifo`` (the defect), open and close its write end after a while: the test then
    fails instead of hanging."""
    def unblock() -> None:
        with contextlib.suppress(OSError):  # no reader: nothing waits
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    timer = threading.Timer(after, unblock)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


class TestStartup:
    """tracker emit starts fast: neither polars nor watchfiles is loaded."""

    def test_emit_loads_neither_polars_nor_watchfiles(self, tmp_path: Path) -> None:
        """main('emit', ...) appends the event without importing polars or watchfiles."""
        log = tmp_path / "log.jsonl"
        code = ("import sys; from tracker.cli import main; "
                f"status = main('emit', 'question_asked', 's1', '--log', {str(log)!r}); "
                "heavy = sorted(m for m in ('polars', 'watchfiles') if m in sys.modules); "
                "print(status, heavy)")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        assert (done.stdout, done.stderr) == ("0 []\n", "")
        assert orjson.loads(log.read_bytes())["type"] == "question_asked"

    def test_emit_help_loads_neither_polars_nor_watchfiles(self) -> None:
        """python -m tracker emit --help imports neither (as -X importtime lists every import)."""
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "tracker", "emit", "--help"],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0
        assert done.stdout.startswith("usage: tracker emit")
        imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines()}
        assert "tracker" in imported
        assert not imported & {"polars", "watchfiles"}

    def test_from_tracker_import_emit_loads_neither(self) -> None:
        """from tracker import emit stays light too."""
        code = "import sys; from tracker import emit; print(sorted(m for m in ('polars', 'watchfiles') if m in " \
               "sys.modules))"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        assert (done.stdout, done.stderr) == ("[]\n", "")


    @pytest.mark.parametrize("command", ["replay", "tail", "validate"])
    def test_ctrl_c_while_starting_is_a_stop_not_a_traceback(self, tmp_path: Path, command: str) -> None:
        """A SIGINT as the command starts (here: as it begins to import polars) stops it with exit status 130 and
        one line, never a KeyboardInterrupt traceback."""
        log = tmp_path / "log.jsonl"
        log.write_bytes(_log_line(1))
        args = [command, str(log), *(["--out", str(tmp_path / "out")] if command != "validate" else [])]
        code = ("import os, signal, sys\n"
                "class Interrupt:\n"
                "    def find_spec(self, name, path=None, target=None):\n"
                "        if name == 'polars':\n"
                "            sys.meta_path.remove(self)\n"
                "            os.kill(os.getpid(), signal.SIGINT)\n"
                "sys.meta_path.insert(0, Interrupt())\n"
                "from tracker.cli import _entry\n"
                f"_entry({args!r})\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                              timeout=TIMEOUT)
        assert done.returncode == 130, done.stderr
        assert "Traceback" not in done.stderr
        assert f"tracker {command}: stopped" in done.stderr


class TestNumericOptions:
    """Every number an option takes is checked: a usage error (exit 2) saying why, never a traceback."""

    @pytest.mark.parametrize(("args", "message"), [
        (["replay", "x.jsonl", "--out", "o", "--memory", "inf"],
         "argument --memory: must be at most 1048576 (1 TiB), got 'inf'"),
        (["replay", "x.jsonl", "--out", "o", "--memory", "nan"], "argument --memory: expected a number, got 'nan'"),
        (["replay", "x.jsonl", "--out", "o", "--memory", "1e300"],
         "argument --memory: must be at most 1048576 (1 TiB), got '1e300'"),
        (["replay", "x.jsonl", "--out", "o", "--memory", "-1"], "argument --memory: must be >= 0, got '-1'"),
        (["replay", "x.jsonl", "--out", "o", "--interval", "100000000000000"],
         "argument --interval: must be at most 366d (31622400 s), got '100000000000000'"),
        (["replay", "x.jsonl", "--out", "o", "--interval", "9" * 5000],
         "argument --interval: must be at most 366d (31622400 s), got '999999999999"),
        (["replay", "x.jsonl", "--out", "o", "--interval", "0"], "argument --interval: must be >= 1 s, got '0'"),
        (["replay", "x.jsonl", "--out", "o", "--interval", "1.5s"],
         "argument --interval: must be whole seconds, got '1.5s'"),
        (["replay", "x.jsonl", "--out", "o", "--interval", "5 min"],
         "argument --interval: expected a duration such as 90, 90s, 5m, 1.5h or 2d, got '5 min'"),
        (["replay", "x.jsonl", "--out", "o", "--max-line-bytes", "0"],
         "argument --max-line-bytes: must be >= 1, got '0'"),
        (["validate", "x.jsonl", "--max-line-bytes", "-5"], "argument --max-line-bytes: must be >= 1, got '-5'"),
        (["validate", "x.jsonl", "--max-line-bytes", "0"], "argument --max-line-bytes: must be >= 1, got '0'"),
        (["validate", "x.jsonl", "--max-line-bytes", "1099511627776"],
         "argument --max-line-bytes: must be at most 1073741824 (1 GiB), got '1099511627776'"),
        (["validate", "x.jsonl", "--max-line-bytes", "1e3"],
         "argument --max-line-bytes: expected a whole number, got '1e3'"),
        (["tail", "x.jsonl", "--out", "o", "--grace", "inf"],
         "argument --grace: expected a duration such as 90, 90s, 5m, 1.5h or 2d, got 'inf'"),
        (["tail", "x.jsonl", "--out", "o", "--grace", "1e300"],
         "argument --grace: expected a duration such as 90, 90s, 5m, 1.5h or 2d, got '1e300'"),
        (["tail", "x.jsonl", "--out", "o", "--grace", "2d"],
         "argument --grace: must be at most 1d (86400 s), got '2d'"),
        (["tail", "x.jsonl", "--out", "o", "--grace", "-1"],
         "argument --grace: expected a duration such as 90, 90s, 5m, 1.5h or 2d, got '-1'"),
        (["tail", "x.jsonl", "--out", "o", "--interval", "367d"],
         "argument --interval: must be at most 366d (31622400 s), got '367d'"),
        (["tail", "x.jsonl", "--out", "o", "--max-line-bytes", "2000000000"],
         "argument --max-line-bytes: must be at most 1073741824 (1 GiB), got '2000000000'"),
        (["demo", "--sessions", "0"], "argument --sessions: must be >= 1, got '0'"),
        (["demo", "--sessions", "-1"], "argument --sessions: must be >= 1, got '-1'"),
        (["demo", "--sessions", "100001"], "argument --sessions: must be at most 10000, got '100001'"),
        (["demo", "--duration", "inf"],
         "argument --duration: expected a duration such as 90, 90s, 5m, 1.5h or 2d, got 'inf'"),
        (["demo", "--duration", "0"], "argument --duration: must be > 0 s, got '0'"),
        (["demo", "--duration", "2d"], "argument --duration: must be at most 1d (86400 s), got '2d'"),
        (["demo", "--seed", "-1"], "argument --seed: must be >= 0, got '-1'"),
        (["demo", "--seed", "seven"], "argument --seed: expected a whole number, got 'seven'"),
        (["demo", "--seed", "1" * 5000], "argument --seed: must be at most 9223372036854775807, got '111111"),
        (["demo", "--interval", "1.5s"], "argument --interval: must be whole seconds, got '1.5s'"),
    ])
    def test_bad_number_is_a_usage_error(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
        """The message names the option, says the rule and quotes the value; exit status 2, nothing run."""
        monkeypatch.chdir(tmp_path)
        with pytest.raises(SystemExit) as info:
            main(*args)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"usage: tracker {args[0]}")
        assert f"tracker {args[0]}: error: {message}" in err
        assert list(tmp_path.iterdir()) == []


class TestDurations:
    """Durations take a unit: 90, 90s, 5m, 1.5h, 2d; an interval is whole seconds."""

    @pytest.mark.parametrize(("text", "seconds"), [
        ("90", 90), ("90s", 90), ("5m", 300), ("1.5m", 90), ("1h", 3600), ("0.5h", 1800), ("2d", 172800),
        ("366d", 31622400),
    ])
    def test_interval_with_units(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                 seconds: int) -> None:
        """replay --interval 5m makes windows of 300 s."""
        log = tmp_path / "log.jsonl"
        log.write_bytes(_log_line(1))
        assert main("replay", str(log), "--out", str(tmp_path / "out"), "--interval", text) == 0
        assert f" windows of {seconds} s\n" in capsys.readouterr().out

    @pytest.mark.parametrize(("text", "shown"), [("0.2s", "0.2"), ("0.005m", "0.3"), (".25", "0.25")])
    def test_demo_duration_with_units(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                      shown: str) -> None:
        """demo --duration takes fractions of a second and units."""
        assert main("demo", "--sessions", "1", "--duration", text, "--interval", "1", "--out", str(tmp_path)) == 0
        assert capsys.readouterr().out.startswith(f"simulating 1 chatbot sessions for {shown} s, ")

    @pytest.mark.parametrize("command", ["replay", "tail", "demo"])
    def test_help_says_the_units(self, command: str, capsys: pytest.CaptureFixture[str]) -> None:
        """The help of every duration option shows the units it takes."""
        with pytest.raises(SystemExit):
            main(command, "--help")
        help_text = " ".join(capsys.readouterr().out.split())
        assert "--interval DURATION window length in whole seconds, or with a unit: 90s, 5m, 1.5h, 1d" in help_text


class TestSameInputs:
    """validate and replay take the same inputs: files, quoted glob patterns, folders of *.jsonl."""

    def test_validate_expands_a_quoted_glob(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """validate 'run/*.jsonl' reads the matching files in sorted order."""
        (tmp_path / "b.jsonl").write_bytes(_log_line(2))
        (tmp_path / "a.jsonl").write_bytes(_log_line(1))
        (tmp_path / "notes.txt").write_text("not a log")
        assert main("validate", str(tmp_path / "*.jsonl")) == 0
        assert capsys.readouterr().out == (
            f"{tmp_path / 'a.jsonl'}: 1 events, 0 rejected, 0 duplicates\n"
            f"{tmp_path / 'b.jsonl'}: 1 events, 0 rejected, 0 duplicates\n"
            "total: 2 events, 0 rejected, 0 duplicates\n"
            "events by type:\n"
            "  cycle_completed          2\n"
        )

    @pytest.mark.parametrize("command", [["validate"], ["replay", "--out", "OUT"]])
    def test_pattern_that_matches_nothing(self, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          command: list[str]) -> None:
        """A pattern that matches no file is an error naming it (exit 2)."""
        args = [a.replace("OUT", str(tmp_path / "out")) for a in command]
        assert main(*args[:1], str(tmp_path / "*.jsonl"), *args[1:]) == 2
        verb = "read" if command[0] == "validate" else "use"
        assert capsys.readouterr().err == (
            f"tracker {command[0]}: error: cannot {verb} '{tmp_path / '*.jsonl'}': no log matches this pattern\n")
        assert not (tmp_path / "out").exists()

    def test_replay_of_a_folder_reads_its_jsonl_files(self, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
        """replay run/ reads run/*.jsonl (regular files, sorted), as tail follows a folder; nothing else."""
        run = tmp_path / "run"
        (run / "sub.jsonl").mkdir(parents=True)
        (run / "a.jsonl").write_bytes(_log_line(1))
        (run / "b.jsonl").write_bytes(_log_line(2, "s2"))
        (run / "c.log").write_bytes(b"not read\n")
        os.mkfifo(run / "fifo.jsonl")
        assert main("replay", str(run), "--out", str(tmp_path / "out")) == 0
        assert capsys.readouterr().out.startswith("read 2 logs: 2 events, 0 rejected, 0 duplicates\n")

    def test_validate_of_a_folder(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """validate run/ reads the same files."""
        (tmp_path / "a.jsonl").write_bytes(_log_line(1))
        (tmp_path / "b.jsonl").write_bytes(b"bad\n")
        assert main("validate", str(tmp_path)) == 1
        out = capsys.readouterr().out
        assert f"{tmp_path / 'a.jsonl'}: 1 events, 0 rejected, 0 duplicates\n" in out
        assert f"{tmp_path / 'b.jsonl'}: 0 events, 1 rejected, 0 duplicates\n" in out

    @pytest.mark.parametrize("command", [["validate"], ["replay", "--out", "OUT"]])
    def test_folder_without_logs(self, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 command: list[str]) -> None:
        """A folder holding no *.jsonl file is an error naming it (exit 2)."""
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "events.log").write_bytes(_log_line(1))
        args = [a.replace("OUT", str(tmp_path / "out")) for a in command]
        assert main(*args[:1], str(tmp_path / "run"), *args[1:]) == 2
        verb = "read" if command[0] == "validate" else "use"
        assert capsys.readouterr().err == (
            f"tracker {command[0]}: error: cannot {verb} '{tmp_path / 'run'}': no *.jsonl log in this folder\n")

    def test_replay_into_the_folder_it_reads(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """replay run --out run, twice: its own quarantine files in the folder are not read as logs."""
        (tmp_path / "events.jsonl").write_bytes(_log_line(1) + b"bad\n")
        for _ in range(2):
            assert main("replay", str(tmp_path), "--out", str(tmp_path)) == 1
            assert capsys.readouterr().out.startswith("read 1 log: 1 events, 1 rejected, 0 duplicates\n")
        assert (tmp_path / "quarantine.jsonl").read_bytes() == b"bad\n"

    def test_glob_skips_folders(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A pattern's matches that are folders are skipped."""
        (tmp_path / "a.jsonl").write_bytes(_log_line(1))
        (tmp_path / "old.jsonl").mkdir()
        assert main("validate", str(tmp_path / "*.jsonl")) == 0
        assert capsys.readouterr().out.startswith(f"{tmp_path / 'a.jsonl'}: 1 events, 0 rejected, 0 duplicates\n"
                                                  "events by type:")


class TestNotRegularFiles:
    """A FIFO, device or socket given as a log is refused before it is opened (opening a FIFO waits)."""

    @pytest.mark.parametrize("command", [["validate"], ["replay", "--out", "OUT"]])
    def test_fifo(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
        """A FIFO named as a log: exit 2 at once, naming it; nothing written."""
        fifo = tmp_path / "events.jsonl"
        os.mkfifo(fifo)
        args = [a.replace("OUT", str(tmp_path / "out")) for a in command]
        with _fifo_unblocked_later(fifo):
            assert main(*args[:1], str(fifo), *args[1:]) == 2
        verb = "read" if command[0] == "validate" else "use"
        assert capsys.readouterr().err == (
            f"tracker {command[0]}: error: cannot {verb} '{fifo}': it is a FIFO, not a regular file\n")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl"]

    def test_fifo_matched_by_a_pattern(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A FIFO among a pattern's matches is refused too, naming it."""
        (tmp_path / "a.jsonl").write_bytes(_log_line(1))
        os.mkfifo(tmp_path / "b.jsonl")
        with _fifo_unblocked_later(tmp_path / "b.jsonl"):
            assert main("replay", str(tmp_path / "*.jsonl"), "--out", str(tmp_path / "out")) == 2
        assert capsys.readouterr().err == (
            f"tracker replay: error: cannot use '{tmp_path / 'b.jsonl'}': it is a FIFO, not a regular file\n")

    def test_character_device(self, capsys: pytest.CaptureFixture[str]) -> None:
        """/dev/null is a character device, not a log."""
        assert main("validate", os.devnull) == 2
        assert capsys.readouterr().err == (
            f"tracker validate: error: cannot read '{os.devnull}': it is a character device, not a regular file\n")

    def test_socket(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A Unix socket is refused as well."""
        path = tmp_path / "s.jsonl"
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(path))
            assert main("validate", str(path)) == 2
        assert capsys.readouterr().err == (
            f"tracker validate: error: cannot read '{path}': it is a socket, not a regular file\n")


    @pytest.mark.parametrize("command", [["validate"], ["tail", "--out", "OUT", "--quiet"]])
    def test_fifo_quarantine(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
        """A --quarantine that is a FIFO: exit 2 at once, naming it (tail would block writing into it); kept."""
        (tmp_path / "log.jsonl").write_bytes(b"not json\n")
        os.mkfifo(tmp_path / "q.jsonl")
        args = [a.replace("OUT", str(tmp_path / "out")) for a in command]
        with _fifo_unblocked_later(tmp_path / "q.jsonl"), _sigterm_once_following():
            assert main(*args[:1], str(tmp_path / "log.jsonl"), *args[1:], "--quarantine",
                        str(tmp_path / "q.jsonl")) == 2
        assert capsys.readouterr().err == (
            f"tracker {command[0]}: error: cannot use '{tmp_path / 'q.jsonl'}': it is a FIFO, not a regular file: "
            "the quarantine appends rejected lines to its file and empties it for a new read; give a file name\n")
        assert (tmp_path / "q.jsonl").is_fifo()


class TestOverlongLines:
    """validate reads as replay reads: an over-long line is too_long in both, with the same quarantine."""

    def test_validate_and_replay_quarantine_the_same(self, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
        """Lines over --max-line-bytes (ended, NUL-filled then an event, or unterminated) are too_long in
        both commands, and their quarantine files are byte for byte the same."""
        log = tmp_path / "log.jsonl"
        log.write_bytes(_log_line(1) + b"x" * 3000 + b"\n" + _log_line(2) + b"\0" * 3000 + _log_line(3)
                        + b"y" * 2500)
        for _ in range(2):  # each run's quarantine is its own rejected lines, as replay's
            assert main("validate", str(log), "--max-line-bytes", "1000", "--quarantine",
                        str(tmp_path / "v.jsonl")) == 1
        out = capsys.readouterr().out
        assert f"{log}: 3 events, 3 rejected, 0 duplicates\n" in out
        assert "rejected lines by reason:\n  too_long          3\n" in out
        assert main("replay", str(log), "--out", str(tmp_path / "out"), "--max-line-bytes", "1000",
                    "--quarantine", str(tmp_path / "r.jsonl")) == 1
        assert capsys.readouterr().out.startswith("read 1 log: 3 events, 3 rejected, 0 duplicates\n"
                                                  "  rejected lines (too_long 3) in ")
        assert (tmp_path / "v.jsonl").read_bytes() == (tmp_path / "r.jsonl").read_bytes()
        reasons = (tmp_path / "v.jsonl.reasons.jsonl").read_bytes()
        assert reasons == (tmp_path / "r.jsonl.reasons.jsonl").read_bytes()
        assert [orjson.loads(r)["reason"] for r in reasons.splitlines()] == ["too_long"] * 3


class TestOutputsNeverOverwriteInputs:
    """No output path may be one of the input logs: refused (exit 2) before anything is written."""

    def test_replay_quarantine_is_the_log(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """replay LOG --quarantine LOG would delete LOG: refused, LOG untouched."""
        log = tmp_path / "log.jsonl"
        log.write_bytes(_log_line(1))
        assert main("replay", str(log), "--out", str(tmp_path / "out"), "--quarantine", str(log)) == 2
        assert capsys.readouterr().err == (
            f"tracker replay: error: the quarantine file '{log}' is the log '{log}': it would be overwritten; "
            "choose another path\n")
        assert log.read_bytes() == _log_line(1)
        assert not (tmp_path / "out").exists()

    def test_replay_quarantine_is_a_hard_link_of_a_log(self, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
        """A hard link is the same file, under another name: refused too (and for the reasons file)."""
        log = tmp_path / "log.jsonl"
        log.write_bytes(_log_line(1))
        os.link(log, tmp_path / "q.jsonl")
        os.link(log, tmp_path / "r.jsonl.reasons.jsonl")
        for quarantine, role in (("q.jsonl", "the quarantine file"),
                                 ("r.jsonl", "the quarantine's reasons file")):
            assert main("replay", str(log), "--out", str(tmp_path / "out"), "--quarantine",
                        str(tmp_path / quarantine)) == 2
            assert f"error: {role} '{tmp_path / quarantine}" in capsys.readouterr().err
        assert log.read_bytes() == _log_line(1)

    def test_replay_of_a_report_file_into_its_folder(self, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
        """A log inside --out named as a report replay writes is refused."""
        (tmp_path / "out").mkdir()
        log = tmp_path / "out" / "session_tracking_summary.csv"
        log.write_bytes(_log_line(1))
        assert main("replay", str(log), "--out", str(tmp_path / "out")) == 2
        assert capsys.readouterr().err == (
            f"tracker replay: error: the report file '{log}' is the log '{log}': it would be overwritten; "
            "choose another path\n")
        assert log.read_bytes() == _log_line(1)

    def test_validate_quarantine_is_the_log(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """validate LOG --quarantine LOG would append to the log it reads: refused."""
        log = tmp_path / "log.jsonl"
        log.write_bytes(_log_line(1))
        assert main("validate", str(log), "--quarantine", str(log)) == 2
        assert capsys.readouterr() == ("", f"tracker validate: error: the quarantine file '{log}' is the log "
                                           f"'{log}': it would be overwritten; choose another path\n")
        assert log.read_bytes() == _log_line(1)

    def test_tail_quarantine_is_the_log(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """tail LOG --quarantine LOG: refused before following."""
        log = tmp_path / "log.jsonl"
        log.write_bytes(_log_line(1))
        with _sigterm_once_following():
            status = main("tail", str(log), "--out", str(tmp_path / "out"), "--quarantine", str(log), "--quiet")
        assert status == 2
        assert capsys.readouterr().err == (
            f"tracker tail: error: the quarantine file '{log}' is the log '{log}': it would be overwritten; "
            "choose another path\n")
        assert log.read_bytes() == _log_line(1)

    def test_tail_quarantine_is_a_log_not_written_yet(self, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
        """tail LOG --quarantine LOG, LOG not written yet (tail waits for it): refused, not followed as its own
        quarantine (it read 0 events, then wrote rejected lines into the log)."""
        log = tmp_path / "log.jsonl"
        with _sigterm_once_following():
            status = main("tail", str(log), "--out", str(tmp_path / "out"), "--quarantine", str(log), "--quiet")
        assert status == 2
        assert capsys.readouterr().err.endswith(
            f"tracker tail: error: the quarantine file '{log}' is the log '{log}': it would be overwritten; "
            "choose another path\n")
        assert not log.exists()

    def test_tail_of_a_folder_holding_its_quarantine_is_fine(self, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
        """tail run --out run: the quarantine in the folder is tail's own, never followed: no error."""
        (tmp_path / "events.jsonl").write_bytes(_log_line(1))
        (tmp_path / "quarantine.jsonl").write_bytes(b"bad\n")
        (tmp_path / "quarantine.jsonl.reasons.jsonl").write_bytes(_REASON)
        with _sigterm_once_following():
            assert main("tail", str(tmp_path), "--out", str(tmp_path), "--quiet", "--interval", "60") == 0
        assert capsys.readouterr().out.startswith("stopped: 1 events, 0 rejected lines")


    @pytest.mark.parametrize("command", ["replay", "validate", "tail"])
    @pytest.mark.parametrize("named", ["a.jsonl", "q"])
    def test_a_quarantine_naming_a_log_of_a_folder_read(self, tmp_path: Path, command: str, named: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
        """--quarantine naming a log of a folder read (or, for ``q``, its reasons file ``q.reasons.jsonl``) is
        refused, the log kept: it used to be left out of the logs, then emptied as the quarantine."""
        run = tmp_path / "run"
        run.mkdir()
        log = run / ("a.jsonl" if named == "a.jsonl" else "q.reasons.jsonl")
        log.write_bytes(_log_line(1, "s1"))
        (run / "b.jsonl").write_bytes(_log_line(1, "s2"))
        options = ["--out", str(tmp_path / "out"), "--quiet"] if command != "validate" else []
        with _sigterm_once_following() if command == "tail" else contextlib.nullcontext():
            status = main(command, str(run), "--quarantine", str(run / named), *options)
        assert status == 2
        role = "quarantine file" if named == "a.jsonl" else "quarantine's reasons file"
        assert capsys.readouterr().err == (
            f"tracker {command}: error: the {role} '{log}' holds something else than rejected lines (a log?): it "
            "would be emptied; choose another path\n")
        assert log.read_bytes() == _log_line(1, "s1")

    @pytest.mark.parametrize("name", ["session_tracking_summary.csv", "session_tracking_report_20260101_000000.csv",
                                      "session_tracking_report.html", ".tracker-reports.json"])
    def test_a_quarantine_naming_a_report_file(self, tmp_path: Path, name: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
        """--quarantine naming a file the reports write in --out is refused before anything is read (the report
        would overwrite the quarantined lines), whether it exists yet or not."""
        log = tmp_path / "log.jsonl"
        log.write_bytes(b"bad line\n" + _log_line(1))
        quarantine = tmp_path / "out" / name
        assert main("replay", str(log), "--out", str(tmp_path / "out"), "--quarantine", str(quarantine)) == 2
        assert capsys.readouterr().err == (
            f"tracker replay: error: the quarantine file '{quarantine}' is one of the report files written in "
            f"'{tmp_path / 'out'}': give it another name\n")
        assert not (tmp_path / "out").exists()


class TestTailMissingPath:
    """tail names each given path that does not exist yet, and waits for it."""

    def test_missing_path_is_named(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A typo in the log's name is said at once on stderr; the tail still waits (stopped here by SIGTERM)."""
        missing = tmp_path / "rn" / "evnts.jsonl"
        with _sigterm_once_following():
            assert main("tail", str(missing), "--out", str(tmp_path / "out"), "--quiet") == 0
        out, err = capsys.readouterr()
        assert err == f"tracker tail: warning: '{missing}' does not exist (yet); waiting for it to appear\n"
        assert out.startswith("stopped: 0 events")

    def test_a_symbolic_link_loop_is_not_waited_for(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A link loop exists but cannot be read: the follower's warning says why, not "does not exist (yet)"."""
        (tmp_path / "a.jsonl").symlink_to(tmp_path / "b.jsonl")
        (tmp_path / "b.jsonl").symlink_to(tmp_path / "a.jsonl")
        with _sigterm_once_following():
            assert main("tail", str(tmp_path / "a.jsonl"), "--out", str(tmp_path / "out"), "--quiet") == 0
        err = capsys.readouterr().err
        assert "does not exist" not in err
        assert "a.jsonl: cannot be read (Too many levels of symbolic links)" in err

    def test_a_quoted_pattern_is_refused(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """tail follows files and folders, not patterns: a quoted pattern (no such file) would be waited for
        forever, so it is an error pointing at the folder."""
        (tmp_path / "a.jsonl").write_bytes(_log_line(1))
        with _sigterm_once_following():
            status = main("tail", str(tmp_path / "*.jsonl"), "--out", str(tmp_path / "out"), "--quiet")
        assert status == 2
        assert capsys.readouterr().err == (
            f"tracker tail: error: '{tmp_path / '*.jsonl'}' is a pattern: tail follows files, and folders (their "
            f"*.jsonl files, also those created later): give the folder '{tmp_path}'\n")


class TestDemoHints:
    """The demo's closing hints show the command as it was run, so they work when copied."""

    def test_python_m_tracker(self, tmp_path: Path) -> None:
        """Run as python -m tracker (python not on the PATH), the hints use that python."""
        done = subprocess.run([sys.executable, "-m", "tracker", "demo", "--sessions", "1", "--duration", "0.3",
                               "--interval", "1", "--out", "demo"], cwd=tmp_path, env={**os.environ, "PATH": ""},
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert f"check the log with:  {sys.executable} -m tracker validate demo/events.jsonl\n" in done.stdout
        assert f"replay it with:      {sys.executable} -m tracker replay demo/events.jsonl --out OTHER_DIR " \
               "--interval 1 --goodput response_time_ms=5000,ttft_ms=1000 --threshold 'run:error_rate<=0.1' " \
               "--threshold 'run:response_time_ms_p95<5000' --threshold 'run:ttft_ms_p95<1000' " \
               "--threshold 'run:goodput_ratio>=0.9'\n" in done.stdout

    def test_main_with_the_command_it_was_run_as(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """main(..., command=...) prints the hints with that command; a path with a space is quoted."""
        out = tmp_path / "my demo"
        assert main("demo", "--sessions", "1", "--duration", "0.3", "--interval", "1", "--out", str(out),
                    command=".venv/bin/tracker") == 0
        assert f"check the log with:  .venv/bin/tracker validate '{out / 'events.jsonl'}'\n" in capsys.readouterr().out

    def test_invocation(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The command is the script as typed, its bare name when the PATH finds that very file, or
        python -m tracker for __main__.py."""
        script = tmp_path / "bin" / "tracker"
        script.parent.mkdir()
        script.write_text("#!/bin/sh\n")
        script.chmod(0o755)
        monkeypatch.setenv("PATH", "")
        assert cli_module._invocation(".venv/bin/tracker") == ".venv/bin/tracker"
        assert cli_module._invocation(str(script)) == str(script)
        main_py = str(Path(cli_module.__file__).parent / "__main__.py")
        assert cli_module._invocation(main_py) == f"{sys.executable} -m tracker"
        monkeypatch.chdir(tmp_path)
        assert cli_module._invocation("bin/tracker") == "bin/tracker"
        monkeypatch.setenv("PATH", str(script.parent))
        assert cli_module._invocation(str(script)) == "tracker"
        assert cli_module._invocation("bin/tracker") == "tracker"


class TestOutputFolderIsAFile:
    """A file (or a link to nothing) given where a command writes a folder: one usage error naming it, nothing
    written, the file left as it was (the demo crashed with a traceback, replay and tail said 'Not a directory' of
    their quarantine)."""

    @pytest.mark.parametrize(("command", "options", "needs"), [
        ("replay", ["--out", "{file}"], "the reports need"),
        ("tail", ["--out", "{file}"], "the reports need"),
        ("demo", ["--out", "{file}", "--duration", "1", "--sessions", "1"], "the demo needs"),
        ("replay", ["--out", "{folder}", "--spool-dir", "{file}"], "the spool needs"),
        ("tail", ["--out", "{folder}", "--checkpoint-dir", "{file}/state"], "the checkpoint needs"),
    ])
    def test_a_file_for_a_folder(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str,
                                 options: list[str], needs: str) -> None:
        """The file is named, said to be a file, and what needs a folder is said."""
        (tmp_path / "log.jsonl").write_bytes(_log_line(1))
        (tmp_path / "mine").write_bytes(b"mine")
        given = [o.format(file=tmp_path / "mine", folder=tmp_path / "out") for o in options]
        logs = [] if command == "demo" else [str(tmp_path / "log.jsonl")]
        assert main(command, *logs, *given) == 2
        # (--checkpoint-dir FILE/state: its parent is checked, so the message is about the file itself)
        assert capsys.readouterr().err == (
            f"tracker {command}: error: cannot use '{tmp_path / 'mine'}': it is a file, not a folder; {needs} a "
            "folder (made when missing)\n")
        assert (tmp_path / "mine").read_bytes() == b"mine"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl", "mine"]

    def test_a_folder_below_a_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--out FILE/sub: the file above is named, and which folder cannot be made in it."""
        (tmp_path / "log.jsonl").write_bytes(_log_line(1))
        (tmp_path / "mine").write_bytes(b"mine")
        assert main("replay", str(tmp_path / "log.jsonl"), "--out", str(tmp_path / "mine" / "sub")) == 2
        assert capsys.readouterr().err == (
            f"tracker replay: error: cannot use '{tmp_path / 'mine'}': it is a file, not a folder, so "
            f"'{tmp_path / 'mine' / 'sub'}' cannot be made in it; the reports need a folder (made when missing)\n")

    def test_a_link_to_nothing(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--out a symbolic link to nothing: said so, the link left alone."""
        (tmp_path / "log.jsonl").write_bytes(_log_line(1))
        (tmp_path / "out").symlink_to(tmp_path / "nowhere")
        assert main("replay", str(tmp_path / "log.jsonl"), "--out", str(tmp_path / "out")) == 2
        assert capsys.readouterr().err == (
            f"tracker replay: error: cannot use '{tmp_path / 'out'}': it is a symbolic link to nothing; the reports "
            "need a folder (made when missing)\n")
        assert (tmp_path / "out").is_symlink()
        assert not (tmp_path / "nowhere").exists()


    @pytest.mark.parametrize(("command", "option"), [("replay", "--out"), ("tail", "--out"), ("demo", "--out"),
                                                     ("replay", "--spool-dir"), ("tail", "--checkpoint-dir"),
                                                     ("replay", "--quarantine")])
    def test_an_empty_path(self, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch, command: str, option: str) -> None:
        """An empty path (an unset shell variable, say) is a usage error: it was the current folder, where replay,
        tail and the demo wrote their reports."""
        log = tmp_path / "log.jsonl"
        log.write_bytes(_log_line(1))
        (tmp_path / "cwd").mkdir()
        monkeypatch.chdir(tmp_path / "cwd")
        logs = [] if command == "demo" else [str(log)]
        others = ([] if option == "--out" else ["--out", str(tmp_path / "out")]) + (
            ["--duration", "0.1", "--sessions", "1"] if command == "demo" else [])
        with _sigterm_once_following() if command == "tail" else contextlib.nullcontext():
            err = _usage_error(capsys, command, *logs, *others, option, "")
        assert err.endswith(f"tracker {command}: error: argument {option}: an empty path: give a path\n")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "log.jsonl"]
        assert list((tmp_path / "cwd").iterdir()) == []

    def test_an_empty_log_path_is_named(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A log given as '' is said to be an empty path."""
        assert main("replay", "", "--out", str(tmp_path / "out")) == 2
        assert capsys.readouterr().err == "tracker replay: error: cannot use '': No such file or directory\n"


class TestReviewFindings:
    """Defects a review found: each command reads the same log the same way, and no user's file is replaced."""

    def test_a_file_where_the_checkpoint_folder_goes(self, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
        """tail: a file at the checkpoint folder's path is a usage error saying so (not 'File exists')."""
        (tmp_path / "log.jsonl").write_bytes(_log_line(1))
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / ".tracker-checkpoint").write_bytes(b"mine")
        with _sigterm_once_following():
            assert main("tail", str(tmp_path / "log.jsonl"), "--out", str(tmp_path / "out"), "--quiet") == 2
        assert capsys.readouterr().err == (
            f"tracker tail: error: cannot use '{tmp_path / 'out' / '.tracker-checkpoint'}': it is a file, not a "
            "folder; give this one another --out or --checkpoint-dir\n")
        assert (tmp_path / "out" / ".tracker-checkpoint").read_bytes() == b"mine"

    def test_tail_says_how_many_lines_it_could_not_quarantine(self, tmp_path: Path, small_disk: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
        """tail with its quarantine on a full disk: one warning, and at the end how many lines were not kept."""
        (tmp_path / "log.jsonl").write_bytes(_log_line(1) + b"bad\n" * 5)
        with open(small_disk / "ballast", "wb") as stream, pytest.raises(OSError, match="No space"):
            stream.write(b"x" * (8 << 20))
        with _sigterm_once_following():
            assert main("tail", str(tmp_path / "log.jsonl"), "--out", str(tmp_path / "out"), "--quiet",
                        "--quarantine", str(small_disk / "q.jsonl")) == 1
        err = capsys.readouterr().err
        assert err.count("but not quarantined") == 1
        assert err.endswith(f"tracker tail: 5 of the rejected lines could not be written to {small_disk / 'q.jsonl'} "
                            "(see the warnings above); they are still in their logs\n")

    def test_a_dangling_lock_link(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """tail: a lock file that is a link to nowhere is a usage error naming it and saying what it is."""
        (tmp_path / "log.jsonl").write_bytes(_log_line(1))
        lock = tmp_path / "out" / ".tracker-checkpoint" / ".tracker-tail.lock"
        lock.parent.mkdir(parents=True)
        lock.symlink_to(tmp_path / "nowhere" / "lock")
        with _sigterm_once_following():
            assert main("tail", str(tmp_path / "log.jsonl"), "--out", str(tmp_path / "out"), "--quiet") == 2
        assert capsys.readouterr().err == (
            f"tracker tail: error: cannot use the lock file '{lock}': it is a symbolic link to a file that cannot be "
            "made; remove it\n")

    def test_validate_and_replay_count_the_same_duplicates(self, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
        """A line read twice is one event for every command; the same event_id and ts with another seq is two."""
        line = _log_line(3)
        other_seq = line.replace(b'"seq":3', b'"seq":4')
        log = tmp_path / "log.jsonl"
        log.write_bytes(_log_line(1) + line + line + other_seq)
        assert main("validate", str(log)) == 0
        assert capsys.readouterr().out.splitlines()[0] == f"{log}: 3 events, 0 rejected, 1 duplicates"
        assert main("replay", str(log), "--out", str(tmp_path / "out")) == 0
        assert capsys.readouterr().out.splitlines()[0] == "read 1 log: 3 events, 0 rejected, 1 duplicates"

    def test_an_existing_file_named_like_a_pattern_is_that_file(self, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
        """'run[1].jsonl' that exists is read as itself, not as the pattern matching run1.jsonl."""
        (tmp_path / "run[1].jsonl").write_bytes(_log_line(1) + _log_line(2))
        (tmp_path / "run1.jsonl").write_bytes(_log_line(9))
        assert main("validate", str(tmp_path / "run[1].jsonl")) == 0
        assert capsys.readouterr().out.splitlines()[0] == f"{tmp_path / 'run[1].jsonl'}: 2 events, 0 rejected, " \
                                                          "0 duplicates"

    def test_replay_refuses_report_files_it_did_not_write(self, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
        """A user's session_tracking_summary.csv in --out is neither replaced nor mixed in: exit 2, untouched."""
        log = tmp_path / "log.jsonl"
        log.write_bytes(_log_line(1))
        out = tmp_path / "out"
        out.mkdir()
        (out / "session_tracking_summary.csv").write_text("my own summary\n")
        assert main("replay", str(log), "--out", str(out)) == 2
        assert "report files that tracker did not list as its own" in capsys.readouterr().err
        assert (out / "session_tracking_summary.csv").read_text() == "my own summary\n"
        assert sorted(p.name for p in out.iterdir()) == ["session_tracking_summary.csv"]

    @pytest.mark.parametrize("value", ["1,,2", "1,", ",2", "[1,,2]"])
    def test_an_empty_list_item_is_refused(self, tmp_path: Path, value: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
        """course_numbers=1,,2 is a typo: exit 2 and nothing written, not [1, 2]."""
        log = tmp_path / "log.jsonl"
        assert main("emit", "session_registered", "s1", "username=a", f"course_numbers={value}",
                    "--log", str(log)) == 2
        assert "course_numbers: expected int list" in capsys.readouterr().err
        assert not log.exists() or log.read_bytes() == b""

    def test_an_empty_list_is_allowed(self, tmp_path: Path) -> None:
        """course_numbers= (or []) is the empty list."""
        log = tmp_path / "log.jsonl"
        assert main("emit", "session_registered", "s1", "username=a", "course_numbers=[]", "--log", str(log)) == 0
        assert orjson.loads(log.read_bytes())["course_numbers"] == []


S = 1_000_000
#: The window of 22:00 and the one of 22:01 (interval 60 s), and their per-window files (named by their end).
WINDOW_0, WINDOW_1 = "2026-11-24T22:00:00Z", "2026-11-24T22:01:00Z"
RUN_FILES = {"session_tracking_summary.csv", "session_tracking_totals.csv", "session_tracking_errors.csv",
             "session_tracking_thresholds.csv", "session_tracking_report_20261124_220100.csv",
             "session_tracking_report_20261124_220200.csv", "session_tracking_report.html", ".tracker-reports.json"}
THRESHOLDS_HEADER = "scope,threshold,value,ok\n"


#: One entry of a quarantine's reasons file, as Quarantine writes it.
_REASON: Final = (b'{"source":"events.jsonl","line":1,"offset":0,"reason":"not_json","detail":"not JSON"}\n')


def _lines(*records: dict[str, object]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def _two_windows(path: Path, extra: bytes = b"") -> Path:
    """s1 registers at 22:00:00 and is answered in 100 ms at :10 and 300 ms at :20 (the window of 22:00), then in
    1000 ms at 22:01:10 (the window of 22:01, covered for 10 s): the run lasts 70 s."""
    path.write_bytes(_lines(
        record(1, "s1", "session_registered", T0, username="ann", course_numbers=[]),
        record(2, "s1", "question_answered", T0 + 10 * S, response_time_ms=100.0),
        record(3, "s1", "question_answered", T0 + 20 * S, response_time_ms=300.0),
        record(4, "s1", "question_answered", T0 + 70 * S, response_time_ms=1000.0),
    ) + extra)
    return path


def _replay(log: Path, out: Path, *args: str) -> int:
    return main("replay", str(log), "--out", str(out), "--interval", "60", *args)


def _thresholds(*texts: str) -> list[str]:
    return [arg for text in texts for arg in ("--threshold", text)]


def _usage_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """main(*args) is refused by argparse (exit 2); its stderr."""
    with pytest.raises(SystemExit) as info:
        main(*args)
    assert info.value.code == 2
    return capsys.readouterr().err


class TestThresholds:
    """replay --threshold: a CSV of verdicts, a table on stdout, --junit, and exit status 99 after every file."""

    def test_passing_thresholds_exit_0(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Thresholds that hold on both windows and the run: exit 0, every file written, the verdicts CSV exact."""
        log, out = _two_windows(tmp_path / "log.jsonl"), tmp_path / "out"
        assert _replay(log, out, *_thresholds("response_time_ms_max<=1000", "answers_per_s>=0.02")) == 0
        assert {p.name for p in out.iterdir()} == RUN_FILES
        # answers_per_s: 2 answers in the 60 s of 22:00, 1 in the 10 s of 22:01, 3 in the run's 70 s.
        assert (out / "session_tracking_thresholds.csv").read_text() == (
            THRESHOLDS_HEADER
            + f"{WINDOW_0},response_time_ms_max<=1000,300.000,true\n"
            + f"{WINDOW_1},response_time_ms_max<=1000,1000.000,true\n"
            + "run,response_time_ms_max<=1000,1000.000,true\n"
            + f"{WINDOW_0},answers_per_s>=0.02,0.033,true\n"
            + f"{WINDOW_1},answers_per_s>=0.02,0.100,true\n"
            + "run,answers_per_s>=0.02,0.043,true\n")
        assert capsys.readouterr().out.endswith(
            "thresholds: all 2 passed\n"
            "  ok    response_time_ms_max<=1000  run 1000.000; 2 windows passed\n"
            "  ok    answers_per_s>=0.02         run 0.043; 2 windows passed\n")

    def test_failing_threshold_exit_99_after_every_file(self, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
        """A threshold that fails in one window: exit 99, and still every report file is written; integers are
        compared and written exactly."""
        log, out = _two_windows(tmp_path / "log.jsonl"), tmp_path / "out"
        assert _replay(log, out, *_thresholds("response_time_ms_max<500", "questions_answered>=2")) == 99
        assert {p.name for p in out.iterdir()} == RUN_FILES
        assert (out / "session_tracking_thresholds.csv").read_bytes() == (
            THRESHOLDS_HEADER
            + f"{WINDOW_0},response_time_ms_max<500,300.000,true\n"
            + f"{WINDOW_1},response_time_ms_max<500,1000.000,false\n"
            + "run,response_time_ms_max<500,1000.000,false\n"
            + f"{WINDOW_0},questions_answered>=2,2,true\n"
            + f"{WINDOW_1},questions_answered>=2,1,false\n"
            + "run,questions_answered>=2,3,true\n").encode()
        assert (out / "session_tracking_report_20261124_220200.csv").read_text().splitlines()[1].startswith(
            f"{WINDOW_1},2026-11-24T22:02:00Z,s1,ann,,active,0,1,0,0,1000.000,")
        assert capsys.readouterr().err == ""

    def test_no_thresholds_no_thresholds_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Without --threshold there is no verdicts file and no table."""
        log, out = _two_windows(tmp_path / "log.jsonl"), tmp_path / "out"
        assert _replay(log, out) == 0
        assert {p.name for p in out.iterdir()} == RUN_FILES - {"session_tracking_thresholds.csv"}
        assert "\nthresholds" not in capsys.readouterr().out

    def test_run_and_window_scopes(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """run: gives only the run's row, window: only the windows' rows; a column only the run has (duration_s)
        is checked on the run, one only the windows have (active_sessions) on the windows."""
        log, out = _two_windows(tmp_path / "log.jsonl"), tmp_path / "out"
        assert _replay(log, out, *_thresholds("run:response_time_ms_p50<=300", "window:questions_answered>=1",
                                              "run:error_rate<=0.01", "duration_s<100", "active_sessions<=1")) == 0
        assert (out / "session_tracking_thresholds.csv").read_text() == (
            THRESHOLDS_HEADER
            + "run,run:response_time_ms_p50<=300,300.000,true\n"
            + f"{WINDOW_0},window:questions_answered>=1,2,true\n"
            + f"{WINDOW_1},window:questions_answered>=1,1,true\n"
            + "run,run:error_rate<=0.01,0.0000,true\n"
            + "run,duration_s<100,70.000,true\n"
            + f"{WINDOW_0},active_sessions<=1,1,true\n"
            + f"{WINDOW_1},active_sessions<=1,1,true\n")

    def test_stdout_table(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The whole stdout of a run with one failing and one passing threshold, to the character."""
        log, out = _two_windows(tmp_path / "log.jsonl"), tmp_path / "out"
        assert _replay(log, out, *_thresholds("response_time_ms_max<500", "run:error_rate<=0.01")) == 99
        assert capsys.readouterr() == (
            "read 1 log: 4 events, 0 rejected, 0 duplicates\n"
            f"wrote 7 files to {out}: the summary, totals, errors, thresholds, 2 per-window session reports and the "
            "HTML report, session_tracking_report.html\n"
            "whole run: 2026-11-24T22:00:00Z to 2026-11-24T22:01:10Z (70.0 s), 2 windows of 60 s\n"
            "  sessions 1 (at most 1 active), questions 0, answers 3 (0.043/s), cycles 0, errors 0 (error rate "
            "0.00%)\n"
            "  response time ms: mean 466.7, p50 300.0, p95 930.0, p99 986.0, max 1000.0\n"
            "thresholds: 1 of 2 failed\n"
            "  FAIL  response_time_ms_max<500  run 1000.000; 1 of 2 windows failed (first at "
            f"{WINDOW_1}: 1000.000)\n"
            "  ok    run:error_rate<=0.01      run 0.0000\n", "")

    def test_junit(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--junit FILE: a testcase per verdict (the 2 windows and the run, and the run of the run: threshold),
        the failures counted and explained."""
        log, out, junit = _two_windows(tmp_path / "log.jsonl"), tmp_path / "out", tmp_path / "ci" / "junit.xml"
        junit.parent.mkdir()
        assert _replay(log, out, *_thresholds("response_time_ms_max<500", "run:error_rate<=0.01"),
                       "--junit", str(junit)) == 99
        assert capsys.readouterr().out.endswith(f"JUnit report in {junit}\n")
        suite = ET.parse(junit).getroot().find("testsuite")
        assert suite is not None
        assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
            "4", "2", "0", "0")
        cases = suite.findall("testcase")
        assert [c.get("name") for c in cases] == [
            f"response_time_ms_max<500 [{WINDOW_0}]", f"response_time_ms_max<500 [{WINDOW_1}]",
            "response_time_ms_max<500 [run]", "run:error_rate<=0.01 [run]"]
        failures = [(c.get("name"), f.get("message")) for c in cases for f in c.findall("failure")]
        assert failures == [
            (f"response_time_ms_max<500 [{WINDOW_1}]", "value 1000.000 does not satisfy response_time_ms_max<500"),
            ("response_time_ms_max<500 [run]", "value 1000.000 does not satisfy response_time_ms_max<500")]

    def test_junit_all_passing(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """All thresholds passing: exit 0 and a JUnit file without failures."""
        log, out, junit = _two_windows(tmp_path / "log.jsonl"), tmp_path / "out", tmp_path / "junit.xml"
        assert _replay(log, out, *_thresholds("run:questions_answered>=3"),
                       "--junit", str(junit)) == 0
        suite = ET.parse(junit).getroot().find("testsuite")
        assert suite is not None
        assert (suite.get("tests"), suite.get("failures")) == ("1", "0")
        assert [c.get("name") for c in suite.findall("testcase")] == ["run:questions_answered>=3 [run]"]

    def test_junit_that_is_a_log_is_refused(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--junit naming one of the logs read (here by a hard link): exit 2, the log unchanged."""
        log = _two_windows(tmp_path / "log.jsonl")
        before = log.read_bytes()
        os.link(log, tmp_path / "link.xml")
        for junit in (log, tmp_path / "link.xml"):
            assert _replay(log, tmp_path / "out", *_thresholds("response_time_ms_max<500"),
                           "--junit", str(junit)) == 2
            assert capsys.readouterr().err == (
                f"tracker replay: error: --junit {str(junit)!r} is one of the logs read: not overwritten\n")
        assert log.read_bytes() == before

    def test_junit_checked_before_anything_is_written(self, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
        """--junit naming a log is refused before the reports are written (the --out folder is not made), and
        --junit naming a report file of --out is refused too."""
        log = _two_windows(tmp_path / "log.jsonl")
        assert _replay(log, tmp_path / "out", *_thresholds("errors<1"), "--junit", str(log)) == 2
        assert not (tmp_path / "out").exists()
        capsys.readouterr()
        own = [tmp_path / "out" / name for name in ("session_tracking_thresholds.csv", "quarantine.jsonl",
                                                    "quarantine.jsonl.reasons.jsonl")]
        for junit in own:
            assert _replay(log, tmp_path / "out", *_thresholds("errors<1"), "--junit", str(junit)) == 2
            assert capsys.readouterr().err == (
                f"tracker replay: error: --junit {str(junit)!r} is one of the files this command writes (a report, "
                "the quarantine or the checkpoint): give it another name\n")
        assert not (tmp_path / "out").exists()

    @pytest.mark.parametrize("where", ["missing/junit.xml", "."])
    def test_junit_that_cannot_be_written_is_refused_first(self, tmp_path: Path, where: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
        """--junit in a folder that does not exist, or naming a folder: exit 2 before anything is read."""
        log = _two_windows(tmp_path / "log.jsonl")
        assert _replay(log, tmp_path / "out", *_thresholds("errors<1"), "--junit", str(tmp_path / where)) == 2
        assert "--junit" in capsys.readouterr().err
        assert not (tmp_path / "out").exists()

    def test_junit_that_is_not_a_regular_file_is_refused(self, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
        """--junit naming a FIFO (as /dev/null would be, not tried here: a regression would replace it): refused
        before anything is read, the FIFO left as it was."""
        log = _two_windows(tmp_path / "log.jsonl")
        os.mkfifo(tmp_path / "fifo")
        junit = str(tmp_path / "fifo")
        assert _replay(log, tmp_path / "out", *_thresholds("errors<1"), "--junit", junit) == 2
        assert capsys.readouterr().err == (f"tracker replay: error: --junit {junit!r} is not a regular file: it "
                                           "would be replaced; give a file name\n")
        assert (tmp_path / "fifo").is_fifo()
        assert not (tmp_path / "out").exists()

    def test_junit_through_a_symlink_writes_its_target(self, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
        """--junit naming a symlink writes the file it names; the link stays a link."""
        log = _two_windows(tmp_path / "log.jsonl")
        (tmp_path / "reports").mkdir()
        (tmp_path / "junit.xml").symlink_to(tmp_path / "reports" / "junit.xml")
        assert _replay(log, tmp_path / "out", *_thresholds("errors<5"), "--junit", str(tmp_path / "junit.xml")) == 0
        assert (tmp_path / "junit.xml").is_symlink()
        assert ET.parse(tmp_path / "reports" / "junit.xml").getroot().tag == "testsuites"

    def test_tail_junit_in_its_checkpoint_is_refused(self, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
        """tracker tail --junit inside its checkpoint folder would be written over the checkpoint: exit 2."""
        log = _two_windows(tmp_path / "log.jsonl")
        junit = tmp_path / "out" / ".tracker-checkpoint" / "checkpoint.json"
        assert main("tail", str(log), "--out", str(tmp_path / "out"), "--quiet", *_thresholds("errors<1"),
                    "--junit", str(junit)) == 2
        assert "is one of the files this command writes" in capsys.readouterr().err

    def test_junit_unwritable_at_the_end_keeps_99(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The folder of --junit removed while the tail runs: the error names the file the user gave, and the failed
        threshold's 99 stays (the reports were written)."""
        log, out, folder = _two_windows(tmp_path / "log.jsonl"), tmp_path / "out", tmp_path / "ci"
        folder.mkdir()
        with _sigterm_once_following(before=folder.rmdir):
            status = main("tail", str(log), "--out", str(out), "--interval", "60", "--grace", "0", "--quiet",
                          *_thresholds("response_time_ms_max<500"), "--junit", str(folder / "junit.xml"))
        assert status == 99
        assert capsys.readouterr().err.endswith(
            f"tracker tail: error: cannot write --junit {str(folder / 'junit.xml')!r}: No such file or directory\n")
        assert (out / "session_tracking_thresholds.csv").exists()

    def test_a_thresholds_file_that_is_a_log_is_refused(self, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
        """A log that is --out's thresholds file (one an earlier run listed as its own) would be replaced: refused,
        the log unchanged."""
        (tmp_path / "out").mkdir()
        log = _two_windows(tmp_path / "out" / "session_tracking_thresholds.csv")
        (tmp_path / "out" / ".tracker-reports.json").write_bytes(b'{"files": ["session_tracking_thresholds.csv"]}')
        before = log.read_bytes()
        assert _replay(log, tmp_path / "out", *_thresholds("errors<1")) == 2
        assert "error: the report file" in capsys.readouterr().err
        assert log.read_bytes() == before

    def test_no_value_in_the_whole_run_fails(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """run:ttft_ms_p95<500 on a log without any TTFT: the run has no value, so the threshold fails (99)."""
        log, out, junit = _two_windows(tmp_path / "log.jsonl"), tmp_path / "out", tmp_path / "junit.xml"
        assert _replay(log, out, *_thresholds("run:ttft_ms_p95<500"), "--junit", str(junit)) == 99
        assert capsys.readouterr().out.endswith(
            "thresholds: 1 of 1 failed\n"
            "  FAIL  run:ttft_ms_p95<500  run: no value\n"
            f"JUnit report in {junit}\n")
        assert (out / "session_tracking_thresholds.csv").read_text() == (
            THRESHOLDS_HEADER + "run,run:ttft_ms_p95<500,,false\n")
        failure = ET.parse(junit).getroot().find("testsuite/testcase/failure")
        assert failure is not None
        assert failure.get("message") == (
            "the whole run has no value for ttft_ms_p95: run:ttft_ms_p95<500 cannot be checked, so it fails")

    def test_window_threshold_without_any_value_fails(self, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
        """window:ttft_ms_p95<500 where no window has a TTFT: it cannot be checked, so it fails (99), said."""
        log, out = _two_windows(tmp_path / "log.jsonl"), tmp_path / "out"
        assert _replay(log, out, *_thresholds("window:ttft_ms_p95<500")) == 99
        assert capsys.readouterr().out.endswith(
            "thresholds: 1 of 1 failed\n"
            "  FAIL  window:ttft_ms_p95<500  no window had a value\n")
        assert (out / "session_tracking_thresholds.csv").read_text() == (
            THRESHOLDS_HEADER + "windows,window:ttft_ms_p95<500,,false\n")

    def test_no_tpot_when_the_first_token_comes_after_the_response(self, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
        """A TTFT (200 ms) longer than the response (100 ms, 3 tokens) gives no TPOT (not (100 - 200) / 2 = -50):
        the summary's cell is empty, and a threshold on it fails for want of a value (windows without one are not
        judged)."""
        log, out = tmp_path / "log.jsonl", tmp_path / "out"
        log.write_bytes(_lines(record(1, "s1", "question_answered", T0 + 10 * S, response_time_ms=100.0,
                                      time_to_first_token_ms=200.0, output_tokens=3)))
        assert _replay(log, out, *_thresholds("tpot_ms_mean<0")) == 99
        (summary,) = _columns(out / "session_tracking_summary.csv")
        assert summary["tpot_ms_mean"] == ""
        assert (out / "session_tracking_thresholds.csv").read_text() == (
            THRESHOLDS_HEADER + "run,tpot_ms_mean<0,,false\n")

    @pytest.mark.parametrize(("threshold", "message"), [
        ("bogus_column<5", "threshold 'bogus_column<5' names an unknown column 'bogus_column'; the reports' numeric "
                           "columns are: active_sessions, "),
        ("run:active_sessions<5", "threshold 'run:active_sessions<5': the whole-run row has no column "
                                  "'active_sessions' (it is a window's figure); the whole-run row has: sessions, "),
        ("window:duration_s<5", "threshold 'window:duration_s<5': the windows have no column 'duration_s' (it is a "
                                "whole-run figure); the windows have: active_sessions, "),
        ("ttft_ms_p95 = 5", "threshold 'ttft_ms_p95 = 5': unknown operator '='; expected [run:|window:]COLUMN OP "
                            "NUMBER"),
        ("ttft_ms_p95<", "threshold 'ttft_ms_p95<': NUMBER is missing; "),
        ("window_start>5", "threshold 'window_start>5' names an unknown column 'window_start'; "),
    ])
    @pytest.mark.parametrize("command", ["replay", "tail"])
    def test_refused_threshold(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], threshold: str,
                               message: str, command: str) -> None:
        """A threshold that cannot be checked: exit 2 before any log is read, the column quoted, nothing in --out."""
        log, out = _two_windows(tmp_path / "log.jsonl"), tmp_path / "out"
        with _sigterm_once_following():  # were the tail to start, it would be stopped
            status = main(command, str(log), "--out", str(out), "--threshold", "response_time_ms_max<500",
                          "--threshold", threshold, *(["--quiet"] if command == "tail" else []))
        assert status == 2
        out_text, err = capsys.readouterr()
        assert out_text == ""
        assert err.startswith(f"tracker {command}: error: {message}")
        assert err.count("\n") == 1
        assert not out.exists()

    @pytest.mark.parametrize("command", ["replay", "tail"])
    def test_goodput_column_needs_goodput(self, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          command: str) -> None:
        """goodput_ratio>=0.9 without --goodput: exit 2 saying --goodput adds it; nothing in --out."""
        log, out = _two_windows(tmp_path / "log.jsonl"), tmp_path / "out"
        with _sigterm_once_following():
            status = main(command, str(log), "--out", str(out), "--threshold", "goodput_ratio>=0.9",
                          *(["--quiet"] if command == "tail" else []))
        assert status == 2
        assert capsys.readouterr().err.endswith("; 'goodput_ratio' is only reported with --goodput\n")
        assert not out.exists()

    def test_goodput_column_with_goodput(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """With --goodput ttft_ms=500 it is accepted: no answer has a TTFT, so none is good and the ratio is 0."""
        log, out = _two_windows(tmp_path / "log.jsonl"), tmp_path / "out"
        assert _replay(log, out, *_thresholds("run:goodput_ratio>=0.9"), "--goodput", "ttft_ms=500") == 99
        assert (out / "session_tracking_thresholds.csv").read_text() == (
            THRESHOLDS_HEADER + "run,run:goodput_ratio>=0.9,0.0000,false\n")

    def test_refused_into_an_existing_folder_leaves_it_empty(self, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
        """--out that exists and is empty stays empty when a threshold is refused."""
        log, out = _two_windows(tmp_path / "log.jsonl"), tmp_path / "out"
        out.mkdir()
        assert _replay(log, out, *_thresholds("run:active_sessions<5")) == 2
        assert list(out.iterdir()) == []

    def test_rejected_line_and_failing_threshold_exit_99(self, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
        """A rejected line and a failing threshold: the threshold's 99 wins over the rejected lines' 1."""
        log, out = _two_windows(tmp_path / "log.jsonl", extra=b"not json\n"), tmp_path / "out"
        assert _replay(log, out, *_thresholds("response_time_ms_max<500")) == 99
        assert (out / "quarantine.jsonl").read_bytes() == b"not json\n"
        assert (out / "session_tracking_thresholds.csv").exists()

    def test_rejected_line_and_passing_thresholds_exit_1(self, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
        """A rejected line and thresholds that all pass: exit 1, as without thresholds."""
        log, out = _two_windows(tmp_path / "log.jsonl", extra=b"not json\n"), tmp_path / "out"
        assert _replay(log, out, *_thresholds("response_time_ms_max<=1000")) == 1
        assert capsys.readouterr().out.endswith("thresholds: all 1 passed\n"
                                                "  ok    response_time_ms_max<=1000  run 1000.000; 2 windows passed\n")

    def test_tail_exit_99(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """tracker tail with a failing threshold: stopped, it writes every file and the JUnit file, exit 99."""
        log, out, junit = _two_windows(tmp_path / "log.jsonl"), tmp_path / "out", tmp_path / "junit.xml"
        with _sigterm_once_following():
            status = main("tail", str(log), "--out", str(out), "--interval", "60", "--grace", "0", "--quiet",
                          *_thresholds("response_time_ms_max<500"), "--junit", str(junit))
        assert status == 99
        assert capsys.readouterr().out.endswith(
            "thresholds: 1 of 1 failed\n"
            "  FAIL  response_time_ms_max<500  run 1000.000; 1 of 2 windows failed (first at "
            f"{WINDOW_1}: 1000.000)\n"
            f"JUnit report in {junit}\n")
        assert {p.name for p in out.iterdir()} == RUN_FILES | {".tracker-checkpoint"}
        assert (out / "session_tracking_thresholds.csv").read_text() == (
            THRESHOLDS_HEADER
            + f"{WINDOW_0},response_time_ms_max<500,300.000,true\n"
            + f"{WINDOW_1},response_time_ms_max<500,1000.000,false\n"
            + "run,response_time_ms_max<500,1000.000,false\n")
        suite = ET.parse(junit).getroot().find("testsuite")
        assert suite is not None
        assert (suite.get("tests"), suite.get("failures")) == ("3", "2")


def _chat_log(path: Path) -> Path:
    """Three answers: at 22:00:10 in 200 ms, TTFT 100, 11 tokens (TPOT 10); at :20 in 900 ms, TTFT 600, 4 tokens
    (TPOT 100); at 22:01:10 in 300 ms, TTFT 50, 1 token (no TPOT). The run: 60 s, 50 of them in the window of 22:00
    and 10 in the one of 22:01."""
    path.write_bytes(_lines(
        record(1, "s1", "question_answered", T0 + 10 * S, response_time_ms=200.0, time_to_first_token_ms=100.0,
               output_tokens=11),
        record(2, "s1", "question_answered", T0 + 20 * S, response_time_ms=900.0, time_to_first_token_ms=600.0,
               output_tokens=4),
        record(3, "s1", "question_answered", T0 + 70 * S, response_time_ms=300.0, time_to_first_token_ms=50.0,
               output_tokens=1),
    ))
    return path


def _columns(path: Path) -> list[dict[str, str]]:
    header, *rows = path.read_text().splitlines()
    return [dict(zip(header.split(","), row.split(","), strict=True)) for row in rows]


_ITEMS = ("expected NAME=MS items separated by commas, NAME one of response_time_ms, ttft_ms, tpot_ms (e.g. "
          "ttft_ms=500,tpot_ms=50), ")


class TestGoodputOption:
    """--goodput NAME=MS,...: per-request limits, checked as the value is given; two more columns."""

    def test_names_are_the_tables_limits(self) -> None:
        """The option parser's names are the engine's (kept apart so that the parser imports nothing heavy)."""
        assert GOODPUT_NAMES == GOODPUT_LIMITS

    @pytest.mark.parametrize(("value", "message"), [
        ("foo=1", f"{_ITEMS}got 'foo=1' in 'foo=1'"),
        ("ttft_ms=500,tpot_ms", f"{_ITEMS}got 'tpot_ms' in 'ttft_ms=500,tpot_ms'"),
        ("ttft_ms=1,ttft_ms=2", "ttft_ms is given twice in 'ttft_ms=1,ttft_ms=2'"),
        ("ttft_ms=-5", "ttft_ms: expected a finite number of milliseconds >= 0, got '-5'"),
        ("ttft_ms=", "ttft_ms: expected a finite number of milliseconds >= 0, got ''"),
        ("ttft_ms=inf", "ttft_ms: expected a finite number of milliseconds >= 0, got 'inf'"),
        ("ttft_ms=nan", "ttft_ms: expected a finite number of milliseconds >= 0, got 'nan'"),
        ("ttft_ms=1e999", "ttft_ms: expected a finite number of milliseconds >= 0, got '1e999'"),
        ("tpot_ms=1" + "0" * 40, "tpot_ms: expected a finite number of milliseconds >= 0, got '1000000000"),
        ("", f"{_ITEMS}got '' in ''"),
        ("ttft_ms=500,", f"{_ITEMS}got '' in 'ttft_ms=500,'"),
    ])
    @pytest.mark.parametrize("command", ["replay", "tail"])
    def test_bad_value(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                       value: str, message: str, command: str) -> None:
        """A bad --goodput is a usage error quoting the value (exit 2), before anything is written."""
        monkeypatch.chdir(tmp_path)
        err = _usage_error(capsys, command, "x.jsonl", "--out", "o", "--goodput", value)
        assert f"tracker {command}: error: argument --goodput: {message}" in err
        assert list(tmp_path.iterdir()) == []

    def test_adds_two_last_columns(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """response_time_ms=250,ttft_ms=500: an answer must meet both; goodput_per_s and goodput_ratio come last in
        the summary and the totals, computed over the covered seconds and the answers."""
        log, out = _chat_log(tmp_path / "log.jsonl"), tmp_path / "out"
        assert _replay(log, out, "--goodput", "response_time_ms=250,ttft_ms=500") == 0
        for name in ("session_tracking_summary.csv", "session_tracking_totals.csv"):
            assert (out / name).read_text().splitlines()[0].endswith(
                ",failed_response_time_ms_max,goodput_per_s,goodput_ratio"), name
        # Good: only the first answer (the second is over both limits, the third over 250 ms).
        summary = _columns(out / "session_tracking_summary.csv")
        assert [(r["goodput_per_s"], r["goodput_ratio"]) for r in summary] == [("0.020", "0.5000"),
                                                                             ("0.000", "0.0000")]
        (totals,) = _columns(out / "session_tracking_totals.csv")
        assert (totals["goodput_per_s"], totals["goodput_ratio"]) == ("0.017", "0.3333")

    def test_one_limit(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """tpot_ms=50 alone: the first answer (TPOT 10) and the third (one token: no TPOT) meet it."""
        log, out = _chat_log(tmp_path / "log.jsonl"), tmp_path / "out"
        assert _replay(log, out, "--goodput", " tpot_ms = 50 ") == 0
        (totals,) = _columns(out / "session_tracking_totals.csv")
        assert (totals["goodput_per_s"], totals["goodput_ratio"]) == ("0.033", "0.6667")

    def test_without_goodput_no_columns(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Without --goodput the files have no goodput column."""
        log, out = _chat_log(tmp_path / "log.jsonl"), tmp_path / "out"
        assert _replay(log, out) == 0
        for name in ("session_tracking_summary.csv", "session_tracking_totals.csv"):
            assert "goodput" not in (out / name).read_text(), name


def _silent_session(path: Path) -> Path:
    """s1: one cycle at 22:00:10, then silence; s2: cycles at 22:00:20, 22:01:40, 22:02:30 and 22:03:20."""
    path.write_bytes(_lines(
        record(1, "s1", "cycle_completed", T0 + 10 * S),
        *(record(n, "s2", "cycle_completed", T0 + second * S) for n, second in ((2, 20), (3, 100), (4, 150),
                                                                                 (5, 200)))))
    return path


class TestSessionTimeoutOption:
    """--session-timeout DURATION: a silent session times out at its last event plus the timeout."""

    @pytest.mark.parametrize(("value", "message"), [
        ("0", "must be > 0 s, got '0'"),
        ("0s", "must be > 0 s, got '0s'"),
        ("-1", "expected a duration such as 90, 90s, 5m, 1.5h or 2d, got '-1'"),
        ("abc", "expected a duration such as 90, 90s, 5m, 1.5h or 2d, got 'abc'"),
        ("367d", "must be at most 366d (31622400 s), got '367d'"),
    ])
    @pytest.mark.parametrize("command", ["replay", "tail"])
    def test_bad_value(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                       value: str, message: str, command: str) -> None:
        """A bad timeout is a usage error quoting the value (exit 2), before anything is written."""
        monkeypatch.chdir(tmp_path)
        err = _usage_error(capsys, command, "x.jsonl", "--out", "o", "--session-timeout", value)
        assert f"tracker {command}: error: argument --session-timeout: {message}" in err
        assert list(tmp_path.iterdir()) == []

    def test_silent_session_times_out(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """s1 silent from 22:00:10 with a 1m timeout ends at 22:01:10: timed_out in the window of 22:01, gone
        after; s2 stays active; the run's line says 1 timed out."""
        log, out = _silent_session(tmp_path / "log.jsonl"), tmp_path / "out"
        assert _replay(log, out, "--session-timeout", "1m") == 0
        statuses = {name: [(r["session_id"], r["status"]) for r in _columns(out / name)]
                    for name in sorted(p.name for p in out.glob("session_tracking_report_*.csv"))}
        assert statuses == {
            "session_tracking_report_20261124_220100.csv": [("s1", "active"), ("s2", "active")],
            "session_tracking_report_20261124_220200.csv": [("s1", "timed_out"), ("s2", "active")],
            "session_tracking_report_20261124_220300.csv": [("s2", "active")],
            "session_tracking_report_20261124_220400.csv": [("s2", "active")],
        }
        assert "  sessions 2 (at most 2 active, 1 timed out), questions 0, answers 0 (0.000/s), cycles 5, " \
               "errors 0 (error rate -)\n" in capsys.readouterr().out

    def test_timeout_longer_than_the_silence(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """With a timeout of 200 s s1 (silent for 190 s before the run's last event) never times out."""
        log, out = _silent_session(tmp_path / "log.jsonl"), tmp_path / "out"
        assert _replay(log, out, "--session-timeout", "200") == 0
        last = _columns(out / "session_tracking_report_20261124_220400.csv")
        assert [(r["session_id"], r["status"]) for r in last] == [("s1", "active"), ("s2", "active")]
        assert "(at most 2 active, 0 timed out)" in capsys.readouterr().out

    def test_off_by_default(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Without the option no session times out, and the run's line does not mention timeouts."""
        log, out = _silent_session(tmp_path / "log.jsonl"), tmp_path / "out"
        assert _replay(log, out) == 0
        assert "timed out" not in capsys.readouterr().out
        assert "timed_out" not in "".join(p.read_text() for p in out.glob("*.csv"))
