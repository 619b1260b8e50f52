"""Tests for tracker.recent: the last minute of reading, for the live view."""

from __future__ import annotations

import polars as pl

from tracker.recent import RecentReads


def _read(*rows: tuple[str, float | None]) -> pl.DataFrame:
    """A read of events: (type, response_time_ms) each, all of session s1."""
    return pl.DataFrame({"type": [t for t, _ in rows], "session_id": ["s1"] * len(rows),
                         "response_time_ms": [v for _, v in rows]},
                        schema={"type": pl.String, "session_id": pl.String, "response_time_ms": pl.Float64})


class TestRecentReads:
    def test_counts_by_type_and_the_answers_rows(self) -> None:
        """A batch holds its read time, its events by type and its answers' rows only."""
        reads = RecentReads()
        reads.note(_read(("question_asked", None), ("question_answered", 10.0), ("question_answered", 12.5)), 3.0)
        (batch,) = reads.batches
        assert (batch.at, batch.counts) == (3.0, {"question_asked": 1, "question_answered": 2})
        assert batch.answers.rows() == [("s1", 10.0), ("s1", 12.5)]

    def test_batches_read_60_s_before_the_newest_go(self) -> None:
        """A batch read exactly 60 s before the newest stays; one read earlier goes."""
        reads = RecentReads()
        for at in (0.0, 10.0, 70.0):
            reads.note(_read(("cycle_completed", None)), at)
        assert [b.at for b in reads.batches] == [10.0, 70.0]

    def test_the_oldest_answers_go_first_and_their_counts_stay(self) -> None:
        """Past answers_kept rows, the oldest batches' answers are emptied whole; every count is kept."""
        reads = RecentReads(answers_kept=3)
        reads.note(_read(("question_answered", 1.0), ("question_answered", 2.0)), 0.0)
        reads.note(_read(("question_answered", 3.0), ("question_answered", 4.0)), 1.0)
        assert [b.answers.height for b in reads.batches] == [0, 2]
        assert [b.counts for b in reads.batches] == [{"question_answered": 2}] * 2

    def test_one_read_over_the_limit_keeps_its_newest_answers(self) -> None:
        """A single read of more answers than are kept keeps its last ones."""
        reads = RecentReads(answers_kept=2)
        reads.note(_read(*(("question_answered", float(i)) for i in range(5))), 0.0)
        assert reads.batches[0].answers["response_time_ms"].to_list() == [3.0, 4.0]
        assert reads.batches[0].counts == {"question_answered": 5}
