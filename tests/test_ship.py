"""Tests for tracker.ship and ``tracker ship``: local logs published to a real nats-server's JetStream stream."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import NatsServer
from tests.helpers import T0
from tests.test_jetstream import delete_stream, stream_info, stream_messages
from tracker.cli import main
from tracker.emitter import EventLog
from tracker.jetstream import StreamSpec
from tracker.ship import Shipper

#: A line that is JSON but not an event (no envelope): quarantined, never shipped.
BAD = b'{"v": 1, "type": "question_answered", "response_time_ms": 5}\n'


@pytest.fixture(autouse=True)
def fresh_tracker_logger() -> Iterator[None]:
    """The "tracker" logger as a fresh process has it (no handler, propagating) during the test: each command run
    in it says its warnings on the test's own captured stderr, not on a stream an earlier test captured (nor only
    to the handlers pytest adds to a logger that does not propagate)."""
    logger = logging.getLogger("tracker")
    saved = logger.handlers[:], logger.level, logger.propagate
    for handler in saved[0]:
        logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True
    try:
        yield
    finally:
        for handler in logger.handlers[:]:
            logger.removeHandler(handler)
        for handler in saved[0]:
            logger.addHandler(handler)
        logger.setLevel(saved[1])
        logger.propagate = saved[2]


def write_log(path: Path, first_seq: int = 0, bad: bool = True) -> list[dict[str, Any]]:
    """Append three events of one session (two writers) and, with ``bad``, one bad line between them; return the
    records written."""
    t = T0 + first_seq * 1_000_000
    session = f"s{first_seq}"
    log = EventLog(path)
    records = [log.emit("session_registered", session, ts=t, username="ann", course_numbers=[101, 202]),
               log.emit("question_answered", session, ts=t + 1_000, response_time_ms=812.5, input_tokens=12)]
    log.close()
    if bad:
        with open(path, "ab") as stream:
            stream.write(BAD)
    log = EventLog(path)
    records.append(log.emit("session_unregistered", session, ts=t + 2_000, reason="done"))
    log.close()
    return records


def log_records(*paths: Path) -> list[dict[str, Any]]:
    """The events of the logs as their lines hold them (bad lines left out)."""
    return [orjson.loads(line) for path in paths for line in path.read_bytes().splitlines(keepends=True)
            if line != BAD]


def shipped(url: str, stream: str = "LT") -> list[dict[str, Any]]:
    """The stream's messages, decoded, in stream order."""
    return [orjson.loads(body) for _, body, _ in stream_messages(url, stream)]


def ship(url: str, *targets: Path, stream: str = "LT", extra: tuple[str, ...] = ()) -> int:
    return main("ship", *(str(t) for t in targets), "--nats", url, "--stream", stream, "--once",
                "--nats-timeout", "2s", *extra)


def summary(events: int, duplicates: int, rejected: int, stream: str = "LT") -> str:
    return (f"shipped {events} events to the stream {stream!r} ({duplicates} of them it had already), {rejected} "
            "rejected lines\n")


