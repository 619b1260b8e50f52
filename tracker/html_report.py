"""The HTML report of an output folder, built from its CSV files: the same numbers, never computed a second way.

:func:`report_data` reads the summary, totals, errors, thresholds and
per-window session files the :class:`~tracker.output.ReportWriter` wrote (the
cells as they are written), and :func:`report_html` puts them on one
self-contained page (:mod:`tracker.page`). The per-session view takes each
session's figures from the per-window files: its running totals at its last
window, its worst window p95 and TTFT p95, its last status; the heatmap shows
the sessions with the most answers and those with the worst p95 (at most
:data:`TOP_SESSIONS` each). :class:`HtmlReport` keeps each per-window file's
rows until the file changes, so a live tail reads only the files it rewrote.
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
    """Builds the report page of a folder, keeping each per-window file's rows until that file changes."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[_Key, pl.DataFrame]] = {}

    def window_rows(self, out_dir: Path, names: Iterable[str]) -> pl.DataFrame:
        """The per-window session rows of the files ``names`` (the summary's windows: not an earlier run's file, not
        a user's), the columns the session view needs, oldest first; a file not written yet is left out."""
        frames = []
        seen = set()
        for name in names:
            path = out_dir / name
            try:
                st = path.stat()
            except OSError:
                continue
            key = (path.name, st.st_size, st.st_mtime_ns)
            cached = self._windows.get(path.name)
            if cached is None or cached[0] != key:
                cached = (key, _read(path, _SESSION_COLUMNS))
                self._windows[path.name] = cached
            seen.add(path.name)
            frames.append(cached[1])
        for name in set(self._windows) - seen:
            del self._windows[name]
        if not frames:
            return pl.DataFrame(schema=dict.fromkeys(_SESSION_COLUMNS, pl.String))
        return pl.concat(frames)

    def render(self, out_dir: str | os.PathLike[str], *, reload_s: int | None = None) -> bytes:
        """The page of ``out_dir``'s reports (reloading every ``reload_s`` seconds while the run is live)."""
        return report_html(report_data(out_dir, self), reload_s=reload_s)


def report_data(out_dir: str | os.PathLike[str], cache: HtmlReport | None = None) -> dict[str, object]:
    """What the page shows, from the folder's CSV files (ReportError when the summary or totals is missing)."""
    out = Path(out_dir)
    if not (out / _SUMMARY).is_file() or not (out / _TOTALS).is_file():
        raise ReportError(f"{str(out)!r} holds no tracker reports ({_SUMMARY} and {_TOTALS}): run tracker replay or "
                          "tracker tail into it first")
    summary, totals = _read(out / _SUMMARY), _read(out / _TOTALS)
    errors = _read(out / _ERRORS) if (out / _ERRORS).is_file() else None
    thresholds = _read(out / _THRESHOLDS) if (out / _THRESHOLDS).is_file() else None
    times = summary.select(_epoch_ms("window_start").alias("start"), _epoch_ms("window_end").alias("end"))
    names = [session_file_name(end * 1000) for end in times["end"].to_list()]
    rows = (cache if cache is not None else HtmlReport()).window_rows(out, names)
    starts: list[int] = times["start"].to_list()
    return {
        "totals": dict(zip(totals.columns, totals.row(0), strict=True)) if totals.height else {},
        "windows": {"start": starts, **{c: [_number(v) for v in summary[c].to_list()]
                                         for c in _SERIES if c in summary.columns}},
        "errors": _errors(errors, starts),
        "sessions": _sessions(rows),
        "heatmap": _heatmap(rows, len(starts)),
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


def _sessions(rows: pl.DataFrame) -> dict[str, object]:
    """A row per session: its running totals at its last window, its worst window p95 and TTFT p95, last status."""
    columns = ["session_id", "username", "questions", "answers", "errors", "worst_p95_ms", "worst_ttft_p95_ms",
               "status"]
    if not rows.height:
        return {"columns": columns, "rows": []}
    number = pl.col
    table = (rows.with_columns(*(number(c).cast(pl.Float64) for c in ("response_time_ms_p95", "ttft_ms_p95")),
                               *(number(c).cast(pl.Int64) for c in ("questions_asked_total",
                                                                    "questions_answered_total", "errors_total")))
             .group_by("session_id", maintain_order=True)
             .agg(pl.col("username").last(), pl.col("questions_asked_total").max(),
                  pl.col("questions_answered_total").max(), pl.col("errors_total").max(),
                  pl.col("response_time_ms_p95").max(), pl.col("ttft_ms_p95").max(), pl.col("status").last())
             .sort("session_id"))
    return {"columns": columns, "rows": [list(r) for r in table.rows()]}


def _heatmap(rows: pl.DataFrame, windows: int) -> dict[str, object]:
    """Sessions x windows of answers, and of p95, for the top sessions by each (most answers; worst p95)."""
    top = max(1, min(TOP_SESSIONS, _MAX_CELLS // max(1, windows)))
    if not rows.height:
        return {"answers": {"sessions": [], "cells": []}, "p95": {"sessions": [], "cells": []}}
    cells = rows.select(_epoch_ms("window_start").alias("t"), "session_id",
                        pl.col("questions_answered").cast(pl.Int64).alias("answers"),
                        pl.col("response_time_ms_p95").cast(pl.Float64).alias("p95"))
    out: dict[str, object] = {}
    for measure, rank in (("answers", pl.col("answers").sum()), ("p95", pl.col("p95").max())):
        ranked = (cells.group_by("session_id").agg(rank.alias("rank")).drop_nulls("rank")
                  .sort(["rank", "session_id"], descending=[True, False]).head(top))
        ids = ranked["session_id"].to_list()
        position = {sid: i for i, sid in enumerate(ids)}
        chosen = cells.filter(pl.col("session_id").is_in(ids)).drop_nulls(measure)
        out[measure] = {"sessions": ids, "cells": [[t, position[sid], v] for t, sid, v in
                                                    chosen.select("t", "session_id", measure).iter_rows()]}
    return out


def report_html(data: dict[str, object], *, reload_s: int | None = None) -> bytes:
    """The report page of :func:`report_data`'s data."""
    totals = data.get("totals") or {}
    assert isinstance(totals, dict)
    title = f"tracker report {totals.get('run_start') or ''}".strip()
    return page(title, {**data, "live": reload_s is not None}, "report.js", reload_s=reload_s)
