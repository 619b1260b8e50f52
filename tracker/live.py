"""Reports while the test runs: which windows are closed, and writing them (and rewriting them for late events).

A window ``[ws, we)`` is closed when an event at or after ``we + grace`` has
been read, or when the wall clock passes ``we + grace`` while the log is
idle. Events go into the :class:`~tracker.engine.Engine` once; each flush
writes, through the :class:`~tracker.output.ReportWriter`, only the closed
windows that changed and the run's files. So the files on disk are always
what ``tracker replay`` writes for the events read so far, for the windows
closed so far (and, after ``flush(final=True)``, for all windows), and a
flush costs the same at hour 6 as at minute 5.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl

from .engine import Engine
from .events import Event
from .frames import events_frame
from .limits import DEFAULT_GRACE_S, DEFAULT_INTERVAL_S
from .output import ReportWriter
from .store import WindowStore
from .thresholds import NO_WINDOW, Threshold, Verdict

__all__ = ("DEFAULT_GRACE_S", "FlushResult", "LiveReporter")

_SECOND: Final = 1_000_000
_MAX_GRACE_S: Final = 365 * 86_400


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What one flush wrote."""

    written: tuple[Path, ...]
    failed: tuple[Path, ...]
    closed_until: int | None
    #: Window verdicts that failed in the windows this flush closed (each said once).
    breaches: tuple[Verdict, ...] = ()


class LiveReporter:
    """Folds events into an engine and writes the closed windows' reports into ``out_dir``."""

    def __init__(self, out_dir: str | os.PathLike[str], *, interval_s: int = DEFAULT_INTERVAL_S,
                 grace_s: float = DEFAULT_GRACE_S, store: WindowStore | None = None,
                 warn: Callable[[str], None] | None = None, session_timeout_s: float | None = None,
                 goodput: dict[str, float] | None = None, thresholds: Iterable[Threshold] = ()) -> None:
        if type(interval_s) is not int or interval_s < 1:
            raise ValueError(f"interval_s: must be a whole number of seconds >= 1, got {interval_s!r}")
        if not grace_s >= 0:
            raise ValueError(f"grace_s: must be >= 0, got {grace_s!r}")
        if grace_s > _MAX_GRACE_S:
            raise ValueError(f"grace_s: must be at most {_MAX_GRACE_S} (a year), got {grace_s!r}")
        self.out_dir = Path(out_dir)
        self.interval_s = interval_s
        self.grace_us = int(grace_s * _SECOND)
        self._every = interval_s * _SECOND
        self.engine = Engine(interval_s, store=store, session_timeout_s=session_timeout_s, goodput=goodput)
        self.writer = ReportWriter(self.engine, out_dir, warn=warn, thresholds=thresholds)
        #: The (threshold, window start) breaches said so far: each is said once, also when a late event makes a
        #: window closed earlier fail.
        self.breaches_said: set[tuple[str, int]] = set()
        self._pending = 0  # events added since the last flush
        self.closed_until: int | None = None  # windows ending at or before this are closed
        self.late = 0  # events read for a window already closed
        self.windows_written = 0
        #: The run's end (the newest event's time) as of the last flush: the closed windows' covered seconds.
        self.written_end: int | None = None

    @property
    def max_ts(self) -> int | None:
        return self.engine.ts_max

    @property
    def min_ts(self) -> int | None:
        return self.engine.ts_min

    # -- input --------------------------------------------------------------

    def add_events(self, events: Iterable[Event]) -> int:
        """Add decoded events; returns how many new ones were late."""
        return self.add_frame(events_frame(events))

    def add_frame(self, frame: pl.DataFrame) -> int:
        """Add events as a frame of :data:`~tracker.engine.EVENT_SCHEMA`; returns how many new ones were late
        (a duplicate of an event already read is neither new nor late)."""
        new = self.engine.add(frame)
        self._pending += new.height
        late = 0 if self.closed_until is None or new.is_empty() else int((new["ts"] < self.closed_until).sum())
        self.late += late
        return late

    # -- closing windows ----------------------------------------------------

    def _boundary(self, moment: int) -> int:
        """The end of the last window that ends at or before ``moment - grace``."""
        return (moment - self.grace_us) // self._every * self._every

    def advance(self, *, now_us: int | None = None, idle: bool = False) -> bool:
        """Close windows by the newest event time and, when idle, by the wall clock.

        True when a window holding events (at or after the first event's) was closed by this call.
        """
        if self.max_ts is None:
            return False
        boundary = self._boundary(self.max_ts)
        if idle and now_us is not None:
            boundary = max(boundary, self._boundary(now_us))
        if self.closed_until is not None and boundary <= self.closed_until:
            return False
        before = self.closed_until
        self.closed_until = boundary
        assert self.min_ts is not None
        first_end = self.min_ts // self._every * self._every + self._every
        return boundary >= first_end and (before is None or before < boundary)

    @property
    def run_changed(self) -> bool:
        """True when the summary written is out of date without a new window closed: its last closed window was
        covered only in part (closed by the clock while the log was idle) and newer events moved the run's end, so
        that window's covered seconds and rates changed."""
        if self.written_end is None or self.closed_until is None:
            return False
        return self.written_end < self.closed_until and self.engine.ts_max != self.written_end

    @property
    def dirty(self) -> bool:
        """True when events were added since the last flush."""
        return self._pending > 0

    def flush(self, *, final: bool = False) -> FlushResult:
        """Write the files that changed for the closed windows; ``final`` closes every window."""
        k_last: int | None = None  # final: every window
        if not final:
            k_last = self.closed_until // self._every - 1 if self.closed_until is not None else -(2**62)
        # The HTML report reloads itself while the run is live (at most once a minute), not after the final flush.
        result = self.writer.flush(k_last, reload_s=None if final else max(5, min(60, self.interval_s)))
        self.windows_written = result.windows
        breaches = self._breaches(k_last)
        if not result.failed:
            self.written_end = self.engine.ts_max
        self._pending = 0
        if final and self.max_ts is not None:
            every_window = (self.max_ts // self._every + 1) * self._every
            self.closed_until = max(every_window, self.closed_until if self.closed_until is not None else every_window)
        return FlushResult(result.written, result.failed, None if final else self.closed_until, breaches)

    def _breaches(self, k_last: int | None) -> tuple[Verdict, ...]:
        """The failed verdicts of closed windows (up to ``k_last``; None: every window) not said before."""
        new = []
        for verdict in self.writer.verdicts:
            start = verdict.window_start
            if verdict.ok or start is None or (k_last is not None and start > k_last * self._every):
                continue
            key = (verdict.threshold.text, start)
            if key not in self.breaches_said:
                self.breaches_said.add(key)
                new.append(verdict)
        return tuple(new)

    def failing(self) -> list[str]:
        """The thresholds failing so far, each with where: ``ttft_ms_p95<500 (3 windows, run)``."""
        where: dict[str, list[str]] = {}
        for verdict in self.writer.verdicts:
            if not verdict.ok:
                where.setdefault(verdict.threshold.text, []).append(
                    "window" if verdict.window_start is not None else verdict.scope)
        return [f"{text} ({', '.join(_counted(places))})" for text, places in where.items()]


def _counted(places: list[str]) -> list[str]:
    windows = places.count("window")
    return [*([f"{windows} window{'s' if windows > 1 else ''}"] if windows else []),
            *(["no window had a value"] if NO_WINDOW in places else []), *(["run"] if "run" in places else [])]
