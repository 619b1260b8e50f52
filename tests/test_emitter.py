"""Tests for tracker.emitter: one whole line per event, from threads, tasks and processes."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import EVENTS, fork, held_by_another_thread
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
    @given(EVENTS, st.text(min_size=1, max_size=30), st.integers(946_684_800_000_000, time.time_ns() // 1000))
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

    def test_append_returns_the_line_it_wrote(self, tmp_path: Path) -> None:
        """append() gives the record and the very bytes appended, newline included."""
        with EventLog(tmp_path / "log.jsonl") as log:
            log.emit("session_registered", "s1", username="ann", course_numbers=[1])
            record, line = log.append("question_answered", "s1", response_time_ms=2.5)
        assert (tmp_path / "log.jsonl").read_bytes().split(b"\n", 1)[1] == line
        assert orjson.loads(line) == record

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


class TestRefusedBeforeTheSequence:
    """Any invalid value raises EventValidationError before a sequence number is taken or anything is written."""

    @pytest.mark.parametrize(("fields", "field"), [
        ({"response_time_ms": 1, "input_tokens": 2**64}, "input_tokens"),
        ({"response_time_ms": 1, "input_tokens": 2**63}, "input_tokens"),
        ({"response_time_ms": 1, "output_tokens": 2**63}, "output_tokens"),
        ({"response_time_ms": 10**400}, "response_time_ms"),
        ({"response_time_ms": 1, "time_to_first_token_ms": 10**400}, "time_to_first_token_ms"),
        ({"response_time_ms": math.nan}, "response_time_ms"),
        ({"response_time_ms": -math.inf}, "response_time_ms"),
    ])
    def test_answer_fields(self, tmp_path: Path, fields: dict[str, Any], field: str) -> None:
        """Integers above 2**63-1, durations too big for a float, NaN and infinities are refused first."""
        self._refused(tmp_path, "question_answered", fields, field)

    @pytest.mark.parametrize("item", [2**63, -(2**63) - 1, 2**64])
    def test_course_numbers(self, tmp_path: Path, item: int) -> None:
        """A course number outside [-2**63, 2**63-1] is refused first."""
        self._refused(tmp_path, "session_registered", {"username": "u", "course_numbers": [1, item]}, "course_numbers")

    @staticmethod
    def _refused(path: Path, event_type: str, fields: dict[str, Any], field: str) -> None:
        with EventLog(path / "log.jsonl") as log:
            with pytest.raises(EventValidationError) as info:
                log.emit(event_type, "s1", **fields)
            assert info.value.field == field
            assert (path / "log.jsonl").read_bytes() == b""
            assert log.emit("cycle_completed", "s1")["seq"] == 1


DAY_US = 86_400 * 10**6


class TestTimeAtTheSource:
    """The emitter refuses a ts before 2000-01-01 or more than a day ahead of the clock, naming the likely unit."""

    @pytest.mark.parametrize(("ts", "unit"), [
        (time.time_ns() // 10**9, "seconds"),
        (time.time_ns() // 10**6, "milliseconds"),
        (time.time_ns(), "nanoseconds"),
    ])
    def test_wrong_unit(self, tmp_path: Path, ts: int, unit: str) -> None:
        """A ts in seconds, milliseconds or nanoseconds is refused as implausible_time naming the unit."""
        with EventLog(tmp_path / "log.jsonl") as log:
            with pytest.raises(EventValidationError, match=f"looks like {unit}") as info:
                log.emit("cycle_completed", "s1", ts=ts)
            assert (info.value.field, info.value.reason) == ("ts", "implausible_time")
            assert log.emit("cycle_completed", "s1")["seq"] == 1
        assert (tmp_path / "log.jsonl").read_bytes().count(b"\n") == 1

    @pytest.mark.parametrize("ts", [
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), 946_684_800_000_000 - 1, 0, -5,
    ])
    def test_before_2000(self, tmp_path: Path, ts: datetime | int) -> None:
        """A time before 2000-01-01 is refused."""
        with EventLog(tmp_path / "log.jsonl") as log, pytest.raises(EventValidationError, match="2000-01-01"):
            log.emit("cycle_completed", "s1", ts=ts)
        assert (tmp_path / "log.jsonl").read_bytes() == b""

    @pytest.mark.parametrize("ahead", [DAY_US + 60 * 10**6, 365 * DAY_US])
    def test_more_than_a_day_ahead(self, tmp_path: Path, ahead: int) -> None:
        """A time more than one day after the wall clock is refused, naming the clock's time."""
        with EventLog(tmp_path / "log.jsonl") as log:
            with pytest.raises(EventValidationError, match="more than one day ahead") as info:
                log.emit("cycle_completed", "s1", ts=time.time_ns() // 1000 + ahead)
            assert info.value.reason == "implausible_time"
        assert (tmp_path / "log.jsonl").read_bytes() == b""

    def test_edges_are_accepted(self, tmp_path: Path) -> None:
        """2000-01-01T00:00:00Z and a time just under a day ahead are accepted."""
        with EventLog(tmp_path / "log.jsonl") as log:
            assert log.emit("cycle_completed", "s1", ts=datetime(2000, 1, 1, tzinfo=UTC))["ts"] == 946_684_800_000_000
            soon = time.time_ns() // 1000 + DAY_US - 60 * 10**6
            assert log.emit("cycle_completed", "s1", ts=soon)["ts"] == soon


class TestCloseRace:
    """close() in one thread while others emit: no event reaches a file opened afterwards on the same descriptor."""

    def test_no_event_lands_in_a_file_opened_after_close(self, tmp_path: Path) -> None:
        """200 rounds: 8 threads emit until the log is closed; files opened right after close stay empty."""
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads as often as possible, to hit the window between fd and write
        try:
            leaked = [self._round(tmp_path, r) for r in range(200)]
        finally:
            sys.setswitchinterval(interval)
        assert sum(leaked) == 0, f"{sum(1 for n in leaked if n)} rounds wrote events into another file"

    @staticmethod
    def _round(tmp_path: Path, r: int) -> int:
        log = EventLog(tmp_path / f"a{r}.jsonl")
        start = threading.Barrier(9)

        def run() -> None:
            start.wait()
            with contextlib.suppress(EmitError):  # raised once the log is closed
                while True:
                    log.emit("cycle_completed", "from-a")

        threads = [threading.Thread(target=run) for _ in range(8)]
        for t in threads:
            t.start()
        start.wait()
        time.sleep(0.001)
        log.close()
        other = tmp_path / f"b{r}.jsonl"
        fds = [os.open(other, os.O_WRONLY | os.O_APPEND | os.O_CREAT) for _ in range(8)]
        for t in threads:
            t.join()
        for fd in fds:
            os.close(fd)
        good, bad = _decoded(tmp_path / f"a{r}.jsonl")
        assert bad == []
        assert len({e.seq for e in good}) == len(good)
        return other.read_bytes().count(b"\n")

    def test_emit_after_close_takes_the_lock(self, tmp_path: Path) -> None:
        """After close, emit raises EmitError (EBADF) and writes nothing anywhere."""
        log = EventLog(tmp_path / "log.jsonl")
        log.emit("cycle_completed", "s1")
        log.close()
        log.close()  # closing twice is harmless
        with pytest.raises(EmitError) as info:
            log.emit("cycle_completed", "s1")
        assert info.value.errno == errno.EBADF
        assert (tmp_path / "log.jsonl").read_bytes().count(b"\n") == 1


class TestWriteFailures:
    def test_disk_full_raises(self) -> None:
        """ENOSPC (here /dev/full) raises EmitError naming the log, not a silent drop."""
        if not os.path.exists("/dev/full"):
            pytest.fail("this test needs /dev/full (Linux)")
        with EventLog("/dev/full") as log, pytest.raises(EmitError, match="/dev/full") as info:
            log.emit("cycle_completed", "s1")
        assert info.value.errno == 28

    def test_a_fifo_is_refused_at_once(self, tmp_path: Path) -> None:
        """A FIFO as the log raises EmitError naming it, with or without a reader, instead of waiting for one."""
        fifo = tmp_path / "events.jsonl"
        os.mkfifo(fifo)
        with pytest.raises(EmitError, match=f"cannot open event log '{fifo}': it is a FIFO or a socket, not a "
                                            "regular file"):
            EventLog(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            with pytest.raises(EmitError, match=f"cannot open event log '{fifo}': it is a FIFO, not a regular file "):
                EventLog(fifo)
        finally:
            os.close(reader)

    def test_a_device_other_than_dev_null_is_refused(self, tmp_path: Path) -> None:
        """A character device other than /dev/null (here /dev/zero's, made with mknod: the tests run as root, as CI
        does) is refused naming its kind; a node of /dev/null's device is taken, to discard the events."""
        import stat as stat_module

        os.mknod(tmp_path / "zero", stat_module.S_IFCHR | 0o600, os.makedev(1, 5))
        with pytest.raises(EmitError, match=r"'.*zero': it is a character device, not a regular file"):
            EventLog(tmp_path / "zero")
        os.mknod(tmp_path / "null", stat_module.S_IFCHR | 0o600, os.stat(os.devnull).st_rdev)
        with EventLog(tmp_path / "null") as log:
            log.emit("cycle_completed", "s1")

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
        """Emitting to a closed log raises EmitError saying it is closed."""
        log = EventLog(tmp_path / "log.jsonl")
        log.close()
        with pytest.raises(EmitError, match=r"cannot append .*: the log is closed"):
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
        pid = fork()
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

    def test_forked_child_emits_while_another_thread_opened_the_default_log(self, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
        """A child forked while another thread held the default log's lock (opening it) emits at once."""
        monkeypatch.setenv("TRACKER_LOG", str(tmp_path / "log.jsonl"))
        monkeypatch.setattr(emit_module, "_default", None)
        with held_by_another_thread(emit_module._default_lock):
            pid = fork()
            if pid == 0:  # pragma: no cover - the child: a hang ends in SIGALRM
                signal.alarm(10)
                try:
                    emit_module.emit("cycle_completed", "child")
                finally:
                    os._exit(0)
            _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        good, _ = _decoded(tmp_path / "log.jsonl")
        assert [e.session_id for e in good] == ["child"]


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
