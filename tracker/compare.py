"""``tracker compare``: two runs' report folders side by side, an HTML page of both, and gates on the change.

Run A is the baseline, run B the run compared with it. Each is a folder that
``tracker replay`` or ``tracker tail`` wrote; only its totals and summary files
are read (:func:`read_run`), every cell as the file writes it, so the figures
shown are the reports' own, never computed a second way.

The table (:func:`table_lines`) has a row per whole-run figure, named by its
totals column, with A's and B's cells as written and the change from A to B:

- ``(B - A) / A * 100`` with its sign and one decimal, rounded half up:
  ``+12.3%``, ``-4.0%``; ``0.0%`` when the two are equal (both 0 included).
  A change that rounds to nothing keeps its direction: ``+0.0%``, ``-0.0%``.
- ``new`` when A is 0 and B is not (no percent of nothing: e.g. errors where
  the baseline had none).
- ``-`` when either cell is empty (no answers, no TTFT, the run replayed
  without ``--goodput``).

The rows: questions_per_s, answers_per_s, errors_per_s, error_rate,
response_time_ms p50/p90/p95/p99/max, ttft_ms p50/p95/p99 (when either run has
a TTFT), tpot_ms_p95, output_tokens_per_s, goodput_ratio (when either run's
totals have the column), duration_s and sessions.

A gate (:func:`parse_gate`, ``--fail-if``) is ``COLUMN>+N%`` / ``COLUMN<-N%``
(the change in percent above or below N: ``response_time_ms_p95>+10%``,
``answers_per_s<-5%``) or ``COLUMN>+N`` / ``COLUMN<-N`` without ``%`` (the
difference B - A: ``error_rate>+0.01``). N must carry its sign, so that the
direction is never guessed; COLUMN is any number column of the totals. The
gate fails when its condition holds. It is computed exactly, in decimal, on
the cells as written (``0.110`` over ``0.100`` is exactly +10%, which
``>+10%`` lets pass). A gate that cannot be evaluated fails, saying why: an
empty cell (or a column the run's totals lack) in either run, or a change in
percent from A = 0 to a B that is not 0. Equal values are no change, also when
both are 0.

The page (:func:`compare_html`) draws both runs' curves on one chart per
measure, the x axis in seconds since each run's start so that the runs align:
a window's point is at the start of the part of it the run covered (the first
window's at 0).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Final

from .errors import TrackerError
from .logs import new_file_problem
from .output import MANIFEST_FILE, SUMMARY_FILE, TOTALS_FILE
from .page import page
from .tables import GOODPUT_SCHEMA, TOTALS_SCHEMA

__all__ = ("CHARTS", "DEFAULT_HTML", "FIGURES", "GATE_COLUMNS", "CompareError", "Gate", "GateVerdict", "Run",
           "change_text", "check_html", "compare_data", "compare_html", "evaluate", "evaluate_all", "figure_rows",
           "gate_lines", "parse_gate", "read_run", "table_lines")

#: Where the page goes unless --html says otherwise (in the current folder).
DEFAULT_HTML: Final = "compare.html"
_TIMES: Final = ("run_start", "run_end", "window_start", "window_end")
#: The totals' number columns a gate may name (the goodput ones too: a run replayed without --goodput lacks them).
GATE_COLUMNS: Final = tuple(c for c in (*TOTALS_SCHEMA, *GOODPUT_SCHEMA) if c not in _TIMES)
_TTFT: Final = ("ttft_ms_p50", "ttft_ms_p95", "ttft_ms_p99")
#: The table's rows, in order (the TTFT ones and goodput_ratio only when a run has them).
FIGURES: Final = ("questions_per_s", "answers_per_s", "errors_per_s", "error_rate",
                  *(f"response_time_ms_{s}" for s in ("p50", "p90", "p95", "p99", "max")), *_TTFT,
                  "tpot_ms_p95", "output_tokens_per_s", "goodput_ratio", "duration_s", "sessions")
_TOTALS_NEEDED: Final = ("run_start", "run_end", "sessions", "duration_s", "questions_per_s", "answers_per_s",
                         "errors_per_s", "error_rate", *(f"response_time_ms_{s}" for s in ("p50", "p90", "p95",
                                                                                            "p99", "max")))
#: The measures charted, by summary column: title and unit (ttft_ms_p95 only when a run has a TTFT).
CHARTS: Final = {
    "answers_per_s": ("Answers per second", "per s"),
    "response_time_ms_p95": ("Response time p95 per window", "ms"),
    "error_rate": ("Error rate per window", "ratio"),
    "ttft_ms_p95": ("Time to first token p95 per window", "ms"),
    "active_sessions": ("Active sessions", "sessions"),
}
_SUMMARY_NEEDED: Final = ("window_start", "active_sessions", "answers_per_s", "response_time_ms_p95", "error_rate")
_GATE: Final = re.compile(r"\s*(?P<column>[^\s<>=!%]+)\s*(?P<op>[<>=!]+)\s*(?P<number>[^\s%]*)\s*(?P<pct>%?)\s*")
_NUMBER: Final = re.compile(r"[+-](?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # ASCII digits, signed
_FORM: Final = ("expected COLUMN>+N% or COLUMN<-N% (the change from A to B in percent) or COLUMN>+N or COLUMN<-N "
                "(the difference B - A), e.g. 'answers_per_s<-5%', 'error_rate>+0.01'")
_ONE_DECIMAL: Final = Decimal("0.1")
_REPORT_PREFIX: Final = "session_tracking_"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class CompareError(TrackerError, ValueError):
    """Raised when a run folder cannot be read, a gate is malformed or the --html file is refused (exit 2)."""


@dataclass(frozen=True, slots=True)
class Run:
    """One run's reports as written: its totals row and its summary rows (column to cell text, '' when empty)."""

    folder: str  # as given on the command line
    name: str  # the folder's own name, for the legend
    totals: dict[str, str]
    windows: tuple[dict[str, str], ...]

    def cell(self, column: str) -> str:
        """The totals cell as written ('' when empty or when the totals have no such column)."""
        return self.totals.get(column, "")

    def value(self, column: str) -> Decimal | None:
        """The totals cell as an exact number (None when empty or missing)."""
        text = self.cell(column)
        return Decimal(text) if text else None


