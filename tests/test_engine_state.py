"""Tests for tracker.engine_state: the engine's window figures as JSON values and back, damage refused."""

from __future__ import annotations

import math

import orjson
import polars as pl
import pytest

from tests.helpers import T0, event
from tracker.engine import Engine
from tracker.engine_state import carry_of, figures_entry, figures_of
from tracker.frames import events_frame
from tracker.tables import WindowAgg

S = 1_000_000


def figures() -> dict[int, WindowAgg]:
    """Two windows' figures: answers, an error with a quoted message, tokens."""
    engine = Engine(60)
    engine.add(events_frame([
        event(1, "s1", "question_answered", T0 + S, response_time_ms=120.5, time_to_first_token_ms=30.0,
              input_tokens=10, output_tokens=(1 << 63) - 1),
        event(2, "s1", "error", T0 + 61 * S, error='bad "quote", comma', kind="timeout"),
    ]))
    return {k: engine.agg(k) for k in engine.windows()}


class TestFigures:
    def test_through_json_and_back_they_are_equal(self) -> None:
        """Each window's figures, saved as JSON bytes and read back, equal the figures (errors frame included)."""
        for k, agg in figures().items():
            (back,) = figures_of({str(k): orjson.loads(orjson.dumps(figures_entry(agg)))}).values()
            assert (back.counts, back.stats, back.chat, back.good, back.sizes) == (
                agg.counts, agg.stats, agg.chat, agg.good, agg.sizes)
            assert back.errors.equals(agg.errors)

    def test_a_figure_json_has_no_number_for_is_saved_as_text(self) -> None:
        """An infinite mean (a mean of huge values) is saved as "inf" and read back as infinity."""
        k, agg = next(iter(figures().items()))
        entry = figures_entry(WindowAgg(agg.counts, {**agg.stats, "mean": math.inf}, agg.errors, agg.chat, agg.good,
                                        agg.sizes))
        assert entry[1][0] == "inf"  # type: ignore[index]
        (back,) = figures_of({str(k): orjson.loads(orjson.dumps(entry))}).values()
        assert back.stats["mean"] == math.inf

    @pytest.mark.parametrize("damage", [
        lambda e: e[:5],  # an item missing
        lambda e: [e[0], e[1], e[2], e[3], -1, e[5]],  # a negative count of good answers
        lambda e: [[*e[0][:-1], "7"], *e[1:]],  # a count as text
        lambda e: [e[0], e[1], [["a"]], *e[3:]],  # an error row of the wrong shape
    ])
    def test_damaged_figures_are_a_value_error_naming_the_window(self, damage: object) -> None:
        """Any damaged entry: ValueError quoting the window's key, never figures made up."""
        k, agg = next(iter(figures().items()))
        entry = orjson.loads(orjson.dumps(figures_entry(agg)))
        with pytest.raises(ValueError, match=f"the figures of window '{k}' are damaged"):
            figures_of({str(k): damage(entry)})  # type: ignore[operator]


class TestCarry:
    def test_running_totals_back(self) -> None:
        """Saved running totals come back as a frame of the same rows; none saved is None."""
        k, frame = carry_of([3, [["s1", 1, 2, 3, 4]]]) or (None, pl.DataFrame())
        assert k == 3
        assert frame.rows() == [("s1", 1, 2, 3, 4)]
        assert carry_of(None) is None

    @pytest.mark.parametrize("damage", [["3", []], [3], [3, [["s1", "x", 2, 3, 4]]], {"k": 3}])
    def test_damaged_totals_are_a_value_error(self, damage: object) -> None:
        """Running totals of the wrong shape or type: ValueError."""
        with pytest.raises(ValueError, match="running totals damaged"):
            carry_of(damage)
