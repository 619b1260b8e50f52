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
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.helpers import TIMEOUT
from tracker import cli as cli_module
from tracker.cli import main
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
        assert main("validate", str(tmp_path / "events.jsonl")) == 0


def _log_line(seq: int, session: str = "s1", second: int = 0) -> bytes:
    """One valid cycle_completed line, ``second`` seconds after 2026-11-24T22:00:00Z."""
    return orjson.dumps({"v": 1, "ts": 1_795_557_600_000_000 + second * 1_000_000, "event_id": f"t-{seq}",
                         "writer": "w:1:t", "seq": seq, "session_id": session, "type": "cycle_completed"}) + b"\n"


@contextlib.contextmanager
def _sigterm_once_following() -> Iterator[None]:
    """Send this process SIGTERM once ``tracker tail`` (run by main() here) has installed its handler, so that
    it stops; nothing is sent when main() returns before that."""
    original, done = signal.getsignal(signal.SIGTERM), threading.Event()

    def send() -> None:
        deadline = time.monotonic() + TIMEOUT
        installed_at = None
        while not done.is_set() and time.monotonic() < deadline:
            installed = signal.getsignal(signal.SIGTERM) is not original
            installed_at = (installed_at or time.monotonic()) if installed else None
            if installed_at is not None and time.monotonic() - installed_at > 0.3:  # following for a while
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


class TestOverlongLines:
    """validate reads as replay reads: an over-long line is too_long in both, with the same quarantine."""

    def test_validate_and_replay_quarantine_the_same(self, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
        """Lines over --max-line-bytes (ended, NUL-filled then an event, or unterminated) are too_long in
        both commands, and their quarantine files are byte for byte the same."""
        log = tmp_path / "log.jsonl"
        log.write_bytes(_log_line(1) + b"x" * 3000 + b"\n" + _log_line(2) + b"\0" * 3000 + _log_line(3)
                        + b"y" * 2500)
        assert main("validate", str(log), "--max-line-bytes", "1000", "--quarantine", str(tmp_path / "v.jsonl")) == 1
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

    def test_tail_of_a_folder_holding_its_quarantine_is_fine(self, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
        """tail run --out run: the quarantine in the folder is tail's own, never followed: no error."""
        (tmp_path / "events.jsonl").write_bytes(_log_line(1))
        (tmp_path / "quarantine.jsonl").write_bytes(b"bad\n")
        with _sigterm_once_following():
            assert main("tail", str(tmp_path), "--out", str(tmp_path), "--quiet", "--interval", "60") == 0
        assert capsys.readouterr().out.startswith("stopped: 1 events, 0 rejected lines")


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
               "--interval 1\n" in done.stdout

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


class TestReviewFindings:
    """Defects a review found: each command reads the same log the same way, and no user's file is replaced."""

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
