"""Tests for the HTML report (session_tracking_report.html), opened in a real headless Chromium.

The page is built by ``replay`` (and ``Tail``, and ``tracker report``) from a small hand-made log; every
expectation is computed here from the CSV files the same run wrote, read with the csv module.
"""

from __future__ import annotations

import csv
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request
from playwright.sync_api import Error as PlaywrightError

from tests.conftest import Chromium
from tests.helpers import T0, event
from tracker.cli import main
from tracker.events import Event
from tracker.html_report import HtmlReport
from tracker.page import STATIC
from tracker.replayer import replay
from tracker.tables import schemas
from tracker.tail import Tail
from tracker.thresholds import Threshold, parse_threshold

T = TypeVar("T")
S = 1_000_000
HTML = "session_tracking_report.html"
INTERVAL_S = 60
GOODPUT = {"response_time_ms": 1000.0}
FAILING = "run:error_rate<0.1"  # the run's error rate is 3 errors / 9 questions
PASSING = "response_time_ms_p95<5000"
#: The summary columns each line chart draws (one series each).
LINE_CHARTS = {
    "active": ["active_sessions"],
    "rates": ["questions_per_s", "answers_per_s", "errors_per_s"],
    "response": [f"response_time_ms_{s}" for s in ("p50", "p90", "p95", "p99", "max")],
    "ttft": [f"ttft_ms_{s}" for s in ("p50", "p90", "p95", "p99", "max")],
    "tokens": ["output_tokens_per_s"],
    "goodput": ["goodput_per_s"],
}
#: The totals columns the header shows, in order (those the totals file has).
FIGURES = ["sessions", "questions_asked", "questions_answered", "errors", "error_rate", "answers_per_s",
           "response_time_ms_p95", "ttft_ms_p95", "output_tokens_per_s", "goodput_ratio"]
#: The URLs the inlined ECharts holds (XML namespaces, licence texts): never fetched, the page forbids requests.
ECHARTS_URLS = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink", "http://www.w3.org/2000/xmlns/",
                "http://www.w3.org/XML/1998/namespace", "http://www.apache.org/licenses/LICENSE-2.0",
                "https://github.com/ecomfe/zrender/blob/master/LICENSE"}
#: A value that runs a script wherever it is put into the page as HTML instead of text.
HOSTILE = '<img src=x onerror="document.body.dataset.pwned=1">'


def _events() -> list[Event]:
    """Four sessions over three 60 s windows: answers with TTFT and tokens, errors of two kinds, one session ends."""
    events: list[Event] = []

    def add(session: str, event_type: str, second: float, **fields: Any) -> None:
        events.append(event(len(events) + 1, session, event_type, T0 + int(second * S), **fields))

    def answered(session: str, second: float, ms: float, ttft_ms: float, tokens: int) -> None:
        add(session, "question_asked", second)
        add(session, "question_answered", second + ms / 1000, response_time_ms=ms, time_to_first_token_ms=ttft_ms,
            input_tokens=10, output_tokens=tokens)

    for i, (session, user) in enumerate([("s1", "alice"), ("s2", "bob"), ("s3", "carol"), ("s4", "dave")]):
        add(session, "session_registered", i, username=user, course_numbers=[101])
    answered("s1", 5, 400, 100, 50)
    answered("s1", 65, 900, 150, 60)
    answered("s1", 125, 300, 80, 40)
    answered("s2", 10, 1200, 300, 70)
    add("s2", "question_asked", 70)
    add("s2", "error", 71, error="upstream timed out", kind="timeout")
    answered("s2", 75, 500, 120, 30)
    add("s3", "question_asked", 20)
    add("s3", "error", 21, error="HTTP 500", kind="http_500")
    add("s3", "question_asked", 130)
    add("s3", "error", 131, error="upstream timed out", kind="timeout")
    answered("s4", 15, 2000, 600, 90)
    add("s1", "session_unregistered", 140, reason="done")
    return events


