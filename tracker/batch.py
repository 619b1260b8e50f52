"""Decode a block of complete log lines into the report's event frame, with polars.

This is the fast way through a log; the per-line :class:`~tracker.decoder.Decoder`
stays the judge. polars parses the block and checks every row against the
schema; any row it doubts (a failed check, a text value that polars may
have made from a JSON number, boolean, list or object, or a line that may
repeat a key), and any block it cannot parse whole (bad JSON, invalid UTF-8,
a blank line, a line over the length limit, an integer beyond 64 bits, or
first bytes that polars would take for a compressed stream), is decided by
the decoder, line by line. So the events and rejections are the
decoder's, however the log is cut into blocks.

A repeated key is invisible in polars' rows (it keeps the first value; the
decoder refuses the line), so the block's quote characters are counted: a
line holds at least two per key and two per text value, and the valid rows
show exactly how many keys and texts they have. When the block has no more
quotes than its valid rows account for (and its doubted lines hold), no
valid row's line can repeat a key; otherwise each line is counted, and a
line with more quotes than its row accounts for is doubted. Lines with keys
polars does not read (unknown keys, explicit nulls) are doubted this way too.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Final

import polars as pl

from .decoder import DEFAULT_MAX_LINE_BYTES, Decoder, Rejected
from .events import CURRENT_VERSION, END_TS, EVENT_TYPES, MIN_TS, Event
from .frames import EVENT_SCHEMA, events_frame

__all__ = ("BLOCK_BYTES", "Block", "Span", "decode_block", "decode_events", "decode_span", "read_blocks", "read_file",
           "split_blocks")

#: Bytes read at a time: big enough for polars to be fast, small enough to bound memory.
BLOCK_BYTES: Final = 16 << 20

_POLARS_TYPES: Final[dict[str, pl.DataType]] = {
    "str": pl.String(), "int": pl.Int64(), "number": pl.Float64(), "int_list": pl.List(pl.Int64())}
_ENVELOPE: Final[dict[str, pl.DataType]] = {
    "v": pl.Int64(), "ts": pl.Int64(), "event_id": pl.String(), "writer": pl.String(), "seq": pl.Int64(),
    "session_id": pl.String(), "type": pl.String()}
_FIELDS: Final[dict[str, pl.DataType]] = {
    name: _POLARS_TYPES[spec.kind] for specs in EVENT_TYPES.values() for name, spec in specs.items()}
_READ_SCHEMA: Final = pl.Schema({**_ENVELOPE, **_FIELDS})
#: A JSON escape of a UTF-16 surrogate: orjson refuses a lone one anywhere in a line, polars reads it
#: (even in keys it skips), so lines holding one are always decided by the decoder; and of a quote
#: (``\u0022``), which puts a quote in a text without one in the line, so such lines are decided too.
_DOUBTFUL_ESCAPE: Final = re.compile(rb"\\u(?:[dD][89a-fA-F]|0022)")
#: The first bytes of the compressed streams polars decompresses on its own (gzip, zlib, zstd): a block that
#: starts so is never given to polars (it would read the decompressed bytes, or fail with an OSError), so the
#: decoder decides its lines, and rejects what is not an event.
_COMPRESSED: Final = (b"\x1f\x8b", b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda", b"\x28\xb5\x2f\xfd")
#: What polars writes for a non-string JSON value read into a text column.
_MAYBE_COERCED: Final = r"^(-?[0-9][0-9.eE+-]*|true|false|\[.*|\{.*)$"


@dataclass(slots=True)
class Block:
    """The outcome of one block: its valid events as a frame, and its rejected lines in order."""

    frame: pl.DataFrame
    rejected: list[Rejected] = field(default_factory=list)

    def frame_and_rejected(self) -> tuple[pl.DataFrame, list[Rejected]]:
        return self.frame, self.rejected


def _text_ok(name: str, max_len: int) -> pl.Expr:
    """True when the text is certainly valid: doubtful text goes to the decoder, so these checks may be
    stricter than the schema but never looser (bytes bound characters from above: a long text of
    many-byte characters is doubted, then decided)."""
    # A NUL may stand for an escaped lone surrogate (\ud800), which polars reads and the decoder refuses.
    col = pl.col(name)
    return (col.is_not_null() & col.str.len_bytes().is_between(1, max_len) & ~col.str.contains(_MAYBE_COERCED)
            & ~col.str.contains("\x00", literal=True))


def _field_ok(name: str, kind: str, max_len: int, required: bool) -> pl.Expr:
    col = pl.col(name)
    if kind == "str":
        ok = _text_ok(name, max_len)
    elif kind == "number":
        ok = col.is_finite() & (col >= 0.0)
    elif kind == "int":
        ok = col >= 0
    else:  # int_list: polars reads [1, null] as a list with a null item; the decoder refuses it
        ok = (col.list.len() <= 1000) & ~col.list.eval(pl.element().is_null()).list.any()
    return ok if required else (col.is_null() | ok)


def _row_ok() -> pl.Expr:
    """True when the row is certainly valid under the schema (see ``event_from_record``)."""
    envelope = (
        (pl.col("v") == CURRENT_VERSION)
        & pl.col("ts").is_between(MIN_TS, END_TS, closed="left")
        & (pl.col("seq") >= 1)
        & _text_ok("event_id", 128)
        & _text_ok("writer", 256)
        & _text_ok("session_id", 256)
    )
    by_type = pl.lit(False)
    for event_type, specs in EVENT_TYPES.items():
        checks = [_field_ok(name, spec.kind, spec.max_len, spec.required) for name, spec in specs.items()]
        ok = pl.all_horizontal(checks) if checks else pl.lit(True)
        by_type = pl.when(pl.col("type") == event_type).then(ok).otherwise(by_type)
    return (envelope & by_type).fill_null(False)


_ROW_OK: Final = _row_ok()
_OWNERS: Final = {name: [t for t, specs in EVENT_TYPES.items() if name in specs] for name in _FIELDS}
_TEXTS: Final = [name for name, dtype in _FIELDS.items() if dtype == pl.String()]
#: The envelope's quotes: 7 keys, and 4 text values (event_id, writer, session_id, type).
_ENVELOPE_QUOTES: Final = 2 * 7 + 2 * 4


def _quotes() -> pl.Expr:
    """The quote characters a valid row's line holds when no key repeats and no text holds a quote: two per
    key and two per text value (for a valid row, every field of its type that is set is read). The same
    ``type == ...`` tests as :func:`_row_ok`, so that polars computes them once for both."""
    by_type = pl.lit(None, pl.Int64)
    for event_type, specs in EVENT_TYPES.items():
        total = pl.lit(_ENVELOPE_QUOTES, pl.Int64)
        for name, spec in specs.items():
            weight = 4 if spec.kind == "str" else 2
            total = total + weight if spec.required else total + pl.col(name).is_not_null().cast(pl.Int64) * weight
        by_type = pl.when(pl.col("type") == event_type).then(total).otherwise(by_type)
    return by_type


def _quotes_in_texts() -> pl.Expr:
    """The quote characters inside a valid row's text values (each written ``\\"`` in its line)."""
    def count(name: str) -> pl.Expr:
        return pl.col(name).str.count_matches('"', literal=True)
    parts = [count(name) for name in ("event_id", "writer", "session_id")]
    parts += [pl.when(pl.col("type").is_in(_OWNERS[name])).then(count(name)) for name in _TEXTS]
    return pl.sum_horizontal(parts).cast(pl.Int64)


