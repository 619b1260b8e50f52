"""Windowed reports: one polars aggregation for live and replay, written as deterministic CSV.

Windows are tumbling, aligned to the Unix epoch and left-closed: an event at
``ts`` is in window ``k = ts // interval``, spanning ``[k * interval,
(k + 1) * interval)``. :class:`ReportBuilder` is the only code that computes
report numbers, one window at a time (so a replay holds one window's events,
not the log); :func:`build_reports` runs it over events held in memory (the
live reporter). :func:`_csv_bytes` is the only code that turns a table into
file bytes.
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
    "WINDOW_COLUMNS",
    "ReportBuilder",
    "Reports",
    "WindowReport",
    "build_reports",
    "distinct",
    "events_frame",
    "render_reports",
    "run_files",
    "session_files",
    "session_file_name",
    "session_rows",
    "write_atomically",
    "window_span",
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
#: the session ids and usernames categorical: a byte or four a row instead of a string view of 16 bytes
#: and more (categoricals sort by their text; they are cast back to text for the files). Error messages
#: and kinds stay text: polars keeps every categorical's text for the life of the process, and free
#: text (a message with a request id in it) would grow without bound and hide from memory budgets.
EVENT_SCHEMA: Final = pl.Schema([
    ("ts", pl.Int64),
    ("event_id", pl.String),
    ("session_id", pl.Categorical()),
    ("type", pl.Enum(list(EVENT_TYPES))),
    ("username", pl.Categorical()),
    ("course_numbers", pl.List(pl.Int64)),
    ("response_time_ms", pl.Float64),
    ("error", pl.String),
    ("kind", pl.String),
])

#: The columns a window's aggregation reads (the sessions' names and courses come from their rows).
WINDOW_COLUMNS: Final = ("ts", "event_id", "session_id", "type", "response_time_ms", "error", "kind")

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
    """The report tables: ``sessions`` holds every window's per-session rows (None when they went
    straight to their files, as in a streamed replay)."""

    interval_s: int
    summary: pl.DataFrame
    totals: pl.DataFrame
    sessions: pl.DataFrame | None
    errors: pl.DataFrame


@dataclass(frozen=True, slots=True)
class WindowReport:
    """Consecutive windows' rows: a summary row each, their per-session rows and their error rows."""

    summary: pl.DataFrame
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


def distinct(events: pl.DataFrame) -> pl.DataFrame:
    """The first of each event in the frame's order: rows equal in every column of
    :data:`EVENT_SCHEMA` (``event_id`` and ``ts`` included) are one line read twice.

    Both copies share their time, so they share their window: removing
    duplicates window by window removes them all. Two rows with the same
    ``event_id`` and ``ts`` but other content (a writer reusing an id) are
    both kept, so whichever copy is read first, every reader counts the same.
    """
    if events.height < 2:
        return events
    # Equal rows have equal (event_id, ts) hashes, so all-distinct hashes prove there is no duplicate
    # (the common case, checked at a third of the cost of the exact filter).
    if events.select((pl.col("event_id").hash() ^ pl.col("ts").hash(seed=1)).n_unique()).item() == events.height:
        return events
    return events.filter(pl.struct(EVENT_SCHEMA.names()).is_first_distinct())


def session_rows(events: pl.DataFrame) -> pl.DataFrame:
    """The few rows of ``events`` that decide its sessions: each session's earliest event, first
    registration and first unregistration (earliest by ``(ts, event_id)``, then in the frame's order).

    The rows of several frames, concatenated in read order, decide their sessions as all their
    events would: so the sessions of a log too big for memory are found block by block.
    """
    ordered = events.select(EVENT_SCHEMA.names()).sort("ts", "event_id", maintain_order=True)
    return pl.concat([
        ordered.unique("session_id", keep="first", maintain_order=True),
        *(ordered.filter(pl.col("type") == t).unique("session_id", keep="first", maintain_order=True)
          for t in ("session_registered", "session_unregistered")),
    ])


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


def _neutralise(frame: pl.DataFrame, columns: Iterable[str]) -> pl.DataFrame:
    """Prefix ``'`` to text a spreadsheet would run as a formula."""
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(_FORMULA_START)).then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c)
        for c in columns
    )


def _per_second(counts: pl.Series, seconds: int) -> pl.Series:
    """``counts / seconds``, correctly rounded: polars divides a column by a number through its
    reciprocal on longer frames, so a window's rate would depend on how many windows were built with it."""
    return pl.Series([count / seconds for count in counts.to_list()], dtype=pl.Float64)


