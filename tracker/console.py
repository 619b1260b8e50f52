"""The live console view of a tail: a full screen on a terminal, a plain line now and then otherwise.

On a terminal the view is a :class:`rich.live.Live` on the alternate screen (the scrollback is left as it was),
laid out to fit 80 columns and redrawn about twice a second by the thread that runs the tail; when it ends, a
plain summary is printed to the normal screen. Elsewhere (a pipe, a CI log) it writes a plain line every 10 s.

The rolling figures cover the events *read* in the last 60 s of wall clock (not of event time), so the rates
fall to 0 when the logs go quiet, and a "no events for N s" line says so after 5 s.
"""

from __future__ import annotations

import atexit
import logging
import sys
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Final, TextIO, TypedDict

import polars as pl
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .events import format_ts

if TYPE_CHECKING:
    from .tail import Tail

__all__ = ("IDLE_S", "ROLLING_S", "Figures", "LiveView", "line", "render", "snapshot", "summary", "warnings_to_stderr")

#: The rolling figures cover the events read in this many seconds of wall clock.
ROLLING_S: Final = 60
#: Past this many seconds without an event read, the view says so.
IDLE_S: Final = 5.0
REFRESH_S: Final = 0.5
LINE_EVERY_S: Final = 10.0
_QUANTILES: Final = (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99))
_TOP: Final = 5
#: A session id longer than this is shown cut, with an ellipsis (numbers never are).
_ID_CELLS: Final = 16
_SUMMARY_WARNINGS: Final = 5
_WARNING_CHARS: Final = 200


class Figures(TypedDict):
    """What the view shows: counts since the start, and the rolling figures of the last ``ROLLING_S`` seconds."""

    active: int
    events: int
    rejected: int
    late: int
    windows: int
    rotations: int
    truncations: int
    #: The newest event time read (epoch microseconds), None before any event.
    newest: int | None
    #: Seconds since events were last read; None when none were read yet.
    idle_s: float | None
    questions_per_s: float
    answers_per_s: float
    cycles_per_s: float
    errors_per_s: float
    #: Response-time percentiles (p50, p90, p95, p99, max) in ms; None without answers in the window.
    rt: dict[str, float] | None
    #: (session, answers, mean response time ms), the five slowest and the five busiest sessions.
    slowest: list[tuple[str, int, float]]
    busiest: list[tuple[str, int, float]]
    #: How many thresholds were given, and the ones failing so far in the windows written (and the run so far).
    thresholds: int
    failing: list[str]


def snapshot(tail: Tail, *, now: float | None = None, since: float | None = None,
             rolling_s: int = ROLLING_S) -> Figures:
    """The figures of ``tail`` at ``now`` (on ``tail.clock``), the rolling ones over the events read since
    ``now - rolling_s``.

    Rates are counts over the window's span: ``rolling_s``, or less while reading began less than ``rolling_s``
    ago (at ``since``, else at the window's first read), at least 1 s.
    """
    now = tail.clock() if now is None else now
    start = now - rolling_s
    batches = [batch for batch in tail.recent if batch.at >= start]
    figures = Figures(
        active=tail.active_sessions(),
        events=tail.stats.events,
        rejected=tail.decoder.rejected.total(),
        late=tail.reporter.late,
        windows=tail.reporter.windows_written,
        rotations=tail.stats.rotations,
        truncations=tail.stats.truncations,
        newest=tail.reporter.max_ts,
        idle_s=max(0.0, now - tail.recent[-1].at) if tail.recent else None,
        questions_per_s=0.0, answers_per_s=0.0, cycles_per_s=0.0, errors_per_s=0.0,
        rt=None, slowest=[], busiest=[],
        thresholds=len(tail.thresholds), failing=tail.reporter.failing(),
    )
    if not batches:
        return figures
    began = batches[0].at if since is None else min(since, batches[0].at)
    span = max(1.0, min(float(rolling_s), now - began))
    counts: dict[str, int] = {}
    for batch in batches:
        for kind, n in batch.counts.items():
            counts[kind] = counts.get(kind, 0) + n
    figures["questions_per_s"] = counts.get("question_asked", 0) / span
    figures["answers_per_s"] = counts.get("question_answered", 0) / span
    figures["cycles_per_s"] = counts.get("cycle_completed", 0) / span
    figures["errors_per_s"] = counts.get("error", 0) / span
    answers = pl.concat([batch.answers for batch in batches], rechunk=False).filter(
        pl.col("response_time_ms").is_not_null())
    if answers.is_empty():
        return figures
    rt = answers["response_time_ms"]
    percentiles = {name: float(rt.quantile(q, interpolation="linear") or 0.0) for name, q in _QUANTILES}
    figures["rt"] = percentiles | {"max": float(rt.max())}  # type: ignore[arg-type]
    by_session = answers.group_by("session_id").agg(n=pl.len(), mean=pl.col("response_time_ms").mean())

    def top(column: str) -> list[tuple[str, int, float]]:
        rows = by_session.sort(column, "session_id", descending=[True, False]).head(_TOP).rows()
        return [(str(sid), int(n), float(mean)) for sid, n, mean in rows]

    figures["slowest"] = top("mean")
    figures["busiest"] = top("n")
    return figures


