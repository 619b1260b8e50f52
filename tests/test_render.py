"""Tests for tracker.render: tables as CSV bytes, whole or in parts rendered again only where they changed."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import T0, event
from tracker.engine import Engine
from tracker.frames import events_frame
from tracker.render import PartedTable, csv_bytes
from tracker.tables import ERRORS_SCHEMA

S = 1_000_000
EVERY = 60 * S


class TestCsvBytes:
    @pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
    def test_text_a_spreadsheet_would_run_gets_a_quote(self, text: str) -> None:
        """Text starting with = + - @, a tab or a carriage return (OWASP's CSV-injection list) is prefixed with '."""
        quoted = '"\'' + text + '"' if text[0] == "\r" else "'" + text  # a CR makes polars quote the cell
        assert csv_bytes(pl.DataFrame({"username": [text]})) == b"username\n" + quoted.encode() + b"\n"

    def test_other_text_is_left_alone(self) -> None:
        """Text that only contains those characters later is written as it is."""
        assert csv_bytes(pl.DataFrame({"username": ["a=1", "x\t"]})) == b"username\na=1\nx\t\n"


def error_rows(k: int, messages: list[str]) -> pl.DataFrame:
    """Error rows of window ``k``, one per message."""
    return pl.DataFrame({"window_start": [k * EVERY] * len(messages), "window_end": [(k + 1) * EVERY] * len(messages),
                         "kind": ["timeout"] * len(messages), "message": messages,
                         "count": list(range(1, len(messages) + 1)), "sessions": [1] * len(messages),
                         "first_seen": [T0] * len(messages), "last_seen": [T0 + S] * len(messages)},
                        schema=ERRORS_SCHEMA)


class Parts:
    """A parted table's source: window -> (token, messages), and which windows were asked for."""

    def __init__(self) -> None:
        self.by_k: dict[int, tuple[object, list[str]]] = {}
        self.asked: list[list[int]] = []

    def set(self, k: int, messages: list[str]) -> None:
        self.by_k[k] = (object(), messages)

    def parts(self) -> list[tuple[int, object]]:
        return [(k, token) for k, (token, _) in sorted(self.by_k.items())]

    def rows_of(self, changed: list[tuple[int, object]]) -> tuple[pl.DataFrame, list[int]]:
        self.asked.append([k for k, _ in changed])
        frames = [error_rows(k, self.by_k[k][1]) for k, _ in changed]
        return pl.concat(frames), [frame.height for frame in frames]

    def whole(self) -> bytes:
        frames = [error_rows(k, messages) for k, (_, messages) in sorted(self.by_k.items())]
        return csv_bytes(pl.concat(frames) if frames else pl.DataFrame(schema=ERRORS_SCHEMA))


#: Texts that CSV quotes (quotes, commas, newlines, carriage returns) or neutralises (formula starts).
TEXTS = st.lists(st.text(alphabet=st.sampled_from('ab",\n\r=+- '), min_size=1, max_size=6), min_size=1, max_size=3)


class TestPartedTable:
    @settings(max_examples=25, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 6), TEXTS), min_size=1, max_size=12))
    def test_parts_rendered_apart_are_the_table_rendered_whole(self, steps: list[tuple[int, list[str]]]) -> None:
        """Windows' rows changed one after another, the table rendered after each change: always the bytes of
        the whole table rendered at once, however its texts are quoted."""
        source, table = Parts(), PartedTable[object](pl.DataFrame(schema=ERRORS_SCHEMA))
        for k, messages in steps:
            source.set(k, messages)
            assert table.render(source.parts(), source.rows_of) == source.whole()

    def test_only_the_changed_parts_are_rendered_again(self) -> None:
        """A part whose token is unchanged keeps its lines; a part with a new token, or a new part, is rendered."""
        source, table = Parts(), PartedTable[object](pl.DataFrame(schema=ERRORS_SCHEMA))
        for k in range(4):
            source.set(k, [f"m{k}"])
        table.render(source.parts(), source.rows_of)
        source.set(2, ["changed", "twice"])
        source.set(7, ["new"])
        assert table.render(source.parts(), source.rows_of) == source.whole()
        assert table.render(source.parts(), source.rows_of) == source.whole()
        assert source.asked == [[0, 1, 2, 3], [2, 7]]

    def test_a_part_left_out_is_not_written(self) -> None:
        """Parts no longer given (a flush of fewer windows) are not in the bytes, and are forgotten."""
        source, table = Parts(), PartedTable[object](pl.DataFrame(schema=ERRORS_SCHEMA))
        for k in range(3):
            source.set(k, [f"m{k}"])
        table.render(source.parts(), source.rows_of)
        del source.by_k[1]
        assert table.render(source.parts(), source.rows_of) == source.whole()
        source.set(1, ["back"])
        assert table.render(source.parts(), source.rows_of) == source.whole()
        assert source.asked[-1] == [1]

    def test_no_part_is_the_header_alone(self) -> None:
        """No rows at all: the header line only, as for an empty table rendered whole."""
        table: PartedTable[object] = PartedTable(pl.DataFrame(schema=ERRORS_SCHEMA))
        assert table.render([], Parts().rows_of) == csv_bytes(pl.DataFrame(schema=ERRORS_SCHEMA))

    def test_row_counts_that_do_not_match_are_an_error(self) -> None:
        """A source that says more rows than it gives: ValueError naming the counts, nothing kept."""
        table: PartedTable[object] = PartedTable(pl.DataFrame(schema=ERRORS_SCHEMA))
        with pytest.raises(ValueError, match="2 CSV records for 3 rows of 1 parts"):
            table.render([(0, object())], lambda changed: (error_rows(0, ["a", "b"]), [3]))

    def test_rows_of_other_columns_are_an_error(self) -> None:
        """A source whose rows have other columns than the table's: ValueError quoting their header."""
        table: PartedTable[object] = PartedTable(pl.DataFrame(schema=ERRORS_SCHEMA))
        with pytest.raises(ValueError, match="rows of other columns than the table's: b'x"):
            table.render([(0, object())], lambda changed: (pl.DataFrame({"x": [1]}), [1]))


class TestEngineRows:
    def test_a_summary_row_is_the_same_object_until_what_it_is_made_of_changes(self) -> None:
        """Nothing new: every row is the object of the last call. Events in window 1 and in a new window 4 make new
        rows of those and of window 3 (the run's end moved past it: its covered seconds): windows 0 and 2 stay."""
        engine = Engine(60)
        engine.add(events_frame([event(i, f"s{i % 2}", "question_asked", T0 + i * 20 * S) for i in range(1, 12)]))
        first = dict(engine.summary_rows())
        again = dict(engine.summary_rows())
        assert all(again[k] is first[k] for k in first)
        engine.add(events_frame([event(50, "s0", "question_asked", T0 + 70 * S),
                                 event(51, "s1", "question_asked", T0 + 250 * S)]))
        after = dict(engine.summary_rows())
        k0 = T0 // EVERY
        assert [k - k0 for k in after if after[k] is not first.get(k)] == [1, 3, 4]
        assert engine.summary().rows() == [row for _, row in sorted(after.items())]