def _write_log(path: Path, events: list[Event]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e.to_record()) + b"\n" for e in events))
    return path


def _thresholds() -> list[Threshold]:
    return [parse_threshold(text, *schemas(False)) for text in (FAILING, PASSING)]


def _replay(log: Path, out: Path) -> Path:
    replay([log], out, interval_s=INTERVAL_S, goodput=GOODPUT, thresholds=_thresholds())
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


@dataclass(frozen=True)
class Run:
    log: Path
    out: Path

    @property
    def html(self) -> Path:
        return self.out / HTML

    def csv(self, name: str) -> list[dict[str, str]]:
        return _rows(self.out / f"session_tracking_{name}.csv")

    def window_rows(self) -> list[dict[str, str]]:
        return [row for path in sorted(self.out.glob("session_tracking_report_*.csv")) for row in _rows(path)]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("html")
    log = _write_log(folder / "events.jsonl", _events())
    return Run(log, _replay(log, folder / "reports"))


@dataclass
class Visit(Generic[T]):
    """What a page did while it was open: the task's result, its console, its uncaught errors, its requests."""

    url: str
    result: T | None = None
    console: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Tab:
    """One browser tab for the module's tests (each opens its page anew: a new tab costs a second a page)."""

    chromium: Chromium
    page: Page


@pytest.fixture(scope="module")
def tab(chromium: Chromium) -> Iterator[Tab]:
    page = chromium.run(lambda browser: browser.new_page(viewport={"width": 1280, "height": 900}))
    try:
        yield Tab(chromium, page)
    finally:
        chromium.run(lambda _: page.close())


def visit(tab: Tab, path: Path, task: Callable[[Page], T]) -> Visit[T]:
    """Open ``path`` in the tab, wait until its script finished, run ``task`` on it; the page must stay quiet:
    no console error, no uncaught error, no request but its own file."""
    seen: Visit[T] = Visit(path.resolve().as_uri())

    def on_console(message: ConsoleMessage) -> None:
        seen.console.append((message.type, message.text))

    def on_error(error: PlaywrightError) -> None:
        seen.errors.append(str(error))

    def on_request(request: Request) -> None:
        seen.requests.append(request.url)

    def open_page(_: Browser) -> None:
        page = tab.page
        page.on("console", on_console)
        page.on("pageerror", on_error)
        page.on("request", on_request)
        try:
            page.goto(seen.url)
            page.wait_for_selector("body[data-ready=true]", state="attached", timeout=10_000)
            seen.result = task(page)
        finally:
            page.remove_listener("console", on_console)
            page.remove_listener("pageerror", on_error)
            page.remove_listener("request", on_request)

    tab.chromium.run(open_page)
    assert [text for kind, text in seen.console if kind == "error"] == []
    assert seen.errors == []
    assert seen.requests == [seen.url]
    return seen


def _series(page: Page) -> Any:
    """Each chart's series: name, points (values not null) and values other than 0."""
    return page.evaluate("""() => Object.fromEntries(Object.entries(window.trackerCharts).map(([name, chart]) =>
        [name, chart.getOption().series.map((s) => {
            const values = s.data.map((d) => (Array.isArray(d) ? d[d.length - 1] : d));
            return { name: s.name ?? null, points: values.filter((v) => v !== null && v !== undefined).length,
                     nonzero: values.filter((v) => v !== null && v !== undefined && v !== 0).length };
        })]))""")


def _session_ids(page: Page) -> list[str]:
    """The session table's rows, top to bottom, by session id."""
    ids: list[str] = page.eval_on_selector_all("#session-table td.session_id",
                                               "cells => cells.map((c) => c.textContent)")
    return ids


def _heatmap_sessions(page: Page) -> list[str]:
    """The heatmap's rows (its y axis), top to bottom."""
    ids: list[str] = page.evaluate("() => window.trackerCharts.heatmap.getOption().yAxis[0].data")
    return ids


