"""Thresholds: pass/fail gates on the report figures, for a CI job to fail a run on.

A threshold is ``[run:|window:]COLUMN OP NUMBER`` with OP one of ``<``, ``<=``, ``>``, ``>=``, e.g.
``ttft_ms_p95<500``. It is checked on every window that has a value for COLUMN and on the whole run; ``run:``
checks only the run, ``window:`` only the windows. A column the run's row lacks is checked on the windows only (one
only the run's row has, on the run only). The value compared is the value as the report files write it: integers
exact, floats rounded to the CSV's decimals. A window without a value is skipped; a whole run without one fails, and so
does a threshold on the windows alone when no window had a value (scope ``windows``): a gate that cannot be checked
must not pass.
"""

from __future__ import annotations

import math
import operator
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, cast

import polars as pl

from .errors import ThresholdError
from .events import format_ts
from .tables import FOUR_DECIMALS, GOODPUT_COLUMNS

__all__ = ("NO_WINDOW", "OPS", "Threshold", "Verdict", "evaluate", "failed", "junit_xml", "parse_threshold",
           "report_lines", "shown", "verdicts_frame")

Columns = Mapping[str, pl.DataType | type[pl.DataType]]
Scope = Literal["all", "run", "window"]
OPS: Final[Mapping[str, Callable[[float, float], bool]]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
#: The decimals a float column is written with, as tracker.render.csv_bytes writes it (4 for these, else 3).
_DECIMALS: Final = dict.fromkeys(FOUR_DECIMALS, 4)
_FLOAT_DECIMALS: Final = 3
_TIMES: Final = frozenset({"window_start", "window_end", "run_start", "run_end"})
_GOODPUT: Final = tuple(GOODPUT_COLUMNS)
_FORM: Final = "expected [run:|window:]COLUMN OP NUMBER with OP one of <, <=, >, >= (e.g. 'ttft_ms_p95<500')"
_EXPR: Final = re.compile(
    r"\s*(?:(?P<prefix>[^\s:<>=!]+)\s*:)?\s*(?P<column>[^\s:<>=!]+)\s*(?P<op>[<>=!]+)\s*(?P<number>\S*)\s*")
_NUMBER: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # ASCII digits only
#: The scope of the verdict of a threshold on the windows alone when no window had a value.
NO_WINDOW: Final = "windows"


def _written(column: str, value: float | None) -> float | None:
    """``value`` as the report files write it: an integer as it is, a float rounded to the column's decimals."""
    if value is None or isinstance(value, int) or not math.isfinite(value):
        return value
    return float(f"{value:.{_DECIMALS.get(column, _FLOAT_DECIMALS)}f}")


def _text(column: str, value: float | None) -> str | None:
    """``value`` as the report files write it, as text (None when there is none)."""
    if value is None or isinstance(value, int):
        return None if value is None else str(value)
    return "NaN" if math.isnan(value) else f"{value:.{_DECIMALS.get(column, _FLOAT_DECIMALS)}f}"


@dataclass(frozen=True)
class Threshold:
    """One gate, ``column op limit``, on the windows and the run (``all``) or one of them; ``text`` is canonical."""

    column: str
    op: str
    limit: float
    scope: Scope
    text: str

    def passes(self, value: float | None) -> bool:
        """Whether ``value``, as the report files write it, satisfies the threshold (never when it is None)."""
        written = _written(self.column, value)
        return written is not None and OPS[self.op](written, self.limit)


@dataclass(frozen=True)
class Verdict:
    """A threshold's outcome on one window (``scope`` its start, ISO-8601) or on the whole run (``scope`` ``run``)."""

    threshold: Threshold
    scope: str
    window_start: int | None
    value: float | int | None
    ok: bool


def _numeric(columns: Columns) -> list[str]:
    return [c for c, dtype in columns.items() if c not in _TIMES and dtype.is_numeric()]


def _targets(threshold: Threshold, summary: Columns, totals: Columns) -> tuple[bool, bool]:
    """Whether ``threshold`` is checked on the windows and on the run; ThresholdError when it cannot be checked."""
    windows, run = _numeric(summary), _numeric(totals)
    t, column = threshold, threshold.column
    if column not in windows and column not in run:
        valid = ", ".join([*windows, *(c for c in run if c not in windows)])
        hint = f"; {column!r} is only reported with --goodput" if column in _GOODPUT else ""
        raise ThresholdError(f"threshold {t.text!r} names an unknown column {column!r}; the reports' numeric "
                             f"columns are: {valid}{hint}")
    if t.scope == "run" and column not in run:
        raise ThresholdError(f"threshold {t.text!r}: the whole-run row has no column {column!r} (it is a window's "
                             f"figure); the whole-run row has: {', '.join(run)}")
    if t.scope == "window" and column not in windows:
        raise ThresholdError(f"threshold {t.text!r}: the windows have no column {column!r} (it is a whole-run "
                             f"figure); the windows have: {', '.join(windows)}")
    return t.scope != "run" and column in windows, t.scope != "window" and column in run


def parse_threshold(text: str, summary_columns: Columns, totals_columns: Columns) -> Threshold:
    """The threshold ``text`` names, checked against the reports' schemas; ThresholdError when it is wrong."""
    match = _EXPR.fullmatch(text)
    if match is None:
        raise ThresholdError(f"threshold {text!r} is malformed; {_FORM}")
    prefix, column, op, number = match.group("prefix", "column", "op", "number")
    fault = (f"unknown prefix {prefix!r}" if prefix not in (None, "run", "window")
             else f"unknown operator {op!r}" if op not in OPS
             else "NUMBER is missing" if not number
             else f"NUMBER {number!r} is not a finite number"
             if not _NUMBER.fullmatch(number) or not math.isfinite(float(number)) else None)
    if fault is not None:
        raise ThresholdError(f"threshold {text!r}: {fault}; {_FORM}")
    scope = cast(Scope, prefix or "all")
    canonical = f"{prefix + ':' if prefix else ''}{column}{op}{number}"
    threshold = Threshold(column, op, float(number), scope, canonical)
    _targets(threshold, summary_columns, totals_columns)
    return threshold


def _unique(thresholds: Iterable[Threshold]) -> list[Threshold]:
    return list(dict.fromkeys(thresholds))


def _window_verdicts(threshold: Threshold, summary: pl.DataFrame) -> list[Verdict]:
    rows = summary.select("window_start", threshold.column).drop_nulls(threshold.column).sort("window_start")
    return [Verdict(threshold, format_ts(start), start, _written(threshold.column, value), threshold.passes(value))
            for start, value in rows.iter_rows()]


def evaluate(thresholds: Iterable[Threshold], summary: pl.DataFrame, totals: pl.DataFrame) -> list[Verdict]:
    """Each threshold's verdicts (duplicates once, in the order given): its windows in time order, then the run."""
    verdicts: list[Verdict] = []
    for threshold in _unique(thresholds):
        on_windows, on_run = _targets(threshold, summary.schema, totals.schema)
        if on_windows:
            own = _window_verdicts(threshold, summary)
            if not own and not on_run:  # nothing checked it: it fails
                own = [Verdict(threshold, NO_WINDOW, None, None, False)]
            verdicts += own
        if on_run:
            value = totals[threshold.column][0] if totals.height else None
            verdicts.append(Verdict(threshold, "run", None, _written(threshold.column, value),
                                    threshold.passes(value)))
    return verdicts


def shown(verdict: Verdict) -> str:
    """A verdict's value as the report files write it (``no value`` when it has none)."""
    return _text(verdict.threshold.column, verdict.value) or "no value"


def failed(verdicts: Iterable[Verdict]) -> bool:
    """Whether any verdict failed."""
    return any(not v.ok for v in verdicts)


def verdicts_frame(verdicts: Iterable[Verdict]) -> pl.DataFrame:
    """The verdicts as a table (scope, threshold, value as the reports write it, ok as true/false), all text."""
    rows = [(v.scope, v.threshold.text, _text(v.threshold.column, v.value), "true" if v.ok else "false")
            for v in verdicts]
    return pl.DataFrame(rows, schema=dict.fromkeys(("scope", "threshold", "value", "ok"), pl.String), orient="row")


def _grouped(verdicts: Iterable[Verdict], thresholds: Iterable[Threshold]) -> dict[Threshold, list[Verdict]]:
    """Each threshold (in the order given, then any other the verdicts name) with its verdicts."""
    verdicts = list(verdicts)
    groups: dict[Threshold, list[Verdict]] = {t: [] for t in _unique([*thresholds, *(v.threshold for v in verdicts)])}
    for verdict in verdicts:
        groups[verdict.threshold].append(verdict)
    return groups


def _failure(verdict: Verdict) -> str:
    t = verdict.threshold
    if verdict.scope == NO_WINDOW:
        return f"no window has a value for {t.column}: {t.text} cannot be checked, so it fails"
    if verdict.value is None:
        return f"the whole run has no value for {t.column}: {t.text} cannot be checked, so it fails"
    return f"value {_text(t.column, verdict.value)} does not satisfy {t.text}"


def junit_xml(verdicts: Iterable[Verdict], thresholds: Iterable[Threshold]) -> bytes:
    """The verdicts as a JUnit XML report: a testcase per verdict."""
    cases: list[ET.Element] = []
    for threshold, own in _grouped(verdicts, thresholds).items():
        for verdict in own:
            case = ET.Element("testcase", classname="tracker.thresholds", name=f"{threshold.text} [{verdict.scope}]")
            if not verdict.ok:
                ET.SubElement(case, "failure", message=_failure(verdict), type="threshold")
            cases.append(case)
    failures = sum(1 for c in cases if c.find("failure") is not None)
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", name="tracker thresholds", tests=str(len(cases)),
                          failures=str(failures), errors="0", skipped="0")
    suite.extend(cases)
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def _windows_part(own: list[Verdict]) -> str:
    n = len(own)
    if not n:
        return "no window had a value"
    bad = [v for v in own if not v.ok]
    windows = "window" if n == 1 else "windows"
    if not bad:
        return f"{n} {windows} passed"
    first = bad[0]
    return f"{len(bad)} of {n} {windows} failed (first at {first.scope}: {_text(first.threshold.column, first.value)})"


def report_lines(verdicts: Iterable[Verdict], thresholds: Iterable[Threshold]) -> list[str]:
    """A short table for stdout: a count of failed thresholds, then a line per threshold."""
    groups = _grouped(verdicts, thresholds)
    if not groups:
        return ["thresholds: none given"]
    width = max(len(t.text) for t in groups)
    lines, failures = [], 0
    for threshold, own in groups.items():
        run = [v for v in own if v.scope == "run"]
        windows = [v for v in own if v.window_start is not None]
        parts = [f"run {_text(threshold.column, v.value)}" if v.value is not None else "run: no value" for v in run]
        if windows or not run:
            parts.append(_windows_part(windows))
        status = "FAIL" if failed(own) or not own else "ok"
        failures += status == "FAIL"
        lines.append(f"  {status:<4}  {threshold.text:<{width}}  {'; '.join(parts)}")
    n = len(groups)
    return [f"thresholds: {f'{failures} of {n} failed' if failures else f'all {n} passed'}", *lines]
