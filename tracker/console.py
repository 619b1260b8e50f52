"""The live console view of a tail: a refreshing screen on a terminal, periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Final, TextIO

import polars as pl

from .events import format_ts

if TYPE_CHECKING:
    from .tail import Tail

__all__ = ("LiveView", "snapshot")

ROLLING_S: Final = 60
_CLEAR: Final = "\x1b[H\x1b[J"


def snapshot(tail: Tail, *, rolling_s: int = ROLLING_S) -> dict[str, object]:
    """The figures the view shows, from the tail's recent events (the last ``rolling_s`` seconds of event time)."""
    recent = pl.concat([frame for _, frame in tail.recent]) if tail.recent else pl.DataFrame()
    figures: dict[str, object] = {
        "active": tail.active_sessions(),
        "events": tail.stats.events,
        "rejected": tail.decoder.rejected.total(),
        "late": tail.reporter.late,
        "windows": tail.reporter.windows_written,
        "rotations": tail.stats.rotations,
        "truncations": tail.stats.truncations,
        "newest": tail.reporter.max_ts,
    }
    if recent.is_empty() or tail.reporter.max_ts is None:
        return figures
    since = tail.reporter.max_ts - rolling_s * 1_000_000
    window = recent.filter(pl.col("ts") >= since)
    answers = window.filter(pl.col("type") == "question_answered")
    counts = dict(window.group_by("type").len().iter_rows())
    oldest = window["ts"].min()
    assert isinstance(oldest, int)
    span = max(1.0, min(rolling_s, (tail.reporter.max_ts - oldest) / 1e6))
    figures.update(
        {f"{name}_per_s": counts.get(kind, 0) / span for name, kind in
         (("questions", "question_asked"), ("answers", "question_answered"), ("cycles", "cycle_completed"),
          ("errors", "error"))},
    )
    rt = answers["response_time_ms"]
    if rt.len():
        figures["rt"] = {name: rt.quantile(q, interpolation="linear") for name, q in
                         (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99))} | {"max": rt.max()}
        by_session = answers.group_by("session_id").agg(n=pl.len(), mean=pl.col("response_time_ms").mean())
        figures["slowest"] = by_session.sort("mean", "session_id", descending=[True, False]).head(5).rows()
        figures["busiest"] = by_session.sort("n", "session_id", descending=[True, False]).head(5).rows()
    return figures


def _ms(value: object) -> str:
    return "-" if value is None else f"{value:,.0f}"


class LiveView:
    """Shows a tail's progress on ``stream``: a refreshing screen on a terminal, a line every ``line_every_s`` else."""

    def __init__(self, title: str, stream: TextIO | None = None, *, tty: bool | None = None,
                 refresh_s: float = 0.25, line_every_s: float = 10.0) -> None:
        self.title = title
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.every = refresh_s if self.tty else line_every_s
        self._last = 0.0

    def update(self, tail: Tail, *, force: bool = False) -> None:
        """Redraw, at most every refresh period unless ``force``."""
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        self._last = now
        figures = snapshot(tail)
        if self.tty:
            self.stream.write(_CLEAR + "\n".join(self.screen(figures)) + "\n")
        else:
            self.stream.write(self.line(figures) + "\n")
        self.stream.flush()

    def screen(self, f: dict[str, object]) -> list[str]:
        newest = f["newest"]
        lines = [
            f"{self.title}   newest event {format_ts(newest) if isinstance(newest, int) else '-'}   (Ctrl-C stops)",
            f"active sessions {f['active']}   events {f['events']:,}   windows written {f['windows']}   "
            f"late {f['late']}   rejected lines {f['rejected']}   rotations {f['rotations']}   "
            f"truncations {f['truncations']}",
        ]
        if "answers_per_s" not in f:
            return [*lines, "waiting for events..."]
        lines.append(
            f"last {ROLLING_S} s: questions {f['questions_per_s']:.1f}/s   answers {f['answers_per_s']:.1f}/s   "
            f"cycles {f['cycles_per_s']:.1f}/s   errors {f['errors_per_s']:.2f}/s")
        rt = f.get("rt")
        if isinstance(rt, dict):
            lines.append("response ms: " + "   ".join(f"{k} {_ms(v)}" for k, v in rt.items()))
            lines.append("slowest sessions (mean ms):  " + "   ".join(
                f"{sid} {_ms(mean)}" for sid, _, mean in f["slowest"]))  # type: ignore[attr-defined]
            lines.append("busiest sessions (answers):  " + "   ".join(
                f"{sid} {n}" for sid, n, _ in f["busiest"]))  # type: ignore[attr-defined]
        return lines

    def line(self, f: dict[str, object]) -> str:
        rt = f.get("rt")
        p95 = _ms(rt["p95"]) if isinstance(rt, dict) else "-"
        return (f"active {f['active']} events {f['events']} answers/s {f.get('answers_per_s', 0.0):.1f} "
                f"p95 {p95} ms errors/s {f.get('errors_per_s', 0.0):.2f} late {f['late']} "
                f"rejected {f['rejected']} windows {f['windows']}")