class TestPage:
    """The replayed run's page in Chromium: charts, header, verdicts, the session table and the heatmap."""

    def test_loads_offline_and_quietly(self, tab: Tab, run: Run) -> None:
        """The page's only request is its own file; nothing in it points anywhere; the console stays clean."""
        seen = visit(tab, run.html, lambda page: page.evaluate("""() => ({
            linked: document.querySelectorAll("[src], [href], [srcset], [action], [data]").length,
            policy: document.querySelector('meta[http-equiv="Content-Security-Policy"]').content,
            refresh: document.querySelectorAll('meta[http-equiv="refresh"]').length,
            live: document.querySelectorAll("#live").length,
            title: document.title,
        })"""))
        assert seen.requests == [run.html.resolve().as_uri()]
        assert seen.errors == []
        assert [m for m in seen.console if m[0] in ("error", "warning")] == []
        assert seen.result is not None
        assert seen.result["linked"] == 0
        assert "default-src 'none'" in seen.result["policy"]
        assert "connect-src 'none'" in seen.result["policy"]
        assert (seen.result["refresh"], seen.result["live"]) == (0, 0)  # a finished run's page
        assert seen.result["title"] == f"tracker report {run.csv('totals')[0]['run_start']}"

    def test_every_chart_has_its_points(self, tab: Tab, run: Run) -> None:
        """Each chart has a series per figure, with a point for each window the CSV files give a value."""
        summary, errors, window_rows = run.csv("summary"), run.csv("errors"), run.window_rows()
        windows = len(summary)
        assert windows == 3  # 22:00, 22:01 and 22:02 (the run ends at 22:02:20)

        def present(rows: list[dict[str, str]], column: str) -> int:
            return sum(1 for row in rows if row[column] != "")

        expected = {name: [present(summary, c) for c in columns] for name, columns in LINE_CHARTS.items()}
        kinds = sorted({row["kind"] for row in errors})
        assert kinds == ["http_500", "timeout"]
        expected["errors"] = [windows] * len(kinds)  # a bar a window for each kind, 0 when it had none
        expected["heatmap"] = [present(window_rows, "questions_answered")]
        assert all(count > 0 for counts in expected.values() for count in counts)

        series = visit(tab, run.html, _series).result
        assert series is not None
        assert set(series) == {*LINE_CHARTS, "errors", "heatmap"}
        assert {name: [s["points"] for s in chart] for name, chart in series.items()} == expected
        assert [s["name"] for s in series["response"]] == ["p50", "p90", "p95", "p99", "max"]
        assert [s["name"] for s in series["errors"]] == kinds
        windows_with = {kind: len({row["window_start"] for row in errors if row["kind"] == kind}) for kind in kinds}
        assert [s["nonzero"] for s in series["errors"]] == [windows_with[kind] for kind in kinds] == [1, 2]

    def test_a_chart_without_data_is_absent(self, tab: Tab, tmp_path: Path) -> None:
        """Without --goodput, TTFT, token counts and errors there are no such charts (the tokens per second are all
        0 in the CSV: no chart of zeros)."""
        log = _write_log(tmp_path / "events.jsonl", [
            event(1, "s1", "session_registered", T0, username="u", course_numbers=[]),
            event(2, "s1", "question_asked", T0 + S),
            event(3, "s1", "question_answered", T0 + 2 * S, response_time_ms=50.0),
        ])
        replay([log], tmp_path / "out", interval_s=INTERVAL_S)
        names = visit(tab, tmp_path / "out" / HTML,
                      lambda page: page.evaluate("() => Object.keys(window.trackerCharts)")).result
        assert names == ["active", "rates", "response", "heatmap"]

    def test_header_figures_are_the_totals_cells(self, tab: Tab, run: Run) -> None:
        """Every header figure reads exactly as its cell of the totals file."""
        totals = run.csv("totals")
        assert len(totals) == 1
        figures = visit(tab, run.html, lambda page: page.eval_on_selector_all(
            ".figure", "nodes => nodes.map((n) => [n.dataset.column, n.querySelector('b').textContent])")).result
        assert figures is not None
        assert [column for column, _ in figures] == FIGURES
        assert dict(figures) == {column: totals[0][column] for column in FIGURES}
        assert dict(figures)["errors"] == "3"  # as the log has it

    def test_the_failing_threshold_is_shown(self, tab: Tab, run: Run) -> None:
        """One FAIL verdict, for the failing threshold on the run, with its value from the thresholds file."""
        verdicts = visit(tab, run.html, lambda page: page.eval_on_selector_all(
            "#verdicts .verdict", "nodes => nodes.map((n) => [n.className, n.dataset.ok, n.textContent])")).result
        rows = {(row["scope"], row["threshold"]): row for row in run.csv("thresholds")}
        failing, passing = rows["run", FAILING], rows["run", PASSING]
        assert failing["ok"] == "false"
        assert all(row["ok"] == "true" for key, row in rows.items() if key != ("run", FAILING))
        # every run verdict is shown; a window's only when it failed (none did)
        assert verdicts == [
            ["verdict fail", "false", f"FAIL {FAILING} [run] {failing['value']}"],
            ["verdict ok", "true", f"pass {PASSING} [run] {passing['value']}"],
        ]
        assert failing["value"] == "0.3333"

    def test_session_table_sorts_and_filters(self, tab: Tab, run: Run) -> None:
        """Clicking a header sorts by it (again: the other way), the filter and the errors box narrow the rows."""

        def use(page: Page) -> dict[str, Any]:
            seen: dict[str, Any] = {"initial": _session_ids(page)}
            page.click("#session-table th[data-key=errors]")
            seen["errors, highest first"] = _session_ids(page)
            page.click("#session-table th[data-key=errors]")
            seen["errors, lowest first"] = _session_ids(page)
            page.click("#session-table th[data-key=username]")
            seen["user"] = _session_ids(page)
            page.click("#session-table th[data-key=worst_p95_ms]")
            seen["p95 again"] = _session_ids(page)
            page.fill("#session-filter", "carol")
            seen["carol"] = _session_ids(page)
            page.fill("#session-filter", "ACTIVE")
            seen["active"] = _session_ids(page)
            page.fill("#session-filter", "")
            page.check("#session-errors")
            seen["with errors"] = _session_ids(page)
            seen["note"] = page.text_content("#session-note")
            page.fill("#session-filter", "bob")
            seen["bob with errors"] = _session_ids(page)
            page.uncheck("#session-errors")
            page.fill("#session-filter", "")
            seen["all again"] = _session_ids(page)
            return seen

        # s1 alice: 3 asked, 0 errors, worst p95 900, ended; s2 bob: 1 error, 1200; s3 carol: 2 errors, no answer;
        # s4 dave: 0 errors, 2000. The tie-break is the session id; a session without a value comes last.
        seen = visit(tab, run.html, use).result
        assert seen == {
            "initial": ["s4", "s2", "s1", "s3"],  # worst p95 first
            "errors, highest first": ["s3", "s2", "s1", "s4"],
            "errors, lowest first": ["s1", "s4", "s2", "s3"],
            "user": ["s1", "s2", "s3", "s4"],  # alice, bob, carol, dave: text sorts ascending first
            "p95 again": ["s4", "s2", "s1", "s3"],
            "carol": ["s3"],
            "active": ["s4", "s2", "s3"],  # the status, in any case
            "with errors": ["s2", "s3"],
            "note": "2 of 2 shown (of 4), sorted by worst window p95 ms, highest first",
            "bob with errors": ["s2"],
            "all again": ["s4", "s2", "s1", "s3"],
        }
        erroring = {row["session_id"] for row in run.window_rows() if int(row["errors_total"]) > 0}
        assert erroring == set(seen["with errors"])

    def test_session_rows_are_the_csv_figures(self, tab: Tab, run: Run) -> None:
        """A session's row: its totals at its last window, its worst window p95s as the CSV cells, its status."""

        def worst(rows: list[dict[str, str]], column: str) -> str:
            cells = [row[column] for row in rows if row[column] != ""]
            return max(cells, key=float) if cells else "-"

        expected = []
        for session in sorted({row["session_id"] for row in run.window_rows()}):
            rows = [row for row in run.window_rows() if row["session_id"] == session]
            last = rows[-1]
            expected.append([session, last["username"], last["questions_asked_total"],
                             last["questions_answered_total"], last["errors_total"],
                             worst(rows, "response_time_ms_p95"), worst(rows, "ttft_ms_p95"), last["status"]])
        cells = visit(tab, run.html, lambda page: page.eval_on_selector_all(
            "#session-table tr:has(td)", "rows => rows.map((r) => [...r.cells].map((c) => c.textContent))")).result
        assert cells is not None
        assert sorted(cells) == expected
        assert expected[0] == ["s1", "alice", "3", "3", "0", "900.000", "150.000", "ended"]
        assert expected[2][5:7] == ["-", "-"]  # carol had no answer

    def test_heatmap_measure_switch(self, tab: Tab, run: Run) -> None:
        """The measure select redraws the heatmap: the sessions with the most answers, then with the worst p95."""

        def use(page: Page) -> dict[str, Any]:
            seen: dict[str, Any] = {"answers": _heatmap_sessions(page)}
            page.select_option("#heatmap-measure", "p95")
            seen["p95"] = _heatmap_sessions(page)
            seen["p95 cells"] = _series(page)["heatmap"][0]["points"]
            seen["note"] = page.text_content("#heatmap-note")
            page.select_option("#heatmap-measure", "answers")
            seen["answers again"] = _heatmap_sessions(page)
            return seen

        rows = run.window_rows()
        seen = visit(tab, run.html, use).result
        assert seen is not None
        # answers: s1 3, s2 2, s4 1, s3 0; worst p95: s4 2000, s2 1200, s1 900, s3 none (left out)
        assert seen["answers"] == seen["answers again"] == ["s1", "s2", "s4", "s3"]
        assert seen["p95"] == ["s4", "s2", "s1"]
        assert seen["p95 cells"] == sum(1 for row in rows if row["response_time_ms_p95"] != "") == 6
        assert seen["note"] == "the 3 sessions with the worst p95"

    def test_heatmap_tooltip_names_the_window(self, tab: Tab, run: Run) -> None:
        """A heatmap cell's tooltip gives its session and its window's start time."""

        texts = "() => [...document.querySelectorAll('#heatmap div')].map((d) => d.innerText.trim()).filter(Boolean)"

        def tip(page: Page) -> Any:
            page.evaluate("() => window.trackerCharts.heatmap.dispatchAction("
                          "{ type: 'showTip', seriesIndex: 0, dataIndex: 5 })")
            page.wait_for_function(f"() => ({texts})().length > 0", timeout=5_000)
            return page.evaluate(texts)

        # the cells are the per-window rows in order: the 6th is s2's in the second window, 1 answer
        row = run.window_rows()[5]
        cell = [row[c] for c in ("session_id", "window_start", "questions_answered")]
        assert cell == ["s2", "2026-11-24T22:01:00Z", "1"]
        assert visit(tab, run.html, tip).result == ["s2\n2026-11-24T22:01:00.000Z: 1"]

    @pytest.mark.parametrize("hostile", [HOSTILE, "<!--<script>", "</script><script>document.body.dataset.pwned=1"
                                         "</script>"])
    def test_data_is_shown_as_text_never_as_html(self, tab: Tab, tmp_path: Path, hostile: str) -> None:
        """Session ids, users, error kinds and messages that look like HTML run nothing (tooltips included), and
        cannot end the data block or make the parser swallow the scripts after it (``<!--<script>``)."""
        log = _write_log(tmp_path / "events.jsonl", [
            event(1, hostile, "session_registered", T0, username=hostile, course_numbers=[]),
            event(2, hostile, "question_asked", T0 + S),
            event(3, hostile, "question_answered", T0 + 2 * S, response_time_ms=50.0),
            event(4, hostile, "question_asked", T0 + 3 * S),
            event(5, hostile, "error", T0 + 4 * S, error=hostile, kind=hostile),
        ])
        replay([log], tmp_path / "out", interval_s=INTERVAL_S)

        def hover(page: Page) -> Any:
            for chart in ("heatmap", "errors", "rates"):
                page.evaluate(f"() => window.trackerCharts.{chart}.dispatchAction("
                              "{ type: 'showTip', seriesIndex: 0, dataIndex: 0 })")
                page.wait_for_timeout(50)
            return page.evaluate("""() => ({
                pwned: document.body.dataset.pwned ?? null,
                images: document.querySelectorAll("img").length,
                session: document.querySelector("#session-table td.session_id").textContent,
                message: document.querySelector("#error-table td:nth-child(3)").textContent,
            })""")

        assert visit(tab, tmp_path / "out" / HTML, hover).result == {
            "pwned": None, "images": 0, "session": hostile, "message": hostile}


