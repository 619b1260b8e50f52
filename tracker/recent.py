"""What the tail read in the last minute, for the live view: each batch's read time, counts by type and answers.

The live view's rolling figures (rates, percentiles over the last 60 s of reading) are made from these batches
by :func:`tracker.console.snapshot`. A backlog read in a minute may be millions of events: every batch's counts
are kept, but only the newest :data:`RECENT_ANSWERS` answers' rows.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

import polars as pl

__all__ = ("RECENT_ANSWERS", "RECENT_S", "RecentBatch", "RecentReads")

#: The live view's figures cover the events read in this much wall-clock time.
RECENT_S: Final = 60
#: The answers kept for the live view's percentiles, the newest read.
RECENT_ANSWERS: Final = 100_000


@dataclass(frozen=True, slots=True)
class RecentBatch:
    """One batch the tail read: when (on the tail's clock), its events by type, and its answers (``session_id``,
    ``response_time_ms``; emptied once newer batches hold the answers kept)."""

    at: float
    counts: dict[str, int]
    answers: pl.DataFrame


class RecentReads:
    """The batches read in the last :data:`RECENT_S` seconds before the newest, oldest first."""

    def __init__(self, answers_kept: int = RECENT_ANSWERS) -> None:
        self.batches: deque[RecentBatch] = deque()
        self.answers_kept = answers_kept
        self._answers = 0  # the answers' rows the batches hold

    def note(self, frame: pl.DataFrame, now: float) -> None:
        """Add the events of one read (columns ``type``, ``session_id``, ``response_time_ms``), read at ``now``."""
        counts = {str(t): n for t, n in frame.group_by("type").len().iter_rows()}
        answers = frame.filter(pl.col("type") == "question_answered").select("session_id", "response_time_ms")
        if answers.height > self.answers_kept:
            answers = answers.tail(self.answers_kept)
        self.batches.append(RecentBatch(now, counts, answers))
        self._answers += answers.height
        while self.batches[0].at < now - RECENT_S:
            self._answers -= self.batches.popleft().answers.height
        for i, batch in enumerate(self.batches):  # the oldest answers go first; their counts stay
            if self._answers <= self.answers_kept:
                break
            if batch.answers.height:
                self._answers -= batch.answers.height
                self.batches[i] = RecentBatch(batch.at, batch.counts, batch.answers.clear())
