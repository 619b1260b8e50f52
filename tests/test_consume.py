"""Tests for tracker.consume: a real nats-server's stream read by ``tracker replay --nats`` and ``tracker tail --nats``
gives the reports a replay of the shipped files gives."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import nats
import orjson
import pytest

from tests.conftest import NatsServer
from tests.helpers import T0, record, wait_for
from tests.test_jetstream import publish_raw
from tests.test_results import SCHEMA as OUTPUT_SCHEMA
from tests.test_ship import fresh_tracker_logger  # noqa: F401  (autouse: the warnings of each command run here)
from tracker.cli import main
from tracker.consume import StreamReader, decode_messages, read_stream
from tracker.decoder import Decoder
from tracker.emitter import EventLog
from tracker.engine import Engine
from tracker.jetstream import StreamSpec
from tracker.replayer import replay
from tracker.tail import Tail

S = 1_000_000


def body(seq: int, session: str = "s1", **fields: Any) -> bytes:
    """One valid question_answered event as a message body (no newline), as tracker ship publishes it."""
    return orjson.dumps(record(seq, session, "question_answered", T0 + seq * S, response_time_ms=float(seq), **fields))


def decode(messages: list[tuple[int, bytes]]) -> tuple[list[str], list[tuple[int, str, bytes]], Decoder]:
    """The event ids read and the (line, reason, raw) rejected when ``messages`` are decoded."""
    decoder = Decoder(dedupe=False)
    frame, rejected = decode_messages(messages, decoder, "nats:LT")
    assert {r.source for r in rejected} <= {"nats:LT"}
    return frame["event_id"].to_list(), [(r.line_no, r.reason, r.raw) for r in rejected], decoder


class TestDecodeMessages:
    def test_valid_events_in_order(self) -> None:
        """Every valid body is one event, in message order; nothing rejected."""
        ids, rejected, decoder = decode([(4, body(1)), (5, body(2, question_id="q2")), (9, body(3))])
        assert (ids, rejected, decoder.rejected.total()) == (["t-1", "t-2", "t-3"], [], 0)

    def test_foreign_message_is_rejected_by_its_sequence(self) -> None:
        """A message that is not JSON is rejected with its stream sequence as its line; the others are read."""
        ids, rejected, decoder = decode([(1, body(1)), (2, b"hello from elsewhere"), (3, body(3))])
        assert ids == ["t-1", "t-3"]
        assert rejected == [(2, "invalid_json", b"hello from elsewhere\n")]
        assert dict(decoder.rejected) == {"invalid_json": 1}

    def test_each_rejection_has_its_own_sequence(self) -> None:
        """Several bad messages among good ones: each rejection names its own message's sequence."""
        ids, rejected, _ = decode([(5, b'{"hello": 1}'), (9, body(9)), (12, b"[1]"), (40, b"{"), (41, body(41))])
        assert ids == ["t-9", "t-41"]
        assert [(line, reason) for line, reason, _ in rejected] == [(5, "schema"), (12, "not_object"),
                                                                     (40, "invalid_json")]

    def test_trailing_newline(self) -> None:
        """A body ending in a newline is the same event."""
        ids, rejected, _ = decode([(1, body(1) + b"\n"), (2, body(2) + b"\n\n")])
        assert (ids, rejected) == (["t-1", "t-2"], [])

    @pytest.mark.parametrize("empty", [b"", b"\n"])
    def test_empty_body_is_rejected(self, empty: bytes) -> None:
        """An empty message is not an event: rejected by its sequence, never dropped unsaid."""
        ids, rejected, decoder = decode([(1, body(1)), (7, empty), (8, body(8))])
        assert ids == ["t-1", "t-8"]
        assert [line for line, _, _ in rejected] == [7]
        assert decoder.rejected.total() == 1

    def test_json_spanning_lines_is_one_event(self) -> None:
        """A pretty-printed event (one JSON value over several lines) is read as that event."""
        pretty = orjson.dumps(record(2, "s1", "question_answered", T0, response_time_ms=2.0),
                              option=orjson.OPT_INDENT_2)
        assert pretty.count(b"\n") > 5
        ids, rejected, _ = decode([(1, body(1)), (2, pretty), (3, body(3))])
        assert sorted(ids) == ["t-1", "t-2", "t-3"]
        assert rejected == []

    def test_body_of_two_event_lines(self) -> None:
        """A body holding two events on two lines (a foreign batching publisher) is taken whole either way: both
        events read, or the message rejected once; never one event read and the other quarantined as a
        "fragment of an unfinished line"."""
        ids, rejected, _ = decode([(7, body(1) + b"\n" + body(2))])
        both_read = (sorted(ids), rejected) == (["t-1", "t-2"], [])
        rejected_whole = ids == [] and [(line, raw) for line, _, raw in rejected] == [(7, body(1) + b"\n" + body(2)
                                                                                       + b"\n")]
        assert both_read or rejected_whole, (ids, rejected)


