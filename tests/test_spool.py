"""Tests for tracker.spool: events kept by window between a replay's two passes, in memory or on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest.mock import patch

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import T0, event
from tests.test_report import LOGS, random_events
from tracker import spool as spool_module
from tracker.report import EVENT_SCHEMA, WINDOW_COLUMNS, ReportBuilder, events_frame, session_rows
from tracker.spool import SPOOL_PREFIX, Spool

S = 1_000_000


def _frame(*specs: tuple[int, str, str, int]) -> pl.DataFrame:
    """Events from (seq, session, type, seconds after T0)."""
    fields: dict[str, dict[str, Any]] = {
        "session_registered": {"username": "u", "course_numbers": [1]}, "error": {"error": "x"},
        "question_answered": {"response_time_ms": 1.5}}
    return events_frame([event(seq, sid, kind, T0 + sec * S, **fields.get(kind, {})) for seq, sid, kind, sec in specs])


def _sessions_of(rows: pl.DataFrame, k_min: int, k_max: int) -> list[dict[str, Any]]:
    """What a builder makes of these session rows: every window's per-session rows (with names and totals)."""
    builder = ReportBuilder(rows, k_min, k_max, 60)
    none = pl.DataFrame(schema={c: events_frame([]).schema[c] for c in WINDOW_COLUMNS})
    return builder.windows(k_max, none).sessions.to_dicts()


class TestSpool:
    def test_windows_come_back_in_the_order_added(self, tmp_path: Path) -> None:
        """Each window's events come back in read order, from disk and memory alike, with every event column."""
        first = _frame((1, "s1", "question_asked", 0), (2, "s1", "question_asked", 70), (3, "s2", "cycle_completed", 5))
        second = _frame((4, "s2", "question_asked", 1), (5, "s3", "question_asked", 61))
        with Spool(60, tmp_path, memory_bytes=0) as spool:
            spool.add(first)  # spilled at once (budget 0)
            with patch.object(spool, "memory_bytes", 1 << 30):
                spool.add(second)  # stays in memory
            k0 = (T0 // S) // 60
            window0, window1 = spool.take(k0), spool.take(k0 + 1)
        assert window0.columns == EVENT_SCHEMA.names()
        assert window0["event_id"].to_list() == ["t-1", "t-3", "t-4"]
        assert window1["event_id"].to_list() == ["t-2", "t-5"]
        assert spool.spills == 1

    def test_spill_folder_is_made_on_demand_and_removed(self, tmp_path: Path) -> None:
        """Nothing is written while events fit the budget; past it a folder appears, and close removes it."""
        with Spool(60, tmp_path) as spool:
            spool.add(_frame((1, "s1", "question_asked", 0)))
            assert spool.folder is None
            assert list(tmp_path.iterdir()) == []
        with Spool(60, tmp_path, memory_bytes=0) as spool:
            spool.add(_frame((1, "s1", "question_asked", 0)))
            assert spool.folder is not None
            assert spool.folder.name.startswith(SPOOL_PREFIX)
            assert len(list(spool.folder.iterdir())) == 1
            assert spool.spilled_bytes > 0
        assert list(tmp_path.iterdir()) == []

    def test_error_text_counts_against_the_budget(self, tmp_path: Path) -> None:
        """Long distinct error messages fill the memory budget (they are text, not categoricals) and spill."""
        errors = [event(n, "s1", "error", T0 + n, error=f"{n} " + "x" * 1000) for n in range(1, 101)]
        with Spool(60, tmp_path, memory_bytes=50_000) as spool:
            spool.add(events_frame(errors))
            assert spool.spills == 1

    def test_taken_windows_leave_disk_and_memory(self, tmp_path: Path) -> None:
        """A window taken is no longer held: its file is deleted and taking it again gives no events."""
        with Spool(60, tmp_path, memory_bytes=0) as spool:
            spool.add(_frame((1, "s1", "question_asked", 0)))
            k = (T0 // S) // 60
            assert spool.take(k).height == 1
            assert spool.folder is not None
            assert list(spool.folder.iterdir()) == []
            assert spool.take(k).height == 0

    def test_time_range_and_count(self, tmp_path: Path) -> None:
        """The spool knows the earliest and latest event time and how many events it was given."""
        with Spool(60, tmp_path) as spool:
            assert spool.ts_min is None
        with Spool(60, tmp_path) as spool:
            spool.add(_frame((1, "s1", "question_asked", 30)))
            spool.add(_frame((2, "s1", "question_asked", 10), (3, "s1", "question_asked", 90)))
            spool.add(events_frame([]))
        assert (spool.ts_min, spool.ts_max, spool.events) == (T0 + 10 * S, T0 + 90 * S, 3)

    @pytest.mark.parametrize(("interval", "memory"), [(0, 1), (60, -1), (60, 1.5)])
    def test_bad_settings(self, tmp_path: Path, interval: int, memory: int) -> None:
        """A non-positive interval or a negative or fractional budget is refused, quoting the value."""
        with pytest.raises(ValueError, match=repr(interval) if interval < 1 else repr(memory)):
            Spool(interval, tmp_path, memory_bytes=memory)

    @settings(max_examples=40, deadline=None)
    @given(LOGS, st.integers(1, 6))
    def test_session_rows_block_by_block(self, tmp_path_factory: pytest.TempPathFactory,
                                         steps: list[tuple[str, str, int, float, str | None]], blocks: int) -> None:
        """Sessions found block by block (reduced at every block) are those of all events at once."""
        frame = events_frame(random_events(steps))
        size = -(-frame.height // blocks)
        with patch.object(spool_module, "_REDUCE_ROWS", 0), \
                Spool(60, tmp_path_factory.mktemp("spool")) as spool:
            for start in range(0, frame.height, size):
                spool.add(frame.slice(start, size))
            rows = spool.session_rows()
        k_min, k_max = int(frame["ts"].min()) // (60 * S), int(frame["ts"].max()) // (60 * S)  # type: ignore[arg-type]
        assert rows.height <= 3 * frame["session_id"].n_unique()
        expected = _sessions_of(session_rows(frame), k_min, k_max)
        assert _sessions_of(rows, k_min, k_max) == expected