# -- the screen ---------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _rate(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def _idle(seconds: float) -> str:
    return f"no events for {seconds:,.0f} s"


def _sid(session_id: str) -> Text:
    """A session id, cut to ``_ID_CELLS`` cells with an ellipsis (so the numbers beside it always fit)."""
    text = Text(session_id, no_wrap=True, overflow="ellipsis")
    text.truncate(_ID_CELLS, overflow="ellipsis")
    return text


def _thresholds(f: Figures) -> str | None:
    """The thresholds' state in a line (None without thresholds)."""
    if not f["thresholds"]:
        return None
    if not f["failing"]:
        return f"thresholds: all {f['thresholds']} passing"
    return f"thresholds failing: {'; '.join(f['failing'])}"


def render(title: str, f: Figures, *, warning: str | None = None) -> RenderableType:
    """The live screen for ``f``: fits 80 columns (a long title or session id is cut, never a number)."""
    head = Table.grid(expand=True, padding=(0, 1))
    head.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    head.add_column(justify="right", no_wrap=True)
    newest = f["newest"]
    idle = f["idle_s"]
    if idle is not None and idle > IDLE_S:
        status = Text(_idle(idle), style="bold yellow")
    else:
        status = Text("waiting for events", style="dim") if newest is None else Text("reading", style="green")
    head.add_row(Text(title, style="bold"), Text("Ctrl-C stops", style="dim"))
    head.add_row(Text(f"newest event (UTC) {format_ts(newest) if newest is not None else '-'}"), status)

    counts = Table.grid(padding=(0, 2))
    for _ in range(2):
        counts.add_column(no_wrap=True)
        counts.add_column(justify="right", no_wrap=True, min_width=9)
    counts.add_row("active sessions", f"{f['active']:,}", "windows written", f"{f['windows']:,}")
    counts.add_row("events read", f"{f['events']:,}", "rotations", f"{f['rotations']:,}")
    counts.add_row("rejected lines", Text(f"{f['rejected']:,}", style="red" if f["rejected"] else ""),
                   "truncations", f"{f['truncations']:,}")
    counts.add_row("late events", Text(f"{f['late']:,}", style="yellow" if f["late"] else ""), "", "")

    rolling = Table.grid(padding=(0, 1))
    rolling.add_column(no_wrap=True, min_width=16)
    for _ in range(5):
        rolling.add_column(justify="right", no_wrap=True, min_width=10)
    rt = f["rt"] or {}
    rolling.add_row(Text(f"last {ROLLING_S} s", style="bold"),
                    *(Text(name, style="bold") for name in ("questions/s", "answers/s", "cycles/s", "errors/s")))
    rolling.add_row("per second", _rate(f["questions_per_s"]), _rate(f["answers_per_s"]),
                    _rate(f["cycles_per_s"]), Text(_rate(f["errors_per_s"], 2), style="red" if f["errors_per_s"]
                                                   else ""))
    rolling.add_row(Text("response ms", style="bold"),
                    *(Text(name, style="bold") for name in ("p50", "p90", "p95", "p99", "max")))
    rolling.add_row("answers", *(_ms(rt.get(name)) for name in ("p50", "p90", "p95", "p99", "max")))

    sessions = Table.grid(padding=(0, 1))
    for gap in (0, 2):
        sessions.add_column(no_wrap=False, overflow="ellipsis", min_width=_ID_CELLS)  # the only column that shrinks
        sessions.add_column(justify="right", no_wrap=True, min_width=7)
        sessions.add_column(justify="right", no_wrap=True, min_width=8)
        if not gap:
            sessions.add_column(width=2)
    bold = "bold"
    sessions.add_row(Text("slowest sessions", style=bold), Text("answers", style=bold), Text("mean ms", style=bold),
                     "", Text("busiest sessions", style=bold), Text("answers", style=bold),
                     Text("mean ms", style=bold))
    for i in range(max(len(f["slowest"]), len(f["busiest"]))):
        cells: list[RenderableType] = []
        for rows in (f["slowest"], f["busiest"]):
            if i < len(rows):
                sid, n, mean = rows[i]
                cells += [_sid(sid), f"{n:,}", _ms(mean)]
            else:
                cells += ["", "", ""]
        sessions.add_row(*cells[:3], "", *cells[3:])
    parts: list[RenderableType] = [head, "", counts, "", rolling, "", sessions]
    if not f["slowest"]:
        parts.append(Text(f"no answers read in the last {ROLLING_S} s", style="dim"))
    verdict = _thresholds(f)
    if verdict is not None:
        text = Text(verdict, style="bold red" if f["failing"] else "green", overflow="fold")
        text.truncate(_WARNING_CHARS, overflow="ellipsis")
        parts += ["", text]
    if warning is not None:
        text = Text(f"warning: {warning}", style="yellow", overflow="fold")
        text.truncate(_WARNING_CHARS, overflow="ellipsis")  # at most three lines
        parts += ["", text]
    return Group(*parts)


