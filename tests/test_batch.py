"""Tests for tracker.batch: the polars path gives exactly the decoder's events and rejections."""

from __future__ import annotations

import io
import json
import random
from collections import Counter
from pathlib import Path

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
from tracker.replayer import replay

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
    ("username", "a\x00b"), ("error", "carriage\rreturn"), ("ts", 1_795_557_600), ("ts", 1_795_557_600_000),
    ("ts", 253_402_300_799_000_000), ("question_text", 'say "hi"'), ("error", "back\\slash"),
    ("question_id", "q\u00e9"),
]
#: Values beyond 64 bits: polars refuses the whole block, so they are rare (the rest is read by polars).
BIG_FAULTS = [("seq", 2**63), ("input_tokens", 2**63), ("course_numbers", [1, 2**63]), ("ts", 2**64)]
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
        if rnd.random() < 0.003:
            key, value = rnd.choice(BIG_FAULTS)
            rec[key] = value
        line = json.dumps(rec, separators=(",", ":")).encode() + b"\n"  # escapes lone surrogates, as JSON may
        if rnd.random() < 0.05:  # a key written again, in any spelling: polars reads the first, orjson the last
            key = rnd.choice([*rec, "extra"])
            spelt = json.dumps(key).encode()
            if rnd.random() < 0.3:
                spelt = b'"\\u%04x' % ord(key[0]) + spelt[2:]
            again = json.dumps(rnd.choice([1, "x", None, 'q"', rec.get(key)])).encode()
            line = line[:-2] + b"," + spelt + rnd.choice([b":", b" :"]) + again + b"}\n"
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
    @settings(max_examples=40, deadline=None)
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


def _good_block(n: int = 50) -> bytes:
    """``n`` valid lines of every type, one event id each."""
    return b"".join(orjson.dumps({**GOOD[i % len(GOOD)], "seq": i + 1, "event_id": f"g-{i}"}) + b"\n"
                    for i in range(n))


def _assert_agrees(data: bytes) -> tuple[list[Event], list[Rejected]]:
    """decode_block gives exactly the decoder's events (as a frame) and rejections for ``data``."""
    events, rejected = _by_decoder(data, 1 << 20)
    decoder = Decoder(dedupe=False)
    block = decode_block(data, decoder)
    assert block.frame.to_dicts() == events_frame(events).to_dicts()
    assert block.rejected == rejected
    assert decoder.rejected == Counter(r.reason for r in rejected)
    return events, rejected


def _line(seq: int) -> bytes:
    return orjson.dumps(record(seq, "s1", "question_asked", question_text="why?")) + b"\n"


class TestCompressedLookalikes:
    """A block whose first bytes polars would take for a compressed stream is decided by the decoder."""

    @pytest.mark.parametrize("magic", [b"\x1f\x8b", b"\x78\x9c", b"\x28\xb5\x2f\xfd"])
    def test_first_line_rejected_and_the_rest_read(self, magic: bytes) -> None:
        """gzip, zlib or zstd magic at a block's start (a damaged log) is a rejected line, not an OSError that
        stops the reader; the events after it are read."""
        bad = magic + b" garbage\n"
        block = decode_block(bad + _line(1), Decoder())
        judged = [item.reason for item in Decoder().decode(bad) if isinstance(item, Rejected)]
        assert [r.reason for r in block.rejected] == judged
        assert judged
        assert block.frame.height == 1

    def test_compressed_events_are_not_read_as_events(self) -> None:
        """A block that is a gzip stream of valid events (binary bytes in the log) is not decompressed into them:
        its lines are judged as they are, and none is an event."""
        import gzip

        data = gzip.compress(b"".join(_line(i) for i in range(1, 4)), mtime=0) + b"\n"
        block = decode_block(data, Decoder())
        assert block.frame.height == 0
        assert block.rejected


class TestIntegerBounds:
    """An integer above 2**63-1 anywhere makes polars refuse the whole block: the decoder then decides every line."""

    @pytest.mark.parametrize("tail", [
        b'"type":"session_registered","username":"u","course_numbers":[1,9223372036854775808]}',
        b'"type":"session_registered","username":"u","course_numbers":[-9223372036854775809]}',
        b'"type":"question_answered","response_time_ms":1,"input_tokens":9223372036854775808}',
        b'"type":"question_answered","response_time_ms":1,"output_tokens":18446744073709551616}',
    ], ids=["course_above", "course_below", "input_tokens", "output_tokens_u64"])
    def test_out_of_range_line_is_rejected_and_the_block_read(self, tail: bytes) -> None:
        """The out-of-range line is rejected as schema; every other line of the block is read."""
        bad = b'{"v":1,"ts":1795557600000000,"event_id":"big","writer":"w:1:t","seq":1,"session_id":"s1",' + tail
        data = _good_block(20) + bad + b"\n" + _good_block(20)
        events, rejected = _assert_agrees(data)
        assert [r.reason for r in rejected] == ["schema"]
        assert len(events) == 40

    @pytest.mark.parametrize("key", [b'"seq"', b'"ts"', b'"v"'])
    def test_out_of_range_envelope_integer(self, key: bytes) -> None:
        """seq, ts or v above 2**63-1 is rejected, not read as null or wrapped."""
        line = orjson.dumps(GOOD[3]).replace(key + b":", key + b":9223372036854775808,\"was\":")
        _, rejected = _assert_agrees(_good_block(5) + line + b"\n")
        assert len(rejected) == 1

    def test_replay_survives_an_out_of_range_course_number(self, tmp_path: Path) -> None:
        """A log with a course number of 2**63 replays: that line is quarantined, the others reported."""
        bad = (b'{"v":1,"ts":1795557600000000,"event_id":"big","writer":"w:1:t","seq":99,"session_id":"s1",'
               b'"type":"session_registered","username":"u","course_numbers":[9223372036854775808]}\n')
        (tmp_path / "log.jsonl").write_bytes(_good_block(10) + bad)
        result = replay([tmp_path / "log.jsonl"], tmp_path / "out", interval_s=60)
        assert result.rejected == {"schema": 1}
        assert (tmp_path / "out" / "quarantine.jsonl").read_bytes() == bad