def _check_interval(interval_s: int) -> None:
    if type(interval_s) is not int or interval_s < 1:
        raise ValueError(f"interval_s: must be a whole number of seconds >= 1, got {interval_s!r}")


def window_span(ts_min: int, ts_max: int, interval_s: int) -> tuple[int, int]:
    """The first and last window index of events from ``ts_min`` to ``ts_max``; too many is an error."""
    _check_interval(interval_s)
    every = interval_s * _SECOND
    k_min, k_max = ts_min // every, ts_max // every
    if k_max - k_min + 1 > MAX_WINDOWS:
        raise ReportError(
            f"the events span {k_max - k_min + 1:,} windows of {interval_s} s (from {_iso_text(k_min * every)} to "
            f"{_iso_text((k_max + 1) * every)}), more than {MAX_WINDOWS:,}: is some writer's ts in seconds or "
            "milliseconds instead of microseconds? (tracker validate lists every event; use a longer --interval "
            "if the span is real)")
    return k_min, k_max


class ReportBuilder:
    """Builds the reports one window at a time, in time order: the only code that computes report numbers.

    It needs the sessions first (:func:`session_rows` of all events, in read
    order) and then the windows' events, valid and distinct, in any order, a
    run of consecutive windows at a time (:meth:`windows`); it carries each
    session's running totals from run to run. So a caller holds a few
    windows' events at a time, never the whole log; each window's rows are
    the same however the windows are grouped.
    """

    def __init__(self, session_rows: pl.DataFrame, k_min: int, k_max: int, interval_s: int) -> None:
        _check_interval(interval_s)
        if k_max < k_min or k_max - k_min + 1 > MAX_WINDOWS:
            raise ValueError(f"windows: need k_min <= k_max within {MAX_WINDOWS:,} windows, got {k_min}, {k_max}")
        self.interval_s = interval_s
        self._every = every = interval_s * _SECOND
        self.k_min, self.k_max, self._next = k_min, k_max, k_min
        is_reg, is_unreg = pl.col("type") == "session_registered", pl.col("type") == "session_unregistered"
        sessions = (
            session_rows.sort("ts", "event_id", maintain_order=True)
            .group_by("session_id")
            .agg(
                first_ts=pl.col("ts").min(),
                reg_ts=pl.col("ts").filter(is_reg).min(),
                end_ts=pl.col("ts").filter(is_unreg).min(),
                username=pl.col("username").filter(is_reg).first(),
                course_numbers=pl.col("course_numbers").filter(is_reg).first(),
            )
            .with_columns(
                pl.col("session_id", "username").cast(pl.String),
                first_k=pl.col("first_ts") // every,
                ks=pl.coalesce("reg_ts", "first_ts") // every,
                ke=pl.col("end_ts") // every,
                course_numbers=pl.when(pl.col("course_numbers").list.len() > 0)
                .then(pl.col("course_numbers").cast(pl.List(pl.String)).list.join(";")),
            )
            .sort("session_id")
        )
        self._sessions = sessions.with_columns(pl.lit(0, pl.Int64).alias(f"{c}_total") for c in _SESSION_COUNTED)
        self._active = self._active_counts(sessions)
        self._answers: list[pl.Series] = []
        self._counted = dict.fromkeys(_COUNTED, 0)

    def _active_counts(self, sessions: pl.DataFrame) -> pl.DataFrame:
        """``active_sessions`` and ``active_at_end`` of every window, from the sessions' start and end windows,
        and ``in_run``: the sessions with a row in the window's running totals (first event to end)."""
        windows = pl.DataFrame({"k": pl.int_range(self.k_min, self.k_max + 1, eager=True)})
        # Alive in window k: ks <= k <= ke. Alive at its end: ks <= k <= ke - 1 (ke null: forever).
        alive = sessions.filter(pl.col("ke").is_null() | (pl.col("ke") >= pl.col("ks")))
        at_end = sessions.filter(pl.col("ke").is_null() | (pl.col("ke") > pl.col("ks")))
        in_run = sessions.filter(pl.col("ke").is_null() | (pl.col("ke") >= pl.col("first_k")))

        def running(starts: pl.DataFrame, start: str, stop: pl.Expr) -> pl.Series:
            plus = starts.group_by(k=start).agg(plus=pl.len())
            minus = starts.filter(pl.col("ke").is_not_null()).group_by(k=stop).agg(minus=pl.len())
            steps = windows.join(plus, on="k", how="left").join(minus, on="k", how="left").sort("k")
            return (steps["plus"].fill_null(0).cast(pl.Int64) - steps["minus"].fill_null(0).cast(pl.Int64)).cum_sum()

        return windows.with_columns(active_sessions=running(alive, "ks", pl.col("ke") + 1),
                                    active_at_end=running(at_end, "ks", pl.col("ke")),
                                    in_run=running(in_run, "first_k", pl.col("ke") + 1))

    def rows_in(self, k: int) -> int:
        """How many per-session rows window ``k`` makes while it is built (its sessions' running totals)."""
        value = self._active["in_run"][k - self.k_min]
        assert isinstance(value, int)
        return value

    def windows(self, k_last: int, events: pl.DataFrame) -> WindowReport:
        """The rows of the next windows, up to ``k_last``, from their events (columns of :data:`WINDOW_COLUMNS`)."""
        k_first = self._next
        if not k_first <= k_last <= self.k_max:
            raise ValueError(f"windows: expected a last window in {k_first}..{self.k_max}, got {k_last}")
        self._next = k_last + 1
        every = self._every
        # One canonical row order (event time, then the unique event_id), so that every statistic
        # sees its values in the same order however the events were read: float sums come out
        # the same to the bit.
        ev = events.select(WINDOW_COLUMNS).sort("ts", "event_id").with_columns(k=pl.col("ts") // every)
        is_answer = pl.col("type") == "question_answered"
        answers = pl.col("response_time_ms").filter(is_answer)
        self._answers.append(ev.filter(is_answer)["response_time_ms"])
        bounds = [(pl.col("k") * every).alias("window_start"), ((pl.col("k") + 1) * every).alias("window_end")]

        summary = (
            self._active.slice(k_first - self.k_min, k_last - k_first + 1).drop("in_run")
            .join(ev.group_by("k").agg(*_counts(_COUNTED), *_stats(answers, "response_time_ms")), on="k", how="left")
            .with_columns(pl.col(list(_COUNTED)).fill_null(0))
            .sort("k")
        )
        summary = summary.with_columns(answers_per_s=_per_second(summary["questions_answered"], self.interval_s))
        for name in _COUNTED:
            self._counted[name] += int(summary[name].sum())

        per_session = ev.group_by("session_id", "k").agg(
            *_counts(_SESSION_COUNTED), *_stats(answers, "response_time_ms", ("mean", "p95", "max")),
        ).with_columns(pl.col("session_id").cast(pl.String))
        # A session's totals run over its windows from its first event to its end (or the last
        # window), so they include activity from before its start; its rows are its alive windows.
        grid = (
            self._sessions.with_columns(k=pl.int_ranges(
                pl.max_horizontal("first_k", pl.lit(k_first)),
                pl.min_horizontal(pl.col("ke").fill_null(k_last), pl.lit(k_last)) + 1))
            .explode("k")
            .drop_nulls("k")
            .join(per_session, on=["session_id", "k"], how="left")
            .with_columns(pl.col(list(_SESSION_COUNTED)).fill_null(0))
            .sort("session_id", "k")
            .with_columns((pl.col(f"{c}_total") + pl.col(c).cum_sum().over("session_id")).alias(f"{c}_total")
                          for c in _SESSION_COUNTED)
        )
        totals = [f"{c}_total" for c in _SESSION_COUNTED]
        carried = grid.group_by("session_id").agg(pl.col(totals).last())
        self._sessions = (
            self._sessions.join(carried, on="session_id", how="left", suffix="_new", maintain_order="left")
            .with_columns(pl.coalesce(f"{t}_new", t).alias(t) for t in totals)
            .select(self._sessions.columns)
        )
        sessions = (
            grid.filter(pl.col("k") >= pl.col("ks"))
            .sort("k", "session_id")
            .select(
                *bounds, "session_id", "username", "course_numbers",
                pl.when(pl.col("end_ts").is_not_null() & (pl.col("end_ts") < (pl.col("k") + 1) * every))
                .then(pl.lit("ended")).otherwise(pl.lit("active")).alias("status"),
                *_SESSION_COUNTED,
                *(f"response_time_ms_{s}" for s in ("mean", "p95", "max")),
                *totals,
            )
        )

        errors = (
            ev.filter(pl.col("type") == "error")
            .group_by("k", "kind", message="error")
            .agg(count=pl.len().cast(pl.Int64))
            .sort("k", pl.col("kind").fill_null(""), "message")
            .select(*bounds, "kind", "message", "count")
        )
        return WindowReport(summary.select(*bounds, pl.exclude("k")), sessions, errors)

    def totals(self) -> pl.DataFrame:
        """The whole run's row, once every window was built."""
        if self._next <= self.k_max:
            raise ValueError(f"totals: windows {self._next}..{self.k_max} are not built yet")
        answers = pl.concat(self._answers, rechunk=True) if self._answers else pl.Series([], dtype=pl.Float64)
        n_windows = self.k_max - self.k_min + 1
        return pl.DataFrame({"response_time_ms": answers}).select(
            pl.lit(self.k_min * self._every, pl.Int64).alias("run_start"),
            pl.lit((self.k_max + 1) * self._every, pl.Int64).alias("run_end"),
            pl.lit(self._sessions.height, pl.Int64).alias("sessions"),
            pl.lit(self._active["active_sessions"].max(), pl.Int64).alias("max_active_sessions"),
            *(pl.lit(self._counted[name], pl.Int64).alias(name) for name in _COUNTED),
            *_stats(pl.col("response_time_ms"), "response_time_ms"),
        ).with_columns(answers_per_s=_per_second(pl.Series([self._counted["questions_answered"]]),
                                                 n_windows * self.interval_s))


def build_reports(events: pl.DataFrame, interval_s: int = DEFAULT_INTERVAL_S) -> Reports:
    """Aggregate events (columns of :data:`EVENT_SCHEMA`, valid and distinct) into the report tables.

    The events are held at once; :class:`ReportBuilder` is the same aggregation, a run of windows at a time.
    """
    _check_interval(interval_s)
    ev = events.select(EVENT_SCHEMA.names())
    if ev.is_empty():
        return _empty(interval_s)
    ts_min, ts_max = ev["ts"].min(), ev["ts"].max()
    assert isinstance(ts_min, int)
    assert isinstance(ts_max, int)
    k_min, k_max = window_span(ts_min, ts_max, interval_s)
    builder = ReportBuilder(session_rows(ev), k_min, k_max, interval_s)
    report = builder.windows(k_max, ev)
    return Reports(interval_s, report.summary, builder.totals(), report.sessions, report.errors)


def _empty(interval_s: int) -> Reports:
    """Reports of no events: the tables' columns, no rows, and a totals row of zeros and blanks."""
    one = {**dict.fromkeys(EVENT_SCHEMA.names()), "ts": 0, "event_id": "", "session_id": "",
           "type": "cycle_completed"}
    shape = build_reports(pl.DataFrame([one], schema=EVENT_SCHEMA), interval_s)
    assert shape.sessions is not None
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


def session_files(report: WindowReport) -> dict[str, bytes]:
    """The per-session file of each window in ``report``: names and bytes."""
    by_window = report.sessions.partition_by("window_end", as_dict=True, maintain_order=True)
    header = report.sessions.clear()
    return {session_file_name(end): _csv_bytes(by_window.get((end,), header))
            for end in report.summary["window_end"].to_list()}


def run_files(summary: pl.DataFrame, totals: pl.DataFrame, errors: pl.DataFrame) -> dict[str, bytes]:
    """The whole run's files (summary, totals, errors): names and bytes."""
    return {SUMMARY_FILE: _csv_bytes(summary), TOTALS_FILE: _csv_bytes(totals), ERRORS_FILE: _csv_bytes(errors)}


def render_reports(reports: Reports, *, closed_until: int | None = None) -> dict[str, bytes]:
    """Every report file's name and bytes.

    With ``closed_until`` (epoch microseconds, a window boundary), only the
    windows that end by then are included (summary and errors rows, per-window
    files); the totals always cover every event.
    """
    if reports.sessions is None:
        raise ValueError("render_reports: these reports' session rows were not kept (they went to their files)")
    summary, errors = reports.summary, reports.errors
    if closed_until is not None:
        summary = summary.filter(pl.col("window_end") <= closed_until)
        errors = errors.filter(pl.col("window_end") <= closed_until)
    files = run_files(summary, reports.totals, errors)
    sessions = reports.sessions.filter(pl.col("window_end") <= closed_until) if closed_until is not None else \
        reports.sessions
    files.update(session_files(WindowReport(summary, sessions, errors)))
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
