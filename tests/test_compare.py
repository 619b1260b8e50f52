"""Tests for tracker compare: the figures table, the --fail-if gates, the page and the refusals (exit status 2)."""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tracker.cli import main
from tracker.compare import Run, change_text, evaluate, parse_gate

FIXTURES = Path(__file__).parent.parent / "fixtures" / "compare"
RUN_A, RUN_B = FIXTURES / "run_a", FIXTURES / "run_b"
TABLE = (
    f"A: {RUN_A}: 2026-11-24T22:00:02.000000Z to 2026-11-24T22:02:20.300000Z, 3 windows\n"
    f"B: {RUN_B}: 2026-11-25T09:00:02.000000Z to 2026-11-25T09:03:00.050000Z, 4 windows\n"
    "figure                       A         B  change\n"
    "questions_per_s          0.130     0.101  -22.3%\n"
    "answers_per_s            0.130     0.090  -30.8%\n"
    "errors_per_s             0.000     0.011     new\n"
    "error_rate              0.0000    0.1111     new\n"
    "response_time_ms_p50  1400.000  1925.000  +37.5%\n"
    "response_time_ms_p90  1665.000  2300.000  +38.1%\n"
    "response_time_ms_p95  1715.000  2362.500  +37.8%\n"
    "response_time_ms_p99  1783.000  2392.500  +34.2%\n"
    "response_time_ms_max  1800.000  2400.000  +33.3%\n"
    "ttft_ms_p50            345.000   475.000  +37.7%\n"
    "ttft_ms_p95            381.500   548.750  +43.8%\n"
    "ttft_ms_p99            388.300   557.750  +43.6%\n"
    "tpot_ms_p95              8.308    11.526  +38.7%\n"
    "output_tokens_per_s     18.872    12.862  -31.8%\n"
    "goodput_ratio                -    0.6250       -\n"
    "duration_s             138.300   178.050  +28.7%\n"
    "sessions                     3         3    0.0%\n"
)
_DATA = re.compile(r'<script type="application/json" id="data">(.*?)</script>', re.DOTALL)


def _compare(html: Path, *args: str) -> int:
    """tracker compare of the two fixture runs, the page to ``html``."""
    return main("compare", str(RUN_A), str(RUN_B), "--html", str(html), *args)


def _page_data(html: Path) -> dict[str, Any]:
    """The page's #data block, parsed back."""
    match = _DATA.search(html.read_text(encoding="utf-8"))
    assert match is not None
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def _windows(folder: Path) -> int:
    with (folder / "session_tracking_summary.csv").open(newline="") as stream:
        return sum(1 for _ in csv.reader(stream)) - 1


def _copy(tmp_path: Path, folder: Path = RUN_A) -> Path:
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    return copy


def _run(**totals: str) -> Run:
    return Run("x", "x", totals, ())


