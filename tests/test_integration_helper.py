"""Tests for tracker.integration_helper: the original one-line tracking calls, driven by STRESS_TEST_CONFIG."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_session_tracker import (
    ISO_UTC,
    assert_reports_match_replay,
    logged,
    messages,
    runner_threads,
    shut_down,
)
from tracker import integration_helper, session_tracker
from tracker.integration_helper import (
    configure,
    register_session,
    start_tracking,
    stop_tracking,
    track_cycle_completed,
    track_question_answered,
    track_question_asked,
    track_session_error,
    unregister_session,
)
from tracker.session_tracker import get_tracker


@pytest.fixture(autouse=True)
def env_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Work in tmp_path with $TRACKER_LOG there, no process-wide tracker and the default config; yields the log."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("TRACKER_LOG", str(work / "events.jsonl"))
    monkeypatch.setattr(session_tracker, "_tracker", None)
    monkeypatch.setitem(sys.modules, "config", None)  # no config.py: import config raises ModuleNotFoundError
    monkeypatch.setattr(integration_helper, "STRESS_TEST_CONFIG",
                        {"enable_session_tracking": True, "tracking_report_interval": 300})
    yield work / "events.jsonl"
    shut_down(session_tracker._tracker)


class TestReadmeExample:
    def test_using_integration_helper(self, env_log: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """The README's integration-helper example logs its events, reports them and writes the replay's CSVs."""
        caplog.set_level(logging.INFO, logger="tracker")
        session_id, username = "session_1", "user@example.com"
        question_text = "How do I " + "really " * 30 + "pass the exam?"
        assert len(question_text) > 100

        async def main() -> None:
            from tracker.integration_helper import (
                register_session,
                start_tracking,
                stop_tracking,
                track_cycle_completed,
                track_question_answered,
                track_question_asked,
            )

            # Start tracking
            start_tracking()

            # In your session code
            register_session(session_id, username, [1, 2])
            track_question_asked(session_id, question_text)
            track_question_answered(session_id, response_time_ms=2000)
            track_cycle_completed(session_id)

            # Stop tracking
            await stop_tracking()

        asyncio.run(main())

        assert logged(env_log) == [
            {"session_id": session_id, "type": "session_registered", "username": username, "course_numbers": [1, 2]},
            {"session_id": session_id, "type": "question_asked", "question_text": question_text[:100]},
            {"session_id": session_id, "type": "question_answered", "response_time_ms": 2000.0},
            {"session_id": session_id, "type": "cycle_completed"},
        ]
        tracker = get_tracker()
        assert (tracker.report_interval, tracker.is_tracking) == (300, False)
        [report] = tracker.periodic_reports  # the final one
        assert {k: v for k, v in report.items() if k not in {"timestamp", "report_time", "uptime_seconds",
                                                            "active_session_details"}} == {
            "total_active_sessions": 1, "total_inactive_sessions": 0, "total_sessions_tracked": 1,
            "total_questions_asked": 1, "total_questions_answered": 1, "total_cycles_completed": 1,
            "total_errors": 0, "average_response_time_ms": 2000.0, "sessions_by_user": {username: 1}}
        [detail] = report["active_session_details"]
        assert (detail["session_id"], detail["questions_asked"], detail["courses_active"]) == (session_id, 1, 2)
        assert ISO_UTC.fullmatch(report["timestamp"])
        assert report["uptime_seconds"] >= 0
        assert_reports_match_replay(env_log, env_log.parent / "session_tracking_reports", tmp_path / "replayed")
        assert messages(caplog).endswith("[TRACKER] Session tracking stopped")


class TestCalls:
    def test_errors_and_unregistration(self, env_log: Path) -> None:
        """track_session_error cuts the message to 200 characters; unregister_session ends the session."""
        register_session("s1", "ann")
        track_session_error("s1", "x" * 300)
        track_session_error("s1")
        unregister_session("s1", "failed")
        unregister_session("s2")
        assert logged(env_log)[1:] == [
            {"session_id": "s1", "type": "error", "error": "x" * 200},
            {"session_id": "s1", "type": "error", "error": "(no message)"},
            {"session_id": "s1", "type": "session_unregistered", "reason": "failed"},
            {"session_id": "s2", "type": "session_unregistered", "reason": "completed"},
        ]
        summary = get_tracker().get_session_summary()
        assert (summary["total_errors"], summary["total_inactive_sessions"]) == (2, 2)

    def test_answer_text_is_ignored_and_response_time_required(self, env_log: Path) -> None:
        """track_question_answered drops question_text; without response_time_ms it raises and writes nothing."""
        track_question_answered("s1", 250.0, "What is a monad?")
        with pytest.raises(ValueError, match="response_time_ms"):
            track_question_answered("s1")
        assert logged(env_log) == [{"session_id": "s1", "type": "question_answered", "response_time_ms": 250.0}]

    def test_short_question_text_is_kept_and_none_left_out(self, env_log: Path) -> None:
        """A question text of at most 100 characters is kept whole; None or empty writes no text."""
        track_question_asked("s1", "q" * 100)
        track_question_asked("s1")
        track_question_asked("s1", "")
        assert logged(env_log) == [{"session_id": "s1", "type": "question_asked", "question_text": "q" * 100},
                                   {"session_id": "s1", "type": "question_asked"},
                                   {"session_id": "s1", "type": "question_asked"}]


class TestConfig:
    def test_disabled_makes_every_call_a_no_op(self, env_log: Path) -> None:
        """With enable_session_tracking False no tracker is made, nothing starts and no file is written."""
        integration_helper.STRESS_TEST_CONFIG["enable_session_tracking"] = False
        start_tracking()
        register_session("s1", "ann", [1])
        track_question_asked("s1", "q?")
        track_question_answered("s1", response_time_ms=5)
        track_cycle_completed("s1")
        track_session_error("s1", "boom")
        unregister_session("s1")
        asyncio.run(stop_tracking())
        assert session_tracker._tracker is None
        assert runner_threads() == []
        assert list(env_log.parent.iterdir()) == []

    def test_the_config_sets_the_interval(self) -> None:
        """The tracker is made with the config's interval; a changed interval replaces an idle tracker."""
        integration_helper.STRESS_TEST_CONFIG["tracking_report_interval"] = 60
        register_session("s1", "ann")
        first = get_tracker()
        assert first.report_interval == 60
        configure({"tracking_report_interval": 120})
        assert integration_helper.STRESS_TEST_CONFIG == {"enable_session_tracking": True,
                                                         "tracking_report_interval": 120}
        start_tracking()
        second = get_tracker()
        assert second is not first
        assert (second.report_interval, second.is_tracking) == (120, True)
        asyncio.run(stop_tracking())
        assert not second.is_tracking

    def test_configure_refuses_a_bad_value(self) -> None:
        """configure raises ValueError quoting a bad value and leaves the config as it was."""
        before = dict(integration_helper.STRESS_TEST_CONFIG)
        with pytest.raises(ValueError, match="'5 minutes'"):
            configure({"tracking_report_interval": "5 minutes"})
        assert before == integration_helper.STRESS_TEST_CONFIG

    def test_a_bad_value_set_directly_raises_on_use(self) -> None:
        """A bad interval written into STRESS_TEST_CONFIG raises ValueError quoting it on the next call."""
        integration_helper.STRESS_TEST_CONFIG["tracking_report_interval"] = 0
        with pytest.raises(ValueError, match="got 0"):
            register_session("s1", "ann")