_QUOTES: Final = _quotes()
_QUOTES_IN_TEXTS: Final = _quotes_in_texts()


def _frame_column(name: str, dtype: pl.DataType) -> pl.Expr:
    """A column of the report frame: a type's field only where the row is of that type (elsewhere it is extra)."""
    if name not in _OWNERS:
        return pl.col(name).cast(dtype)
    return pl.when(pl.col("type").is_in(_OWNERS[name])).then(pl.col(name)).cast(dtype).alias(name)


_TO_FRAME: Final = [_frame_column(name, dtype) for name, dtype in EVENT_SCHEMA.items()]


def _pieces(data: bytes) -> list[bytes]:
    """The lines of ``data`` without their newline, and an empty piece after the last.

    Only ``\n`` ends a line: ``bytes.splitlines`` would split on a bare CR too, which is JSON whitespace.
    """
    return data.split(b"\n")


def _lines_of(pieces: list[bytes], first_offset: int,
              only: Iterable[int] | None = None) -> Iterator[tuple[int, bytes, int]]:
    """(0-based index, raw line, byte offset) of the lines (see :func:`_pieces`), or of those in ``only``."""
    wanted = None if only is None else set(only)
    offset = first_offset
    for index, piece in enumerate(pieces[:-1]):
        raw = piece + b"\n"
        if wanted is None or index in wanted:
            yield index, raw, offset
        offset += len(raw)


