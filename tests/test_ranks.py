"""Tests of tracker.ranks: the whole run's values, exact order statistics in bounded memory."""

from __future__ import annotations

import math
import os
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.reference import percentile
from tracker.ranks import SortedValues

#: Values at the edges: zero of both signs, the smallest subnormal, the largest doubles of both signs, repeats.
EDGES = [0.0, -0.0, 5e-324, 1.0, 1.0, 2.5, 850.0, 1e308, 1.7976931348623157e308, -1.7976931348623157e308, -1.0]
VALUES = st.one_of(st.sampled_from(EDGES), st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
BATCHES = st.lists(st.lists(VALUES, max_size=12), min_size=1, max_size=8)


def filled(batches: list[list[float]], memory_values: int, folder: Path | None = None) -> SortedValues:
    values = SortedValues(lambda: folder, memory_values=memory_values)
    for batch in batches:
        values.add(pl.Series(batch, dtype=pl.Float64))
    return values


class TestOrderStatistics:
    """Every order statistic and quantile equals the sorted list's, however the values were spilled."""

    def test_a_quantile_between_subnormals(self) -> None:
        """Between two subnormal values a quantile is within two steps of the smallest double of the exact one."""
        batches = [[0.0] * 5 + [5e-324] + [1.0] * 5 + [2.2250738585e-313]]
        values = filled(batches, 1)
        try:
            assert values.quantile(0.5) == pytest.approx(percentile(batches[0], 0.5), rel=0.0, abs=2 * 5e-324)
            assert values.quantile(0.5) != 0.0
        finally:
            values.close()

    @settings(max_examples=100, deadline=None)
    @given(batches=BATCHES, memory_values=st.sampled_from([1, 2, 3, 5, 1000]))
    def test_equal_to_a_sorted_list(self, batches: list[list[float]], memory_values: int) -> None:
        """kth, quantile and max against sorted() and the reference's percentile, spilled or not."""
        flat = [v for batch in batches for v in batch]
        values = filled(batches, memory_values)
        try:
            assert len(values) == len(flat)
            want = sorted(flat)
            assert [values.kth(k) for k in range(len(flat))] == want
            for q in (0.0, 0.5, 0.9, 0.95, 0.99, 1.0):  # the reference's is exact, rounded once
                want_q = percentile(flat, q)
                # Within 1e-12 of it, or two steps of the smallest double (between subnormals, where a float has
                # only a few bits: the midpoint of 5e-324 and 2.2250738585e-313 rounds one step off).
                assert values.quantile(q) == (None if want_q is None
                                              else pytest.approx(want_q, rel=1e-12, abs=2 * 5e-324))
            assert values.max() == (max(flat) if flat else None)
        finally:
            values.close()

    def test_spilled_runs_are_files(self) -> None:
        """Past the budget the values go to files, one a spill, and the answers stay exact."""
        values = filled([[3.0, 1.0], [2.0, 5.0], [4.0]], memory_values=2)
        try:
            assert values.files == 2  # [1, 3] and [2, 5]; 4 stays in memory
            assert [values.kth(k) for k in range(5)] == [1.0, 2.0, 3.0, 4.0, 5.0]
            assert values.quantile(0.5) == 3.0
            assert values.quantile(0.9) == pytest.approx(4.6)
        finally:
            values.close()

    def test_a_stored_zero_is_returned_as_stored(self) -> None:
        """0.0 and -0.0 compare equal: a stored 0.0 comes back as 0.0, never as -0.0."""
        values = filled([[0.0, 7.0], [0.0, 9.0]], memory_values=2)
        try:
            assert math.copysign(1.0, values.kth(0)) == 1.0
        finally:
            values.close()

    def test_no_negative_zero(self) -> None:
        """Where -0.0 and 0.0 are both stored, an order statistic at them is written 0.0, however the values are
        spilled (a bisection from a negative value meets -0.0's bits first)."""
        for memory_values in (1, 2, 100):
            values = filled([[-1.0, 0.0], [-0.0, 0.0], [2.0]], memory_values=memory_values)
            try:
                assert [math.copysign(1.0, values.kth(k)) for k in (1, 2, 3)] == [1.0, 1.0, 1.0]
            finally:
                values.close()

    def test_values_near_the_largest_double_of_both_signs(self) -> None:
        """Interpolating between -M and M neither overflows nor gives NaN (0 * inf)."""
        m = 1.7976931348623157e308
        values = filled([[-m, -m], [m]], memory_values=2)
        try:
            assert values.quantile(0.5) == -m
            assert values.quantile(0.75) == 0.0
            assert values.quantile(0.95) == pytest.approx(0.8 * m, rel=1e-15)
        finally:
            values.close()

    def test_out_of_range_and_empty(self) -> None:
        """An order statistic past the values is an IndexError quoting it; no values: no quantile, no max."""
        values = SortedValues()
        assert values.quantile(0.5) is None
        assert values.max() is None
        with pytest.raises(IndexError, match="order statistic 0 of 0 values"):
            values.kth(0)

    def test_budget_must_be_positive(self) -> None:
        """A budget below one value is refused, quoting it."""
        with pytest.raises(ValueError, match="memory_values: must be a whole number >= 1, got 0"):
            SortedValues(memory_values=0)


class TestFiles:
    """The files are unnamed: nothing is left in the folder; a failed write loses nothing."""

    def test_nothing_is_left_in_the_folder(self, tmp_path: Path) -> None:
        """Spilled runs leave no name behind, during the run or after."""
        values = filled([[float(i), float(i + 1)] for i in range(10)], memory_values=2, folder=tmp_path / "spill")
        try:
            assert values.files == 10
            assert os.listdir(tmp_path / "spill") == []
        finally:
            values.close()

    def test_a_failed_write_keeps_the_values_and_warns_once(self, tmp_path: Path) -> None:
        """A folder that cannot be made (a file is in the way): the values stay in memory, one warning, exact
        answers; once the folder can be made, the next spill writes them."""
        blocker = tmp_path / "spill"
        blocker.write_bytes(b"")
        warnings: list[str] = []
        values = SortedValues(lambda: blocker, memory_values=2, warn=warnings.append)
        try:
            for i in range(6):
                values.add(pl.Series([float(10 - i)], dtype=pl.Float64))
            assert values.files == 0
            assert len(warnings) == 1
            assert "cannot write the run's values" in warnings[0]
            assert [values.kth(k) for k in range(6)] == [5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
            blocker.unlink()
            values.add(pl.Series([1.0, 2.0], dtype=pl.Float64))
            values.add(pl.Series([0.5], dtype=pl.Float64))
            assert values.files == 1
            assert [values.kth(k) for k in range(9)] == [0.5, 1.0, 2.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
        finally:
            values.close()

    def test_clear_forgets_everything(self) -> None:
        """clear drops the values and the files."""
        values = filled([[1.0, 2.0], [3.0]], memory_values=2)
        values.clear()
        assert len(values) == 0
        assert values.files == 0
        values.add(pl.Series([4.0], dtype=pl.Float64))
        assert values.kth(0) == 4.0
