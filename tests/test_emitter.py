"""Tests for tracker.emitter: one whole line per event, from threads, tasks and processes."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import EVENTS
from tracker import emitter as emit_module
from tracker.decoder import Decoder, Rejected, decode_file
from tracker.emitter import EventLog
from tracker.errors import EmitError, EventValidationError
from tracker.events import Event


def _decoded(path: Path) -> tuple[list[Event], list[Rejected]]:
    good: list[Event] = []
    bad: list[Rejected] = []
    for item in decode_file(path):
        (bad if isinstance(item, Rejected) else good).append(item)  # type: ignore[arg-type]
    return good, bad


class TestEmit:
    def test_writes_one_line_per_event(self, tmp_path: Path) -> None:
        """Each emit appends exactly one newline-terminated JSON line, in order."""
        with EventLog(tmp_path / "log.jsonl") as log:
            log.emit("session_registered", "s1", username="ann", course_numbers=[101])
            log.emit("question_answered", "s1", response_time_ms=2000)
        lines = (tmp_path / "log.jsonl").read_bytes().split(b"\n")
        assert lines[-1] == b""
        assert [orjson.loads(line)["type"] for line in lines[:-1]] == ["session_registered", "question_answered"]
        assert [orjson.loads(line)["seq"] for line in lines[:-1]] == [1, 2]

    @settings(max_examples=200, deadline=None)
    @given(EVENTS, st.text(min_size=1, max_size=30), st.integers(0, 253_402_300_799_999_999))
    def test_round_trip(self, tmp_path_factory: pytest.TempPathFactory, typed: tuple[str, dict[str, Any]],
                        session_id: str, ts: int) -> None:
        """What emit writes decodes to an event whose record is the one emit returned."""
        path = tmp_path_factory.mktemp("rt") / "log.jsonl"
        event_type, fields = typed
        with EventLog(path) as log:
            written = log.emit(event_type, session_id, ts=ts, **fields)
        (event,), rejected = _decoded(path)
        assert rejected == []
        assert event.to_record() == written
        assert event_type == event.TYPE
        assert event.ts == ts

    def test_none_means_absent(self, tmp_path: Path) -> None:
        """An optional field given as None is left out of the line."""
        with EventLog(tmp_path / "log.jsonl") as log:
            written = log.emit("question_asked", "s1", question_text=None)
        assert "question_text" not in written

    def test_explicit_datetime(self, tmp_path: Path) -> None:
        """An aware datetime is written as UTC epoch microseconds."""
        with EventLog(tmp_path / "log.jsonl") as log:
            written = log.emit("cycle_completed", "s1", ts=datetime(2026, 11, 24, 22, 0, tzinfo=UTC))
        assert written["ts"] == 1_795_557_600_000_000

    def test_default_time_is_now(self, tmp_path: Path) -> None:
        """Without ts the event gets the current UTC time."""
        before = time.time_ns() // 1000
        with EventLog(tmp_path / "log.jsonl") as log:
            written = log.emit("cycle_completed", "s1")
        assert before <= written["ts"] <= time.time_ns() // 1000

    def test_default_path_from_environment(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without a path, the log is $TRACKER_LOG."""
        monkeypatch.setenv("TRACKER_LOG", str(tmp_path / "env.jsonl"))
        with EventLog() as log:
            log.emit("cycle_completed", "s1")
        assert (tmp_path / "env.jsonl").read_bytes().count(b"\n") == 1

    def test_module_emit_uses_the_default_log(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """tracker.emit() writes to the process-wide log at $TRACKER_LOG."""
        monkeypatch.setenv("TRACKER_LOG", str(tmp_path / "default.jsonl"))
        monkeypatch.setattr(emit_module, "_default", None)
        emit_module.emit("question_answered", "s9", response_time_ms=1.5)
        emit_module.default_log().close()
        ((event,), _) = _decoded(tmp_path / "default.jsonl")
        assert (event.session_id, event.TYPE) == ("s9", "question_answered")


class TestInvalidEvents:
    @pytest.mark.parametrize(
        ("event_type", "session_id", "fields", "message"),
        [
            ("question_liked", "s1", {}, "type: must be one of .* got 'question_liked'"),
            ("session_registered", "s1", {"username": "ann"}, "course_numbers: is required"),
            ("question_answered", "s1", {"response_time_ms": math.nan}, "response_time_ms: .* got nan"),
            ("question_answered", "s1", {"response_time_ms": math.inf}, "response_time_ms: .* got inf"),
            ("question_answered", "s1", {"response_time_ms": -1}, "response_time_ms: .* got -1"),
            ("question_answered", "s1", {"response_time_ms": "2s"}, "response_time_ms: .* got '2s'"),
            ("question_answered", 7, {"response_time_ms": 1}, "session_id: .* got 7"),
            ("question_answered", "", {"response_time_ms": 1}, "session_id: .* got ''"),
            ("cycle_completed", "s1", {"colour": "red"}, "colour: is not a field of 'cycle_completed'"),
            ("session_registered", "s1", {"username": "a", "course_numbers": [1, "x"]}, "course_numbers: .*'x'"),
            ("question_answered", "s1", {"response_time_ms": 1, "input_tokens": True}, "input_tokens: .* True"),
            ("question_asked", "s1", {"question_text": "x" * 1001}, "question_text: must be at most 1000"),
            ("error", "s1", {"error": "bad \ud800 text"}, "error: must be valid Unicode text"),
            ("cycle_completed", "s\udfff", {}, "session_id: must be non-empty UTF-8 text"),
        ],
    )
    def test_raises_value_error_and_writes_nothing(
        self, tmp_path: Path, event_type: str, session_id: Any, fields: dict[str, Any], message: str
    ) -> None:
        """An invalid event raises ValueError naming the field and value, and the log stays empty."""
        path = tmp_path / "log.jsonl"
        with EventLog(path) as log, pytest.raises(ValueError, match=message):
            log.emit(event_type, session_id, **fields)
        assert path.read_bytes() == b""

    def test_refused_event_uses_no_sequence_number(self, tmp_path: Path) -> None:
        """A refused event leaves no gap in the writer's sequence."""
        with EventLog(tmp_path / "log.jsonl") as log:
            log.emit("cycle_completed", "s1")
            with pytest.raises(EventValidationError):
                log.emit("cycle_completed", "s1", colour="red")
            assert log.emit("cycle_completed", "s1")["seq"] == 2

    def test_naive_timestamp_is_refused(self, tmp_path: Path) -> None:
        """A naive datetime raises ValueError instead of guessing a zone."""
        with EventLog(tmp_path / "log.jsonl") as log, pytest.raises(ValueError, match="timezone-aware"):
            log.emit("cycle_completed", "s1", ts=datetime(2026, 1, 1))


class TestWriteFailures:
    def test_disk_full_raises(self) -> None:
        """ENOSPC (here /dev/full) raises EmitError naming the log, not a silent drop."""
        if not os.path.exists("/dev/full"):
            pytest.fail("this test needs /dev/full (Linux)")
        with EventLog("/dev/full") as log, pytest.raises(EmitError, match="/dev/full") as info:
            log.emit("cycle_completed", "s1")
        assert info.value.errno == 28

    def test_short_write_raises_and_ends_the_fragment(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A short write raises EmitError and ends the fragment with a newline so later lines stay whole."""
        path = tmp_path / "log.jsonl"
        log = EventLog(path)
        monkeypatch.setattr(emit_module, "_os_write", lambda fd, data: os.write(fd, data[:10]))
        with pytest.raises(EmitError, match=r"short write .* 10 of \d+ bytes"):
            log.emit("cycle_completed", "s1")
        monkeypatch.undo()
        log.emit("cycle_completed", "s2")
        log.close()
        good, bad = _decoded(path)
        assert [e.session_id for e in good] == ["s2"]
        assert [r.reason for r in bad] == ["invalid_json"]

    def test_closed_log_raises(self, tmp_path: Path) -> None:
        """Emitting to a closed log raises EmitError."""
        log = EventLog(tmp_path / "log.jsonl")
        log.close()
        with pytest.raises(EmitError, match="cannot append"):
            log.emit("cycle_completed", "s1")

    def test_unopenable_path_raises(self, tmp_path: Path) -> None:
        """A path that cannot be opened raises EmitError quoting it."""
        (tmp_path / "dir.jsonl").mkdir()
        with pytest.raises(EmitError, match=r"dir\.jsonl"):
            EventLog(tmp_path / "dir.jsonl")

    def test_event_glued_to_a_dead_writers_fragment_is_kept(self, tmp_path: Path) -> None:
        """A line appended after a fragment left by a killed writer is still read; only the fragment is rejected."""
        path = tmp_path / "log.jsonl"
        path.write_bytes(b'{"v":1,"ts":17')
        with EventLog(path) as log:
            log.emit("cycle_completed", "s1")
        good, bad = _decoded(path)
        assert [e.session_id for e in good] == ["s1"]
        assert [(r.reason, r.raw) for r in bad] == [("invalid_json", b'{"v":1,"ts":17')]


def _thread_writer(path: str, threads: int, per_thread: int) -> None:
    log = EventLog(path)
    def run(t: int) -> None:
        for i in range(per_thread):
            log.emit("question_answered", f"p{os.getpid()}-t{t}", response_time_ms=float(i))
    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    log.close()


class TestConcurrency:
    def test_threads_and_processes_lose_nothing(self, tmp_path: Path) -> None:
        """8 processes x 4 threads x 50k events into one file: every line decodes, no writer has a gap."""
        path = str(tmp_path / "log.jsonl")
        processes, threads, per_process = 8, 4, 50_000
        ctx = multiprocessing.get_context("fork")
        workers = [ctx.Process(target=_thread_writer, args=(path, threads, per_process // threads))
                   for _ in range(processes)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=300)
            assert w.exitcode == 0
        decoder = Decoder()
        seqs: dict[str, set[int]] = defaultdict(set)
        with open(path, "rb") as stream:
            for item in decoder.decode_stream(stream):
                assert not isinstance(item, Rejected), item
                seqs[item.writer].add(item.seq)
        assert decoder.events == processes * per_process
        assert len(seqs) == processes
        assert all(s == set(range(1, per_process + 1)) for s in seqs.values())
        assert decoder.duplicates == 0

    def test_asyncio_tasks_share_a_log(self, tmp_path: Path) -> None:
        """Many asyncio tasks emitting through one log produce one whole line each."""
        log = EventLog(tmp_path / "log.jsonl")

        async def session(n: int) -> None:
            for _ in range(100):
                log.emit("cycle_completed", f"s{n}")
                await asyncio.sleep(0)

        async def run() -> None:
            async with asyncio.TaskGroup() as group:
                for n in range(50):
                    group.create_task(session(n))

        asyncio.run(run())
        log.close()
        good, bad = _decoded(tmp_path / "log.jsonl")
        assert (len(good), bad) == (5000, [])
        assert sorted(e.seq for e in good) == list(range(1, 5001))

    def test_forked_child_gets_its_own_identity(self, tmp_path: Path) -> None:
        """After fork() the child writes as a new writer whose seq starts at 1."""
        path = tmp_path / "log.jsonl"
        log = EventLog(path)
        log.emit("cycle_completed", "parent")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads warns on 3.12+
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            log.emit("cycle_completed", "child")
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert status == 0
        log.emit("cycle_completed", "parent")
        log.close()
        good, _ = _decoded(path)
        by_session = defaultdict(list)
        for e in good:
            by_session[e.session_id].append((e.writer, e.seq))
        assert [seq for _, seq in by_session["parent"]] == [1, 2]
        assert [seq for _, seq in by_session["child"]] == [1]
        assert by_session["child"][0][0] != by_session["parent"][0][0]


_KILLED_WRITER = """
import sys
from tracker.emitter import EventLog
log = EventLog(sys.argv[1])
i = 0
while True:
    i += 1
    log.emit("question_asked", "s1", question_text="x" * (i % 900 + 1))
"""


class TestKilledWriter:
    def test_sigkill_loses_at_most_the_last_line(self, tmp_path: Path) -> None:
        """A writer killed with SIGKILL mid-run leaves at most one rejected line and no gap before it."""
        path = tmp_path / "log.jsonl"
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path)])
        deadline = time.monotonic() + 60
        while (not path.exists() or path.stat().st_size < 2_000_000) and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert path.stat().st_size >= 2_000_000
        with EventLog(path) as log:  # a restarted writer appends after whatever was left
            log.emit("cycle_completed", "s1")
        good, bad = _decoded(path)
        assert len(bad) <= 1
        killed = sorted(e.seq for e in good if e.session_id == "s1" and e.TYPE == "question_asked")
        assert killed == list(range(1, len(killed) + 1))
        assert good[-1].TYPE == "cycle_completed"
