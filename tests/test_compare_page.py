"""Tests for the page of ``tracker compare`` (compare.html), opened in a real headless Chromium.

The page compares the two fixture runs (fixtures/compare/run_a and run_b); every expectation is computed here
from their CSV files, read with the csv module, or from the table the same command printed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.conftest import Chromium
from tests.test_html_report import Tab, _rows, visit
from tracker.cli import main

FIXTURES = Path(__file__).parent.parent / "fixtures" / "compare"
RUN_A, RUN_B = FIXTURES / "run_a", FIXTURES / "run_b"
#: The charts the page draws, by the summary column each charts (both runs have a TTFT).
CHARTS = ["answers_per_s", "response_time_ms_p95", "error_rate", "ttft_ms_p95", "active_sessions"]
#: Rows of the figures table checked against the totals cells: a fall, a rise, from 0 ("new"), a column only B
#: has ("-") and no change.
CHECKED = ["answers_per_s", "response_time_ms_p95", "errors_per_s", "goodput_ratio", "sessions"]


def _summary(folder: Path) -> list[dict[str, str]]:
    return _rows(folder / "session_tracking_summary.csv")


def _totals(folder: Path) -> dict[str, str]:
    rows = _rows(folder / "session_tracking_totals.csv")
    assert len(rows) == 1
    return rows[0]


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _change(a: str, b: str) -> str:
    """The change from A's cell to B's as the module's docstring defines it, worked out here."""
    if a == "" or b == "":
        return "-"
    x, y = Decimal(a), Decimal(b)
    if x == y:
        return "0.0%"
    if x == 0:
        return "new"
    change = (y - x) / x * 100
    return ("+" if change > 0 else "-") + str(abs(change).quantize(Decimal("0.1"), ROUND_HALF_UP)) + "%"


def _write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, list[str]]:
    """The compare page of the fixture runs, and the lines of the table the command printed."""
    html = tmp_path / "compare.html"
    assert main("compare", str(RUN_A), str(RUN_B), "--html", str(html)) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[-1] == f"wrote {html}"
    return html, lines[:-1]


def _charts(page: Page) -> Any:
    """Each chart's series: name, x values, y values (null kept), and the drawn x axis' extent."""
    return page.evaluate("""() => Object.fromEntries(Object.entries(window.trackerCharts).map(([name, chart]) =>
        [name, {
            series: chart.getOption().series.map((s) => ({
                name: s.name ?? null,
                x: s.data.map((d) => d[0]),
                y: s.data.map((d) => (d[1] === undefined ? "undefined" : d[1])),
            })),
            extent: chart.getModel().getComponent("xAxis", 0).axis.scale.getExtent(),
        }]))""")


@pytest.fixture(scope="module")
def tab(chromium: Chromium) -> Iterator[Tab]:
    page = chromium.run(lambda browser: browser.new_page(viewport={"width": 1280, "height": 900}))
    try:
        yield Tab(chromium, page)
    finally:
        chromium.run(lambda _: page.close())


