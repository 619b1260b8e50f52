"""Tests for tracker.report_process: the original API's reports, made by a low-priority child process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import T0, fork, wait_for
from tests.test_session_tracker import assert_reports_match_replay
from tracker import report_process
from tracker.emitter import EventLog
from tracker.errors import ReportError
from tracker.output import SUMMARY_FILE
from tracker.report_process import ReportProcess
from tracker.session_tracker import SessionTracker

ROOT = Path(__file__).resolve().parent.parent


def nice_of(pid: int, task: int | None = None) -> int:
    """A process's (or one of its threads') nice value, from /proc (field 19 of stat)."""
    path = f"/proc/{pid}/stat" if task is None else f"/proc/{pid}/task/{task}/stat"
    return int(Path(path).read_text().rsplit(")", 1)[1].split()[16])


def gone(pid: int) -> bool:
    """True when the process has exited (a zombie counts: whoever reaps it, it runs no more)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def activity(tracker: SessionTracker, sessions: int = 3) -> None:
    for n in range(sessions):
        tracker.register_session(f"s{n}", f"user{n}", [n])
        tracker.update_session_activity(f"s{n}", "question_asked", question_text="why?")
        tracker.update_session_activity(f"s{n}", "question_answered", response_time_ms=100.0 * (n + 1))
        tracker.update_session_activity(f"s{n}", "cycle_completed")


@pytest.fixture
def tracked(tmp_path: Path) -> Iterator[SessionTracker]:
    """A tracker of tmp_path/log.jsonl into tmp_path/reports, tracking (a thread), closed after the test."""
    with EventLog(tmp_path / "log.jsonl") as log:
        tracker = SessionTracker(300, log=log, out_dir=tmp_path / "reports", console_logging=False)
        tracker.start_tracking()
        try:
            yield tracker
        finally:
            if tracker.is_tracking:
                asyncio.run(tracker.stop_tracking())
            tracker.close()


def started(tracker: SessionTracker) -> int:
    """The pid of the tracker's report process, once it runs."""
    wait_for(lambda: tracker._reports.pid is not None)
    pid = tracker._reports.pid
    assert pid is not None
    return pid