class TestFiguresTable:
    """The whole-run figures of both runs side by side, with the change in percent."""

    def test_exact_table(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Every row as the CSVs write it, aligned, then the page written; no gate: exit 0."""
        html = tmp_path / "c.html"
        assert _compare(html) == 0
        assert capsys.readouterr() == (f"{TABLE}wrote {html}\n", "")

    def test_same_run_twice(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A run compared with itself changes by 0.0% everywhere, 0 to 0 included; goodput_ratio is not shown
        when neither run has it."""
        assert main("compare", str(RUN_A), str(RUN_A), "--html", str(tmp_path / "c.html")) == 0
        rows = capsys.readouterr().out.splitlines()[3:-1]
        assert [row.split()[0] for row in rows if not row.endswith("  0.0%")] == []
        assert "goodput_ratio" not in [row.split()[0] for row in rows]

    def test_ttft_rows_only_when_a_run_has_them(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Without a TTFT in either run the ttft_ms rows are left out."""
        runs = [_copy(tmp_path / "1"), _copy(tmp_path / "2", RUN_B)]
        for run in runs:
            path = run / "session_tracking_totals.csv"
            header, row = (line.split(",") for line in path.read_text().splitlines())
            path.write_text(",".join(header) + "\n" + ",".join(
                "" if name.startswith("ttft_") else cell for name, cell in zip(header, row, strict=True)) + "\n")
        assert main("compare", str(runs[0]), str(runs[1]), "--html", str(tmp_path / "c.html")) == 0
        figures = [line.split()[0] for line in capsys.readouterr().out.splitlines()[3:-1]]
        assert "ttft_ms_p95" not in figures
        assert figures[figures.index("response_time_ms_max") + 1] == "tpot_ms_p95"

    @pytest.mark.parametrize(
        ("a", "b", "shown"),
        [
            ("100", "112.3", "+12.3%"), ("100", "95", "-5.0%"), ("0.130", "0.090", "-30.8%"),
            ("1", "1.00025", "+0.0%"), ("1", "0.99975", "-0.0%"), ("3", "3", "0.0%"), ("0.000", "0.000", "0.0%"),
            ("0.000", "0.011", "new"), ("", "1", "-"), ("1", "", "-"), ("8", "8.004", "+0.1%"),
        ],
    )
    def test_change_text(self, a: str, b: str, shown: str) -> None:
        """Signed, one decimal rounded half up, 0.0% when equal, new from 0, - when a value is empty."""
        assert change_text(Decimal(a) if a else None, Decimal(b) if b else None) == shown


class TestFailIf:
    """--fail-if gates: relative (percent) and absolute (B - A), verdicts after the page, exit 99 on a failure."""

    def test_passing_gates(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Gates that hold print ok and exit 0."""
        html = tmp_path / "c.html"
        assert _compare(html, "--fail-if", "answers_per_s<-40%", "--fail-if", "response_time_ms_p95>+50%",
                        "--fail-if", "error_rate>+0.2", "--fail-if", "sessions<-0") == 0
        assert capsys.readouterr() == (
            f"{TABLE}wrote {html}\n"
            "gates: all 4 passed\n"
            "  ok    answers_per_s<-40%         change -30.8% (A 0.130, B 0.090)\n"
            "  ok    response_time_ms_p95>+50%  change +37.8% (A 1715.000, B 2362.500)\n"
            "  ok    error_rate>+0.2            B - A +0.1111 (A 0.0000, B 0.1111)\n"
            "  ok    sessions<-0                B - A +0 (A 3, B 3)\n", "")
        assert html.is_file()

    def test_failing_gates(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Relative and absolute gates that break exit 99, after the page is written; the others still say ok."""
        html = tmp_path / "c.html"
        assert _compare(html, "--fail-if", "answers_per_s<-5%", "--fail-if", "error_rate>+0.01",
                        "--fail-if", "ttft_ms_p95>+50%", "--fail-if", "duration_s>+30") == 99
        out, err = capsys.readouterr()
        assert (out.removeprefix(TABLE), err) == (
            f"wrote {html}\n"
            "gates: 3 of 4 failed\n"
            "  FAIL  answers_per_s<-5%  change -30.8% (A 0.130, B 0.090)\n"
            "  FAIL  error_rate>+0.01   B - A +0.1111 (A 0.0000, B 0.1111)\n"
            "  ok    ttft_ms_p95>+50%   change +43.8% (A 381.500, B 548.750)\n"
            "  FAIL  duration_s>+30     B - A +39.750 (A 138.300, B 178.050)\n", "")
        assert _page_data(html)["gates"] == [
            ["answers_per_s<-5%", False, "change -30.8% (A 0.130, B 0.090)"],
            ["error_rate>+0.01", False, "B - A +0.1111 (A 0.0000, B 0.1111)"],
            ["ttft_ms_p95>+50%", True, "change +43.8% (A 381.500, B 548.750)"],
            ["duration_s>+30", False, "B - A +39.750 (A 138.300, B 178.050)"],
        ]

    def test_gates_that_cannot_be_evaluated_fail(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A change in percent from 0, a column a run's totals lack and an empty value each fail, saying why."""
        assert _compare(tmp_path / "c.html", "--fail-if", "errors_per_s>+10%", "--fail-if", "goodput_ratio<-5%",
                        "--fail-if", "failed_response_time_ms_p95>+100") == 99
        assert capsys.readouterr().out.splitlines()[-4:] == [
            "gates: 3 of 3 failed",
            "  FAIL  errors_per_s>+10%                 cannot be evaluated: A is 0, so a change in percent has no "
            "meaning (A 0.000, B 0.011); gate on the difference instead, e.g. errors_per_s>+N",
            "  FAIL  goodput_ratio<-5%                 cannot be evaluated: A's totals have no column goodput_ratio "
            "(replayed without --goodput)",
            "  FAIL  failed_response_time_ms_p95>+100  cannot be evaluated: A's failed_response_time_ms_p95 is empty",
        ]

    def test_gate_given_twice_is_checked_once(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The same gate twice gives one verdict."""
        assert _compare(tmp_path / "c.html", "--fail-if", "sessions>+0%", "--fail-if", "sessions>+0%") == 0
        assert capsys.readouterr().out.splitlines()[-2:] == ["gates: all 1 passed",
                                                             "  ok    sessions>+0%  change 0.0% (A 3, B 3)"]

    @pytest.mark.parametrize(
        ("a", "b", "gate", "ok"),
        [
            ("0.100", "0.110", "x>+10%", True), ("0.100", "0.111", "x>+10%", False),
            ("200", "190", "x<-5%", True), ("200", "189.999", "x<-5%", False),
            ("0.0100", "0.0200", "x>+0.01", True), ("0.0100", "0.0201", "x>+0.01", False),
            ("0", "0", "x>+10%", True), ("5", "5", "x<-0%", True), ("0", "1", "x>+1000%", False),
            ("0", "1", "x>+0.5", False), ("0", "1", "x>+1", True),
        ],
    )
    def test_boundaries_are_exact(self, a: str, b: str, gate: str, ok: bool) -> None:
        """Gates compare exactly, in decimal, on the cells as written: exactly N passes, a hair beyond fails; equal
        values are no change, 0 to 0 included; a change in percent from 0 fails."""
        parsed = parse_gate(gate.replace("x", "error_rate"))
        assert evaluate(parsed, _run(error_rate=a), _run(error_rate=b)).ok is ok

    @pytest.mark.parametrize(
        ("gate", "message"),
        [
            ("answers_per_s", "--fail-if 'answers_per_s' is malformed"),
            ("answers_per_s<5%", "--fail-if 'answers_per_s<5%': N '5' needs its sign, +5 or -5"),
            ("answers_per_s>=+5%", "--fail-if 'answers_per_s>=+5%': unknown operator '>='"),
            ("answers_per_s<%", "--fail-if 'answers_per_s<%': N is missing"),
            ("answers_per_s<-five%", "--fail-if 'answers_per_s<-five%': N '-five' is not a number"),
            ("answers_per_s<-5%%", "--fail-if 'answers_per_s<-5%%' is malformed"),
        ],
    )
    def test_malformed_gate_exits_2(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], gate: str,
                                    message: str) -> None:
        """A malformed gate is quoted on stderr with the expected form, exit 2, and nothing is printed or written."""
        html = tmp_path / "c.html"
        assert _compare(html, "--fail-if", "error_rate>+0.01", "--fail-if", gate) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err.startswith(f"tracker compare: error: {message}")
        assert err.endswith("; expected COLUMN>+N% or COLUMN<-N% (the change from A to B in percent) or COLUMN>+N "
                            "or COLUMN<-N (the difference B - A), e.g. 'answers_per_s<-5%', 'error_rate>+0.01'\n")
        assert not html.exists()

    @pytest.mark.parametrize("gate", ["answers_per_sec<-5%", "run_start>+0", "window_start>+0", "username>+1"])
    def test_unknown_column_exits_2(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], gate: str) -> None:
        """A column that is not a number column of the totals is quoted, with the valid ones, exit 2."""
        html = tmp_path / "c.html"
        assert _compare(html, "--fail-if", gate) == 2
        out, err = capsys.readouterr()
        column = re.split("[<>]", gate)[0]
        assert out == ""
        assert err.startswith(f"tracker compare: error: --fail-if {gate!r} names an unknown column {column!r}; the "
                              "totals' number columns are: sessions, max_active_sessions, ")
        assert err.endswith(", goodput_per_s, goodput_ratio\n")
        assert not html.exists()


class TestHtmlPage:
    """The page: both runs' windows on one axis, charts by measure, the figures table."""

    def test_page_data(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Each run's series have one value a window, x in seconds since its start, legends by folder name."""
        html = tmp_path / "c.html"
        assert _compare(html) == 0
        capsys.readouterr()
        text = html.read_text(encoding="utf-8")
        assert text.startswith("<!DOCTYPE html>")
        assert "<title>tracker compare: run_a vs run_b</title>" in text
        data = _page_data(html)
        runs = data["runs"]
        assert [(r["label"], r["name"], r["folder"]) for r in runs] == [("A", "run_a", str(RUN_A)),
                                                                        ("B", "run_b", str(RUN_B))]
        for run, folder in zip(runs, (RUN_A, RUN_B), strict=True):
            windows = _windows(folder)
            assert len(run["x"]) == len(run["window_start"]) == windows
            assert {key: len(values) for key, values in run["series"].items()} == dict.fromkeys(
                ("answers_per_s", "response_time_ms_p95", "error_rate", "ttft_ms_p95", "active_sessions"), windows)
        assert (runs[0]["x"], runs[1]["x"]) == ([0.0, 58.0, 118.0], [0.0, 58.0, 118.0, 178.0])
        assert runs[0]["series"]["answers_per_s"] == [0.155, 0.15, 0.0]
        assert runs[1]["series"]["response_time_ms_p95"] == [1912.5, 2212.5, 2392.5, None]
        assert [key for key, _, _ in data["charts"]] == ["answers_per_s", "response_time_ms_p95", "error_rate",
                                                         "ttft_ms_p95", "active_sessions"]
        assert data["figures"][0] == ["questions_per_s", "0.130", "0.101", "-22.3%"]
        assert data["gates"] == []

    def test_default_is_compare_html_here(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
        """Without --html the page is compare.html in the current folder."""
        monkeypatch.chdir(tmp_path)
        assert main("compare", str(RUN_A), str(RUN_B)) == 0
        assert capsys.readouterr().out.endswith("wrote compare.html\n")
        assert (tmp_path / "compare.html").is_file()

    def test_refused_html(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A folder, a report file's name (in a run folder or any other), a log's name and a missing folder are
        refused, exit 2; another name in a run folder is fine."""
        run = _copy(tmp_path)
        (tmp_path / "other").mkdir()
        (tmp_path / "events.jsonl").write_text("a log\n")
        before = sorted(p.name for p in run.iterdir())
        for html, message in (
                (tmp_path, f"--html {str(tmp_path)!r} is a folder: give a file name"),
                (run / "session_tracking_totals.csv",
                 f"--html {str(run / 'session_tracking_totals.csv')!r} is named like a file of a reports folder: give "
                 "it another name"),
                (tmp_path / "other" / "session_tracking_report.html",
                 f"--html {str(tmp_path / 'other' / 'session_tracking_report.html')!r} is named like a file of a "
                 "reports folder: give it another name"),
                (tmp_path / "events.jsonl",
                 f"--html {str(tmp_path / 'events.jsonl')!r} is named like a log (*.jsonl): give the page another "
                 "name"),
                (tmp_path / "nowhere" / "c.html",
                 f"--html {str(tmp_path / 'nowhere' / 'c.html')!r}: the folder {str(tmp_path / 'nowhere')!r} does not "
                 "exist")):
            assert main("compare", str(run), str(RUN_B), "--html", str(html)) == 2
            assert capsys.readouterr() == ("", f"tracker compare: error: {message}\n")
        assert sorted(p.name for p in run.iterdir()) == before
        assert (tmp_path / "events.jsonl").read_text() == "a log\n"
        assert main("compare", str(RUN_B), str(run), "--html", str(run / "compare.html")) == 0
        assert (run / "compare.html").is_file()


class TestRunFolders:
    """A run folder that is missing, incomplete or damaged: exit 2, quoting the folder."""

    def test_missing_folder(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A folder that does not exist, or a file given as one, is named; nothing is written."""
        html = tmp_path / "c.html"
        missing = tmp_path / "nope"
        assert main("compare", str(RUN_A), str(missing), "--html", str(html)) == 2
        assert capsys.readouterr() == ("", f"tracker compare: error: run folder {str(missing)!r} does not exist\n")
        totals = RUN_A / "session_tracking_totals.csv"
        assert main("compare", str(totals), str(RUN_B), "--html", str(html)) == 2
        assert capsys.readouterr() == ("", f"tracker compare: error: run folder {str(totals)!r} is not a folder\n")
        assert not html.exists()

    @pytest.mark.parametrize("name", ["session_tracking_totals.csv", "session_tracking_summary.csv"])
    def test_missing_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
        """A folder without its totals or summary is not a run."""
        run = _copy(tmp_path)
        (run / name).unlink()
        assert main("compare", str(RUN_A), str(run), "--html", str(tmp_path / "c.html")) == 2
        assert capsys.readouterr() == ("", f"tracker compare: error: run folder {str(run)!r} has no {name}: give a "
                                           "folder that tracker replay or tracker tail wrote\n")

    @pytest.mark.parametrize(
        ("name", "damage", "why"),
        [
            ("session_tracking_totals.csv", lambda text: "", "it is empty"),
            ("session_tracking_totals.csv", lambda text: text.replace("answers_per_s", "answers"),
             "no column answers_per_s"),
            ("session_tracking_totals.csv", lambda text: text + text.splitlines()[1] + "\n", "2 rows instead of 1"),
            ("session_tracking_totals.csv", lambda text: text.replace(",1400.000,", ",fast,", 1),
             "line 2: response_time_ms_mean 'fast' is not a number"),
            ("session_tracking_totals.csv", lambda text: text.replace(",0.130,", ",NaN,", 1),
             "line 2: questions_per_s 'NaN' is not a number"),
            ("session_tracking_totals.csv", lambda text: text.replace("2026-11-24T22:00:02.000000Z", "yesterday"),
             "line 2: run_start 'yesterday' is not an ISO time"),
            ("session_tracking_summary.csv", lambda text: text.rstrip("\n").rsplit(",", 1)[0] + "\n",
             "line 4 has 36 cells, the header 37"),
            ("session_tracking_summary.csv", lambda text: text.replace("window_start", "start"),
             "no column window_start"),
        ],
    )
    def test_damaged_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
                          damage: Callable[[str], str], why: str) -> None:
        """A file with a missing column, a row too short or too many, a cell that is no number or time is damaged."""
        run = _copy(tmp_path)
        path = run / name
        path.write_text(damage(path.read_text()))
        assert main("compare", str(run), str(RUN_B), "--html", str(tmp_path / "c.html")) == 2
        assert capsys.readouterr() == ("", f"tracker compare: error: run folder {str(run)!r}: {name} is damaged "
                                           f"({why}); regenerate it with tracker replay\n")
        assert not (tmp_path / "c.html").exists()
