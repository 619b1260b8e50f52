"""Tests for tracker.cli: exit status and exact output of each command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

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