def line(f: Figures) -> str:
    """The plain line written when the output is not a terminal."""
    p95 = _ms(f["rt"]["p95"]) if f["rt"] is not None else "-"
    text = (f"active {f['active']} events {f['events']} answers/s {f['answers_per_s']:.1f} p95 {p95} ms "
            f"errors/s {f['errors_per_s']:.2f} late {f['late']} rejected {f['rejected']} windows {f['windows']}")
    idle = f["idle_s"]
    if f["thresholds"]:
        text += f" thresholds failing {len(f['failing'])} of {f['thresholds']}"
    return f"{text} ({_idle(idle)})" if idle is not None and idle > IDLE_S else text


def summary(title: str, f: Figures, warnings: list[str]) -> list[str]:
    """The plain lines left on the normal screen when the live screen ends."""
    newest = format_ts(f["newest"]) if f["newest"] is not None else "-"
    lines = [
        title,
        f"  active sessions {f['active']:,}, events read {f['events']:,}, rejected lines {f['rejected']:,}, "
        f"late events {f['late']:,}",
        f"  windows written {f['windows']:,}, rotations {f['rotations']:,}, truncations {f['truncations']:,}, "
        f"newest event {newest}",
        f"  last {ROLLING_S} s: questions {_rate(f['questions_per_s'])}/s, answers {_rate(f['answers_per_s'])}/s, "
        f"cycles {_rate(f['cycles_per_s'])}/s, errors {_rate(f['errors_per_s'], 2)}/s",
    ]
    rt = f["rt"]
    if rt is not None:
        lines.append("  response ms: " + ", ".join(f"{name} {_ms(value)}" for name, value in rt.items()))
        lines.append("  slowest sessions (mean ms): " + ", ".join(f"{s} {_ms(m)}" for s, _, m in f["slowest"]))
        lines.append("  busiest sessions (answers): " + ", ".join(f"{s} {n:,}" for s, n, _ in f["busiest"]))
    verdict = _thresholds(f)
    if verdict is not None:
        lines.append(f"  {verdict}")
    if warnings:
        lines.append(f"  {len(warnings)} warning{'s' if len(warnings) > 1 else ''} while the live view was on"
                     + (f", the last {_SUMMARY_WARNINGS}:" if len(warnings) > _SUMMARY_WARNINGS else ":"))
        lines += [f"    {message}" for message in warnings[-_SUMMARY_WARNINGS:]]
    return lines


