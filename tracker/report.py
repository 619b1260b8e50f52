"""Windowed reports: one polars aggregation for live and replay, written as deterministic CSV.

Windows are tumbling, aligned to the Unix epoch and left-closed: an event at
``ts`` is in window ``k = ts // interval``, spanning ``[k * interval,
(k + 1) * interval)``. :func:`build_reports` is the only code that computes
report numbers; :func:`write_reports` is the only code that writes them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import polars as pl

from .errors import ReportError
from .events import (
    EVENT_TYPES,
    ErrorReported,
    Event,
    QuestionAnswered,
    SessionRegistered,
)

__all__ = (
    "DEFAULT_INTERVAL_S",
    "ERRORS_FILE",
    "EVENT_SCHEMA",
    "MAX_WINDOWS",
    "SESSIONS_FILE_PREFIX",
    "SUMMARY_FILE",
    "TOTALS_FILE",
    "Reports",
    "build_reports",
    "events_frame",
    "render_reports",
    "session_file_name",
    "write_atomically",
    "write_reports",
)

DEFAULT_INTERVAL_S: Final = 300
SUMMARY_FILE: Final = "session_tracking_summary.csv"
TOTALS_FILE: Final = "session_tracking_totals.csv"
ERRORS_FILE: Final = "session_tracking_errors.csv"
SESSIONS_FILE_PREFIX: Final = "session_tracking_report_"
FLOAT_PRECISION: Final = 3
#: The most windows one report may span (each gets a file).
MAX_WINDOWS: Final = 100_000

#: The columns the aggregation reads: one row per (valid, deduplicated) event. The type is an enum and
#: the text columns categorical: a byte or four a row instead of a string view of 16 bytes and more
#: (categoricals sort by their text; they are cast back to text for the files).
EVENT_SCHEMA: Final = pl.Schema([
    ("ts", pl.Int64),
    ("event_id", pl.String),
    ("session_id", pl.Categorical()),
    ("type", pl.Enum(list(EVENT_TYPES))),
    ("username", pl.Categorical()),
    ("course_numbers", pl.List(pl.Int64)),
    ("response_time_ms", pl.Float64),
    ("error", pl.Categorical()),
    ("kind", pl.Categorical()),
])

_STATS: Final = ("mean", "p50", "p90", "p95", "p99", "max")
_COUNTED: Final = {
    "sessions_registered": "session_registered",
    "sessions_unregistered": "session_unregistered",
    "questions_asked": "question_asked",
    "questions_answered": "question_answered",
    "cycles_completed": "cycle_completed",
    "errors": "error",
}
_SESSION_COUNTED: Final = ("questions_asked", "questions_answered", "cycles_completed", "errors")
_FORMULA_START: Final = r"^[=+\-@\t\r]"
_SECOND: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class Reports:
    """The report tables: ``sessions`` holds every window's per-session rows."""

    interval_s: int
    summary: pl.DataFrame
    totals: pl.DataFrame
    sessions: pl.DataFrame
    errors: pl.DataFrame


def events_frame(events: Iterable[Event]) -> pl.DataFrame:
    """The aggregation's input frame from decoded events."""
    columns: dict[str, list[object]] = {name: [] for name in EVENT_SCHEMA}
    ts, event_id, session_id, kind_of = (columns[n] for n in ("ts", "event_id", "session_id", "type"))
    username, courses, rt, error, kind = (
        columns[n] for n in ("username", "course_numbers", "response_time_ms", "error", "kind"))
    for event in events:
        ts.append(event.ts)
        event_id.append(event.event_id)
        session_id.append(event.session_id)
        kind_of.append(event.TYPE)
        username.append(event.username if isinstance(event, SessionRegistered) else None)
        courses.append(list(event.course_numbers) if isinstance(event, SessionRegistered) else None)
        rt.append(event.response_time_ms if isinstance(event, QuestionAnswered) else None)
        error.append(event.error if isinstance(event, ErrorReported) else None)
        kind.append(event.kind if isinstance(event, ErrorReported) else None)
    return pl.DataFrame(columns, schema=EVENT_SCHEMA)


def _stats(values: pl.Expr, prefix: str, which: Iterable[str] = _STATS) -> list[pl.Expr]:
    exprs = {
        "mean": values.mean(),
        "p50": values.quantile(0.50, interpolation="linear"),
        "p90": values.quantile(0.90, interpolation="linear"),
        "p95": values.quantile(0.95, interpolation="linear"),
        "p99": values.quantile(0.99, interpolation="linear"),
        "max": values.max(),
    }
    return [exprs[name].cast(pl.Float64).alias(f"{prefix}_{name}") for name in which]


def _counts(names: Iterable[str]) -> list[pl.Expr]:
    return [(pl.col("type") == _COUNTED[name]).sum().cast(pl.Int64).alias(name) for name in names]