def _decide(lines: Iterable[tuple[int, bytes, int]], decoder: Decoder, source: str,
            first_line: int) -> tuple[list[tuple[int, Event]], list[Rejected]]:
    """Let the decoder decide these lines; its events come with their line index."""
    events: list[tuple[int, Event]] = []
    rejected: list[Rejected] = []
    for index, raw, offset in lines:
        for item in decoder.decode(raw, source=source, line_no=first_line + index, offset=offset):
            if type(item) is Rejected:
                rejected.append(item)
            else:
                events.append((index, item))  # type: ignore[arg-type]
    return events, rejected


def _merged(good: pl.DataFrame, ok: pl.Series, decided: list[tuple[int, Event]], rejected: list[Rejected]) -> Block:
    """The rows polars accepted (``good``, at the lines where ``ok``) and the decoder's events, in line order."""
    if not decided:
        return Block(good, rejected)
    combined = pl.concat([
        good.with_columns(line=ok.arg_true().cast(pl.Int64)),
        events_frame(e for _, e in decided).with_columns(line=pl.Series([i for i, _ in decided], dtype=pl.Int64)),
    ]).sort("line", maintain_order=True).drop("line")
    return Block(combined, rejected)


def _line_indexes(data: bytes, pattern: re.Pattern[bytes]) -> list[int]:
    """The 0-based index of the line of each match of ``pattern`` in ``data``."""
    indexes: list[int] = []
    line = last = 0
    for match in pattern.finditer(data):
        line += data.count(b"\n", last, match.start())
        last = match.start()
        indexes.append(line)
    return indexes


def _no_repeated_keys(data: bytes, frame: pl.DataFrame, ok: pl.Series, expected: pl.Series, escapes: bool,
                      pieces: list[bytes] | None) -> tuple[pl.Series, list[bytes] | None]:
    """``ok`` without the rows whose line may repeat a key (see the module's docstring), and the lines if split.

    Sound because every line holds at least its row's count of quotes, so equal totals mean equal lines. A
    valid row's text values are genuine JSON strings (never text polars made of a number or an object), and
    a quote in them is one in the line (lines with ``\\u0022`` are doubted already), which ``escapes`` (the
    block holds a backslash) says to count.
    """
    quotes = data.count(b'"')
    doubted = (~ok).arg_true().to_list()
    if doubted:
        pieces = pieces if pieces is not None else _pieces(data)
        quotes -= sum(pieces[i].count(b'"') for i in doubted)
    if quotes == expected.filter(ok).sum():
        return ok, pieces
    if escapes:
        expected = expected + frame.select(_QUOTES_IN_TEXTS).to_series()
        if quotes == expected.filter(ok).sum():
            return ok, pieces
    pieces = pieces if pieces is not None else _pieces(data)
    per_line = pl.Series([piece.count(b'"') for piece in pieces[:-1]], dtype=pl.Int64)
    return ok & (per_line == expected), pieces