def busy_logs(run: Path) -> list[Path]:
    """Two logs: one written by two writers, one by a third; equal timestamps across writers, events on window
    boundaries (60 s windows), optional fields present and missing, a session never unregistered."""
    first, second, third = (EventLog(run / "events.jsonl"), EventLog(run / "events.jsonl"),
                            EventLog(run / "other.jsonl"))
    first.emit("session_registered", "s1", ts=T0, username="ann", course_numbers=[])
    second.emit("session_registered", "s2", ts=T0, username="bob", course_numbers=[101, 202])
    third.emit("session_registered", "s3", ts=T0, username="cy", course_numbers=[7])
    first.emit("question_asked", "s1", ts=T0 + 60 * S - 1)
    second.emit("question_asked", "s2", ts=T0 + 60 * S - 1, question_text="why?", question_id="q1")
    first.emit("question_answered", "s1", ts=T0 + 60 * S, response_time_ms=100.0)
    second.emit("question_answered", "s2", ts=T0 + 60 * S, response_time_ms=250.5, question_id="q1",
                time_to_first_token_ms=40.0, input_tokens=12, output_tokens=300)
    third.emit("error", "s3", ts=T0 + 60 * S, error="timeout")
    third.emit("error", "s3", ts=T0 + 61 * S, error="http 500", kind="server", response_time_ms=30_000.0)
    first.emit("cycle_completed", "s1", ts=T0 + 120 * S)
    second.emit("question_answered", "s2", ts=T0 + 120 * S, response_time_ms=0.0, output_tokens=0)
    second.emit("session_unregistered", "s2", ts=T0 + 120 * S, reason="done")
    third.emit("question_answered", "s3", ts=T0 + 180 * S - 1, response_time_ms=1234.5, input_tokens=3)
    third.emit("session_unregistered", "s3", ts=T0 + 240 * S, reason="error")
    for log in (first, second, third):
        log.close()
    return [run / "events.jsonl", run / "other.jsonl"]