def _iso_text(ts: int) -> str:
    return datetime.fromtimestamp(ts // _SECOND, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso(column: str) -> pl.Expr:
    return pl.from_epoch(pl.col(column), time_unit="us").dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _window_bounds(every: int) -> list[pl.Expr]:
    return [(pl.col("k") * every).alias("window_start"), ((pl.col("k") + 1) * every).alias("window_end")]


def _neutralise(frame: pl.DataFrame, columns: Iterable[str]) -> pl.DataFrame:
    """Prefix ``'`` to text a spreadsheet would run as a formula."""
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(_FORMULA_START)).then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c)
        for c in columns
    )


def build_reports(events: pl.DataFrame, interval_s: int = DEFAULT_INTERVAL_S) -> Reports:
    """Aggregate events (columns of :data:`EVENT_SCHEMA`, valid and deduplicated) into the report tables."""
    if type(interval_s) is not int or interval_s < 1:
        raise ValueError(f"interval_s: must be a whole number of seconds >= 1, got {interval_s!r}")
    every = interval_s * _SECOND
    # One canonical row order (event time, then the unique event_id), so that every group
    # sees its values in the same order however the events were read: float sums come
    # out the same to the bit, and "first" means the same row.
    ev = events.select(EVENT_SCHEMA.names()).sort("ts", "event_id").with_columns(k=pl.col("ts") // every)
    if ev.is_empty():
        return _empty(interval_s)
    k_min, k_max = ev["k"].min(), ev["k"].max()
    assert isinstance(k_min, int)
    assert isinstance(k_max, int)
    if k_max - k_min + 1 > MAX_WINDOWS:
        raise ReportError(
            f"the events span {k_max - k_min + 1:,} windows of {interval_s} s (from {_iso_text(k_min * every)} to "
            f"{_iso_text((k_max + 1) * every)}), more than {MAX_WINDOWS:,}: is some writer's ts in seconds or "
            "milliseconds instead of microseconds? (tracker validate lists every event; use a longer --interval "
            "if the span is real)")
    windows = pl.DataFrame({"k": pl.int_range(k_min, k_max + 1, eager=True)})
    answers = pl.col("response_time_ms").filter(pl.col("type") == "question_answered")

    is_reg, is_unreg = pl.col("type") == "session_registered", pl.col("type") == "session_unregistered"
    sessions = (
        ev.group_by("session_id")
        .agg(
            first_ts=pl.col("ts").min(),
            reg_ts=pl.col("ts").filter(is_reg).min(),
            end_ts=pl.col("ts").filter(is_unreg).min(),
            username=pl.col("username").filter(is_reg).first(),
            course_numbers=pl.col("course_numbers").filter(is_reg).first(),
        )
        .with_columns(ks=pl.coalesce("reg_ts", "first_ts") // every, ke=pl.col("end_ts") // every)
    )
    # Alive in window k: ks <= k <= ke. Alive at its end: ks <= k <= ke - 1 (ke null: forever).
    alive = sessions.filter(pl.col("ke").is_null() | (pl.col("ke") >= pl.col("ks")))
    at_end = sessions.filter(pl.col("ke").is_null() | (pl.col("ke") > pl.col("ks")))

    def running(starts: pl.DataFrame, stop: pl.Expr) -> pl.Series:
        plus = starts.group_by(k="ks").agg(plus=pl.len())
        minus = starts.filter(pl.col("ke").is_not_null()).group_by(k=stop).agg(minus=pl.len())
        steps = windows.join(plus, on="k", how="left").join(minus, on="k", how="left").sort("k")
        return (steps["plus"].fill_null(0).cast(pl.Int64) - steps["minus"].fill_null(0).cast(pl.Int64)).cum_sum()

    summary = (
        windows.with_columns(
            active_sessions=running(alive, pl.col("ke") + 1),
            active_at_end=running(at_end, pl.col("ke")),
        )
        .join(ev.group_by("k").agg(*_counts(_COUNTED), *_stats(answers, "response_time_ms")), on="k", how="left")
        .with_columns(pl.col(list(_COUNTED)).fill_null(0))
        .with_columns(answers_per_s=pl.col("questions_answered") / interval_s)
        .sort("k")
    )

    n_windows = k_max - k_min + 1
    totals = ev.select(
        pl.lit(k_min * every, pl.Int64).alias("run_start"),
        pl.lit((k_max + 1) * every, pl.Int64).alias("run_end"),
        pl.col("session_id").n_unique().cast(pl.Int64).alias("sessions"),
        pl.lit(summary["active_sessions"].max(), pl.Int64).alias("max_active_sessions"),
        *_counts(_COUNTED),
        *_stats(answers, "response_time_ms"),
    ).with_columns(answers_per_s=pl.col("questions_answered") / (n_windows * interval_s))

    per_session = ev.group_by("session_id", "k").agg(
        *_counts(_SESSION_COUNTED), *_stats(answers, "response_time_ms", ("mean", "p95", "max")))
    # Each session's windows from its first event to its end (or the last window), so the
    # running totals include activity from before its start; then only the alive windows.
    grid = (
        sessions.with_columns(k=pl.int_ranges(pl.col("first_ts") // every,
                                              pl.min_horizontal(pl.col("ke").fill_null(k_max), k_max) + 1))
        .explode("k")
        .drop_nulls("k")
        .join(per_session, on=["session_id", "k"], how="left")
        .with_columns(pl.col(list(_SESSION_COUNTED)).fill_null(0))
        .sort("session_id", "k")
        .with_columns(pl.col(c).cum_sum().over("session_id").alias(f"{c}_total") for c in _SESSION_COUNTED)
        .filter(pl.col("k") >= pl.col("ks"))
        .with_columns(
            status=pl.when(pl.col("end_ts").is_not_null() & (pl.col("end_ts") < (pl.col("k") + 1) * every))
            .then(pl.lit("ended")).otherwise(pl.lit("active")),
            course_numbers=pl.when(pl.col("course_numbers").list.len() > 0)
            .then(pl.col("course_numbers").cast(pl.List(pl.String)).list.join(";")),
        )
        .sort("k", "session_id")
    )

    errors = (
        ev.filter(pl.col("type") == "error")
        .with_columns(pl.col("kind", "error").cast(pl.String))
        .group_by("k", "kind", message="error")
        .agg(count=pl.len().cast(pl.Int64))
        .sort("k", pl.col("kind").fill_null(""), "message")
    )

    bounds = _window_bounds(every)
    return Reports(
        interval_s=interval_s,
        summary=summary.select(*bounds, pl.exclude("k")),
        totals=totals,
        sessions=grid.select(
            *bounds, pl.col("session_id", "username").cast(pl.String), "course_numbers", "status", *_SESSION_COUNTED,
            *(f"response_time_ms_{s}" for s in ("mean", "p95", "max")), *(f"{c}_total" for c in _SESSION_COUNTED),
        ),
        errors=errors.select(*bounds, "kind", "message", "count"),
    )


def _empty(interval_s: int) -> Reports:
    """Reports of no events: the tables' columns, no rows, and a totals row of zeros and blanks."""
    one = {**dict.fromkeys(EVENT_SCHEMA.names()), "ts": 0, "event_id": "", "session_id": "",
           "type": "cycle_completed"}
    shape = build_reports(pl.DataFrame([one], schema=EVENT_SCHEMA), interval_s)
    totals = {name: 0 if dtype == pl.Int64 and not name.startswith("run_") else None
              for name, dtype in shape.totals.schema.items()}
    return Reports(interval_s, shape.summary.clear(), pl.DataFrame([totals], schema=shape.totals.schema),
                   shape.sessions.clear(), shape.errors.clear())


def session_file_name(window_end_us: int) -> str:
    """``session_tracking_report_YYYYMMDD_HHMMSS.csv``, stamped with the window's end in UTC."""
    stamp = datetime.fromtimestamp(window_end_us // _SECOND, UTC).strftime("%Y%m%d_%H%M%S")
    return f"{SESSIONS_FILE_PREFIX}{stamp}.csv"


def _csv_bytes(frame: pl.DataFrame) -> bytes:
    times = [c for c in ("window_start", "window_end", "run_start", "run_end") if c in frame.columns]
    text = [c for c, dtype in frame.schema.items() if dtype == pl.String]
    frame = _neutralise(frame, text).with_columns(_iso(c).alias(c) for c in times)
    return frame.write_csv(float_precision=FLOAT_PRECISION, line_terminator="\n").encode()


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary name and rename, so a reader sees the old file or the new one, never half.

    No fsync: the files are derived and can be regenerated from the log after a crash.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def render_reports(reports: Reports, *, closed_until: int | None = None) -> dict[str, bytes]:
    """Every report file's name and bytes.

    With ``closed_until`` (epoch microseconds, a window boundary), only the
    windows that end by then are included (summary and errors rows, per-window
    files); the totals always cover every event.
    """
    summary, errors = reports.summary, reports.errors
    if closed_until is not None:
        summary = summary.filter(pl.col("window_end") <= closed_until)
        errors = errors.filter(pl.col("window_end") <= closed_until)
    files = {SUMMARY_FILE: _csv_bytes(summary), TOTALS_FILE: _csv_bytes(reports.totals),
             ERRORS_FILE: _csv_bytes(errors)}
    by_window = reports.sessions.partition_by("window_end", as_dict=True, maintain_order=True)
    header = reports.sessions.clear()
    for end in summary["window_end"].to_list():
        files[session_file_name(end)] = _csv_bytes(by_window.get((end,), header))
    return files


def write_reports(reports: Reports, out_dir: str | os.PathLike[str], *,
                  closed_until: int | None = None) -> list[Path]:
    """Write the report files (see :func:`render_reports`) into ``out_dir``, each atomically; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in render_reports(reports, closed_until=closed_until).items():
        write_atomically(out / name, data)
        written.append(out / name)
    return written