class TestDuplicateKeysInBlocks:
    """A line with a repeated key is doubted by the fast path, so the decoder rejects it as duplicate_key."""

    @pytest.mark.parametrize("tail", [
        b'"type":"question_answered","response_time_ms":100,"response_time_ms":900}',
        b'"type":"error","error":"a","kind":"x","kind":"y"}',
        b'"type":"error","error":"a","kind":"x","kind":"x"}',
        b'"type":"cycle_completed","extra":1,"extra":2}',
        b'"type":"cycle_completed","question_id":null,"question_id":null}',
        b'"type":"question_answered","response_time_ms" :100,"response_time_ms"\t:900}',
        b'"type":"question_answered","response_time_ms":100,"response_time_m\\u0073":900}',
        b'"type":"question_answered","response_time_ms":100,"question_id":"q\\u0022","response_time_ms":900}',
        b'"type":"error","error":"say \\"hi\\"","error":"x"}',
    ], ids=["different", "text", "same", "unknown", "nulls", "spaces", "escaped", "u0022", "escaped_quotes"])
    def test_repeated_key_is_rejected(self, tail: bytes) -> None:
        """The line is a duplicate_key rejection, as the decoder says, and the rest of the block is read."""
        bad = b'{"v":1,"ts":1795557600000000,"event_id":"dup","writer":"w:1:t","seq":1,"session_id":"s1",' + tail
        data = _good_block(30) + bad + b"\n" + _good_block(30)
        events, rejected = _assert_agrees(data)
        assert [r.reason for r in rejected] == ["duplicate_key"]
        assert len(events) == 60

    @pytest.mark.parametrize(("extra", "by_polars"), [
        (b',"question_text":"he said \\"no\\": twice"', True),
        (b',"question_text":"\\\\","question_id":"\\"\\""', True),
        (b',"question_id":"\\u0022quoted\\u0022"', False),
        (b',"added_later":{"k":"v","k":"w"}', False),
        (b',"question_id":null', False),
    ], ids=["escaped_quotes", "backslashes", "u0022", "unknown_nested", "null"])
    def test_lookalikes_are_read(self, extra: bytes, by_polars: bool) -> None:
        """Quotes in text, unknown keys and nulls are no duplicates: the line is an event (read by polars when
        its quotes are all accounted for; unknown keys and nulls are left to the decoder)."""
        line = orjson.dumps(record(1, "s1", "question_asked"))[:-1] + extra + b"}\n"
        events, rejected = _assert_agrees(_good_block(10) + line + _good_block(10))
        assert (len(events), rejected) == (21, [])
        decoder = Decoder()
        decode_block(_good_block(10) + line + _good_block(10), decoder)
        assert decoder.events == (0 if by_polars else 1)

    @settings(max_examples=40, deadline=None)
    @given(st.integers(0, 2**32), st.integers(1, 60))
    def test_random_repeats_agree(self, seed: int, n: int) -> None:
        """Repeated keys, in any spelling, mixed into blocks with text quotes and unknown keys: the decoder's result."""
        rnd = random.Random(seed)
        extras = [b',"kind":"x"', b',"question_id":"q"', b',"extra":"a\\"b"', b',"response_time_ms":5',
                  b',"question_text":"\\"q\\": a"', b',"session_id":"s9"', b',"s\\u0065q":3', b',"kind" : "k"',
                  b',"question_id":null', b',"x":{"kind":1}']
        lines = []
        for seq in range(1, n + 1):
            line = orjson.dumps({**rnd.choice(GOOD), "seq": seq, "event_id": f"r-{seq}"})
            for _ in range(rnd.choice([0, 0, 1, 2, 3])):
                line = line[:-1] + rnd.choice(extras) + b"}"
            lines.append(line + b"\n")
        _assert_agrees(b"".join(lines))


