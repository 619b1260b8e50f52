"""The HTML report of an output folder, built from its CSV files: the same numbers, never computed a second way.

:func:`report_data` reads the summary, totals, errors, thresholds and
per-window session files the :class:`~tracker.output.ReportWriter` wrote (the
cells as they are written), and :func:`report_html` puts them on one
self-contained page (:mod:`tracker.page`). The per-session view takes each
session's figures from the per-window files: its running totals at its last
window, its worst window p95 and TTFT p95, its last status; the heatmap shows
the sessions with the most answers and those with the worst p95 (at most
:data:`TOP_SESSIONS` each). :class:`HtmlReport` folds the per-window files
one at a time and keeps the fold, so memory holds a row per session, and a
live tail folds in only the files it added.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import polars as pl

from .errors import ReportError
from .names import ERRORS_FILE, REPORT_HTML, SUMMARY_FILE, THRESHOLDS_FILE, TOTALS_FILE, session_file_name
from .page import page

__all__ = ("REPORT_HTML", "TOP_SESSIONS", "HtmlReport", "report_data", "report_html")

#: The sessions in the heatmap for each measure (fewer when there are many windows: at most _MAX_CELLS cells).
TOP_SESSIONS: Final = 100
_MAX_CELLS: Final = 200_000
_SUMMARY, _TOTALS, _ERRORS, _THRESHOLDS = SUMMARY_FILE, TOTALS_FILE, ERRORS_FILE, THRESHOLDS_FILE
#: The summary's columns the charts draw (those present: TTFT, tokens and goodput only when the files have them).
_SERIES: Final = (
    "active_sessions", "questions_per_s", "answers_per_s", "errors_per_s", "error_rate",
    *(f"response_time_ms_{s}" for s in ("p50", "p90", "p95", "p99", "max")),
    *(f"ttft_ms_{s}" for s in ("p50", "p90", "p95", "p99", "max")),
    "output_tokens_per_s", "goodput_per_s", "goodput_ratio",
)
_SESSION_COLUMNS: Final = ("window_start", "session_id", "username", "status", "questions_answered",
                           "response_time_ms_p95", "ttft_ms_p95", "questions_asked_total",
                           "questions_answered_total", "errors_total")
_Key = tuple[str, int, int]


def _read(path: Path, columns: Iterable[str] | None = None) -> pl.DataFrame:
    """A report CSV as text, every cell as written (an empty cell is null)."""
    try:
        frame = pl.read_csv(path, infer_schema=False, columns=list(columns) if columns is not None else None)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ReportError(f"cannot read {str(path)!r} for the HTML report: {exc}") from exc
    return frame


def _number(text: str | None) -> float | None:
    return None if text is None or text == "" else float(text.lstrip("'"))


def _epoch_ms(column: str) -> pl.Expr:
    """A column of ``2026-11-24T22:00:00Z`` times as epoch milliseconds (the charts' time axis)."""
    return pl.col(column).str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_unit="ms").dt.epoch("ms")



class HtmlReport:
    """Builds the report page of a folder. The per-session figures are folded over the per-window files one file at
    a time (memory: a row per session, never every file's rows); the fold is kept, and a later build folds in only
    the files added since, unless an earlier one changed (a late event): then it folds them all again."""

    def __init__(self) -> None:
        self._keys: list[_Key] = []
        self._fold: pl.DataFrame | None = None

    def render(self, out_dir: str | os.PathLike[str], *, reload_s: int | None = None) -> bytes:
        """The page of ``out_dir``'s reports (reloading every ``reload_s`` seconds while the run is live)."""
        return report_html(report_data(out_dir, self), reload_s=reload_s)

    def sessions(self, files: list[tuple[Path, _Key]]) -> pl.DataFrame:
        """A row per session, folded over the per-window ``files`` (oldest first): see :func:`_fold`."""
        keys = [key for _, key in files]
        fold = self._fold if self._fold is not None and keys[:len(self._keys)] == self._keys else None
        done = len(self._keys) if fold is not None else 0
        for paths in _batches(files[done:]):
            fold = _fold(fold, _window_rows(paths))
        self._keys, self._fold = keys, fold
        return fold if fold is not None else _fold(None, None)