class TestComparePage:
    """The fixture runs' compare page in Chromium: quiet and offline, both runs on each chart, the figures table."""

    def test_loads_offline_and_quietly(self, tab: Tab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The page's only request is its own file, no console error or warning, no page error, data-ready set."""
        html, _ = _write(tmp_path, capsys)
        seen = visit(tab, html, lambda page: page.evaluate("""() => ({
            ready: document.body.getAttribute("data-ready"),
            title: document.title,
            charts: document.querySelectorAll(".chart canvas").length,
        })"""))
        assert seen.requests == [html.resolve().as_uri()]
        assert seen.errors == []
        assert [m for m in seen.console if m[0] in ("error", "warning")] == []
        assert seen.result == {"ready": "true", "title": "tracker compare: run_a vs run_b", "charts": len(CHARTS)}

    def test_every_chart_has_both_runs_windows(self, tab: Tab, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
        """Each chart has a series for A and one for B: a point a window of the run's summary, a value where its
        cell has one."""
        html, _ = _write(tmp_path, capsys)
        summaries = {"A": _summary(RUN_A), "B": _summary(RUN_B)}
        assert {label: len(rows) for label, rows in summaries.items()} == {"A": 3, "B": 4}  # the README's windows
        charts = visit(tab, html, _charts).result
        assert charts is not None
        assert list(charts) == CHARTS
        for name, chart in charts.items():
            series = chart["series"]
            assert [s["name"] for s in series] == [f"A: {RUN_A.name}", f"B: {RUN_B.name}"], name
            for label, drawn in zip(summaries, series, strict=True):
                rows = summaries[label]
                assert "undefined" not in drawn["y"], (name, label)
                assert len(drawn["y"]) == len(rows), (name, label)
                assert sum(v is not None for v in drawn["y"]) == sum(row[name] != "" for row in rows), (name, label)
                assert drawn["y"] == [float(row[name]) if row[name] else None for row in rows], (name, label)
        # the third window of A and the fourth of B had no answer: a gap in the response time, not a 0
        assert charts["response_time_ms_p95"]["series"][0]["y"][2] is None
        assert charts["response_time_ms_p95"]["series"][1]["y"][3] is None
        assert [len(s["y"]) for s in charts["active_sessions"]["series"]] == [3, 4]

    def test_x_is_seconds_since_each_runs_start(self, tab: Tab, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
        """Both runs start at x = 0: a window's point is at the seconds from the run's start to the window's
        start (the first window's at 0), on every chart; the drawn axis starts at 0 and holds every point."""
        html, _ = _write(tmp_path, capsys)
        expected = []
        for folder in (RUN_A, RUN_B):
            start = _seconds(_totals(folder)["run_start"])
            expected.append([max(0.0, _seconds(row["window_start"]) - start) for row in _summary(folder)])
        assert expected == [[0, 58, 118], [0, 58, 118, 178]]  # both runs started 2 s into their first window
        charts = visit(tab, html, _charts).result
        assert charts is not None
        assert charts != {}
        for name, chart in charts.items():
            assert [s["x"] for s in chart["series"]] == expected, name
            low, high = chart["extent"]
            assert low == 0, name
            assert high >= max(expected[1]), name

    def test_header_names_each_run(self, tab: Tab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A line a run: its legend, folder, start and end, duration and windows, as the printed table counts them
        (one window: "1 window")."""
        one = shutil.copytree(RUN_B, tmp_path / "one")
        summary = one / "session_tracking_summary.csv"
        summary.write_text("".join(summary.read_text().splitlines(keepends=True)[:2]))  # the header, one window
        html = tmp_path / "compare.html"
        assert main("compare", str(RUN_A), str(one), "--html", str(html)) == 0
        printed = capsys.readouterr().out.splitlines()[:2]
        assert [line.rsplit(", ", 1)[1] for line in printed] == ["3 windows", "1 window"]
        expected = []
        for label, folder, line in zip("AB", (RUN_A, one), printed, strict=True):
            totals = _totals(folder)
            expected.append(f"{label}: {folder.name} ({folder}): {totals['run_start']} to {totals['run_end']} (UTC), "
                            f"{totals['duration_s']} s, {line.rsplit(', ', 1)[1]}")
        shown = visit(tab, html, lambda page: [page.text_content("#run-A"), page.text_content("#run-B")]).result
        assert shown == expected

    def test_figures_table_is_the_printed_table(self, tab: Tab, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
        """The page's figures table has the printed table's rows, cell for cell; the checked rows are the totals
        cells and the change from A to B."""
        html, lines = _write(tmp_path, capsys)
        assert lines[0].startswith(f"A: {RUN_A}: ")
        assert lines[1].startswith(f"B: {RUN_B}: ")
        assert lines[2].split() == ["figure", "A", "B", "change"]
        printed = [line.split() for line in lines[3:]]
        shown = visit(tab, html, lambda page: page.evaluate("""() => ({
            head: [...document.querySelectorAll("#figures-table th")].map((c) => c.textContent),
            rows: [...document.querySelectorAll("#figures-table tr[data-figure]")].map((r) =>
                [r.dataset.figure, ...[...r.cells].map((c) => c.textContent)]),
        })""")).result
        assert shown is not None
        assert shown["head"] == ["figure", f"A: {RUN_A.name}", f"B: {RUN_B.name}", "change"]
        assert [row[0] for row in shown["rows"]] == [row[1] for row in shown["rows"]]  # data-figure is the figure
        assert [row[1:] for row in shown["rows"]] == printed
        a, b = _totals(RUN_A), _totals(RUN_B)
        expected = {f: [f, a.get(f) or "-", b.get(f) or "-", _change(a.get(f, ""), b.get(f, ""))] for f in CHECKED}
        assert {row[1]: row[1:] for row in shown["rows"] if row[1] in CHECKED} == expected
        assert expected["answers_per_s"] == ["answers_per_s", "0.130", "0.090", "-30.8%"]
        assert [expected[f][3] for f in ("errors_per_s", "goodput_ratio", "sessions")] == ["new", "-", "0.0%"]