class TestSettingsChangedLate:
    def test_sessions_recorded_before_a_new_interval_are_kept(self, env_log: Path, tmp_path: Path) -> None:
        """Sessions registered before the config changes move to the tracker the new settings make: none lost."""
        register_session("early", "ann", [1])
        track_question_answered("early", response_time_ms=100.0)
        first = get_tracker()
        configure({"tracking_report_interval": 60})
        start_tracking()
        register_session("late", "bob", [2])
        assert get_tracker() is not first
        assert get_tracker().get_active_session_count() == 2
        asyncio.run(stop_tracking())
        assert_reports_match_replay(env_log, get_tracker().out_dir, tmp_path / "replayed", interval_s=60)

    def test_settings_changed_after_reports_keep_the_tracker(self, env_log: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
        """Once events reached the reports, other settings keep the tracker (and say so) rather than lose them."""
        register_session("early", "ann", [1])
        first = get_tracker()
        first.log_periodic_report(first.generate_periodic_report())  # the events reach the engine
        configure({"tracking_report_interval": 60})
        with caplog.at_level(logging.WARNING, logger="tracker.session_tracker"):
            register_session("late", "bob", [2])
        assert get_tracker() is first
        assert first.get_active_session_count() == 2
        assert any("keeping those settings" in m for m in caplog.messages)