def _files(out: Path, names: Iterable[str]) -> list[tuple[Path, _Key]]:
    """The per-window files of ``names`` that exist, each with what tells a changed file (name, size, time)."""
    found = []
    for name in names:
        try:
            st = (out / name).stat()
        except OSError:
            continue  # not written yet (a full disk): the next build has it
        found.append((out / name, (name, st.st_size, st.st_mtime_ns)))
    return found


#: Per-window files read in one polars call (a row per session each: memory stays a few files' rows).
_BATCH: Final = 256


def _batches(files: list[tuple[Path, _Key]]) -> Iterable[list[Path]]:
    for i in range(0, len(files), _BATCH):
        yield [path for path, _ in files[i:i + _BATCH]]


def _window_rows(paths: list[Path], sessions: Iterable[str] | None = None) -> pl.DataFrame:
    """The per-window files' rows (in their order; only ``sessions``' when given), the columns the session view
    needs, typed: ReportError naming the files when one is damaged."""
    try:
        rows = pl.scan_csv(paths, infer_schema=False).select(_SESSION_COLUMNS)
        if sessions is not None:
            rows = rows.filter(pl.col("session_id").is_in(list(sessions)))
        return rows.with_columns(
            pl.col("questions_answered", "questions_asked_total", "questions_answered_total", "errors_total")
            .cast(pl.Int64), pl.col("response_time_ms_p95", "ttft_ms_p95").cast(pl.Float64),
            _epoch_ms("window_start").alias("t")).collect()
    except (OSError, pl.exceptions.PolarsError) as exc:
        names = ", ".join(repr(p.name) for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
        raise ReportError(f"cannot read the per-window files {names} in {str(paths[0].parent)!r} for the HTML "
                          f"report: a cell is not what tracker writes ({exc}); was one changed by hand? (tracker "
                          "replay writes them again)") from exc


#: A session's row in the session view: its figures at its last window and over its windows.
_FOLDED: Final = {"session_id": pl.String, "username": pl.String, "questions": pl.Int64, "answers": pl.Int64,
                  "errors": pl.Int64, "worst_p95_ms": pl.Float64, "worst_ttft_p95_ms": pl.Float64,
                  "status": pl.String, "answered": pl.Int64}


def _fold(fold: pl.DataFrame | None, rows: pl.DataFrame | None) -> pl.DataFrame:
    """The session rows after one more window's rows: running totals and name and status as of the latest window,
    the worst window p95 and TTFT p95, and the answers summed (``answered``, to rank the heatmap's sessions)."""
    if rows is None:
        return pl.DataFrame(schema=_FOLDED) if fold is None else fold
    part = rows.select(
        "session_id", "username", pl.col("questions_asked_total").alias("questions"),
        pl.col("questions_answered_total").alias("answers"), pl.col("errors_total").alias("errors"),
        pl.col("response_time_ms_p95").alias("worst_p95_ms"), pl.col("ttft_ms_p95").alias("worst_ttft_p95_ms"),
        "status", pl.col("questions_answered").alias("answered"))
    both = part if fold is None else pl.concat([fold, part])
    return both.group_by("session_id", maintain_order=True).agg(
        pl.col("username").last(), pl.col("questions").max(), pl.col("answers").max(), pl.col("errors").max(),
        pl.col("worst_p95_ms").max(), pl.col("worst_ttft_p95_ms").max(), pl.col("status").last(),
        pl.col("answered").sum())


def report_data(out_dir: str | os.PathLike[str], cache: HtmlReport | None = None) -> dict[str, object]:
    """What the page shows, from the folder's CSV files (ReportError when they are missing or damaged)."""
    out = Path(out_dir)
    if not (out / _SUMMARY).is_file() or not (out / _TOTALS).is_file():
        raise ReportError(f"{str(out)!r} holds no tracker reports ({_SUMMARY} and {_TOTALS}): run tracker replay or "
                          "tracker tail into it first")
    try:
        return _data(out, cache if cache is not None else HtmlReport())
    except (pl.exceptions.PolarsError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ReportError(f"the reports in {str(out)!r} cannot be read for the HTML report: a file is not what "
                          f"tracker writes ({type(exc).__name__}: {exc}); was one changed by hand? (tracker replay "
                          "writes them again)") from exc


def _data(out: Path, cache: HtmlReport) -> dict[str, object]:
    summary, totals = _read(out / _SUMMARY), _read(out / _TOTALS)
    errors = _read(out / _ERRORS) if (out / _ERRORS).is_file() else None
    thresholds = _read(out / _THRESHOLDS) if (out / _THRESHOLDS).is_file() else None
    times = summary.select(_epoch_ms("window_start").alias("start"), _epoch_ms("window_end").alias("end"))
    files = _files(out, [session_file_name(end * 1000) for end in times["end"].to_list()])
    starts: list[int] = times["start"].to_list()
    sessions = cache.sessions(files).sort("session_id")
    return {
        "totals": dict(zip(totals.columns, totals.row(0), strict=True)) if totals.height else {},
        "windows": {"start": starts, **{c: [_number(v) for v in summary[c].to_list()]
                                         for c in _SERIES if c in summary.columns}},
        "errors": _errors(errors, starts),
        "sessions": {"columns": list(_FOLDED)[:-1], "rows": [list(r) for r in sessions.drop("answered").rows()]},
        "heatmap": _heatmap(files, sessions, len(starts)),
        "thresholds": [] if thresholds is None else [list(r) for r in thresholds.rows()],
    }


def _errors(errors: pl.DataFrame | None, starts: list[int]) -> dict[str, object]:
    """Errors per window by kind (for the stacked chart), and the error table."""
    if errors is None or not errors.height:
        return {"kinds": {}, "rows": []}
    index = {start: i for i, start in enumerate(starts)}
    kinds: dict[str, list[int]] = {}
    rows = []
    for window, start, kind, message, count, sessions in errors.select(
            "window_start", _epoch_ms("window_start").alias("t"), "kind", "message", "count", "sessions").iter_rows():
        name = kind if kind is not None else "(no kind)"
        per_window = kinds.setdefault(name, [0] * len(starts))
        per_window[index[start]] += int(count)
        rows.append([window, kind, message, int(count), int(sessions)])
    return {"kinds": dict(sorted(kinds.items())), "rows": rows}


def _heatmap(files: list[tuple[Path, _Key]], sessions: pl.DataFrame, windows: int) -> dict[str, object]:
    """Sessions x windows of answers, and of p95, for the top sessions by each (most answers; worst p95): the files
    are read again for those sessions' cells only."""
    top = max(1, min(TOP_SESSIONS, _MAX_CELLS // max(1, windows)))
    ranked = {measure: sessions.drop_nulls(rank).sort([rank, "session_id"], descending=[True, False]).head(top)[
        "session_id"].to_list() for measure, rank in (("answers", "answered"), ("p95", "worst_p95_ms"))}
    chosen = {sid for ids in ranked.values() for sid in ids}
    cells: list[tuple[int, str, int | None, float | None]] = []
    for paths in _batches(files) if chosen else ():
        rows = _window_rows(paths, chosen)
        cells += rows.select("t", "session_id", "questions_answered", "response_time_ms_p95").rows()
    out: dict[str, object] = {}
    for measure, column in (("answers", 2), ("p95", 3)):
        position = {sid: i for i, sid in enumerate(ranked[measure])}
        out[measure] = {"sessions": ranked[measure],
                        "cells": [[c[0], position[c[1]], c[column]] for c in cells
                                  if c[1] in position and c[column] is not None]}
    return out


def report_html(data: dict[str, object], *, reload_s: int | None = None) -> bytes:
    """The report page of :func:`report_data`'s data."""
    totals = data.get("totals") or {}
    assert isinstance(totals, dict)
    title = f"tracker report {totals.get('run_start') or ''}".strip()
    return page(title, {**data, "live": reload_s is not None}, "report.js", reload_s=reload_s)