def _number(text: str) -> Decimal | None:
    """A number cell as written, or None when it is not one (also NaN and infinity)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _us(iso: str) -> int:
    """An ISO-8601 UTC time as the files write it, in epoch microseconds (ValueError when it is not one)."""
    moment = datetime.fromisoformat(iso)
    if moment.utcoffset() is None:
        raise ValueError(f"{iso!r} has no UTC offset")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _damaged(folder: str, name: str, why: str) -> CompareError:
    return CompareError(f"run folder {folder!r}: {name} is damaged ({why}); regenerate it with tracker replay")


def _read_csv(folder: str, path: Path, needed: Sequence[str]) -> list[dict[str, str]]:
    """A report CSV's rows (column to cell text), checked: the columns ``needed`` are there, every row has as many
    cells as the header, every number cell is empty or a finite number and every time cell an ISO time."""
    name = path.name
    if not path.is_file():
        raise CompareError(f"run folder {folder!r} has no {name}: give a folder that tracker replay or tracker tail "
                           "wrote")
    try:
        with path.open(encoding="utf-8", newline="") as stream:
            rows = list(csv.reader(stream, strict=True))
    except OSError as exc:
        raise CompareError(f"run folder {folder!r}: cannot read {name}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise _damaged(folder, name, str(exc)) from exc
    if not rows:
        raise _damaged(folder, name, "it is empty")
    header, *body = rows
    missing = [c for c in needed if c not in header]
    if missing:
        raise _damaged(folder, name, f"no column {', '.join(missing)}")
    numbers = {*GATE_COLUMNS, "seconds", "active_sessions", "active_at_end"}
    records = []
    for line, row in enumerate(body, 2):
        if len(row) != len(header):
            raise _damaged(folder, name, f"line {line} has {len(row)} cells, the header {len(header)}")
        record = dict(zip(header, row, strict=True))
        for column, text in record.items():
            if not text or (column not in numbers and column not in _TIMES):
                continue
            if column in _TIMES:
                try:
                    _us(text)
                except ValueError:
                    raise _damaged(folder, name, f"line {line}: {column} {text!r} is not an ISO time") from None
            elif _number(text) is None:
                raise _damaged(folder, name, f"line {line}: {column} {text!r} is not a number")
        records.append(record)
    return records


def read_run(folder: str | os.PathLike[str]) -> Run:
    """The run folder's totals and summary (CompareError naming the folder when it or a file is missing or
    damaged)."""
    label = os.fspath(folder)
    path = Path(folder)
    if not path.is_dir():
        raise CompareError(f"run folder {label!r} " + ("is not a folder" if path.exists() else "does not exist"))
    totals = _read_csv(label, path / TOTALS_FILE, _TOTALS_NEEDED)
    if len(totals) != 1:
        raise _damaged(label, TOTALS_FILE, f"{len(totals)} rows instead of 1")
    windows = _read_csv(label, path / SUMMARY_FILE, _SUMMARY_NEEDED)
    if any(not w["window_start"] for w in windows):
        raise _damaged(label, SUMMARY_FILE, "a window without window_start")
    return Run(label, Path(os.path.realpath(path)).name or label, totals[0], tuple(windows))


def change_text(a: Decimal | None, b: Decimal | None) -> str:
    """The change from ``a`` to ``b`` as the table shows it (see the module's docstring)."""
    if a is None or b is None:
        return "-"
    if a == b:
        return "0.0%"
    if a == 0:
        return "new"
    change = (b - a) / a * 100
    return f"{'+' if change > 0 else '-'}{abs(change).quantize(_ONE_DECIMAL, ROUND_HALF_UP):.1f}%"


def _figures(a: Run, b: Run) -> list[str]:
    """The table's rows for these runs."""
    ttft = any(run.cell(c) for run in (a, b) for c in _TTFT)
    goodput = any("goodput_ratio" in run.totals for run in (a, b))
    return [f for f in FIGURES if (f not in _TTFT or ttft) and (f != "goodput_ratio" or goodput)]


def figure_rows(a: Run, b: Run) -> list[tuple[str, str, str, str]]:
    """The table's rows: figure, A's cell, B's cell (``-`` when empty) and the change."""
    return [(f, a.cell(f) or "-", b.cell(f) or "-", change_text(a.value(f), b.value(f))) for f in _figures(a, b)]


def _span(run: Run) -> str:
    start, end = run.cell("run_start"), run.cell("run_end")
    windows = f"{len(run.windows)} window{'s' if len(run.windows) != 1 else ''}"
    return f"{start} to {end}, {windows}" if start and end else f"no events, {windows}"


def table_lines(a: Run, b: Run) -> list[str]:
    """The runs, then the figures side by side: ``figure  A  B  change``, aligned."""
    rows = [("figure", "A", "B", "change"), *figure_rows(a, b)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return [f"A: {a.folder}: {_span(a)}", f"B: {b.folder}: {_span(b)}",
            *(f"{f:<{widths[0]}}  {x:>{widths[1]}}  {y:>{widths[2]}}  {c:>{widths[3]}}" for f, x, y, c in rows)]


@dataclass(frozen=True, slots=True)
class Gate:
    """``column op limit``: fails when the change (in percent when ``relative``, else B - A) is above (``>``) or
    below (``<``) the signed ``limit``; ``text`` is canonical."""

    column: str
    op: str
    limit: Decimal
    relative: bool
    text: str


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """A gate's verdict: whether it passed, and what it saw (or why it could not be evaluated)."""

    gate: Gate
    ok: bool
    detail: str


def parse_gate(text: str) -> Gate:
    """The gate ``text`` names (CompareError, quoting it, when it is malformed or names an unknown column)."""
    match = _GATE.fullmatch(text)
    if match is None:
        raise CompareError(f"--fail-if {text!r} is malformed; {_FORM}")
    column, op, number, pct = match.group("column", "op", "number", "pct")
    fault = (f"unknown operator {op!r}" if op not in (">", "<")
             else "N is missing" if not number
             else f"N {number!r} needs its sign, +{number} or -{number}" if _NUMBER.fullmatch(f"+{number}")
             else f"N {number!r} is not a number" if not _NUMBER.fullmatch(number)
             else None)
    if fault is not None:
        raise CompareError(f"--fail-if {text!r}: {fault}; {_FORM}")
    if column not in GATE_COLUMNS:
        raise CompareError(f"--fail-if {text!r} names an unknown column {column!r}; the totals' number columns are: "
                           f"{', '.join(GATE_COLUMNS)}")
    return Gate(column, op, Decimal(number), bool(pct), f"{column}{op}{number}{pct}")


def _missing(run: Run, label: str, column: str) -> str:
    if column not in run.totals:
        hint = " (replayed without --goodput)" if column in GOODPUT_SCHEMA else ""
        return f"{label}'s totals have no column {column}{hint}"
    return f"{label}'s {column} is empty"


def evaluate(gate: Gate, a: Run, b: Run) -> GateVerdict:
    """The gate's verdict on the runs' totals, computed exactly on the cells as written."""
    x, y = a.value(gate.column), b.value(gate.column)
    if x is None or y is None:
        why = _missing(a, "A", gate.column) if x is None else _missing(b, "B", gate.column)
        return GateVerdict(gate, False, f"cannot be evaluated: {why}")
    seen = f"(A {a.cell(gate.column)}, B {b.cell(gate.column)})"
    if gate.relative:
        if x == 0 and y != 0:
            return GateVerdict(gate, False, f"cannot be evaluated: A is 0, so a change in percent has no meaning "
                                            f"{seen}; gate on the difference instead, e.g. {gate.column}>+N")
        change = Decimal(0) if x == y else (y - x) / x * 100
        shown = f"change {change_text(x, y)} {seen}"
    else:
        change = y - x
        shown = f"B - A {change:+f} {seen}"
    failed = change > gate.limit if gate.op == ">" else change < gate.limit
    return GateVerdict(gate, not failed, shown)


def evaluate_all(gates: Iterable[Gate], a: Run, b: Run) -> list[GateVerdict]:
    """Each gate's verdict, a gate given twice once, in the order given."""
    return [evaluate(gate, a, b) for gate in dict.fromkeys(gates)]


def gate_lines(verdicts: Sequence[GateVerdict]) -> list[str]:
    """A count of failed gates, then a line per gate: ``ok`` or ``FAIL``, the gate, what it saw."""
    if not verdicts:
        return []
    width = max(len(v.gate.text) for v in verdicts)
    failures = sum(not v.ok for v in verdicts)
    n = len(verdicts)
    return [f"gates: {f'{failures} of {n} failed' if failures else f'all {n} passed'}",
            *(f"  {'ok' if v.ok else 'FAIL':<4}  {v.gate.text:<{width}}  {v.detail}" for v in verdicts)]


def check_html(html: str | os.PathLike[str]) -> Path:
    """The --html file, refused (CompareError) when it cannot be written (:func:`tracker.logs.new_file_problem`),
    is named like a log (``*.jsonl``) or like a file of any reports folder: before anything is read."""
    label = os.fspath(html)
    target = Path(os.path.realpath(html))
    problem = new_file_problem(target)
    if problem is not None:
        raise CompareError(f"--html {label!r}{':' if problem.startswith('the folder') else ''} {problem}")
    if target.name.endswith(".jsonl"):
        raise CompareError(f"--html {label!r} is named like a log (*.jsonl): give the page another name")
    if target.name.startswith(_REPORT_PREFIX) or target.name == MANIFEST_FILE:
        raise CompareError(f"--html {label!r} is named like a file of a reports folder: give it another name")
    return target


def _series(run: Run) -> dict[str, object]:
    """A run's windows for the charts: seconds since its start, and each charted column (None when empty)."""
    starts = [_us(w["window_start"]) for w in run.windows]
    origin = _us(run.cell("run_start")) if run.cell("run_start") else (starts[0] if starts else 0)
    return {
        "x": [max(0, start - origin) / 1_000_000 for start in starts],
        "window_start": [w["window_start"] for w in run.windows],
        "series": {c: [float(w[c]) if w.get(c) else None for w in run.windows] for c in CHARTS},
    }


def compare_data(a: Run, b: Run, verdicts: Sequence[GateVerdict] = ()) -> dict[str, object]:
    """What the page shows: both runs' windows, the measures charted, the figures table and the gates."""
    ttft = any(w.get("ttft_ms_p95") for run in (a, b) for w in run.windows)
    return {
        "runs": [{"label": label, "name": run.name, "folder": run.folder, "run_start": run.cell("run_start"),
                  "run_end": run.cell("run_end"), "duration_s": run.cell("duration_s"), **_series(run)}
                 for label, run in (("A", a), ("B", b))],
        "charts": [[c, title, unit] for c, (title, unit) in CHARTS.items() if c != "ttft_ms_p95" or ttft],
        "figures": [list(row) for row in figure_rows(a, b)],
        "gates": [[v.gate.text, v.ok, v.detail] for v in verdicts],
    }


def compare_html(a: Run, b: Run, verdicts: Sequence[GateVerdict] = ()) -> bytes:
    """The self-contained comparison page."""
    return page(f"tracker compare: {a.name} vs {b.name}", compare_data(a, b, verdicts), "compare.js")