def report_files(folder: Path) -> dict[str, bytes]:
    """Every file a run wrote into ``folder`` (its own state folders, the quarantine and the manifest, which says
    which writer wrote last, left out)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(("quarantine", "."))}


def ship_logs(url: str, *logs: Path) -> None:
    assert main("ship", *(str(log) for log in logs), "--nats", url, "--stream", "LT", "--once",
                "--nats-timeout", "2s") in (0, 1)


class TestReplay:
    def test_stream_replay_equals_file_replay(self, tmp_path: Path, nats_server: NatsServer,
                                              capsys: pytest.CaptureFixture[str]) -> None:
        """replay --nats of the shipped stream writes the same files, byte for byte, as replay of the logs (one
        line of which is written twice: JetStream keeps one message, the files' engine drops the repeat)."""
        logs = busy_logs(tmp_path / "run")
        with open(logs[0], "ab") as stream:
            stream.write(logs[0].read_bytes().splitlines(keepends=True)[3])
        ship_logs(nats_server.url, *logs)
        assert capsys.readouterr().out == ("shipped 15 events to the stream 'LT' (1 of them it had already), 0 "
                                           "rejected lines\n")
        assert main("replay", "--nats", nats_server.url, "--stream", "LT", "--out", str(tmp_path / "nats"),
                    "--interval", "60", "--quiet") == 0
        assert capsys.readouterr().out.startswith("read the stream 'LT': 14 events, 0 rejected, 0 duplicates\n")
        assert main("replay", *(str(log) for log in logs), "--out", str(tmp_path / "files"), "--interval", "60",
                    "--quiet") == 0
        nats, files = report_files(tmp_path / "nats"), report_files(tmp_path / "files")
        assert len(nats) >= 6
        assert nats == files

    def test_json_names_the_stream(self, tmp_path: Path, nats_server: NatsServer,
                                   capsys: pytest.CaptureFixture[str]) -> None:
        """replay --nats --json: the object (valid under schemas/output.schema.json) names the stream, and the
        server's address without its password; a replay of logs says null."""
        ship_logs(nats_server.url, *busy_logs(tmp_path / "run"))
        capsys.readouterr()
        address = nats_server.url.replace("nats://", "nats://me:secret@")
        assert main("replay", "--nats", address, "--stream", "LT", "--out", str(tmp_path / "nats"), "--json",
                    "--quiet") == 0
        result = orjson.loads(capsys.readouterr().out)
        jsonschema.validate(result, OUTPUT_SCHEMA)
        assert result["stream"] == {"nats": nats_server.url.replace("nats://", "nats://***@"), "stream": "LT"}
        assert result["events"] == 14
        assert main("replay", str(tmp_path / "run"), "--out", str(tmp_path / "files"), "--json", "--quiet") == 0
        assert orjson.loads(capsys.readouterr().out)["stream"] is None

    def test_shipped_in_several_runs_with_a_bad_line(self, tmp_path: Path, nats_server: NatsServer) -> None:
        """Logs shipped in two runs (a bad line quarantined by the shipper): the stream's reports equal the
        files' (whose replay quarantines the bad line)."""
        log = tmp_path / "run" / "events.jsonl"
        writer = EventLog(log)
        writer.emit("session_registered", "s1", ts=T0, username="ann", course_numbers=[1])
        writer.emit("question_answered", "s1", ts=T0 + 30 * S, response_time_ms=10.0)
        ship_logs(nats_server.url, log)
        with open(log, "ab") as stream:
            stream.write(b"not an event\n")
        writer.emit("question_answered", "s1", ts=T0 + 90 * S, response_time_ms=20.0)
        writer.emit("session_unregistered", "s1", ts=T0 + 90 * S, reason="done")
        writer.close()
        ship_logs(nats_server.url, log)
        assert main("replay", "--nats", nats_server.url, "--stream", "LT", "--out", str(tmp_path / "nats"),
                    "--interval", "60", "--quiet") == 0
        assert main("replay", str(log), "--out", str(tmp_path / "files"), "--interval", "60", "--quiet") == 1
        assert report_files(tmp_path / "nats") == report_files(tmp_path / "files")

    def test_foreign_message_is_quarantined(self, tmp_path: Path, nats_server: NatsServer,
                                            capsys: pytest.CaptureFixture[str]) -> None:
        """A message another publisher put on the stream is quarantined with its sequence as its line; exit 1."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(body(1) + b"\n")
        ship_logs(nats_server.url, log)
        publish_raw(nats_server.url, "LT.events", [b"hello from elsewhere", body(3)])
        capsys.readouterr()
        out = tmp_path / "out"
        assert main("replay", "--nats", nats_server.url, "--stream", "LT", "--out", str(out), "--quiet") == 1
        assert capsys.readouterr().out.startswith("read the stream 'LT': 2 events, 1 rejected, 0 duplicates\n")
        assert (out / "quarantine.jsonl").read_bytes() == b"hello from elsewhere\n"
        reason = orjson.loads((out / "quarantine.jsonl.reasons.jsonl").read_bytes())
        assert (reason["source"], reason["line"], reason["reason"]) == ("nats:LT", 2, "invalid_json")

    def test_missing_stream(self, tmp_path: Path, nats_server: NatsServer,
                            capsys: pytest.CaptureFixture[str]) -> None:
        """A stream the server does not have: exit 2 naming it and the server (its password hidden)."""
        url = nats_server.url.replace("nats://", "nats://ann:s3cret@")
        assert main("replay", "--nats", url, "--stream", "NOPE", "--out", str(tmp_path / "out"), "--quiet") == 2
        assert capsys.readouterr() == ("", f"tracker replay: error: there is no stream 'NOPE' on "
                                           f"nats://***@127.0.0.1:{nats_server.port}\n")

    @pytest.mark.parametrize(("args", "message"), [
        (["--nats", "nats://127.0.0.1:4222"], "--nats and --stream go together: the server's address and the "
                                              "stream's name"),
        (["--stream", "LT"], "--nats and --stream go together: the server's address and the stream's name"),
        (["LOG", "--nats", "nats://127.0.0.1:4222", "--stream", "LT"],
         "give the logs to read or --nats URL --stream NAME, not both"),
        ([], "give the logs to read, or --nats URL --stream NAME"),
    ])
    @pytest.mark.parametrize("command", ["replay", "tail"])
    def test_usage(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, args: list[str],
                   message: str) -> None:
        """--nats without --stream (or the reverse), logs with --nats, or neither: exit 2, nothing read."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(body(1) + b"\n")
        argv = [str(log) if a == "LOG" else a for a in args]
        assert main(command, *argv, "--out", str(tmp_path / "out"), "--quiet") == 2
        assert capsys.readouterr() == ("", f"tracker {command}: error: {message}\n")

    def test_tail_of_a_missing_stream(self, tmp_path: Path, nats_server: NatsServer,
                                      capsys: pytest.CaptureFixture[str]) -> None:
        """tracker tail --nats of a stream the server does not have: exit 2 naming it."""
        assert main("tail", "--nats", nats_server.url, "--stream", "NOPE", "--out", str(tmp_path / "out"),
                    "--quiet") == 2
        assert capsys.readouterr() == ("", f"tracker tail: error: there is no stream 'NOPE' on "
                                           f"nats://127.0.0.1:{nats_server.port}\n")


@pytest.fixture
def tails() -> Iterator[list[Tail]]:
    """Tails a test made and did not close: released at the end (as if their process ended)."""
    made: list[Tail] = []
    yield made
    for tail in made:
        tail.release()


def close(tail: Tail, made: list[Tail]) -> None:
    """Close a tail (it is released then: not again at the end)."""
    made.remove(tail)
    tail.close()


def stream_tail(url: str, out: Path, made: list[Tail]) -> Tail:
    tail = Tail([], out, interval_s=60, stream=StreamSpec(url, "LT"), stop=threading.Event(), nats_timeout_s=2.0)
    made.append(tail)
    return tail


def fold_until(tail: Tail, events: int, *, checkpoint: bool = True) -> None:
    """Step the tail (or, without ``checkpoint``, only read) until it folded ``events`` events in all."""

    def folded() -> bool:
        if checkpoint:
            tail.step()
        else:
            tail.poll()
        return tail.stats.events >= events

    wait_for(folded, timeout=10.0)
    assert tail.stats.events == events


def session(log: Path, name: str, start_s: int) -> None:
    """Four events of one session, from T0 + start_s."""
    writer = EventLog(log)
    t = T0 + start_s * S
    writer.emit("session_registered", name, ts=t, username=name, course_numbers=[start_s])
    writer.emit("question_asked", name, ts=t + 10 * S, question_id=f"{name}-q")
    writer.emit("question_answered", name, ts=t + 20 * S, response_time_ms=float(start_s) + 0.5,
                question_id=f"{name}-q")
    writer.emit("session_unregistered", name, ts=t + 70 * S, reason="done")
    writer.close()


def assert_same_as_replay(logs: list[Path], out: Path, replayed: Path) -> None:
    """The tail's report files equal what replay of the logs writes."""
    replay(logs, replayed, interval_s=60)
    tailed = report_files(out)
    assert len(tailed) >= 5
    assert tailed == report_files(replayed)


class TestTail:
    def test_events_shipped_later_are_folded(self, tmp_path: Path, nats_server: NatsServer,
                                             tails: list[Tail]) -> None:
        """A tail of the stream folds what is shipped after it started; close() leaves replay's files."""
        log = tmp_path / "run" / "events.jsonl"
        session(log, "s1", 0)
        ship_logs(nats_server.url, log)
        tail = stream_tail(nats_server.url, tmp_path / "out", tails)
        fold_until(tail, 4)
        session(log, "s2", 30)
        session(log, "s3", 200)
        ship_logs(nats_server.url, log)
        fold_until(tail, 12)
        assert tail.warnings == []
        close(tail, tails)
        assert_same_as_replay([log], tmp_path / "out", tmp_path / "replayed")

    def test_restart_after_a_crash_folds_nothing_twice(self, tmp_path: Path, nats_server: NatsServer,
                                                       tails: list[Tail]) -> None:
        """A tail that dies after reading past its checkpoint (released, never closed) and a new one on the same
        folder: the new one gets what was not checkpointed, no event is counted twice, and the files end as
        replay's."""
        log = tmp_path / "run" / "events.jsonl"
        session(log, "s1", 0)
        ship_logs(nats_server.url, log)
        first = stream_tail(nats_server.url, tmp_path / "out", tails)
        fold_until(first, 4)
        first.checkpoint()
        session(log, "s2", 65)
        ship_logs(nats_server.url, log)
        fold_until(first, 8, checkpoint=False)  # read, not checkpointed
        tails.remove(first)
        first.release()  # and it dies
        session(log, "s3", 130)
        ship_logs(nats_server.url, log)
        second = stream_tail(nats_server.url, tmp_path / "out", tails)
        assert second.warnings == []
        assert second.stats.events == 4  # the checkpoint's
        fold_until(second, 12)
        assert second.reporter.engine.duplicates == 0
        close(second, tails)
        assert second.stats.events == 12
        assert_same_as_replay([log], tmp_path / "out", tmp_path / "replayed")

    def test_restart_after_a_clean_close_goes_on(self, tmp_path: Path, nats_server: NatsServer,
                                                 tails: list[Tail]) -> None:
        """A tail closed and started again on the same folder reads only what was shipped since."""
        log = tmp_path / "run" / "events.jsonl"
        session(log, "s1", 0)
        ship_logs(nats_server.url, log)
        first = stream_tail(nats_server.url, tmp_path / "out", tails)
        fold_until(first, 4)
        close(first, tails)
        session(log, "s2", 100)
        ship_logs(nats_server.url, log)
        second = stream_tail(nats_server.url, tmp_path / "out", tails)
        assert second.warnings == []
        fold_until(second, 8)
        assert second.reporter.engine.duplicates == 0
        close(second, tails)
        assert_same_as_replay([log], tmp_path / "out", tmp_path / "replayed")

    def test_release_after_close_is_harmless(self, tmp_path: Path, nats_server: NatsServer,
                                             tails: list[Tail]) -> None:
        """release() after close() does nothing more, as for a tail of files (cleanup code may call both)."""
        log = tmp_path / "run" / "events.jsonl"
        session(log, "s1", 0)
        ship_logs(nats_server.url, log)
        tail = stream_tail(nats_server.url, tmp_path / "out", tails)
        fold_until(tail, 4)
        close(tail, tails)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tail.release()
            gc.collect()
        assert [str(w.message) for w in caught] == []


def delete(url: str, what: str, stream: str, consumer: str | None = None) -> None:
    """Delete a consumer (or, without one, the stream) with a client of its own, as an operator would."""

    async def run() -> None:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            if what == "consumer":
                assert consumer is not None
                await js.delete_consumer(stream, consumer)
            else:
                await js.delete_stream(stream)
        finally:
            await nc.close()

    asyncio.run(run())


class TestGone:
    """A consumer or a stream deleted under a reader: it goes on, says so, and loses nothing."""

    def test_tail_makes_its_consumer_again(self, tmp_path: Path, nats_server: NatsServer,
                                           tails: list[Tail]) -> None:
        """The tail's durable consumer deleted: made again from its floor; later events are folded, the files end
        as replay's, and a warning says it."""
        log = tmp_path / "run" / "events.jsonl"
        session(log, "s1", 0)
        ship_logs(nats_server.url, log)
        tail = stream_tail(nats_server.url, tmp_path / "out", tails)
        fold_until(tail, 4)
        assert isinstance(tail.follower, StreamReader)
        delete(nats_server.url, "consumer", "LT", tail.follower.consumer)
        session(log, "s2", 30)
        ship_logs(nats_server.url, log)
        fold_until(tail, 8)
        assert any("was deleted: made again" in w for w in tail.warnings)
        close(tail, tails)
        assert_same_as_replay([log], tmp_path / "out", tmp_path / "replayed")

    def test_tail_reads_a_stream_made_again(self, tmp_path: Path, nats_server: NatsServer,
                                            tails: list[Tail]) -> None:
        """The stream deleted and made again (the shipper ships everything again into it): the tail reads the new
        one from its start, drops the repeats, and ends as replay of the log."""
        log = tmp_path / "run" / "events.jsonl"
        session(log, "s1", 0)
        ship_logs(nats_server.url, log)
        tail = stream_tail(nats_server.url, tmp_path / "out", tails)
        fold_until(tail, 4)
        delete(nats_server.url, "stream", "LT")
        session(log, "s2", 30)
        ship_logs(nats_server.url, log)  # its state names the old stream: everything shipped again
        fold_until(tail, 8)
        assert any("deleted and made again" in w for w in tail.warnings)
        assert tail.reporter.engine.duplicates == 4
        close(tail, tails)
        assert_same_as_replay([log], tmp_path / "out", tmp_path / "replayed")

    def test_replay_makes_its_consumer_again(self, tmp_path: Path, nats_server: NatsServer) -> None:
        """replay's own consumer deleted between two fetches: a new one from the next message; every event read."""
        log = tmp_path / "run" / "events.jsonl"
        for i in range(5):
            session(log, f"s{i}", 40 * i)
        ship_logs(nats_server.url, log)
        engine = Engine(60)
        stop, blocks = threading.Event(), []

        def on_block(nbytes: int, events: int, rejected: int) -> None:
            blocks.append(events)
            if len(blocks) == 1:  # the only consumer of the stream is replay's
                delete(nats_server.url, "consumer", "LT", consumer_names(nats_server.url, "LT")[0])

        read = read_stream(StreamSpec(nats_server.url, "LT"), engine, stop=stop, on_rejected=lambda r: None,
                           on_block=on_block, batch=3, timeout_s=1.0)
        assert read == 20
        assert engine.counts.total() == 20
        assert len(blocks) >= 2


def consumer_names(url: str, stream: str) -> list[str]:
    async def run() -> list[str]:
        nc = await nats.connect(url)
        try:
            return [c.name for c in await nc.jetstream().consumers_info(stream)]
        finally:
            await nc.close()

    return asyncio.run(run())