class TestImplausibleTimeInBlocks:
    """The fast path doubts a ts outside [2000, 2100): the decoder rejects it as implausible_time."""

    @pytest.mark.parametrize("ts", [1_795_557_600, 1_795_557_600_000, 946_684_800_000_000 - 1,
                                    4_102_444_800_000_000, 253_402_300_799_000_000, -1])
    def test_rejected(self, ts: int) -> None:
        """The line is rejected as implausible_time; the others are read."""
        line = orjson.dumps({**GOOD[3], "ts": ts}) + b"\n"
        _, rejected = _assert_agrees(_good_block(10) + line)
        assert [r.reason for r in rejected] == ["implausible_time"]

    def test_replay_reports_despite_them(self, tmp_path: Path) -> None:
        """A ts in seconds (which spanned too many windows) and one in the year 9999 (whose window ends in the
        year 10000) no longer stop the replay: both are quarantined, the other events reported."""
        bad = [orjson.dumps({**GOOD[3], "ts": ts, "event_id": f"t{ts}"}) + b"\n"
               for ts in (1_795_557_600, 253_402_300_799_000_000)]
        (tmp_path / "log.jsonl").write_bytes(_good_block(10) + b"".join(bad))
        result = replay([tmp_path / "log.jsonl"], tmp_path / "out", interval_s=60)
        assert (result.read.events, dict(result.rejected)) == (10, {"implausible_time": 2})
        assert (tmp_path / "out" / "quarantine.jsonl").read_bytes() == b"".join(bad)
        assert (tmp_path / "out" / "session_tracking_summary.csv").exists()


_MIN_TS, _END_TS, _INT64_MAX = 946_684_800_000_000, 4_102_444_800_000_000, 2**63 - 1
_SCHEMA = json.loads((Path(__file__).parent.parent / "schemas" / "event.schema.json").read_text())
_CHARS = st.sampled_from(["a", "\u00e9", "\u20ac", "\U0001d11e", '"', "\\", "\n", "\x00", ":", " ", "{"])


def _extreme_text(max_len: int) -> st.SearchStrategy[str]:
    """Text of 1 or ``max_len`` characters, of one repeated character or a short mix."""
    return st.one_of(_CHARS, _CHARS.map(lambda c: c * max_len),
                     st.text(_CHARS, min_size=1, max_size=8).map(lambda t: (t * max_len)[:max_len]))


_FLOATS = st.sampled_from([0.0, -0.0, 5e-324, 1.0, 2150.5, 1.7976931348623157e308, 0, _INT64_MAX])
_OPTIONAL = st.sampled_from(["absent", "null", "set"])


@st.composite
def _extreme_records(draw: st.DrawFn, ts: int, seq: int) -> dict[str, object]:
    """A schema-valid record of any type with extreme values; optional fields absent, null or set."""
    from tracker.events import EVENT_TYPES
    event_type = draw(st.sampled_from(list(EVENT_TYPES)))
    rec: dict[str, object] = {
        "v": 1, "ts": ts, "event_id": draw(_extreme_text(128)), "writer": draw(_extreme_text(256)),
        "seq": seq, "session_id": draw(_extreme_text(256)), "type": event_type}
    for name, spec in EVENT_TYPES[event_type].items():
        if not spec.required:
            how = draw(_OPTIONAL)
            if how != "set":
                if how == "null":
                    rec[name] = None
                continue
        if spec.kind == "str":
            rec[name] = draw(_extreme_text(spec.max_len))
        elif spec.kind == "int":
            rec[name] = draw(st.sampled_from([0, _INT64_MAX]))
        elif spec.kind == "number":
            rec[name] = draw(_FLOATS)
        else:
            rec[name] = draw(st.lists(st.sampled_from([-(2**63), 0, _INT64_MAX]), max_size=3))
    return rec


class TestExtremeValues:
    """Every line the schema accepts, at the edges of the contract, reads the same in both paths and replays."""

    @settings(max_examples=25, deadline=None)
    @given(st.data(), st.sampled_from([_MIN_TS, _END_TS - 1, 1_795_557_600_000_000]),
           st.sampled_from([1, _INT64_MAX - 5]), st.sampled_from(["orjson", "ascii", "spaced"]))
    def test_decoder_fast_path_and_replay_agree(self, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject,
                                                ts: int, first_seq: int, style: str) -> None:
        """Same events in decoder and decode_block, none rejected; the schema accepts every line; replay runs."""
        import jsonschema
        step = -1 if ts == _END_TS - 1 else 1
        count = data.draw(st.integers(1, 4))
        records = [data.draw(_extreme_records(ts + step * i, first_seq + i)) for i in range(count)]
        if style == "orjson":
            lines = [orjson.dumps(r) + b"\n" for r in records]
        else:
            spaced = {"separators": (", ", " : ")} if style == "spaced" else {}
            lines = [json.dumps(r, **spaced).encode() + b"\n" for r in records]  # type: ignore[arg-type]
        for line in lines:
            jsonschema.validate(json.loads(line), _SCHEMA)
        log = b"".join(lines)
        events, rejected = _assert_agrees(log)
        assert (len(events), rejected) == (len(records), [])
        folder = tmp_path_factory.mktemp("replay")
        (folder / "log.jsonl").write_bytes(log)
        result = replay([folder / "log.jsonl"], folder / "out", interval_s=60)
        assert (result.read.events, dict(result.rejected)) == (len(records), {})