class TestChild:
    def test_runs_at_the_lowest_priority_with_all_its_threads(self, tracked: SessionTracker) -> None:
        """The report process and every thread it starts (polars') run at nice 19."""
        activity(tracked)
        tracked.log_periodic_report(tracked.generate_periodic_report())  # polars has started its threads
        pid = started(tracked)
        tasks = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        assert len(tasks) > 1
        assert [nice_of(pid, t) for t in tasks] == [19] * len(tasks)
        assert nice_of(os.getpid()) == 0

    def test_reports_equal_replays_with_lines_cut_into_many_frames(self, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
        """Lines sent in frames of a few hundred bytes (cut at newlines) give replay's files byte for byte."""
        monkeypatch.setattr(report_process, "FRAME_BYTES", 500)
        with EventLog(tmp_path / "log.jsonl") as log:
            tracker = SessionTracker(1, log=log, out_dir=tmp_path / "reports", console_logging=False)
            tracker.start_tracking()
            activity(tracker, 40)
            asyncio.run(tracker.stop_tracking())
            tracker.close()
        assert_reports_match_replay(tmp_path / "log.jsonl", tmp_path / "reports", tmp_path / "replayed", 1)

    def test_a_line_it_cannot_read_fails_the_next_report(self, tmp_path: Path) -> None:
        """A line that is not an event (the emitter never writes one) makes the next flush raise, naming it."""
        process = ReportProcess(tmp_path / "reports", 300, None)
        try:
            process.send(b'{"v": 1, "what": "not an event"}\n')
            with pytest.raises(ReportError, match=r"a line the emitter wrote was rejected: .*schema"):
                process.flush(now_us=None, final=True)
        finally:
            process.close()

    def test_a_closed_process_refuses_further_reports(self, tmp_path: Path) -> None:
        """After close(), a report raises ReportError saying the reports are over."""
        process = ReportProcess(tmp_path / "reports", 300, None)
        process.start()
        pid = process.pid
        assert pid is not None
        process.close()
        wait_for(lambda: process.exit_status is not None)
        assert process.exit_status == 0
        with pytest.raises(ReportError, match="the tracker was closed: its reports are over"):
            process.flush(now_us=None, final=True)


class TestCaller:
    def test_the_callers_process_never_loads_polars(self, tmp_path: Path) -> None:
        """A program using the original API, reports included, has no polars in its process."""
        script = textwrap.dedent(f"""
            import asyncio, sys
            from tracker.emitter import EventLog
            from tracker.session_tracker import SessionTracker
            with EventLog({str(tmp_path / "log.jsonl")!r}) as log:
                t = SessionTracker(300, log=log, out_dir={str(tmp_path / "reports")!r}, console_logging=False)
                t.start_tracking()
                t.register_session("s1", "ann", [1])
                t.update_session_activity("s1", "question_answered", response_time_ms=5.0)
                t.log_periodic_report(t.generate_periodic_report())
                asyncio.run(t.stop_tracking())
                t.close()
            print("polars" in sys.modules)
        """)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
        assert (done.returncode, done.stdout, done.stderr) == (0, "False\n", "")
        assert "s1" in next((tmp_path / "reports").glob("session_tracking_report_*.csv")).read_text()

    def test_a_killed_report_process_is_said_and_nothing_is_lost(self, tracked: SessionTracker, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
        """SIGKILL of the report process: the next report says so and how to get the reports; events still go
        to the log and stop_tracking returns."""
        pid = started(tracked)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: gone(pid))
        activity(tracked)
        with caplog.at_level(logging.ERROR, "tracker.session_tracker"):
            tracked.log_periodic_report(tracked.generate_periodic_report())
            asyncio.run(tracked.stop_tracking())
        log = tmp_path / "log.jsonl"
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        replay_hint = f"(every event is in the log: `tracker replay {log}` writes the reports)"
        assert said[-2:] == [
            f"[TRACKER] Periodic report failed: the report process was killed by signal 9: no more reports from this "
            f"tracker {replay_hint}",
            f"[TRACKER] Final report failed: the report process was killed by signal 9: no more reports from this "
            f"tracker {replay_hint}"]
        assert len(log.read_bytes().splitlines()) == 12

    def test_ctrl_c_in_the_terminal_leaves_the_final_report_to_the_tracker(self, tracked: SessionTracker,
                                                                             tmp_path: Path) -> None:
        """The report process is in a process group of its own (a Ctrl-C goes to the terminal's foreground
        group: the program's), and a SIGINT sent to it anyway does not end it."""
        tracked.log_periodic_report(tracked.generate_periodic_report())  # it answered: it is past its start-up
        pid = started(tracked)
        assert os.getpgid(pid) == pid != os.getpgrp()
        os.kill(pid, signal.SIGINT)
        activity(tracked)
        asyncio.run(tracked.stop_tracking())
        assert not gone(pid)
        assert "s2" in next((tmp_path / "reports").glob("session_tracking_report_*.csv")).read_text()
        assert (tmp_path / "reports" / SUMMARY_FILE).exists()

    def test_it_ends_when_the_tracker_process_is_killed(self, tmp_path: Path) -> None:
        """SIGKILL of the program: its report process sees its pipe end and exits."""
        script = textwrap.dedent(f"""
            import os, signal, time
            from tracker.session_tracker import SessionTracker
            t = SessionTracker(300, out_dir={str(tmp_path / "reports")!r}, console_logging=False)
            t.start_tracking()
            t.register_session("s1", "ann", [1])
            while t._reports.pid is None:
                time.sleep(0.01)
            print(t._reports.pid, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        """)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                              cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
        assert done.returncode == -signal.SIGKILL
        pid = int(done.stdout)
        wait_for(lambda: gone(pid))

    def test_a_forked_process_does_not_keep_it_alive(self, tracked: SessionTracker) -> None:
        """A process forked from the tracker's closes its copy of the pipe: closing the tracker ends the report
        process while the fork still runs."""
        started(tracked)
        read_end, write_end = os.pipe()
        child = fork()
        if child == 0:  # pragma: no cover - the forked child
            os.close(write_end)
            os.read(read_end, 1)  # until the test is done
            os._exit(0)
        os.close(read_end)
        try:
            asyncio.run(tracked.stop_tracking())
            tracked.close()
            wait_for(lambda: tracked._reports.exit_status is not None)
            assert tracked._reports.exit_status == 0  # it ended on its own (not killed)
        finally:
            os.close(write_end)
            os.waitpid(child, 0)


def in_thread(call: Callable[[], object], timeout: float = 20.0) -> None:
    """Run ``call`` in a thread; fail if it has not returned after ``timeout`` s (instead of hanging the suite)."""
    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"{call} did not return within {timeout} s"


class _Alarm(Exception):
    pass


class TestStuckOrInterrupted:
    def test_a_stopped_report_process_is_ended_and_said(self, tracked: SessionTracker, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
        """A report process that answers nothing (SIGSTOP) is killed after REPLY_STALL_S and said at ERROR; the
        reports stop, nothing hangs, the events stay in the log."""
        monkeypatch.setattr(report_process, "REPLY_STALL_S", 0.5)
        tracked.log_periodic_report(tracked.generate_periodic_report())
        pid = started(tracked)
        os.kill(pid, signal.SIGSTOP)
        activity(tracked)
        with caplog.at_level(logging.ERROR, "tracker.session_tracker"):
            in_thread(lambda: tracked.log_periodic_report(tracked.generate_periodic_report()))
            in_thread(lambda: asyncio.run(tracked.stop_tracking()))
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert said[0].startswith("[TRACKER] Periodic report failed: the report process gave no answer to a report "
                                  "for 0.5 s, using no CPU (stopped, or hung): it was ended, no more reports from "
                                  "this tracker")
        wait_for(lambda: gone(pid))
        assert len((tmp_path / "log.jsonl").read_bytes().splitlines()) == 12

    def test_a_full_pipe_that_is_never_read_ends_it(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Lines that the report process does not take for WRITE_STALL_S: it is ended, the send raises."""
        monkeypatch.setattr(report_process, "WRITE_STALL_S", 0.5)
        process = ReportProcess(tmp_path / "reports", 300, None)
        process.start()
        pid = process.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        raised: list[BaseException] = []

        def send() -> None:
            try:
                process.send(b"x" * 100 + b"\n" * (1 << 20))  # more than a pipe holds
            except ReportError as exc:
                raised.append(exc)

        in_thread(send)
        assert [str(e) for e in raised] == [
            "the report process took no events for 0.5 s, using no CPU (stopped, or hung): it was ended, no more "
            "reports from this tracker"]
        wait_for(lambda: gone(pid))

    def test_an_exception_in_the_middle_of_an_exchange_ends_it(self, tmp_path: Path) -> None:
        """An exception raised in the caller while it writes to the report process (a Ctrl-C's KeyboardInterrupt,
        here a signal handler's) ends the process: a frame cut short would break every report after it. The
        exception goes on; the next report says why there are no more."""
        with EventLog(tmp_path / "log.jsonl") as log:
            tracker = SessionTracker(300, log=log, out_dir=tmp_path / "reports", console_logging=False)
            try:
                tracker.log_periodic_report(tracker.generate_periodic_report())  # starts it
                pid = started(tracker)
                os.kill(pid, signal.SIGSTOP)
                activity(tracker, 3000)  # megabytes of lines: the pipe fills
                previous = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(_Alarm()))
                try:
                    signal.setitimer(signal.ITIMER_REAL, 0.5)
                    with pytest.raises(_Alarm):
                        tracker.log_periodic_report(tracker.generate_periodic_report())
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    signal.signal(signal.SIGALRM, previous)
                wait_for(lambda: gone(pid))
                assert tracker._reports.ended == ("the report process was interrupted in the middle of an exchange: "
                                                  "it was ended, no more reports from this tracker")
            finally:
                tracker.close()


    def test_a_slow_but_working_report_process_is_waited_for(self, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
        """A flush that takes far longer than REPLY_STALL_S, the child busy all along (a busy machine, a big catch-up
        of windows), is waited for: only a child that uses no CPU is taken for stuck."""
        monkeypatch.setattr(report_process, "REPLY_STALL_S", 0.05)
        lines = bytearray()
        with EventLog(tmp_path / "log.jsonl") as log:
            lines += log.append("session_registered", "s", ts=T0, username="u", course_numbers=[1])[1]
            for n in range(1, 250):
                lines += log.append("question_answered", "s", ts=T0 + n * 1_000_000, response_time_ms=float(n))[1]
        process = ReportProcess(tmp_path / "reports", 1, None)
        try:
            process.send(lines)
            assert process.flush(now_us=None, final=True).written > 250
        finally:
            process.close()

    def test_replacing_a_tracker_whose_report_process_is_stuck_returns_at_once(self, tmp_path: Path) -> None:
        """initialize_tracker() halts the tracker it replaces: while that tracker's runner waits on a stopped report
        process, this returns within seconds (the old reports are ended first), not after the 60 s deadline."""
        with EventLog(tmp_path / "log.jsonl") as log:
            old = SessionTracker(300, log=log, out_dir=tmp_path / "reports", console_logging=False)
            old.start_tracking()
            pid = started(old)
            try:
                os.kill(pid, signal.SIGSTOP)
                activity(old, 1000)  # more than the pipe holds: the runner's next hand-over waits
                time.sleep(0.6)  # (the runner hands the lines over every 0.5 s: let it start waiting)
                started_at = time.monotonic()
                in_thread(old.halt, timeout=20)  # what initialize_tracker does to the tracker it replaces
                assert time.monotonic() - started_at < 5
            finally:
                os.kill(pid, signal.SIGKILL)
                old.close()


class TestOver:
    def test_lines_are_not_kept_once_the_reports_are_over(self, tmp_path: Path) -> None:
        """After close() (or the report process's end) events still go to the log, and are not queued."""
        with EventLog(tmp_path / "log.jsonl") as log:
            tracker = SessionTracker(300, log=log, out_dir=tmp_path / "reports", console_logging=False)
            tracker.register_session("s", "u")
            tracker.close()
            for n in range(100):
                tracker.update_session_activity("s", "question_answered", response_time_ms=float(n))
            assert (len(tracker._lines), len((tmp_path / "log.jsonl").read_bytes().splitlines())) == (0, 101)

    def test_its_warnings_reach_the_trackers_logger_not_the_terminal(self, tmp_path: Path,
                                                                     capfd: pytest.CaptureFixture[str],
                                                                     caplog: pytest.LogCaptureFixture) -> None:
        """An output folder that cannot be made (a file is there): the reason is said on the tracker's logger,
        and the report process prints nothing."""
        (tmp_path / "reports").write_text("a file")
        with EventLog(tmp_path / "log.jsonl") as log:
            tracker = SessionTracker(300, log=log, out_dir=tmp_path / "reports", console_logging=False)
            tracker.register_session("s", "u")
            try:
                with caplog.at_level(logging.WARNING, "tracker.session_tracker"):
                    tracker.log_periodic_report(tracker.generate_periodic_report())
                    tracker.log_periodic_report(tracker.generate_periodic_report())
            finally:
                tracker.close()
        said = [r.getMessage() for r in caplog.records]
        assert any(m.startswith("[TRACKER] cannot write the reports into") for m in said), said
        printed = capfd.readouterr().err.splitlines()  # (a handler another test left on "tracker" may print ours)
        assert [line for line in printed if "[TRACKER]" not in line] == []

    def test_a_program_ending_while_a_hand_over_waits_writes_into_no_file_of_its_own(self, tmp_path: Path) -> None:
        """The program ends while its tracker's runner waits on a full pipe: the pipe is closed only once that
        thread let go of it, so a file the program opens at exit (given the freed descriptor number) gets only
        what the program writes."""
        script = textwrap.dedent(f"""
            import atexit, os, signal, time
            def summary():  # registered first: runs after the tracker's exit hook
                files = [open({str(tmp_path)!r} + f"/summary{{i}}.txt", "wb", buffering=0) for i in range(4)]
                for f in files:
                    f.write(b"SUMMARY\\n")
                time.sleep(1.0)
                for f in files:
                    f.close()
            atexit.register(summary)
            from tracker.emitter import EventLog
            from tracker.session_tracker import SessionTracker
            t = SessionTracker(300, log=EventLog({str(tmp_path / "log.jsonl")!r}), out_dir={str(tmp_path / "out")!r},
                               console_logging=False)
            t.start_tracking()
            while t._reports.pid is None:
                time.sleep(0.01)
            print(t._reports.pid, flush=True)
            os.kill(t._reports.pid, signal.SIGSTOP)
            for k in range(3000):
                t.register_session(f"s{{k}}", "u" * 100)
            time.sleep(0.7)  # the runner waits: the pipe is full
        """)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(done.stdout), signal.SIGKILL)
        assert done.returncode == 0, done.stderr
        assert [(tmp_path / f"summary{i}.txt").read_bytes() for i in range(4)] == [b"SUMMARY\n"] * 4

    def test_a_program_ending_in_the_middle_of_a_report_prints_no_traceback(self, tmp_path: Path) -> None:
        """The program ends (no stop_tracking) while a periodic report runs: no traceback from either process."""
        script = textwrap.dedent(f"""
            import time
            from tracker.emitter import EventLog
            from tracker.session_tracker import SessionTracker
            t = SessionTracker(1, log=EventLog({str(tmp_path / "log.jsonl")!r}), out_dir={str(tmp_path / "out")!r},
                               console_logging=False)
            t.start_tracking()
            for i in range(20):
                t.register_session(f"s{{i}}", "u")
            time.sleep(1.0)
        """)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
        assert done.returncode == 0
        assert "Traceback" not in done.stderr