class TestLiveAndRewritten:
    """The page a live tail writes, the one it leaves, and ``tracker report``'s: the same bytes as replay's."""

    def test_live_page_reloads_until_the_tail_closes(self, tab: Tab, run: Run, tmp_path: Path) -> None:
        """While the tail runs the page reloads itself and says so; closed, it is replay's page byte for byte."""

        def live(page: Page) -> tuple[list[str | None], int]:
            refresh = page.eval_on_selector_all('meta[http-equiv="refresh"]', "nodes => nodes.map((n) => n.content)")
            return refresh, page.locator("#live").count()

        out = tmp_path / "tailed"
        tail = Tail([run.log], out, interval_s=INTERVAL_S, goodput=GOODPUT, thresholds=_thresholds())
        try:
            assert tail.step(now=0)
            assert b'<meta http-equiv="refresh" content="60">' in (out / HTML).read_bytes()  # the interval, <= 60 s
            assert visit(tab, out / HTML, live).result == (["60"], 1)
            tail.close()
        finally:
            tail.release()
        assert visit(tab, out / HTML, live).result == ([], 0)
        assert (out / HTML).read_bytes() == run.html.read_bytes()

    def test_report_command_rewrites_the_same_page(self, run: Run, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
        """``tracker report OUT_DIR`` writes the page from the CSV files: the bytes replay wrote."""
        folder = shutil.copytree(run.out, tmp_path / "copy")
        (folder / HTML).unlink()
        assert main("report", str(folder)) == 0
        assert (folder / HTML).read_bytes() == run.html.read_bytes()
        assert str(folder / HTML) in capsys.readouterr().out

    def test_report_command_needs_reports(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """On a folder without reports ``tracker report`` exits 2, says why and writes nothing."""
        (tmp_path / "empty").mkdir()
        assert main("report", str(tmp_path / "empty")) == 2
        err = capsys.readouterr().err
        assert err.startswith("tracker report: error: ")
        assert "holds no tracker reports" in err
        assert list((tmp_path / "empty").iterdir()) == []


class TestSelfContained:
    """The page is small and names no place to fetch anything from."""

    def test_small(self, run: Run) -> None:
        """A small run's page stays under 1.5 MB (ECharts is most of it)."""
        assert run.html.stat().st_size < 1_500_000

    def test_no_url_but_in_the_inlined_echarts(self, run: Run) -> None:
        """Outside the inlined ECharts no URL, src, href or url(); inside it only namespaces and licence links."""
        text = run.html.read_text(encoding="utf-8")
        echarts = (STATIC / "echarts.min.js").read_text(encoding="utf-8")
        assert text.count(echarts) == 1
        rest = text.replace(echarts, "")
        assert re.findall(r"https?://\S+", rest) == []
        assert re.findall(r"(?i)\b(?:src|href|srcset|action)\s*=", rest) == []
        assert re.findall(r"(?i)url\(|@import", rest) == []
        assert set(re.findall(r"https?://[^\s\"'<>)\\]+", echarts)) <= ECHARTS_URLS


class TestBuilding:
    """How the page is built from the files: a fold a file at a time, and damaged files said, never a traceback."""

    def test_a_kept_fold_gives_the_page_of_a_fresh_build(self, tmp_path: Path) -> None:
        """One builder used across replays of a growing log (files added, and files rewritten by a late event)
        gives the bytes a new builder gives each time."""
        events = _events()
        builder = HtmlReport()
        for cut in (len(events) // 3, 2 * len(events) // 3, len(events)):
            out = _replay(_write_log(tmp_path / "events.jsonl", events[:cut]), tmp_path / "out")
            assert builder.render(out) == HtmlReport().render(out)
        late = event(999, "s1", "question_answered", T0 + 5 * 1_000_000, response_time_ms=12_345.0)
        out = _replay(_write_log(tmp_path / "events.jsonl", [*events, late]), tmp_path / "out")
        page = builder.render(out)
        assert page == HtmlReport().render(out)
        assert b"12345.0" in page  # the late answer is the worst p95 of its session's first window

    @pytest.mark.parametrize(("name", "old", "new"), [
        ("session_tracking_report_20261124_220100.csv", ",0\n", ",0x\n"),  # errors_total: not a number
        ("session_tracking_summary.csv", "2026-11-24T22:00:00Z", "2026-11-24T22:00:00.000Z"),
        ("session_tracking_errors.csv", ",1,1,", ",x,1,"),
    ])
    def test_a_file_changed_by_hand_is_an_error_naming_it(self, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          name: str, old: str, new: str) -> None:
        """tracker report on a folder with a file edited into something tracker does not write: exit 2 and a
        message, no traceback, the old page left as it was."""
        out = _replay(_write_log(tmp_path / "events.jsonl", _events()), tmp_path / "out")
        page = (out / HTML).read_bytes()
        text = (out / name).read_text()
        assert old in text
        (out / name).write_text(text.replace(old, new, 1))
        assert main("report", str(out)) == 2
        err = capsys.readouterr().err
        assert err.startswith("tracker report: error: ")
        assert "HTML report" in err
        assert (out / HTML).read_bytes() == page

    def test_a_tail_goes_on_when_a_file_is_changed_by_hand(self, tmp_path: Path) -> None:
        """A per-window file edited by hand while the tail runs: the page is not written (a warning names the file),
        the tail stops cleanly, and ``tracker report`` writes the page once the file is whole again."""
        log = _write_log(tmp_path / "events.jsonl", _events())
        out = tmp_path / "out"
        tail = Tail([log], out, interval_s=INTERVAL_S, grace_s=0)
        tail.step(now=0)
        window = sorted(out.glob("session_tracking_report_2*.csv"))[0]
        good = window.read_bytes()
        window.write_bytes(good.replace(b"Z,", b".000Z,", 1))
        with log.open("ab") as stream:
            stream.write(orjson.dumps(event(998, "s9", "question_asked", T0 + 3600 * 1_000_000).to_record()) + b"\n")
        final = tail.close()
        assert final is not None
        assert [p.name for p in final.failed] == [HTML]
        assert any("HTML report" in w and window.name in w for w in tail.warnings)
        window.write_bytes(good)
        assert main("report", str(out)) == 0
        assert (out / HTML).read_bytes() == HtmlReport().render(out)