class TestShipOnce:
    def test_good_lines_are_shipped_and_the_bad_one_quarantined(self, tmp_path: Path, nats_server: NatsServer,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
        """Exit 1 for the bad line, which is quarantined beside the log and never shipped; the stream holds
        exactly the log's events, in order, each with its message id."""
        log = tmp_path / "run" / "events.jsonl"
        records = write_log(log)
        assert ship(nats_server.url, log) == 1
        state = tmp_path / "run" / ".tracker-ship" / "LT"
        assert capsys.readouterr().out == (summary(3, 0, 1)
                                           + f"  rejected lines in {state / 'quarantine.jsonl'} (never shipped)\n")
        assert (state / "quarantine.jsonl").read_bytes() == BAD
        assert orjson.loads((state / "quarantine.jsonl.reasons.jsonl").read_bytes())["line"] == 3
        assert shipped(nats_server.url) == records == log_records(log)
        messages = stream_messages(nats_server.url, "LT")
        assert all(BAD.strip() not in body for _, body, _ in messages)
        ids = [headers["Nats-Msg-Id"] for _, _, headers in messages]
        assert [i.split(":")[0] for i in ids] == [r["event_id"] for r in records]
        assert len(set(ids)) == 3

    def test_second_run_resumes_after_what_was_shipped(self, tmp_path: Path, nats_server: NatsServer,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
        """A second --once ships nothing (its state says where it was); events appended later are shipped by the
        next run, once."""
        log = tmp_path / "events.jsonl"
        records = write_log(log)
        assert ship(nats_server.url, log) == 1
        capsys.readouterr()
        assert ship(nats_server.url, log) == 0
        assert capsys.readouterr() == (summary(0, 0, 0), "")
        records += write_log(log, first_seq=10, bad=False)
        assert ship(nats_server.url, log) == 0
        assert capsys.readouterr().out == summary(3, 0, 0)
        assert shipped(nats_server.url) == records == log_records(log)

    def test_a_folder_of_logs(self, tmp_path: Path, nats_server: NatsServer,
                              capsys: pytest.CaptureFixture[str]) -> None:
        """Given a folder, every *.jsonl in it is shipped; the state lives in the folder itself."""
        run = tmp_path / "run"
        records = write_log(run / "a.jsonl", bad=False) + write_log(run / "b.jsonl", first_seq=5, bad=False)
        assert ship(nats_server.url, run) == 0
        assert capsys.readouterr().out == summary(6, 0, 0)
        assert shipped(nats_server.url) == records
        assert (run / ".tracker-ship" / "LT" / "ship.json").is_file()

    def test_a_subject_of_its_own(self, tmp_path: Path, nats_server: NatsServer) -> None:
        """--subject: the events are published on it (a new stream is bound to it)."""
        log = tmp_path / "events.jsonl"
        write_log(log, bad=False)
        assert ship(nats_server.url, log, extra=("--subject", "LT.host1")) == 0
        assert len(shipped(nats_server.url)) == 3
        assert stream_info(nats_server.url, "LT").config.subjects == ["LT.>"]


def _state(log: Path) -> Path:
    return log.parent / ".tracker-ship" / "LT" / "ship.json"


#: Ways a shipper state goes bad, made from a good one: (damage, what the warning says).
DAMAGE: list[tuple[str, Callable[[dict[str, Any]], bytes], str]] = [
    ("not JSON", lambda s: b"{not json", "is unusable"),
    ("empty", lambda s: b"", "is unusable"),
    ("a list", lambda s: b"[1, 2]", "is unusable"),
    ("another version", lambda s: orjson.dumps({**s, "version": 2}), "is unusable"),
    ("another stream", lambda s: orjson.dumps({**s, "stream": "OTHER"}), "made for another stream"),
    ("the stream made again", lambda s: orjson.dumps({**s, "created": "2001-01-01 00:00:00+00:00"}),
     "made for another stream"),
    ("other logs", lambda s: orjson.dumps({**s, "targets": ["/elsewhere/events.jsonl"]}), "made for other logs"),
    ("files not a list", lambda s: orjson.dumps({**s, "files": "all of them"}), "is unusable"),
    ("an offset as text", lambda s: orjson.dumps({**s, "files": [{**s["files"][0], "offset": "9"}]}),
     "is unusable"),
    ("no path", lambda s: orjson.dumps({**s, "files": [{**s["files"][0], "path": None}]}), "is unusable"),
    ("quarantine not a pair", lambda s: orjson.dumps({**s, "quarantine": "x"}), "is unusable"),
    ("negative quarantine", lambda s: orjson.dumps({**s, "quarantine": [-1, 0]}), "is unusable"),
]


class TestState:
    @pytest.mark.parametrize(("damage", "said"), [(d, s) for _, d, s in DAMAGE], ids=[n for n, _, _ in DAMAGE])
    def test_unusable_state_ships_everything_again(self, tmp_path: Path, nats_server: NatsServer,
                                                   capsys: pytest.CaptureFixture[str],
                                                   damage: Callable[[dict[str, Any]], bytes], said: str) -> None:
        """A damaged state, or one made for something else: a warning, every event published again (JetStream
        drops the repeats by message id: no new message), the bad line quarantined once, no crash."""
        log = tmp_path / "events.jsonl"
        records = write_log(log)
        assert ship(nats_server.url, log) == 1
        _state(log).write_bytes(damage(orjson.loads(_state(log).read_bytes())))
        capsys.readouterr()
        assert ship(nats_server.url, log) == 1
        out, err = capsys.readouterr()
        assert said in err
        assert "Traceback" not in err
        quarantine = log.parent / ".tracker-ship" / "LT" / "quarantine.jsonl"
        assert out == summary(3, 3, 1) + f"  rejected lines in {quarantine} (never shipped)\n"
        assert shipped(nats_server.url) == records
        assert quarantine.read_bytes() == BAD
        assert ship(nats_server.url, log) == 0  # the state is good again
        assert capsys.readouterr().out == summary(0, 0, 0)

    def test_position_beyond_the_end_of_the_file(self, tmp_path: Path, nats_server: NatsServer,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
        """A saved position past the file's end (the file is not the one saved): a warning, the file read from its
        start, its events published again and dropped by JetStream as repeats."""
        log = tmp_path / "events.jsonl"
        records = write_log(log)
        assert ship(nats_server.url, log) == 1
        state = orjson.loads(_state(log).read_bytes())
        state["files"][0].update(offset=10**9, line_no=4, before=None)
        _state(log).write_bytes(orjson.dumps(state))
        capsys.readouterr()
        assert ship(nats_server.url, log) == 1
        out, err = capsys.readouterr()
        assert "changed since the checkpoint (it has" in err
        assert out.startswith(summary(3, 3, 1))
        assert shipped(nats_server.url) == records

    def test_state_folder_shared_by_two_streams(self, tmp_path: Path, nats_server: NatsServer,
                                                capsys: pytest.CaptureFixture[str]) -> None:
        """A --state-dir last used for another stream: a warning, and the new stream gets every event."""
        log, state = tmp_path / "events.jsonl", tmp_path / "state"
        records = write_log(log, bad=False)
        assert ship(nats_server.url, log, stream="A", extra=("--state-dir", str(state))) == 0
        capsys.readouterr()
        assert ship(nats_server.url, log, stream="B", extra=("--state-dir", str(state))) == 0
        out, err = capsys.readouterr()
        assert "made for another stream" in err
        assert out == summary(3, 0, 0, stream="B")
        assert shipped(nats_server.url, "A") == shipped(nats_server.url, "B") == records

    def test_stream_deleted_and_made_again(self, tmp_path: Path, nats_server: NatsServer,
                                           capsys: pytest.CaptureFixture[str]) -> None:
        """The stream was deleted since the last run: it is made again and gets every event (the state is for
        the old one)."""
        log = tmp_path / "events.jsonl"
        records = write_log(log, bad=False)
        assert ship(nats_server.url, log) == 0
        delete_stream(nats_server.url, "LT")
        capsys.readouterr()
        assert ship(nats_server.url, log) == 0
        out, err = capsys.readouterr()
        assert "made for another stream (or the stream 'LT' was made again since)" in err
        assert out == summary(3, 0, 0)
        assert shipped(nats_server.url) == records

    def test_stream_deleted_while_shipping(self, tmp_path: Path, nats_server: NatsServer) -> None:
        """A running shipper whose stream is deleted: the stream is made again at its next publish, a warning says
        so, and every log is shipped again from its start into the new one: it holds every event."""
        log = tmp_path / "events.jsonl"
        records = write_log(log, bad=False)
        shipper = Shipper([log], StreamSpec(nats_server.url, "LT"), stop=threading.Event(), timeout_s=2.0)
        try:
            shipper.step()
            delete_stream(nats_server.url, "LT")
            records += write_log(log, first_seq=10, bad=False)
            shipper.step()
            shipper.step()
        finally:
            shipper.release()
        assert any("was deleted and made again: shipping every log again" in w for w in shipper.warnings)
        assert shipped(nats_server.url) == records

    def test_rotated_between_runs(self, tmp_path: Path, nats_server: NatsServer,
                                  capsys: pytest.CaptureFixture[str]) -> None:
        """events.jsonl renamed to events.jsonl.1 (after more lines were appended) and a new events.jsonl made
        between two runs: the rest of the old file, then the new one, are shipped; nothing twice."""
        log = tmp_path / "events.jsonl"
        records = write_log(log, bad=False)
        assert ship(nats_server.url, log) == 0
        records += write_log(log, first_seq=10, bad=False)
        log.rename(tmp_path / "events.jsonl.1")
        records += write_log(log, first_seq=20, bad=False)
        capsys.readouterr()
        assert ship(nats_server.url, log) == 0
        assert capsys.readouterr().out == summary(6, 0, 0)
        assert shipped(nats_server.url) == records


class TestRefused:
    def test_second_shipper_on_the_same_state_folder(self, tmp_path: Path, nats_server: NatsServer,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
        """While a shipper holds the state folder's lock, another one is refused (exit 2) and ships nothing;
        once it is gone, the next one ships."""
        log = tmp_path / "events.jsonl"
        records = write_log(log, bad=False)
        first = Shipper([log], StreamSpec(nats_server.url, "LT"), stop=threading.Event(), timeout_s=2.0)
        try:
            assert ship(nats_server.url, log) == 2
        finally:
            first.release()
        state = tmp_path / ".tracker-ship" / "LT"
        assert capsys.readouterr() == ("", f"tracker ship: error: {state} is in use by another tracker ship (it "
                                           "holds the lock .tracker-ship.lock); give this one another --state-dir\n")
        assert shipped(nats_server.url) == []
        assert ship(nats_server.url, log) == 0
        assert shipped(nats_server.url) == records

    def test_a_log_of_the_folder_named_as_the_quarantine(self, tmp_path: Path, nats_server: NatsServer,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
        """--quarantine naming a log of a folder shipped is refused (exit 2), the log kept, nothing shipped."""
        run = tmp_path / "run"
        run.mkdir()
        write_log(run / "a.jsonl", bad=False)
        kept = (run / "a.jsonl").read_bytes()
        assert ship(nats_server.url, run, extra=("--quarantine", str(run / "a.jsonl"))) == 2
        assert capsys.readouterr() == ("", f"tracker ship: error: the quarantine file '{run / 'a.jsonl'}' holds "
                                           "something else than rejected lines (a log?): it would be emptied; "
                                           "choose another path\n")
        assert (run / "a.jsonl").read_bytes() == kept
        with pytest.raises(Exception, match="stream not found"):  # refused before it connected: no stream made
            shipped(nats_server.url)

    def test_subject_the_stream_does_not_take(self, tmp_path: Path, nats_server: NatsServer,
                                              capsys: pytest.CaptureFixture[str]) -> None:
        """--subject outside the existing stream's subjects: exit 2 saying which it takes; nothing shipped."""
        log = tmp_path / "events.jsonl"
        records = write_log(log, bad=False)
        assert ship(nats_server.url, log) == 0
        write_log(log, first_seq=10, bad=False)
        capsys.readouterr()
        assert ship(nats_server.url, log, extra=("--subject", "other.events")) == 2
        assert capsys.readouterr() == ("", "tracker ship: error: the stream 'LT' does not take the subject "
                                           "'other.events' (it takes LT.>): give --subject one of those\n")
        assert shipped(nats_server.url) == records

    @pytest.mark.parametrize(("url", "quoted"), [
        ("http://127.0.0.1:4222", "http://127.0.0.1:4222"),
        ("127.0.0.1:4222", "127.0.0.1:4222"),
        ("nats://", "nats://"),
        ("nats://127.0.0.1:port", "nats://127.0.0.1:port"),
        ("nats://127.0.0.1:4222,bogus", "bogus"),
        ("nats://alice:s3cret@127.0.0.1:99999", "nats://***@127.0.0.1:99999"),  # never the password
        ("nats://alice:s3#c/ret@h:1:2", "nats://***@h:1:2"),
    ])
    def test_bad_url(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, quoted: str) -> None:
        """A --nats that is not a server address: exit 2 quoting it, nothing made."""
        log = tmp_path / "events.jsonl"
        write_log(log, bad=False)
        with pytest.raises(SystemExit) as info:
            main("ship", str(log), "--nats", url, "--stream", "LT", "--once")
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("usage: tracker ship")
        assert (f"tracker ship: error: argument --nats: expected a NATS server address such as nats://127.0.0.1:4222 "
                f"(several comma-separated), got {quoted!r}\n") in err
        assert not (tmp_path / ".tracker-ship").exists()

    @pytest.mark.parametrize("name", ["a.b", "LT events", "LT>", "a/b", "x" * 65, ""])
    def test_bad_stream_name(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
        """A --stream the server would refuse: exit 2 quoting it, nothing made."""
        log = tmp_path / "events.jsonl"
        write_log(log, bad=False)
        with pytest.raises(SystemExit) as info:
            main("ship", str(log), "--nats", "nats://127.0.0.1:4222", "--stream", name, "--once")
        assert info.value.code == 2
        assert (f"tracker ship: error: argument --stream: expected a name of letters, digits, - and _ (at most 64; "
                f"no dots or spaces), got {name!r}\n") in capsys.readouterr().err
        assert not (tmp_path / ".tracker-ship").exists()
