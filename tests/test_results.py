"""Tests for tracker.results and --json: one object on stdout, valid under schemas/output.schema.json, with the numbers
of the human summary and of the files."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from tests.helpers import T0, event
from tests.test_cli import _sigterm_once_following
from tracker.cli import main
from tracker.events import Event

ROOT = Path(__file__).parent.parent
SCHEMA = json.loads((ROOT / "schemas" / "output.schema.json").read_text())
S = 1_000_000


def _log(path: Path, *, bad: bool = False) -> Path:
    events: list[Event] = [
        event(1, "s1", "session_registered", T0, username="ann", course_numbers=[1]),
        event(2, "s1", "question_asked", T0 + S),
        event(3, "s1", "question_answered", T0 + 2 * S, response_time_ms=300.0, time_to_first_token_ms=100.0),
        event(4, "s2", "question_asked", T0 + 61 * S),
        event(5, "s2", "error", T0 + 62 * S, error="boom", kind="timeout"),
        event(6, "s2", "question_answered", T0 + 70 * S, response_time_ms=1000.0),
    ]
    lines = b"".join(orjson.dumps(e.to_record()) + b"\n" for e in events)
    path.write_bytes(lines + (b"not json\n" if bad else b""))
    return path


def _json(capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str]:
    """stdout as one JSON object (nothing else on it), valid under the schema; and stderr."""
    out, err = capsys.readouterr()
    result = json.loads(out)
    jsonschema.validate(result, SCHEMA)
    return result, err


def _totals(folder: Path) -> dict[str, str]:
    with (folder / "session_tracking_totals.csv").open() as stream:
        (row,) = csv.DictReader(stream)
    return row


def _as_file(run: dict[str, Any], totals: dict[str, str]) -> None:
    """Every totals cell is in ``run``: empty as null, a time as its text, a number as the number written."""
    assert list(run) == list(totals)
    for name, cell in totals.items():
        value = run[name]
        if cell == "":
            assert value is None, name
        elif isinstance(value, str):
            assert value == cell, name
        else:
            assert isinstance(value, int | float), name
            assert value == (int(cell) if isinstance(value, int) else float(cell)), name


class TestSchema:
    def test_is_a_valid_2020_12_schema(self) -> None:
        """The output schema is itself valid."""
        jsonschema.Draft202012Validator.check_schema(SCHEMA)


class TestReplay:
    def test_the_human_numbers_and_the_files(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """replay --json: the counts of the human text, every totals cell typed, the verdicts, the exit status; the
        human summary went to stderr."""
        log = _log(tmp_path / "log.jsonl", bad=True)
        assert main("replay", str(log), "--out", str(tmp_path / "human"), "--interval", "60",
                    "--threshold", "run:errors<1") == 99
        human = capsys.readouterr().out
        status = main("replay", str(log), "--out", str(tmp_path / "out"), "--interval", "60",
                      "--threshold", "run:errors<1", "--json")
        result, err = _json(capsys)
        assert status == result["exit_status"] == 99
        assert err == human.replace(str(tmp_path / "human"), str(tmp_path / "out"))
        events = int(re.search(r"read 1 log: (\d+) events", human).group(1))  # type: ignore[union-attr]
        assert (result["events"], result["rejected"], result["duplicates"]) == (
            events, {"total": 1, "by_reason": {"invalid_json": 1}}, 0)
        assert result["by_type"] == {"session_registered": 1, "question_asked": 2, "question_answered": 2,
                                     "error": 1}
        _as_file(result["run"], _totals(tmp_path / "out"))
        assert result["run"]["response_time_ms_p95"] == 965.0  # 300 and 1000 ms: 300 + 0.95 * 700
        assert result["thresholds"] == [{"scope": "run", "threshold": "run:errors<1", "value": 1, "ok": False}]
        assert result["windows"] == 2
        assert "session_tracking_report.html" in result["files_written"]
        assert result["quarantine"] == str(tmp_path / "out" / "quarantine.jsonl")

    def test_a_usage_error_prints_no_object(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A bad threshold with --json: exit 2, the message on stderr, nothing on stdout."""
        log = _log(tmp_path / "log.jsonl")
        assert main("replay", str(log), "--out", str(tmp_path / "out"), "--threshold", "nope<1", "--json") == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err.startswith("tracker replay: error: threshold 'nope<1' names an unknown column 'nope'")


