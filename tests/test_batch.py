"""Tests for tracker.batch: the polars path gives exactly the decoder's events and rejections."""

from __future__ import annotations

import io
import json
import random
from collections import Counter

import orjson
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import record
from tracker.batch import decode_block, read_blocks, read_file, split_blocks
from tracker.decoder import Decoder, Rejected
from tracker.events import Event
from tracker.frames import events_frame

GOOD = [
    record(1, "s1", "session_registered", username="ann", course_numbers=[1, 2]),
    record(1, "s1", "question_asked", question_text="why?", question_id="q1"),
    record(1, "s1", "question_answered", response_time_ms=12.5, input_tokens=3, time_to_first_token_ms=1.0),
    record(1, "s1", "cycle_completed"),
    record(1, "s1", "error", error="boom", kind="timeout"),
    record(1, "s1", "session_unregistered", reason="done"),
]
# Values that polars reads without complaint but that are not valid, or that it reads differently.
FAULTS = [
    ("session_id", 12), ("session_id", 1.5), ("session_id", True), ("session_id", [1]), ("session_id", {"a": 1}),
    ("event_id", 7), ("username", 5), ("error", False), ("kind", 3), ("question_id", None), ("kind", None),
    ("response_time_ms", -1), ("response_time_ms", 7), ("input_tokens", -2), ("v", 2), ("v", 0), ("seq", 0),
    ("ts", -1), ("type", "mystery"), ("session_id", ""), ("reason", None), ("course_numbers", None),
    ("writer", "w" * 300), ("question_text", "q" * 1001), ("session_id", "12"), ("session_id", "-3"),
    ("session_id", "{x"), ("extra", 1), ("course_numbers", [1, None]), ("username", "a\ud800b"),
    ("username", "a\x00b"), ("error", "carriage\rreturn"),
]
RAW_FAULTS = [b"\n", b"   \n", b"not json\n", b"[1]\n", b"\xff\n", b'{"v":1}\x00\n', b'{"v":1,"ts":3.5}\n',
              b'{"v":1,\r"ts":3}\n', b"lone\rcarriage return\n"]


def _line_variants(rnd: random.Random, n: int) -> list[bytes]:
    lines = []
    for seq in range(1, n + 1):
        rec = {**rnd.choice(GOOD), "seq": seq, "event_id": f"t-{rnd.randrange(n + 5)}", "ts": 10**15 + seq}
        roll = rnd.random()
        if roll < 0.25:
            key, value = rnd.choice(FAULTS)
            rec[key] = value
        if roll > 0.93:
            lines.append(rnd.choice(RAW_FAULTS))
            continue
        line = json.dumps(rec, separators=(",", ":")).encode() + b"\n"  # escapes lone surrogates, as JSON may
        if rnd.random() < 0.03:
            line = line.replace(b",", b",\r", 1)  # a bare CR is JSON whitespace, not a line end
        if rnd.random() < 0.02:
            line = b'{"v":1,"ts":' + line  # glued to a fragment
        if rnd.random() < 0.01:
            line = json.dumps({**rec, "pad": "x" * 5000}, separators=(",", ":")).encode() + b"\n"
        lines.append(line)
    return lines


def _by_decoder(data: bytes, max_line_bytes: int) -> tuple[list[Event], list[Rejected]]:
    decoder = Decoder(max_line_bytes=max_line_bytes, dedupe=False)
    events: list[Event] = []
    rejected: list[Rejected] = []
    for item in decoder.decode_stream(io.BytesIO(data).readlines()):
        (rejected if isinstance(item, Rejected) else events).append(item)  # type: ignore[arg-type]
    return events, rejected


