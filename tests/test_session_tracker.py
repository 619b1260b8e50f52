"""Tests for tracker.session_tracker: the original tracker API, every call an event in the log."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import fork, held_by_another_thread
from tracker import session_tracker
from tracker.decoder import Rejected, decode_file
from tracker.emitter import EventLog
from tracker.events import Event
from tracker.output import ERRORS_FILE, SESSIONS_FILE_PREFIX, SUMMARY_FILE, TOTALS_FILE
from tracker.replayer import replay
from tracker.session_tracker import (
    ACTIVITY_TYPES,
    SessionTracker,
    get_tracker,
    initialize_tracker,
)

RUNNER = "session-tracker-reports"
ENVELOPE = frozenset({"v", "ts", "event_id", "writer", "seq"})
SUMMARY_KEYS = frozenset({
    "timestamp", "total_active_sessions", "total_inactive_sessions", "total_sessions_tracked",
    "total_questions_asked", "total_questions_answered", "total_cycles_completed", "total_errors",
    "average_response_time_ms", "sessions_by_user", "active_session_details",
})
DETAIL_KEYS = frozenset({"session_id", "username", "questions_asked", "questions_answered", "cycles_completed",
                         "errors", "duration_seconds", "courses_active", "course_numbers"})
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z")

Factory = Callable[..., SessionTracker]


# -- helpers shared with test_integration_helper ---------------------------------


def decoded_events(path: Path) -> list[Event]:
    """Every event of a finished log; fails on any rejected line."""
    items = list(decode_file(path))
    assert [i for i in items if isinstance(i, Rejected)] == []
    return [i for i in items if isinstance(i, Event)]


def logged(path: Path) -> list[dict[str, Any]]:
    """The log's events without their envelope (``session_id``, ``type`` and the type's fields)."""
    return [{k: v for k, v in e.to_record().items() if k not in ENVELOPE} for e in decoded_events(path)]


def report_files(folder: Path) -> dict[str, bytes]:
    """The report files of a folder (not the quarantine, nor the manifest: it says which writer wrote last)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if not p.name.startswith(("quarantine", "."))}


def assert_reports_match_replay(log: Path, out_dir: Path, scratch: Path, interval_s: int = 300) -> None:
    """The tracker's CSV files are every file ``replay`` writes for its log, byte for byte."""
    replay([log], scratch, interval_s=interval_s)
    written = report_files(out_dir)
    assert {SUMMARY_FILE, TOTALS_FILE, ERRORS_FILE} <= written.keys()
    assert any(name.startswith(SESSIONS_FILE_PREFIX) for name in written)
    assert written == report_files(scratch)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def runner_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == RUNNER and t.is_alive()]


def shut_down(tracker: SessionTracker | None) -> None:
    """Stop a tracker's periodic reports, if running, and close its log."""
    if tracker is None:
        return
    if tracker.is_tracking:
        asyncio.run(tracker.stop_tracking())
    tracker.close()


def stop_in_thread(tracker: SessionTracker, timeout: float = 10.0) -> None:
    """Run ``stop_tracking`` in a fresh thread and event loop; fail if it has not returned after ``timeout``."""
    stopper = threading.Thread(target=asyncio.run, args=(tracker.stop_tracking(),), daemon=True)
    stopper.start()
    stopper.join(timeout)
    assert not stopper.is_alive(), "stop_tracking did not return in time"


def messages(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "tracker.session_tracker")


# -- fixtures ----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def env_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Work in tmp_path, with $TRACKER_LOG there and no process-wide tracker; yields the log's path."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("TRACKER_LOG", str(work / "events.jsonl"))
    monkeypatch.setattr(session_tracker, "_tracker", None)
    monkeypatch.setitem(sys.modules, "config", None)  # no config.py: import config raises ModuleNotFoundError
    yield work / "events.jsonl"
    shut_down(session_tracker._tracker)


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Factory]:
    """Trackers writing ``tmp_path/log.jsonl`` and ``tmp_path/reports``, shut down after the test."""
    made: list[SessionTracker] = []
    logs: list[EventLog] = []

    def factory(report_interval: int = 300, **kwargs: Any) -> SessionTracker:
        if "log" not in kwargs:
            kwargs["log"] = EventLog(tmp_path / "log.jsonl")
            logs.append(kwargs["log"])
        kwargs.setdefault("out_dir", tmp_path / "reports")
        tracker = SessionTracker(report_interval, **kwargs)
        made.append(tracker)
        return tracker

    yield factory
    for tracker in made:
        shut_down(tracker)
    for log in logs:
        log.close()