class TestValidate:
    def test_counts_per_log_and_in_all(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """validate --json: a row per log, the totals, the rejected lines by reason, exit 1 for a rejected line."""
        good, bad = _log(tmp_path / "a.jsonl"), _log(tmp_path / "b.jsonl", bad=True)
        assert main("validate", str(good), str(bad), "--json") == 1
        result, err = _json(capsys)
        assert result["exit_status"] == 1
        assert result["logs"] == [{"path": str(good), "events": 6, "rejected": 0, "duplicates": 0},
                                  {"path": str(bad), "events": 0, "rejected": 1, "duplicates": 6}]
        assert (result["events"], result["duplicates"], result["rejected"]) == (
            6, 6, {"total": 1, "by_reason": {"invalid_json": 1}})
        assert f"{bad}: 0 events, 1 rejected, 6 duplicates" in err


class TestCompare:
    def test_figures_and_gates(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """compare --json: both runs, the figures as the table prints them, the gates and the page."""
        a, b = ROOT / "fixtures" / "compare" / "run_a", ROOT / "fixtures" / "compare" / "run_b"
        html = tmp_path / "c.html"
        assert main("compare", str(a), str(b), "--html", str(html), "--fail-if", "answers_per_s<-5%", "--json") == 99
        result, err = _json(capsys)
        assert (result["run_a"]["windows"], result["run_b"]["windows"]) == (3, 4)
        rows = {row["figure"]: row for row in result["figures"]}
        line = next(line for line in err.splitlines() if line.startswith("answers_per_s "))
        figure, va, vb, change = line.split()
        assert rows[figure] == {"figure": figure, "a": float(va), "b": float(vb), "change": change}
        assert [(g["gate"], g["ok"]) for g in result["gates"]] == [("answers_per_s<-5%", False)]
        assert result["html"] == str(html)


class TestTail:
    def test_the_final_summary(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """tail --json, stopped by SIGTERM: its counts and the run's figures as the totals file writes them."""
        log, out = _log(tmp_path / "log.jsonl"), tmp_path / "out"
        with _sigterm_once_following():
            status = main("tail", str(log), "--out", str(out), "--interval", "60", "--quiet", "--json")
        result, _ = _json(capsys)
        assert status == result["exit_status"] == 0
        assert (result["events"], result["late"], result["rotations"], result["files_failed"]) == (6, 0, 0, [])
        _as_file(result["run"], _totals(out))


class TestEdges:
    def test_means_near_the_largest_double_are_finite(self, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
        """Two answers of 1e308 and 1.7e308 ms: their sum overflows, their mean does not (1.35e308), in the files,
        the JSON and a verdict."""
        log = tmp_path / "log.jsonl"
        log.write_bytes(b"".join(orjson.dumps(event(i, "s1", "question_answered", T0 + i * S,
                                                    response_time_ms=rt).to_record()) + b"\n"
                                 for i, rt in ((1, 1e308), (2, 1.7e308))))
        assert main("replay", str(log), "--out", str(tmp_path / "out"), "--threshold", "run:response_time_ms_mean<5",
                    "--json") == 99
        result, _ = _json(capsys)
        assert float(_totals(tmp_path / "out")["response_time_ms_mean"]) == 1.35e308
        assert result["run"]["response_time_ms_mean"] == 1.35e308
        assert result["thresholds"][0]["value"] == 1.35e308

    def test_a_value_json_cannot_hold_is_the_files_text(self) -> None:
        """A cell JSON has no number for (inf, -inf, NaN: a file edited by hand) is the file's text, not null
        (which means an empty cell)."""
        import polars as pl

        from tracker.results import run_figures
        from tracker.tables import TOTALS_SCHEMA

        row = dict.fromkeys(TOTALS_SCHEMA) | {"response_time_ms_mean": float("inf"),
                                                        "response_time_ms_p50": float("-inf"),
                                                        "response_time_ms_max": float("nan")}
        figures = run_figures(pl.DataFrame([row], schema=TOTALS_SCHEMA))
        assert (figures["response_time_ms_mean"], figures["response_time_ms_p50"],
                figures["response_time_ms_max"]) == ("inf", "-inf", "NaN")

    def test_token_sums_beyond_64_bits(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Four answers of 2**63 - 1 output tokens sum to more than 64 bits: exact in the files and the JSON."""
        log = tmp_path / "log.jsonl"
        big = 2**63 - 1
        log.write_bytes(b"".join(orjson.dumps(event(i, "s1", "question_answered", T0 + i * S, response_time_ms=1.0,
                                                    input_tokens=big, output_tokens=big).to_record()) + b"\n"
                                 for i in range(1, 5)))
        assert main("replay", str(log), "--out", str(tmp_path / "out"), "--json") == 0
        result, _ = _json(capsys)
        assert _totals(tmp_path / "out")["output_tokens"] == str(4 * big)
        assert (result["run"]["input_tokens"], result["run"]["output_tokens"]) == (4 * big, 4 * big)

    def test_junit_is_null_when_not_written(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """tail --json --junit whose folder went away: the JSON names no JUnit file, and the failed threshold's 99
        stays."""
        log, out, folder = _log(tmp_path / "log.jsonl"), tmp_path / "out", tmp_path / "ci"
        folder.mkdir()
        with _sigterm_once_following(before=folder.rmdir):
            status = main("tail", str(log), "--out", str(out), "--interval", "60", "--quiet", "--json",
                          "--threshold", "run:errors<1", "--junit", str(folder / "junit.xml"))
        result, err = _json(capsys)
        assert status == result["exit_status"] == 99
        assert result["junit"] is None
        assert "cannot write --junit" in err