class TestAgreesWithDecoder:
    @settings(max_examples=60, deadline=None)
    @given(st.integers(0, 2**32), st.integers(1, 120), st.sampled_from([64, 300, 4096, 1 << 20]), st.booleans())
    def test_same_events_and_rejections(self, seed: int, n: int, block_bytes: int, unterminated: bool) -> None:
        """For faulty logs cut into any block size, events (in order) and rejections equal the decoder's."""
        rnd = random.Random(seed)
        data = b"".join(_line_variants(rnd, n)) + (b'{"v":1,"ts":' if unterminated else b"")
        events, rejected = _by_decoder(data, 4096)
        decoder = Decoder(max_line_bytes=4096, dedupe=False)
        blocks = list(read_blocks(io.BytesIO(data), decoder, block_bytes=block_bytes))
        frame = pl.concat([b.frame for b in blocks])
        assert frame.to_dicts() == events_frame(events).to_dicts()
        assert [r for b in blocks for r in b.rejected] == rejected
        assert decoder.rejected == Counter(r.reason for r in rejected)

    @settings(max_examples=30, deadline=None)
    @given(st.integers(0, 2**32), st.integers(1, 120), st.sampled_from([300, 4096, 1 << 20]))
    def test_file_reader_agrees(self, tmp_path_factory: pytest.TempPathFactory, seed: int, n: int,
                                block_bytes: int) -> None:
        """read_file gives the decoder's events and rejections for a faulty log file, in any block size."""
        rnd = random.Random(seed)
        path = tmp_path_factory.mktemp("file") / "log.jsonl"
        path.write_bytes(b"".join(_line_variants(rnd, n)))
        events, rejected = _by_decoder(path.read_bytes(), 4096)
        decoder = Decoder(max_line_bytes=4096, dedupe=False)
        blocks = list(read_file(path, decoder, source="", block_bytes=block_bytes))
        frames = [b.frame for b in blocks] or [events_frame([])]
        assert pl.concat(frames).to_dicts() == events_frame(events).to_dicts()
        assert [r for b in blocks for r in b.rejected] == rejected


class TestSplitBlocks:
    @settings(max_examples=60, deadline=None)
    @given(st.binary(max_size=2000).map(lambda b: b.replace(b"x", b"\n")), st.integers(1, 300))
    def test_spans_cover_the_log_exactly(self, data: bytes, block_bytes: int) -> None:
        """Spans join back into the log; each starts at its offset and line, and ends at a newline but the last."""
        spans = list(split_blocks(io.BytesIO(data), block_bytes))
        assert b"".join(s.data for s in spans) == data
        for span in spans:
            assert data[span.offset:span.offset + len(span.data)] == span.data
            assert span.first_line == data.count(b"\n", 0, span.offset) + 1
            assert span.lines == span.data.count(b"\n")
            assert span.ended == span.data.endswith(b"\n")
        assert all(s.ended for s in spans[:-1])


    def test_over_long_line_is_cut_short_and_skipped(self) -> None:
        """A line over the limit becomes one too_long span of its first bytes; the rest is skipped, even unended."""
        data = b"a\n" + b"\0" * 5000 + b"\nb\n" + b"\0" * 5000
        spans = list(split_blocks(io.BytesIO(data), 300, 1000))
        long = [s for s in spans if s.too_long]
        assert [(s.data, s.first_line, s.offset) for s in long] == [(b"\0" * 1000, 2, 2), (b"\0" * 1000, 4, 5005)]
        assert [(s.data, s.first_line) for s in spans if not s.too_long] == [(b"a\n", 1), (b"b\n", 3)]

    @pytest.mark.parametrize(("block", "limit", "message"), [
        (0, 10, "block_bytes: must be a whole number >= 1, got 0"),
        (10, -1, "max_line_bytes: must be a whole number >= 1, got -1"),
    ])
    def test_bad_sizes(self, block: int, limit: int, message: str) -> None:
        """A block size or line limit below 1 is refused, quoting it (it would read nothing, or everything)."""
        with pytest.raises(ValueError, match=message):
            next(split_blocks(io.BytesIO(b"x\n"), block, limit))


class TestDecodeBlock:
    def test_clean_block_needs_no_decoder(self) -> None:
        """A clean block is read by polars alone: the decoder decides no line."""
        data = b"".join(orjson.dumps({**rec, "seq": i, "event_id": f"e{i}"}) + b"\n" for i, rec in enumerate(GOOD, 1))
        decoder = Decoder()
        block = decode_block(data, decoder)
        assert (block.frame.height, block.rejected, decoder.events) == (len(GOOD), [], 0)

    def test_line_numbers_and_offsets_of_rejections(self) -> None:
        """Rejections found in a block carry the line number and offset within the whole log."""
        good = orjson.dumps(GOOD[3]) + b"\n"
        block = decode_block(good + b"oops\n", Decoder(), source="log", first_line=10, first_offset=1000)
        (bad,) = block.rejected
        assert (bad.source, bad.line_no, bad.offset, bad.raw) == ("log", 11, 1000 + len(good), b"oops\n")

    @pytest.mark.parametrize("value", [12, 2.5, True, [1], {"a": 1}])
    def test_non_string_text_is_refused(self, value: object) -> None:
        """A JSON number, boolean, list or object where text belongs is refused, though polars would read it."""
        data = orjson.dumps({**GOOD[3], "session_id": value}) + b"\n"
        block = decode_block(data, Decoder())
        assert block.frame.height == 0
        assert [r.reason for r in block.rejected] == ["schema"]
