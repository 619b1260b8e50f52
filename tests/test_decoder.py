"""Tests for tracker.decoder: every line is an event, a duplicate, or a rejection with its reason."""

from __future__ import annotations

from glob import glob
from pathlib import Path

import orjson
import pytest

from tests.helpers import record
from tracker.decoder import REASONS, Decoder, Quarantine, Rejected, decode_file
from tracker.events import Event

FIXTURES = Path(__file__).parent.parent / "fixtures"
REJECT_FIXTURES = sorted(glob(str(FIXTURES / "rejects" / "*.jsonl")))


def _line(rec: dict[str, object]) -> bytes:
    return orjson.dumps(rec) + b"\n"


class TestRejectFixtures:
    def test_every_reason_has_a_fixture(self) -> None:
        """fixtures/rejects holds one file per rejection reason."""
        assert sorted(Path(p).stem for p in REJECT_FIXTURES) == sorted(REASONS)

    @pytest.mark.parametrize("path", REJECT_FIXTURES, ids=lambda p: Path(p).stem)
    def test_fixture_gives_its_reason(self, path: str) -> None:
        """Each fixture has exactly one bad line, rejected for the reason the file is named after."""
        decoder = Decoder(max_line_bytes=4096)
        items = list(decode_file(path, decoder))
        rejected = [item for item in items if isinstance(item, Rejected)]
        assert [r.reason for r in rejected] == [Path(path).stem]
        assert decoder.events == len(items) - 1 == 4
        data = Path(path).read_bytes()
        bad = rejected[0]
        assert data[bad.offset:bad.offset + len(bad.raw)] == bad.raw
        assert data[:bad.offset].count(b"\n") == bad.line_no - 1