# -- tests -------------------------------------------------------------------------


class TestReadmeExample:
    def test_basic_usage(self, env_log: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """The README's Basic Usage logs its four events, reports them and writes the replay's CSV files."""
        caplog.set_level(logging.INFO, logger="tracker")

        async def main() -> None:
            from tracker.session_tracker import get_tracker

            tracker = get_tracker()
            tracker.start_tracking()

            # Register a session
            tracker.register_session("session_1", "user@example.com", [1, 2])

            # Track activities
            tracker.update_session_activity("session_1", "question_asked")
            tracker.update_session_activity("session_1", "question_answered", response_time_ms=2000)
            tracker.update_session_activity("session_1", "cycle_completed")

            # Generate report
            report = tracker.generate_periodic_report()
            tracker.log_periodic_report(report)

            # Stop tracking
            await tracker.stop_tracking()

        asyncio.run(main())

        assert logged(env_log) == [
            {"session_id": "session_1", "type": "session_registered", "username": "user@example.com",
             "course_numbers": [1, 2]},
            {"session_id": "session_1", "type": "question_asked"},
            {"session_id": "session_1", "type": "question_answered", "response_time_ms": 2000.0},
            {"session_id": "session_1", "type": "cycle_completed"},
        ]
        tracker = get_tracker()
        assert not tracker.is_tracking
        assert len(tracker.periodic_reports) == 2  # the example's report, then the final one
        for report in tracker.periodic_reports:
            assert report.keys() == SUMMARY_KEYS | {"report_time", "uptime_seconds"}
            assert {k: report[k] for k in SUMMARY_KEYS - {"timestamp", "active_session_details"}} == {
                "total_active_sessions": 1, "total_inactive_sessions": 0, "total_sessions_tracked": 1,
                "total_questions_asked": 1, "total_questions_answered": 1, "total_cycles_completed": 1,
                "total_errors": 0, "average_response_time_ms": 2000.0, "sessions_by_user": {"user@example.com": 1},
            }
            [detail] = report["active_session_details"]
            assert {k: v for k, v in detail.items() if k != "duration_seconds"} == {
                "session_id": "session_1", "username": "user@example.com", "questions_asked": 1,
                "questions_answered": 1, "cycles_completed": 1, "errors": 0, "courses_active": 2,
                "course_numbers": [1, 2]}
            assert detail["duration_seconds"] >= 0
            assert ISO_UTC.fullmatch(report["timestamp"])
            assert ISO_UTC.fullmatch(report["report_time"])
        assert_reports_match_replay(env_log, env_log.parent / "session_tracking_reports", tmp_path / "replayed")
        text = messages(caplog)
        assert "[TRACKER] Registered session: session_1 (User: user@example.com)" in text
        assert text.count("PERIODIC SESSION TRACKING REPORT") == 2
        assert text.endswith("[TRACKER] Session tracking stopped")


class TestActivities:
    def test_unknown_activity_type_raises_and_writes_nothing(self, env_log: Path) -> None:
        """Another activity type is a ValueError naming it and the allowed ones; the log is unchanged."""
        tracker = get_tracker()
        tracker.register_session("s1", "ann")
        before = env_log.read_bytes()
        for bad in ("question_skipped", "status_change"):
            with pytest.raises(ValueError, match=repr(bad)) as info:
                tracker.update_session_activity("s1", bad)
            assert all(name in str(info.value) for name in ACTIVITY_TYPES)
        assert env_log.read_bytes() == before
        assert tracker.sessions["s1"].questions_asked == 0

    def test_unknown_keyword_raises_and_writes_nothing(self, env_log: Path) -> None:
        """A keyword that is not a field of the event is a ValueError naming it; the log is unchanged."""
        tracker = get_tracker()
        tracker.register_session("s1", "ann")
        before = env_log.read_bytes()
        with pytest.raises(ValueError, match="colour"):
            tracker.update_session_activity("s1", "cycle_completed", colour="red")
        with pytest.raises(ValueError, match="response_time_ms"):
            tracker.update_session_activity("s1", "question_answered")
        assert env_log.read_bytes() == before

    def test_fields_are_cut_and_mapped(self, env_log: Path) -> None:
        """Question text is cut to 1000 characters, error messages to 2000; error_message or error is the error."""
        tracker = get_tracker()
        tracker.update_session_activity("s1", "question_asked", question_text="q" * 1500, question_id="q1")
        tracker.update_session_activity("s1", "question_answered", response_time_ms=12.5, question_id="q1",
                                        question_text="ignored", time_to_first_token_ms=3, input_tokens=10,
                                        output_tokens=20)
        tracker.update_session_activity("s1", "error", error_message="e" * 3000)
        tracker.update_session_activity("s1", "error", error="upstream timed out", kind="timeout",
                                        response_time_ms=5000)
        tracker.update_session_activity("s1", "error")
        with pytest.raises(ValueError, match="not both"):
            tracker.update_session_activity("s1", "error", error_message="a", error="b")
        assert logged(env_log) == [
            {"session_id": "s1", "type": "question_asked", "question_text": "q" * 1000, "question_id": "q1"},
            {"session_id": "s1", "type": "question_answered", "response_time_ms": 12.5, "question_id": "q1",
             "time_to_first_token_ms": 3.0, "input_tokens": 10, "output_tokens": 20},
            {"session_id": "s1", "type": "error", "error": "e" * 2000},
            {"session_id": "s1", "type": "error", "error": "upstream timed out", "kind": "timeout",
             "response_time_ms": 5000.0},
            {"session_id": "s1", "type": "error", "error": "(no message)"},
        ]

    def test_activity_of_an_unregistered_session_is_kept(self, env_log: Path) -> None:
        """Activity of a session never registered is logged and counted, and the fold marks it an anomaly."""
        tracker = get_tracker()
        tracker.update_session_activity("ghost", "question_asked")
        assert logged(env_log) == [{"session_id": "ghost", "type": "question_asked"}]
        state = tracker.sessions["ghost"]
        assert (state.questions_asked, state.unregistered_activity) == (1, 1)
        summary = tracker.get_session_summary()
        assert (summary["total_questions_asked"], summary["sessions_by_user"]) == (1, {None: 1})

    def test_unregister_ends_the_session(self, env_log: Path, caplog: pytest.LogCaptureFixture) -> None:
        """unregister_session logs the end with reason and duration; the session counts as inactive."""
        caplog.set_level(logging.INFO, logger="tracker")
        tracker = get_tracker()
        tracker.register_session("s1", "ann", [7])
        tracker.unregister_session("s1", "timeout")
        tracker.register_session("s2", "bob")
        tracker.unregister_session("s2")
        assert logged(env_log)[1::2] == [{"session_id": "s1", "type": "session_unregistered", "reason": "timeout"},
                                         {"session_id": "s2", "type": "session_unregistered", "reason": "completed"}]
        assert re.search(r"\[TRACKER\] Unregistered session: s1 \(Reason: timeout, Duration: \d+\.\d\ds\)",
                         messages(caplog))
        summary = tracker.get_session_summary()
        assert (summary["total_active_sessions"], summary["total_inactive_sessions"]) == (0, 2)
        assert summary["active_session_details"] == []
        assert tracker.get_active_session_count() == 0


class TestSummary:
    def test_numbers_match_an_independent_tally(self, make: Factory) -> None:
        """Every number of the summary equals a plain count of the calls made."""
        tracker = make()
        rng = random.Random(11)
        users = ["ann", "bob", "cy"]
        tally: Counter[str] = Counter()
        response_times: list[float] = []
        by_user: Counter[str] = Counter()
        per_session: dict[str, Counter[str]] = {}
        courses: dict[str, list[int]] = {}
        ended: set[str] = set()
        for index in range(9):
            session_id, user = f"s{index}", rng.choice(users)
            course_numbers = rng.sample(range(100, 400), rng.randint(0, 3))
            tracker.register_session(session_id, user, course_numbers)
            by_user[user] += 1
            courses[session_id] = course_numbers
            per_session[session_id] = Counter()
        for _ in range(300):
            session_id = f"s{rng.randrange(9)}"
            activity = rng.choice(ACTIVITY_TYPES)
            if activity == "question_answered":
                rt = round(rng.uniform(50.0, 5000.0), 3)
                response_times.append(rt)
                tracker.update_session_activity(session_id, activity, response_time_ms=rt)
            else:
                tracker.update_session_activity(session_id, activity)
            tally[activity] += 1
            per_session[session_id][activity] += 1
        for session_id in ("s2", "s5"):
            tracker.unregister_session(session_id)
            ended.add(session_id)

        summary = tracker.get_session_summary()
        assert summary.keys() == SUMMARY_KEYS
        assert summary["total_sessions_tracked"] == 9
        assert summary["total_active_sessions"] == tracker.get_active_session_count() == 7
        assert summary["total_inactive_sessions"] == 2
        assert summary["total_questions_asked"] == tally["question_asked"]
        assert summary["total_questions_answered"] == tally["question_answered"] == len(response_times)
        assert summary["total_cycles_completed"] == tally["cycle_completed"]
        assert summary["total_errors"] == tally["error"]
        assert summary["average_response_time_ms"] == round(sum(response_times) / len(response_times), 2)
        assert summary["sessions_by_user"] == dict(by_user)
        details = {d["session_id"]: d for d in summary["active_session_details"]}
        assert details.keys() == {f"s{i}" for i in range(9)} - ended
        for session_id, detail in details.items():
            assert detail.keys() == DETAIL_KEYS
            counts = per_session[session_id]
            assert (detail["questions_asked"], detail["questions_answered"], detail["cycles_completed"],
                    detail["errors"], detail["courses_active"], detail["course_numbers"]) == (
                counts["question_asked"], counts["question_answered"], counts["cycle_completed"], counts["error"],
                len(courses[session_id]), courses[session_id])
            assert detail["duration_seconds"] >= 0

    def test_no_answers_give_a_zero_average(self, make: Factory) -> None:
        """With no answer the average response time is 0."""
        tracker = make()
        tracker.register_session("s1", "ann")
        assert tracker.get_session_summary()["average_response_time_ms"] == 0

    def test_log_periodic_report_logs_and_writes_reports(
        self, make: Factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """log_periodic_report logs every section of the report and writes the CSV reports into out_dir."""
        caplog.set_level(logging.INFO, logger="tracker")
        tracker = make()
        tracker.register_session("s1", "user@example.com", [1, 2])
        tracker.update_session_activity("s1", "question_answered", response_time_ms=1500)
        tracker.log_periodic_report(tracker.generate_periodic_report())
        text = messages(caplog)
        for line in ("PERIODIC SESSION TRACKING REPORT - ", "Total Active Sessions: 1", "Total Inactive Sessions: 0",
                     "Total Questions Answered: 1", "Average Response Time: 1500.00ms", "Sessions by User:",
                     "  user@example.com: 1 session(s)", "  Session: s1", "Questions: 0 asked, 1 answered",
                     "Courses: 1, 2\n", f"[TRACKER] Reports written to: {(tmp_path / 'reports').resolve()}"):
            assert line in text
        assert {SUMMARY_FILE, TOTALS_FILE, ERRORS_FILE} <= {p.name for p in (tmp_path / "reports").iterdir()}

        caplog.clear()
        tracker.unregister_session("s1")
        tracker.log_periodic_report(tracker.generate_periodic_report())
        assert "No active sessions" in messages(caplog)


class TestPeriodicReports:
    def test_thread_when_no_loop_runs(self, make: Factory, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """Without a running loop, a daemon thread writes a report every report_interval seconds."""
        caplog.set_level(logging.INFO, logger="tracker")
        tracker = make(report_interval=1)
        tracker.register_session("s1", "ann")
        tracker.start_tracking()
        tracker.start_tracking()  # idempotent
        assert tracker.is_tracking
        [thread] = runner_threads()
        assert thread.daemon
        wait_until(lambda: any("Reports written to" in r.getMessage() for r in caplog.records))
        assert tracker.periodic_reports[0]["total_active_sessions"] == 1
        written = next(r for r in caplog.records if "Reports written to" in r.getMessage())
        assert written.threadName == RUNNER
        stop_in_thread(tracker)
        assert not tracker.is_tracking
        assert runner_threads() == []
        assert_reports_match_replay(tmp_path / "log.jsonl", tmp_path / "reports", tmp_path / "replayed", 1)

    def test_task_when_a_loop_runs(self, make: Factory, tmp_path: Path) -> None:
        """With a running loop, an asyncio task writes a report every report_interval seconds."""
        tracker = make(report_interval=1)
        tracker.register_session("s1", "ann")

        async def main() -> None:
            tracker.start_tracking()
            tracker.start_tracking()  # idempotent
            [task] = [t for t in asyncio.all_tasks() if t.get_name() == RUNNER]
            assert runner_threads() == []
            async with asyncio.timeout(10):
                while not tracker.periodic_reports:
                    await asyncio.sleep(0.01)
            await tracker.stop_tracking()
            assert task.done()

        asyncio.run(main())
        assert not tracker.is_tracking
        assert len(tracker.periodic_reports) >= 2  # at least one periodic, then the final one
        assert tracker.periodic_reports[0]["total_sessions_tracked"] == 1
        assert_reports_match_replay(tmp_path / "log.jsonl", tmp_path / "reports", tmp_path / "replayed", 1)

    def test_stop_does_not_wait_for_the_interval(self, make: Factory, caplog: pytest.LogCaptureFixture) -> None:
        """stop_tracking ends the thread at once and writes the final report, however long the interval."""
        caplog.set_level(logging.INFO, logger="tracker")
        tracker = make(report_interval=3600)
        tracker.register_session("s1", "ann")
        tracker.start_tracking()
        assert len(runner_threads()) == 1
        stop_in_thread(tracker)
        assert runner_threads() == []
        assert len(tracker.periodic_reports) == 1
        assert messages(caplog).endswith("[TRACKER] Session tracking stopped")

    def test_stop_when_not_tracking_does_nothing(self, make: Factory, tmp_path: Path) -> None:
        """stop_tracking without start_tracking writes no report (as the original)."""
        tracker = make()
        tracker.register_session("s1", "ann")
        asyncio.run(tracker.stop_tracking())
        assert tracker.periodic_reports == []
        assert not (tmp_path / "reports").exists()

    def test_restarts_after_its_loop_ended(self, make: Factory) -> None:
        """A tracker whose task ended with its event loop starts again, in a thread when no loop runs."""
        tracker = make(report_interval=3600)

        async def main() -> None:
            tracker.start_tracking()

        asyncio.run(main())
        assert tracker.is_tracking
        assert runner_threads() == []
        tracker.start_tracking()
        assert len(runner_threads()) == 1
        stop_in_thread(tracker)
        assert runner_threads() == []


class TestDisabled:
    def test_every_call_is_a_no_op(self, env_log: Path) -> None:
        """With enabled=False nothing is written, nothing starts, and the summary has the usual keys, all empty."""
        tracker = SessionTracker(1, enabled=False)
        tracker.start_tracking()
        assert not tracker.is_tracking
        assert runner_threads() == []
        tracker.register_session("s1", "ann", [1])
        for activity in ACTIVITY_TYPES:
            tracker.update_session_activity("s1", activity, response_time_ms=5)
        tracker.unregister_session("s1")
        report = tracker.generate_periodic_report()
        tracker.log_periodic_report(report)
        asyncio.run(tracker.stop_tracking())
        tracker.close()
        assert tracker.get_active_session_count() == 0
        summary = tracker.get_session_summary()
        assert summary.keys() == SUMMARY_KEYS
        assert {k: v for k, v in summary.items() if k != "timestamp"} == {
            "total_active_sessions": 0, "total_inactive_sessions": 0, "total_sessions_tracked": 0,
            "total_questions_asked": 0, "total_questions_answered": 0, "total_cycles_completed": 0,
            "total_errors": 0, "average_response_time_ms": 0, "sessions_by_user": {}, "active_session_details": []}
        assert report.keys() == SUMMARY_KEYS | {"report_time", "uptime_seconds"}
        assert tracker.periodic_reports == []
        assert list(env_log.parent.iterdir()) == []

    def test_disabled_by_config(self) -> None:
        """get_tracker with enable_session_tracking False gives a disabled tracker."""
        assert not get_tracker({"enable_session_tracking": False}).enabled


class TestThreads:
    def test_concurrent_calls_add_up(self, make: Factory, tmp_path: Path) -> None:
        """Threads registering and updating sessions at once, with reports written meanwhile, lose nothing."""
        tracker = make()
        n_threads, n_sessions, n_rounds = 8, 4, 15
        barrier = threading.Barrier(n_threads)
        failures: list[BaseException] = []

        def work(worker: int) -> None:
            try:
                barrier.wait(10)
                for index in range(n_sessions):
                    session_id = f"w{worker}-s{index}"
                    tracker.register_session(session_id, f"user{worker}")
                    for _ in range(n_rounds):
                        tracker.update_session_activity(session_id, "question_asked")
                        tracker.update_session_activity(session_id, "question_answered", response_time_ms=100)
                        tracker.update_session_activity(session_id, "cycle_completed")
                    if index % 2:
                        tracker.unregister_session(session_id)
                    if worker == 0:
                        tracker.log_periodic_report(tracker.generate_periodic_report())
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(n_threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(t.is_alive() for t in threads)
        assert failures == []

        sessions = n_threads * n_sessions
        summary = tracker.get_session_summary()
        assert summary["total_sessions_tracked"] == sessions
        assert (summary["total_active_sessions"], summary["total_inactive_sessions"]) == (sessions // 2, sessions // 2)
        per_type = sessions * n_rounds
        assert (summary["total_questions_asked"], summary["total_questions_answered"],
                summary["total_cycles_completed"]) == (per_type, per_type, per_type)
        assert summary["average_response_time_ms"] == 100.0
        assert summary["sessions_by_user"] == {f"user{w}": n_sessions for w in range(n_threads)}
        events = decoded_events(tmp_path / "log.jsonl")
        assert len(events) == sessions * (1 + 3 * n_rounds) + sessions // 2
        assert sorted(e.seq for e in events) == list(range(1, len(events) + 1))
        assert all(state.unregistered_activity == state.unmatched_answers == 0
                   for state in tracker.sessions.values())
        tracker.start_tracking()
        stop_in_thread(tracker)
        assert_reports_match_replay(tmp_path / "log.jsonl", tmp_path / "reports", tmp_path / "replayed")


class TestFork:
    @pytest.mark.parametrize("held", ["_state_lock", "_report_lock", "module"])
    def test_a_forked_child_records_while_a_lock_was_held(self, make: Factory, tmp_path: Path, held: str) -> None:
        """A child forked while another thread held one of the tracker's locks (or get_tracker's) records its
        events under its own writer identity, at once, and writes no report files (its parent's)."""
        tracker = make()
        tracker.register_session("parent", "p")
        lock = session_tracker._tracker_lock if held == "module" else getattr(tracker, held)
        with held_by_another_thread(lock):
            pid = fork()
            if pid == 0:  # the child: any hang ends in SIGALRM, any failure in status 1
                code = 1
                try:
                    signal.alarm(10)
                    tracker.update_session_activity("child", "question_asked")
                    assert session_tracker.get_tracker() is not None
                    tracker._write_reports(final=True)
                    code = 0 if tracker.get_session_summary()["total_questions_asked"] == 1 else 1
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        events = decoded_events(tmp_path / "log.jsonl")
        assert [(e.session_id, e.type) for e in events] == [("parent", "session_registered"),
                                                            ("child", "question_asked")]
        assert events[0].writer != events[1].writer
        assert events[1].seq == 1
        assert not (tmp_path / "reports").exists()
        tracker.update_session_activity("parent", "question_asked")  # the parent goes on
        assert tracker.get_session_summary()["total_questions_asked"] == 1


    @pytest.mark.parametrize("how", ["own", "initialize"])
    def test_a_tracker_made_in_a_forked_child_records_without_reports(self, make: Factory, tmp_path: Path,
                                                                      how: str) -> None:
        """After the parent reported (polars' threads started), a child's own tracker (new, or from
        initialize_tracker) records to the log and stops at once, writing no report (polars cannot run there)."""
        tracker = make()
        tracker.register_session("parent", "p")
        tracker.log_periodic_report(tracker.generate_periodic_report())
        assert (tmp_path / "reports").is_dir()
        pid = fork()
        if pid == 0:  # the child: any hang ends in SIGALRM, any failure in status 1
            code = 1
            try:
                signal.alarm(20)
                log = EventLog(tmp_path / "log.jsonl")
                child = (SessionTracker(60, log=log, out_dir=tmp_path / "child", console_logging=False)
                         if how == "own" else session_tracker.initialize_tracker(60))
                child._log = log
                child.start_tracking()
                child.register_session("child", "c")
                asyncio.run(child.stop_tracking())
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert [e.session_id for e in decoded_events(tmp_path / "log.jsonl")] == ["parent", "child"]
        assert not (tmp_path / "child").exists()
        assert not Path("session_tracking_reports").exists()


class TestGetTracker:
    def test_one_tracker_per_process(self) -> None:
        """get_tracker returns the same tracker, created from the config on first call; extra keys are ignored."""
        tracker = get_tracker({"tracking_report_interval": 120, "max_sessions": 50})
        assert tracker.report_interval == 120
        assert tracker.enabled
        assert get_tracker() is tracker
        assert get_tracker({"tracking_report_interval": 120}) is tracker

    def test_a_config_that_is_not_a_mapping(self) -> None:
        """A config that is not a mapping is a TypeError quoting it."""
        with pytest.raises(TypeError, match=r"config: must be a mapping such as STRESS_TEST_CONFIG \(a dict\), got "
                                            r"\[1, 2\]"):
            get_tracker([1, 2])  # type: ignore[arg-type]

    def test_defaults(self) -> None:
        """Without a config the tracker reports every 300 s into session_tracking_reports."""
        tracker = get_tracker()
        assert (tracker.report_interval, tracker.enabled, str(tracker.out_dir)) == (300, True,
                                                                                    "session_tracking_reports")

    def test_another_interval_replaces_an_idle_tracker(self) -> None:
        """A config with another interval replaces the tracker when it is not tracking, and not when it is."""
        first = get_tracker({"tracking_report_interval": 300})
        second = get_tracker({"tracking_report_interval": 60})
        assert second is not first
        assert second.report_interval == 60
        assert get_tracker() is second
        second.start_tracking()
        assert get_tracker({"tracking_report_interval": 30}) is second
        stop_in_thread(second)
        third = get_tracker({"tracking_report_interval": 30})
        assert third is not second
        assert third.report_interval == 30

    def test_initialize_tracker_replaces(self) -> None:
        """initialize_tracker always makes a new process-wide tracker."""
        first = get_tracker()
        second = initialize_tracker(300)
        assert second is not first
        assert get_tracker() is second
        assert initialize_tracker(5).report_interval == 5

    def test_replaced_tracker_stops_reporting(self) -> None:
        """A tracker replaced by initialize_tracker stops its report runner: one runner writes the folder."""
        first = get_tracker({"tracking_report_interval": 60})
        first.start_tracking()
        assert len(runner_threads()) == 1
        initialize_tracker(60)
        assert (first.is_tracking, runner_threads()) == (False, [])

    @pytest.mark.parametrize("interval", ["300", 0, -5, 2.5, True, None])
    def test_bad_interval_raises(self, interval: object) -> None:
        """A tracking_report_interval that is not a whole number of seconds >= 1 is a ValueError quoting it."""
        with pytest.raises(ValueError, match=re.escape(f"tracking_report_interval: must be a whole number of "
                                                       f"seconds from 1 to 31,622,400 (366 days), got {interval!r}")):
            get_tracker({"tracking_report_interval": interval})
        assert session_tracker._tracker is None

    def test_bad_interval_in_constructor_raises(self) -> None:
        """SessionTracker refuses a report_interval below one second."""
        with pytest.raises(ValueError, match=r"report_interval: .* got 0"):
            SessionTracker(0)


class TestClose:
    def test_close_closes_the_log_it_opened(self, env_log: Path) -> None:
        """close() closes the default log; the next event opens it again and appends."""
        tracker = get_tracker()
        tracker.register_session("s1", "ann")
        tracker.close()
        tracker.update_session_activity("s1", "cycle_completed")
        assert [e["type"] for e in logged(env_log)] == ["session_registered", "cycle_completed"]

    def test_a_log_passed_in_stays_open(self, tmp_path: Path) -> None:
        """close() leaves a log the caller passed in open."""
        with EventLog(tmp_path / "own.jsonl") as log:
            tracker = SessionTracker(log=log, out_dir=tmp_path / "reports")
            tracker.register_session("s1", "ann")
            tracker.close()
            log.emit("cycle_completed", "s1")
        assert [e["type"] for e in logged(tmp_path / "own.jsonl")] == ["session_registered", "cycle_completed"]