def _has_long_line(data: bytes, limit: int) -> bool:
    """True when some line may exceed ``limit`` bytes: some aligned half-limit block has no newline."""
    step = max(1, limit // 2)
    return any(data.find(b"\n", start, start + step) < 0 for start in range(0, len(data) - step + 1, step))


def decode_block(data: bytes, decoder: Decoder, *, source: str = "", first_line: int = 1,
                 first_offset: int = 0, lines: int | None = None) -> Block:
    """Decode ``data``, complete lines each ending in a newline, into events and rejections.

    Duplicates are not removed here (the caller does, over all blocks, keeping
    the first); ``decoder`` counts rejections by reason but is not asked about
    the rows polars accepts, so its event counts cover only the lines it decided.
    ``lines``, when given, is the caller's count of newlines in ``data``.
    """
    if lines is None:
        lines = data.count(b"\n")
    frame: pl.DataFrame | None = None
    if lines and not _has_long_line(data, decoder.max_line_bytes) and not data.startswith(_COMPRESSED):
        try:
            frame = pl.read_ndjson(io.BytesIO(data), schema=_READ_SCHEMA)
        except (pl.exceptions.PolarsError, OSError):  # (OSError: whatever else polars may take for compressed)
            frame = None
        if frame is not None and frame.height != lines:  # polars skips blank lines
            frame = None
    if frame is None:
        events, rejected = _decide(_lines_of(_pieces(data), first_offset), decoder, source, first_line)
        return Block(events_frame(e for _, e in events), rejected)
    ok, expected = frame.select(_ROW_OK, _QUOTES.alias("quotes")).get_columns()
    escapes = b"\\" in data  # one memchr: most blocks have no escape at all
    doubtful = _line_indexes(data, _DOUBTFUL_ESCAPE) if escapes else []  # the regex beats `b"\\u" in data`
    if doubtful:
        ok = ok.scatter(doubtful, False)
    ok, pieces = _no_repeated_keys(data, frame, ok, expected, escapes, None)
    good = frame.filter(ok).select(_TO_FRAME)
    if ok.all():
        return Block(good)
    doubted = (~ok).arg_true().to_list()
    pieces = pieces if pieces is not None else _pieces(data)
    return _merged(good, ok, *_decide(_lines_of(pieces, first_offset, doubted), decoder, source, first_line))


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of a log cut at a newline: ``data`` is complete lines; or the first bytes of a line over
    the length limit (``too_long``); or an unterminated last line (``ended`` false). ``first_line``
    (1-based) and ``offset`` say where it starts."""

    data: bytes
    first_line: int
    offset: int
    lines: int
    ended: bool = True
    too_long: bool = False


def split_blocks(stream: BinaryIO, block_bytes: int = BLOCK_BYTES,
                 max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[Span]:
    """Cut a finished log into spans of about ``block_bytes`` ending at a newline.

    A line with no newline in its first ``max_line_bytes`` bytes (longer than
    the limit, newline included, as the decoder counts) is a ``too_long`` span
    of those bytes, and the rest of it is skipped unread into memory: so a
    zero-filled tail after a crash costs no memory. The line ends just after
    its newline; or sooner, at its first byte that is neither NUL nor a newline
    and follows a NUL byte, within those first bytes (the span is then the
    bytes before it) or in the skipped rest: a new line begins there (with the
    same line number, as no newline came between), so the first event appended
    after a zero-filled region of any length is read, not skipped with the
    zeros. The follower
    (:mod:`tracker.follow`) cuts lines by the same rule, so live and replay read
    the same lines.
    """
    if type(block_bytes) is not int or block_bytes < 1:
        raise ValueError(f"block_bytes: must be a whole number >= 1, got {block_bytes!r}")
    if type(max_line_bytes) is not int or max_line_bytes < 1:
        raise ValueError(f"max_line_bytes: must be a whole number >= 1, got {max_line_bytes!r}")
    step, not_nul = max(1, max_line_bytes // 2), re.compile(rb"[^\x00]")

    def long_line(data: bytes, pos: int) -> int:
        """Where the first line from ``data[pos]`` with no newline in its first ``max_line_bytes`` bytes
        starts, or -1 (any line that long holds a half-limit stretch without a newline)."""
        for at in range(pos, len(data) - step + 1, step):
            if data.find(b"\n", at, at + step) < 0:
                start = data.rfind(b"\n", pos, at) + 1 or pos
                if len(data) - start >= max_line_bytes and data.find(b"\n", start, start + max_line_bytes) < 0:
                    return start
        return -1

    def skip_end(data: bytes, pos: int, after_nul: bool) -> tuple[int, bool | None]:
        """Where skipping from ``data[pos]`` stops: after the newline (True), at a new line's start after
        NUL bytes (False), or at the end of ``data``, still skipping (None)."""
        newline = data.find(b"\n", pos)
        stop = len(data) if newline < 0 else newline
        nul = pos if after_nul else data.find(b"\0", pos, stop)
        found = not_nul.search(data, nul, stop) if nul >= 0 else None
        if found is not None:
            return found.start(), False
        return (newline + 1, True) if newline >= 0 else (len(data), None)

    line_no, offset, carry, skipping, after_nul = 1, 0, b"", False, False
    while chunk := stream.read(block_bytes):
        data, pos = carry + chunk if carry else chunk, 0  # data starts at offset
        while True:
            if skipping:  # inside an over-long line, already rejected
                pos, newline = skip_end(data, pos, after_nul)
                if newline is None:
                    after_nul = data[-1] == 0
                    break
                line_no, skipping = line_no + newline, False
            start = long_line(data, pos)
            end = start if start >= 0 else data.rfind(b"\n", pos) + 1 or pos
            if end > pos:
                lines = data.count(b"\n", pos, end)
                yield Span(data[pos:end], line_no, offset + pos, lines)
                line_no, pos = line_no + lines, end
            if start < 0:
                break
            nul = data.find(b"\0", start, start + max_line_bytes)
            found = not_nul.search(data, nul, start + max_line_bytes) if nul >= 0 else None
            if found is not None:  # NUL bytes, then a new line within the limit: the line ends there
                yield Span(data[start:found.start()], line_no, offset + start, 0, ended=False, too_long=True)
                pos = found.start()
                continue
            yield Span(data[start:start + max_line_bytes], line_no, offset + start, 0, ended=False, too_long=True)
            pos, skipping = start + max_line_bytes, True
            after_nul = data[pos - 1] == 0
        carry, offset = data[pos:], offset + pos
    if carry:
        yield Span(carry, line_no, offset, 0, ended=False)


def decode_span(span: Span, decoder: Decoder, *, source: str = "") -> Block:
    """Decode one span (see :func:`decode_block`); an over-long or unterminated line is rejected."""
    if span.too_long:
        return Block(events_frame([]), [decoder.too_long(span.data, source=source, line_no=span.first_line,
                                                         offset=span.offset)])
    if not span.ended:
        return Block(events_frame([]), [decoder.unterminated(span.data, source=source, line_no=span.first_line,
                                                             offset=span.offset)])
    return decode_block(span.data, decoder, source=source, first_line=span.first_line, first_offset=span.offset,
                        lines=span.lines)


def decode_events(span: Span, decoder: Decoder, source: str = "") -> tuple[list[Event], list[Rejected]]:
    """Decode one span line by line into events (in line order) and rejections: the same as
    :func:`decode_span` gives, as event objects (a shipper sends each one on its own)."""
    if span.too_long or not span.ended:
        return [], decode_span(span, decoder, source=source).rejected
    events, rejected = _decide(_lines_of(_pieces(span.data), span.offset), decoder, source, span.first_line)
    return [event for _, event in events], rejected


def read_blocks(stream: BinaryIO, decoder: Decoder, *, source: str = "",
                block_bytes: int = BLOCK_BYTES) -> Iterator[Block]:
    """Decode a finished log block by block; an unterminated last line is rejected."""
    for span in split_blocks(stream, block_bytes, decoder.max_line_bytes):
        yield decode_span(span, decoder, source=source)


def read_file(path: str | os.PathLike[str], decoder: Decoder, *, source: str = "",
              block_bytes: int = BLOCK_BYTES) -> Iterator[Block]:
    """Decode a finished log file block by block (see :func:`read_blocks`).

    Reading blocks with ``read`` rather than letting polars map the whole
    file keeps memory to a block: mapped pages of a big log count as the
    process's memory too.
    """
    with open(path, "rb") as stream:
        yield from read_blocks(stream, decoder, source=source, block_bytes=block_bytes)