class TestDecoder:
    def test_duplicate_event_id_counted_once(self) -> None:
        """A repeated event_id is neither an event again nor a rejection; it is counted as a duplicate."""
        line = _line(record(1, "s1", "cycle_completed"))
        decoder = Decoder()
        items = list(decoder.decode_stream([line, line, line]))
        assert len(items) == 1
        assert (decoder.events, decoder.duplicates, decoder.rejected.total()) == (1, 2, 0)

    def test_same_event_id_at_another_time_is_another_event(self) -> None:
        """An event_id reused with a different ts is not a line read twice: both events are kept."""
        first, second = record(1, "s1", "cycle_completed"), record(1, "s1", "cycle_completed")
        second["ts"] += 1
        decoder = Decoder()
        items = list(decoder.decode_stream([_line(first), _line(second)]))
        assert [(e.event_id, e.ts) for e in items] == [(first["event_id"], first["ts"]),  # type: ignore[union-attr]
                                                        (second["event_id"], second["ts"])]
        assert decoder.duplicates == 0

    def test_same_event_id_and_ts_with_other_content_is_another_event(self) -> None:
        """A line reusing an event_id and ts for other content is not a line read twice: both are kept."""
        first, second = record(1, "s1", "cycle_completed"), record(1, "s2", "cycle_completed")
        decoder = Decoder()
        items = list(decoder.decode_stream([_line(first), _line(second), _line(first)]))
        assert [e.session_id for e in items] == ["s1", "s2"]  # type: ignore[union-attr]
        assert decoder.duplicates == 1

    def test_duplicates_detected_across_files(self, tmp_path: Path) -> None:
        """One decoder reading two files counts an event present in both once."""
        line = _line(record(1, "s1", "cycle_completed"))
        (tmp_path / "a").write_bytes(line)
        (tmp_path / "b").write_bytes(line)
        decoder = Decoder()
        items = list(decode_file(tmp_path / "a", decoder)) + list(decode_file(tmp_path / "b", decoder))
        assert (len(items), decoder.duplicates) == (1, 1)

    def test_empty_line_is_rejected(self) -> None:
        """A blank line is not skipped in silence: it is rejected as invalid_json."""
        items = list(Decoder().decode_stream([b"\n"]))
        assert isinstance(items[0], Rejected)
        assert (items[0].reason, items[0].detail) == ("invalid_json", "empty line")

    def test_nul_byte_is_rejected(self) -> None:
        """A NUL byte (left by a torn text-mode write) makes the line invalid_json."""
        items = list(Decoder().decode_stream([b'{"v":1}\x00\n']))
        assert isinstance(items[0], Rejected)
        assert items[0].reason == "invalid_json"

    def test_offsets_and_line_numbers(self) -> None:
        """Rejections carry the 1-based line number and the byte offset of the line's start."""
        good = _line(record(1, "s1", "cycle_completed"))
        items = list(Decoder().decode_stream([good, good.replace(b"-1", b"-2").replace(b":1,", b":2,"), b"x\n"]))
        bad = items[-1]
        assert isinstance(bad, Rejected)
        assert (bad.line_no, bad.offset) == (3, 2 * len(good))
        assert bad.describe().startswith(":3 (byte ")

    def test_gaps_per_writer(self) -> None:
        """gaps() counts missing sequence numbers per writer."""
        lines = [_line(record(seq, "s1", "cycle_completed", writer=f"h:1:{w}")) for w, seq in
                 [("a", 1), ("a", 2), ("a", 5), ("b", 1), ("b", 2)]]
        decoder = Decoder()
        list(decoder.decode_stream(lines))
        assert decoder.gaps() == {"h:1:a": 2}

    def test_events_are_events(self) -> None:
        """A valid line decodes to an Event with the record's values."""
        (item,) = Decoder().decode_stream([_line(record(1, "s1", "question_answered", response_time_ms=3.0))])
        assert isinstance(item, Event)
        assert item.to_record() == record(1, "s1", "question_answered", response_time_ms=3.0)


    def test_glued_line_gives_fragment_and_event(self) -> None:
        """A fragment glued to a whole event: the fragment is rejected with its offset, the event is read."""
        whole = _line(record(1, "s1", "cycle_completed"))
        decoder = Decoder()
        items = list(decoder.decode_stream([b'{"v":1,"ts":9' + whole]))
        assert isinstance(items[0], Rejected)
        assert (items[0].reason, items[0].raw, items[0].offset) == ("invalid_json", b'{"v":1,"ts":9', 0)
        assert isinstance(items[1], Event)
        assert (decoder.events, decoder.rejected.total()) == (1, 1)

    def test_glued_garbage_is_one_rejection(self) -> None:
        """When the text after the fragment is no event either, the whole line is one rejection."""
        decoder = Decoder()
        items = list(decoder.decode_stream([b'{"v":1,"ts":9{"v":2,"x"\n']))
        assert [type(i) for i in items] == [Rejected]
        assert decoder.rejected.total() == 1


class TestQuarantine:
    def test_keeps_lines_verbatim_with_reasons(self, tmp_path: Path) -> None:
        """Rejected lines are written byte for byte, their reasons beside them, in the same order."""
        decoder = Decoder()
        lines = [b"not json\n", b"\xff\xfe\n", _line(record(1, "s1", "cycle_completed")), b'{"v":1}']
        with Quarantine(tmp_path / "q.jsonl") as quarantine:
            for item in decoder.decode_stream(lines, source="log"):
                if isinstance(item, Rejected):
                    quarantine.add(item)
        assert (tmp_path / "q.jsonl").read_bytes() == b"not json\n\xff\xfe\n" + b'{"v":1}\n'
        reasons = [orjson.loads(line) for line in (tmp_path / "q.jsonl.reasons.jsonl").read_bytes().splitlines()]
        assert [(r["line"], r["reason"], r["source"]) for r in reasons] == [
            (1, "invalid_json", "log"), (2, "invalid_utf8", "log"), (4, "unterminated", "log")]
        assert quarantine.count == 3
