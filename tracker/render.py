"""Tables as deterministic CSV bytes: the only code that turns a table into file bytes.

:func:`csv_bytes` renders a whole table. A :class:`PartedTable` renders a table
made of parts (the rows of one window each) and keeps each part's lines, so a
table of many windows is rendered again only where a part changed: the same
bytes as rendering it whole, at a cost that follows what changed, not the
length of the run.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Final, Generic, TypeVar

import polars as pl

from .tables import FOUR_DECIMALS

__all__ = ("FLOAT_PRECISION", "PartedTable", "csv_bytes")

T = TypeVar("T")

FLOAT_PRECISION: Final = 3
_FORMULA_START: Final = r"^[=+\-@\t\r]"


def _iso(column: str, form: str = "%Y-%m-%dT%H:%M:%SZ") -> pl.Expr:
    return pl.from_epoch(pl.col(column), time_unit="us").dt.strftime(form)


def _neutralise(frame: pl.DataFrame, columns: Iterable[str]) -> pl.DataFrame:
    """Prefix ``'`` to text a spreadsheet would run as a formula."""
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(_FORMULA_START)).then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c)
        for c in columns
    )


def csv_bytes(frame: pl.DataFrame, *, numbers: Collection[str] = ()) -> bytes:
    """A table as file bytes: times in ISO-8601 UTC, floats with 3 decimals, formula-like text neutralised (but in
    the text columns ``numbers``, which hold numbers as the reports write them: ``-50.000`` is no formula).

    Every row is rendered on its own (no width or quoting is chosen per column), so the rows of a table rendered
    in pieces are the bytes of the table rendered whole (what :class:`PartedTable` relies on)."""
    times = [c for c in ("window_start", "window_end") if c in frame.columns]
    instants = [c for c in ("run_start", "run_end", "first_seen", "last_seen") if c in frame.columns]  # events' times
    text = [c for c, dtype in frame.schema.items() if dtype == pl.String and c not in numbers]
    frame = _neutralise(frame, text).with_columns(
        *(_iso(c).alias(c) for c in times), *(_iso(c, "%Y-%m-%dT%H:%M:%S%.6fZ").alias(c) for c in instants),
        *(pl.Series(c, [None if v is None else f"{v:.4f}" for v in frame[c].to_list()], pl.String)
          for c in FOUR_DECIMALS if c in frame.columns))
    return frame.write_csv(float_precision=FLOAT_PRECISION, line_terminator="\n").encode()


def _records(body: bytes) -> list[bytes]:
    """The CSV records of ``body`` (rows as :func:`csv_bytes` writes them), each with its newline: a newline inside a
    quoted text leaves an odd count of quotes before it in its record (a quote in a text is doubled)."""
    lines = body.split(b"\n")[:-1]
    if b'"' not in body:
        return [line + b"\n" for line in lines]
    records: list[bytes] = []
    held = b""
    for line in lines:
        held += line + b"\n"
        if held.count(b'"') % 2 == 0:
            records.append(held)
            held = b""
    if held:
        raise ValueError(f"a CSV record without its closing quote: {held[:80]!r}")
    return records


class PartedTable(Generic[T]):
    """A CSV table whose rows come in parts, one per window, each rendered again only when it changed.

    :meth:`render` takes the parts in file order, each with a token: the object its rows are made from (a
    window's figures, a summary row), which the engine keeps while they hold. A part whose token is the one it
    was rendered from keeps its lines; the others are rendered together, in one :func:`csv_bytes` call.
    """

    def __init__(self, empty: pl.DataFrame) -> None:
        """``empty``: a frame of the table's columns and no row (its header is the file's first line)."""
        self._header = csv_bytes(empty)
        self._parts: dict[int, tuple[object, bytes]] = {}

    def render(self, parts: Sequence[tuple[int, T]],
               rows_of: Callable[[list[tuple[int, T]]], tuple[pl.DataFrame, list[int]]]) -> bytes:
        """The table's bytes: the header, then each part's lines in the order of ``parts``. ``rows_of(changed)``
        gives the rows of the parts to render (in their order) and how many rows each has."""
        held = self._parts
        changed = [(k, token) for k, token in parts if (kept := held.get(k)) is None or kept[0] is not token]
        if changed:
            frame, heights = rows_of(changed)
            rendered = csv_bytes(frame)
            header_end = rendered.index(b"\n") + 1
            if rendered[:header_end] != self._header:
                raise ValueError(f"rows of other columns than the table's: {rendered[:header_end]!r}")
            records = _records(rendered[header_end:])
            if len(records) != sum(heights) or len(heights) != len(changed):
                raise ValueError(f"{len(records)} CSV records for {sum(heights)} rows of {len(changed)} parts")
            at = 0
            for (k, token), height in zip(changed, heights, strict=True):
                held[k] = (token, b"".join(records[at:at + height]))
                at += height
        if len(held) > len(parts):  # parts no longer in the table (a flush of fewer windows): forgotten
            wanted = {k for k, _ in parts}
            for k in [k for k in held if k not in wanted]:
                del held[k]
        return self._header + b"".join(held[k][1] for k, _ in parts)
