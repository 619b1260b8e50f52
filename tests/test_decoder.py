"""Tests for tracker.decoder: every line is an event, a duplicate, or a rejection with its reason."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from glob import glob
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import T0, record
from tracker.decoder import REASONS, Decoder, Quarantine, Rejected, decode_file
from tracker.errors import ForeignFileError
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

    def test_decode_file_refuses_a_fifo_at_once(self, tmp_path: Path) -> None:
        """decode_file of a FIFO (no writer) is an OSError naming it, not a wait for ever."""
        fifo = tmp_path / "events.jsonl"
        os.mkfifo(fifo)
        with pytest.raises(OSError, match="it is a FIFO, not a regular file") as info:
            list(decode_file(fifo))
        assert info.value.filename == str(fifo)

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

    def test_a_fifo_is_refused_and_left_as_it_is(self, tmp_path: Path) -> None:
        """A FIFO at the quarantine's path (or its reasons file's) is refused by name, never opened or removed."""
        for name, fifo in (("q.jsonl", "q.jsonl"), ("q.jsonl", "q.jsonl.reasons.jsonl")):
            os.mkfifo(tmp_path / fifo)
            with pytest.raises(OSError, match="it is a FIFO, not a regular file") as info:
                Quarantine(tmp_path / name)
            assert info.value.filename == str(tmp_path / fifo)
            assert stat.S_ISFIFO((tmp_path / fifo).lstat().st_mode)
            (tmp_path / fifo).unlink()

    def test_a_folder_is_refused(self, tmp_path: Path) -> None:
        """A folder at the quarantine's path is refused, and kept."""
        (tmp_path / "q.jsonl").mkdir()
        with pytest.raises(OSError, match="it is a folder, not a regular file"):
            Quarantine(tmp_path / "q.jsonl")
        assert (tmp_path / "q.jsonl").is_dir()

    def test_reset_keeps_a_symbolic_link(self, tmp_path: Path) -> None:
        """Emptying a quarantine whose path is a symbolic link empties the file it names and keeps the link."""
        with Quarantine(tmp_path / "target.jsonl") as earlier:
            earlier.add(Rejected("log.jsonl", 1, 0, "not_json", "not JSON", b"old entry\n"))
        (tmp_path / "q.jsonl").symlink_to("target.jsonl")
        (tmp_path / "q.jsonl.reasons.jsonl").symlink_to("target.jsonl.reasons.jsonl")
        quarantine = Quarantine(tmp_path / "q.jsonl")
        quarantine.reset()
        assert (tmp_path / "q.jsonl").is_symlink()
        assert (tmp_path / "target.jsonl").read_bytes() == b""

    @pytest.mark.parametrize("what", ["reset", "restore", "add"])
    def test_a_log_at_the_quarantine_path_is_never_emptied(self, tmp_path: Path, what: str) -> None:
        """A file at the path holding lines with no reasons file beside it (a log named as the quarantine) is a
        ForeignFileError naming it, whether the quarantine is emptied, cut back to a checkpoint or repaired."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(_line(record(1, "s1", "cycle_completed")))
        quarantine = Quarantine(log)
        calls: dict[str, Callable[[], None]] = {
            "reset": quarantine.reset, "restore": lambda: quarantine.restore((0, 0)),
            "add": lambda: quarantine.add(Rejected("x.jsonl", 1, 0, "not_json", "not JSON", b"bad\n"))}
        with pytest.raises(ForeignFileError, match=re.escape(f"the quarantine file '{log}' holds something else than "
                                                             "rejected lines (a log?)")):
            calls[what]()
        assert log.read_bytes() == _line(record(1, "s1", "cycle_completed"))
        assert not quarantine.reasons_path.exists()

    def test_a_log_grown_at_the_quarantine_path_is_never_emptied(self, tmp_path: Path) -> None:
        """A quarantine named as a log that did not exist yet, the log then written at that path: its lines file
        holds more lines than the reasons file has entries, so it is not a quarantine and is kept."""
        log = tmp_path / "events.jsonl"
        with Quarantine(log) as quarantine:
            quarantine.add(Rejected("a.jsonl", 1, 0, "invalid_json", "not JSON", b"not an event\n"))
        with open(log, "ab") as stream:
            stream.write(_line(record(1, "s1", "cycle_completed")))
        kept = log.read_bytes()
        with pytest.raises(ForeignFileError, match=re.escape(f"the quarantine file '{log}' holds something else")):
            Quarantine(log).reset()
        assert log.read_bytes() == kept

    def test_a_first_entry_longer_than_64_kib_is_ours(self, tmp_path: Path) -> None:
        """An entry whose detail quotes a long value is still recognised: the quarantine is emptied again."""
        with Quarantine(tmp_path / "q.jsonl") as quarantine:
            quarantine.add(Rejected("a.jsonl", 1, 0, "schema", "x" * 100_000, b"bad\n"))
        assert (tmp_path / "q.jsonl.reasons.jsonl").stat().st_size > 100_000
        Quarantine(tmp_path / "q.jsonl").reset()
        assert not (tmp_path / "q.jsonl").exists()

    def test_a_lone_reason_cut_short_is_repaired(self, tmp_path: Path) -> None:
        """The first reason cut short by a crash, before its line: the quarantine is still ours, and repaired."""
        (tmp_path / "q.jsonl.reasons.jsonl").write_bytes(b'{"source":"log.jsonl","line":6,"offs')
        (tmp_path / "q.jsonl").write_bytes(b"")
        with Quarantine(tmp_path / "q.jsonl") as quarantine:
            quarantine.add(Rejected("a.jsonl", 1, 0, "invalid_json", "not JSON", b"bad\n"))
        assert (tmp_path / "q.jsonl").read_bytes() == b"bad\n"
        assert orjson.loads((tmp_path / "q.jsonl.reasons.jsonl").read_bytes())["source"] == "a.jsonl"

    def test_a_source_named_in_bytes_that_are_not_utf8(self, tmp_path: Path) -> None:
        """A rejected line of a log whose file name is not UTF-8 is quarantined, the name's bad bytes as U+FFFD
        (it raised from orjson, a traceback in every command)."""
        source = os.fsdecode(b"bad\xff.jsonl")
        with Quarantine(tmp_path / "q.jsonl") as quarantine:
            quarantine.add(Rejected(source, 1, 0, "invalid_json", "not JSON", b"bad\n"))
        assert orjson.loads((tmp_path / "q.jsonl.reasons.jsonl").read_bytes())["source"] == "bad\ufffd.jsonl"
        assert (tmp_path / "q.jsonl").read_bytes() == b"bad\n"

    def test_a_log_put_at_the_path_later_is_not_written_into(self, tmp_path: Path) -> None:
        """A log put at the path after the quarantine was checked (here: while it waits for its repair) makes keep()
        count the line as lost and say so; the log is left as it was."""
        quarantine = Quarantine(tmp_path / "q.jsonl")
        quarantine.restore((10, 10))  # shorter than saved: repaired when next opened
        log = _line(record(1, "s1", "cycle_completed"))
        (tmp_path / "q.jsonl").write_bytes(log)
        said: list[str] = []
        assert not quarantine.keep(Rejected("x.jsonl", 1, 0, "not_json", "not JSON", b"bad\n"), said.append)
        assert (quarantine.lost, (tmp_path / "q.jsonl").read_bytes()) == (1, log)
        (warning,) = said
        assert "but not quarantined" in warning
        assert "holds something else than rejected lines" in warning
        with pytest.raises(OSError, match="holds something else than rejected lines"):  # a checkpoint waits
            quarantine.position()

    def test_a_log_at_the_reasons_path_is_never_emptied(self, tmp_path: Path) -> None:
        """A reasons file whose first line is not an entry of ours is refused, both files kept."""
        reasons = tmp_path / "q.jsonl.reasons.jsonl"
        reasons.write_bytes(_line(record(1, "s1", "cycle_completed")))
        with pytest.raises(ForeignFileError, match=re.escape(f"the quarantine's reasons file '{reasons}'")):
            Quarantine(tmp_path / "q.jsonl").reset()
        assert reasons.read_bytes() == _line(record(1, "s1", "cycle_completed"))

    def test_a_reason_without_its_line_is_repaired(self, tmp_path: Path) -> None:
        """A crash between an entry's reason (written first) and its line leaves a reason alone: the next open cuts
        it off, with a warning, and the files pair up."""
        with Quarantine(tmp_path / "q.jsonl") as quarantine:
            quarantine.add(Rejected("x.jsonl", 1, 0, "not_json", "not JSON", b"one\n"))
        with open(tmp_path / "q.jsonl.reasons.jsonl", "ab") as stream:
            stream.write(b'{"source":"x.jsonl","line":2,"offset":4,"reason":"not_json","detail":"not JSON"}\n')
        said: list[str] = []
        with Quarantine(tmp_path / "q.jsonl", warn=said.append) as again:
            again.add(Rejected("x.jsonl", 3, 9, "not_json", "not JSON", b"three\n"))
        assert (tmp_path / "q.jsonl").read_bytes() == b"one\nthree\n"
        assert [orjson.loads(line)["line"] for line in (tmp_path / "q.jsonl.reasons.jsonl").read_bytes().splitlines()
                ] == [1, 3]
        assert len(said) == 1

    def test_a_failed_write_leaves_the_files_paired(self, tmp_path: Path) -> None:
        """A write cut short (a file size limit, as a full disk) raises, and both files are cut back to whole pairs."""
        script = (
            "import resource, signal, sys\n"
            "from tracker.decoder import Quarantine, Rejected\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
            "q = Quarantine(sys.argv[1])\n"
            "failed = 0\n"
            "for n in range(1, 40):\n"
            "    try:\n"
            "        q.add(Rejected('log', n, 0, 'invalid_json', 'bad', b'x' * n + b'\\n'))\n"
            "    except OSError:\n"
            "        failed += 1\n"
            "print(q.count, failed)\n")
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "q.jsonl")], capture_output=True,
                              text=True, timeout=60, check=True)
        kept, failed = map(int, done.stdout.split())
        assert kept > 0
        assert failed > 0
        lines = (tmp_path / "q.jsonl").read_bytes().splitlines()
        reasons = [orjson.loads(r) for r in (tmp_path / "q.jsonl.reasons.jsonl").read_bytes().splitlines()]
        assert len(lines) == len(reasons) == kept
        assert [len(line) for line in lines] == [r["line"] for r in reasons]


_QA = b'{"v":1,"ts":1795557600000000,"event_id":"t-1","writer":"w:1:t","seq":1,"session_id":"s1",' \
      b'"type":"question_answered",'


class TestDuplicateKeys:
    """A key repeated in one line is ambiguous (polars reads the first value, orjson the last): refused."""

    @pytest.mark.parametrize(("tail", "key"), [
        (b'"response_time_ms":100,"response_time_ms":900}', "response_time_ms"),
        (b'"response_time_ms":100,"response_time_ms":100}', "response_time_ms"),
        (b'"response_time_ms":100,"kind":null,"kind":null}', "kind"),
        (b'"response_time_ms":100,"extra":1,"extra":{"a":1}}', "extra"),
        (b'"response_time_ms" :100,"response_time_ms"\t:900}', "response_time_ms"),
        (b'"response_time_ms":100,"response_time_m\\u0073":900}', "response_time_ms"),
        (b'"response_time_ms":100,"seq":1}', "seq"),
        (b'"response_time_ms":100,"a\\"b":1,"a\\"b":2}', 'a"b'),
    ], ids=["different", "same", "nulls", "unknown", "spaces", "escaped", "envelope", "quote_in_key"])
    def test_repeated_key_is_rejected(self, tail: bytes, key: str) -> None:
        """Any top-level key written twice, however spelt, makes the line a duplicate_key rejection naming it."""
        decoder = Decoder()
        (item,) = decoder.decode(_QA + tail + b"\n")
        assert isinstance(item, Rejected)
        assert item.reason == "duplicate_key"
        assert repr(key) in item.detail
        assert decoder.rejected == {"duplicate_key": 1}

    @pytest.mark.parametrize("tail", [
        b'"response_time_ms":100,"question_id":"said \\": no\\": really"}',
        b'"response_time_ms":100,"question_id":"a : b"}',
        b'"response_time_ms":100,"extra":{"a":1,"a":2}}',
        b'"response_time_ms" : 100 }',
        b'"response_time_ms":100,"question_id":"\\\\"}',
    ], ids=["colon_in_text", "spaced_colon_in_text", "nested_repeat", "spaces", "escaped_backslash"])
    def test_lookalikes_are_not_duplicates(self, tail: bytes) -> None:
        """Colons and quotes inside strings, spaces, and repeats inside a nested value are not duplicate keys."""
        (item,) = Decoder().decode(_QA + tail + b"\n")
        assert isinstance(item, Event), item

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(
        st.sampled_from(["x", "y", "\u00e9", 'q"', "seq", "session_id", "kind", "response_time_ms"]),
        st.sampled_from(["plain", "escaped"]), st.sampled_from(["", " ", "\t", "\r", "  "]),
        st.sampled_from(['"a\\":b"', '" : "', "1", "null", "[1,2]", '{"x":1,"x":2}', '"\\\\"'])),
        max_size=4))
    def test_never_misses_a_repeat(self, extra: list[tuple[str, str, str, str]]) -> None:
        """Extra top-level pairs in any spelling: rejected as duplicate_key exactly when some key repeats."""
        base = {"v": 1, "ts": T0, "event_id": "t-1", "writer": "w:1:t", "seq": 1, "session_id": "s1",
                "type": "question_answered", "response_time_ms": 1.0}
        same = {"seq": "1", "session_id": '"s1"', "kind": '"k"', "response_time_ms": "1.0"}  # valid values
        parts = [json.dumps(k) + ":" + json.dumps(v) for k, v in base.items()]
        for key, spelling, space, value in extra:
            text = json.dumps(key)
            if spelling == "escaped":
                text = f'"\\u{ord(key[0]):04x}' + text[2:]
            parts.append(text + space + ":" + same.get(key, value))
        line = ("{" + ",".join(parts) + "}\n").encode()
        pairs: list[tuple[str, Any]] = json.loads(line, object_pairs_hook=lambda p: p)
        repeated = len({k for k, _ in pairs}) < len(pairs)
        (item,) = Decoder().decode(line)
        assert (isinstance(item, Rejected) and item.reason == "duplicate_key") == repeated, (line, item)
        if not repeated:
            assert isinstance(item, Event), (line, item)


class TestImplausibleTime:
    """A ts outside [2000-01-01, 2100-01-01) is quarantined as implausible_time; the decoder never reads the clock."""

    @pytest.mark.parametrize(("ts", "hint"), [
        (1_795_557_600, "looks like seconds"),
        (1_795_557_600_000, "looks like milliseconds"),
        (253_402_300_799_000_000, "9999-12-31T23:59:59Z"),
    ])
    def test_rejected_with_a_hint(self, ts: int, hint: str) -> None:
        """The rejection names the value and what it likely is."""
        (item,) = Decoder().decode(_line(record(1, "s1", "cycle_completed", ts=ts)))
        assert isinstance(item, Rejected)
        assert item.reason == "implausible_time"
        assert str(ts) in item.detail
        assert hint in item.detail
