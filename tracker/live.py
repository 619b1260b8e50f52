"""Reports while the test runs: windows are written once closed, and rewritten when late events change them.

A window ``[ws, we)`` is closed when an event at or after ``we + grace`` has
been read, or when the wall clock passes ``we + grace`` while the log is
idle. Each flush aggregates every event read so far with the same code as
replay (:func:`~tracker.report.build_reports`) and writes each file whose
bytes changed, so the files on disk are always what ``tracker replay``
writes for the events read so far, for the windows closed so far (and, after
``flush(final=True)``, for all windows).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl

from .events import Event
from .report import (
    DEFAULT_INTERVAL_S,
    EVENT_SCHEMA,
    Reports,
    build_reports,
    distinct,
    events_frame,
    render_reports,
    write_atomically,
)

__all__ = ("DEFAULT_GRACE_S", "FlushResult", "LiveReporter")

DEFAULT_GRACE_S: Final = 5
_SECOND: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What one flush wrote."""

    reports: Reports
    written: tuple[Path, ...]
    closed_until: int | None


class LiveReporter:
    """Collects events and writes the closed windows' reports into ``out_dir``."""

    def __init__(self, out_dir: str | os.PathLike[str], *, interval_s: int = DEFAULT_INTERVAL_S,
                 grace_s: float = DEFAULT_GRACE_S) -> None:
        if type(interval_s) is not int or interval_s < 1:
            raise ValueError(f"interval_s: must be a whole number of seconds >= 1, got {interval_s!r}")
        if not grace_s >= 0:
            raise ValueError(f"grace_s: must be >= 0, got {grace_s!r}")
        self.out_dir = Path(out_dir)
        self.interval_s = interval_s
        self.grace_us = int(grace_s * _SECOND)
        self._every = interval_s * _SECOND
        self._frames: list[pl.DataFrame] = []
        self._pending = 0  # events added since the last flush
        self._on_disk: dict[str, bytes] = {}
        self.max_ts: int | None = None
        self.min_ts: int | None = None
        self.closed_until: int | None = None  # windows ending at or before this are closed
        self.late = 0  # events read for a window already closed
        self.windows_written = 0

    # -- input --------------------------------------------------------------

    def add_events(self, events: Iterable[Event]) -> int:
        """Add decoded events; returns how many were late."""
        return self.add_frame(events_frame(events))

    def add_frame(self, frame: pl.DataFrame) -> int:
        """Add events as a frame of :data:`~tracker.report.EVENT_SCHEMA`; returns how many were late."""
        if frame.is_empty():
            return 0
        frame = frame.select(EVENT_SCHEMA.names())
        self._frames.append(frame)
        self._pending += frame.height
        late = 0 if self.closed_until is None else int((frame["ts"] < self.closed_until).sum())
        self.late += late
        top, bottom = frame["ts"].max(), frame["ts"].min()
        assert isinstance(top, int)
        assert isinstance(bottom, int)
        self.max_ts = top if self.max_ts is None else max(self.max_ts, top)
        self.min_ts = bottom if self.min_ts is None else min(self.min_ts, bottom)
        return late

    def events(self) -> pl.DataFrame:
        """Every distinct event added so far (see :func:`~tracker.report.distinct`), in the order added."""
        if len(self._frames) > 1:
            self._frames = [pl.concat(self._frames, rechunk=True)]
        frame = self._frames[0] if self._frames else events_frame([])
        return distinct(frame)

    # -- closing windows ----------------------------------------------------

    def _boundary(self, moment: int) -> int:
        """The end of the last window that ends at or before ``moment - grace``."""
        return (moment - self.grace_us) // self._every * self._every

    def advance(self, *, now_us: int | None = None, idle: bool = False) -> bool:
        """Close windows by the newest event time and, when idle, by the wall clock.

        True when a window holding events (at or after the first event's) was closed by this call.
        """
        candidates = []
        if self.max_ts is not None:
            candidates.append(self._boundary(self.max_ts))
            if idle and now_us is not None:
                candidates.append(self._boundary(now_us))
        if not candidates:
            return False
        boundary = max(candidates)
        if self.closed_until is not None and boundary <= self.closed_until:
            return False
        before = self.closed_until
        self.closed_until = boundary
        assert self.min_ts is not None
        first_end = self.min_ts // self._every * self._every + self._every
        return boundary >= first_end and (before is None or before < boundary)

    @property
    def dirty(self) -> bool:
        """True when events were added since the last flush."""
        return self._pending > 0

    def flush(self, *, final: bool = False) -> FlushResult:
        """Aggregate everything read and write the files that changed; ``final`` closes every window."""
        reports = build_reports(self.events(), self.interval_s)
        closed = None if final else (self.closed_until if self.closed_until is not None else -1)
        files = render_reports(reports, closed_until=closed)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name, data in files.items():
            if self._on_disk.get(name) != data:
                write_atomically(self.out_dir / name, data)
                self._on_disk[name] = data
                written.append(self.out_dir / name)
        self.windows_written = reports.summary.height if final else sum(
            1 for name in files if name.startswith("session_tracking_report_"))
        self._pending = 0
        if final and self.max_ts is not None:
            every_window = self._boundary(self.max_ts + self.grace_us) + self._every
            self.closed_until = max(every_window, self.closed_until if self.closed_until is not None else every_window)
        return FlushResult(reports, tuple(written), closed)