class LiveView:
    """Shows a tail's progress: a live screen on a terminal (redrawn every ``refresh_s``), else a plain line every
    ``line_every_s``.

    ``update`` is given to :meth:`Tail.run` as its ``on_tick``; ``close`` (or leaving a ``with`` block) ends the
    live screen and prints the summary. On a terminal a forced update is the last one: it does the same.
    ``clock`` is the one the tail's ``recent`` read times are taken on (``Tail.clock``, by default both
    ``time.monotonic``). A ``console`` given is used as it is (tests give one that records).
    """

    def __init__(self, title: str, stream: TextIO | None = None, *, tty: bool | None = None,
                 refresh_s: float = REFRESH_S, line_every_s: float = LINE_EVERY_S,
                 clock: Callable[[], float] = time.monotonic, console: Console | None = None) -> None:
        self.title = title
        self.clock = clock
        if console is not None:
            self.stream: IO[str] = console.file
            self.tty = console.is_terminal if tty is None else tty
        else:
            self.stream = stream if stream is not None else sys.stdout
            self.tty = self.stream.isatty() if tty is None else tty
        self.console = console if console is not None or not self.tty else Console(file=self.stream,
                                                                                   force_terminal=True)
        self.every = refresh_s if self.tty else line_every_s
        self.started = clock()
        self._last: float | None = None
        self._live: Live | None = None
        self._tail: Tail | None = None
        self._warnings_from: int | None = None
        self._closed = False

    def __enter__(self) -> LiveView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def figures(self, tail: Tail, now: float | None = None) -> Figures:
        """The tail's figures now; before any event read, idle since the view started."""
        now = self.clock() if now is None else now
        f = snapshot(tail, now=now, since=self.started)
        if f["idle_s"] is None:
            f["idle_s"] = max(0.0, now - self.started)
        return f

    def update(self, tail: Tail, *, force: bool = False) -> None:
        """Redraw (write a line), at most every period unless ``force``; on a terminal ``force`` also closes."""
        now = self.clock()
        self._tail = tail
        if self._warnings_from is None:
            self._warnings_from = len(tail.warnings)
        if self.tty and force:
            self.close(tail)
            return
        if self._closed or (not force and self._last is not None and now - self._last < self.every):
            return
        self._last = now
        f = self.figures(tail, now)
        if not self.tty:
            self.stream.write(line(f) + "\n")
            self.stream.flush()
            return
        renderable = render(self.title, f, warning=tail.warnings[-1] if tail.warnings else None)
        if self._live is None:
            assert self.console is not None
            self._live = Live(console=self.console, screen=True, auto_refresh=False, transient=True)
            self._live.start()
            atexit.register(self._stop_live)  # never leave a terminal on the alternate screen
        self._live.update(renderable, refresh=True)

    def close(self, tail: Tail | None = None) -> None:
        """End the view: leave the live screen and print the plain summary to the normal screen (not on a
        terminal: write a last line). Once; later updates do nothing."""
        if self._closed:
            return
        self._closed = True
        self._stop_live()
        tail = tail if tail is not None else self._tail
        if tail is None:
            return
        f = self.figures(tail)
        if self.tty:
            warnings = tail.warnings[self._warnings_from or 0:]
            self.stream.write("\n".join(summary(self.title, f, warnings)) + "\n")
        else:
            self.stream.write(line(f) + "\n")
        self.stream.flush()

    def _stop_live(self) -> None:
        if self._live is not None:
            live, self._live = self._live, None
            atexit.unregister(self._stop_live)
            live.stop()


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when each record comes (a program, or a test, may have replaced it since:
    a stream kept from before may be closed)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass  # (StreamHandler sets it)


def warnings_to_stderr() -> None:
    """The tail's warnings go to stderr as ``tracker: WARNING: ...``, unless the program configured the "tracker"
    logger itself; watchfiles' own notices are left out."""
    import logging

    logging.getLogger("watchfiles").setLevel(logging.ERROR)
    logger = logging.getLogger("tracker")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("tracker: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
