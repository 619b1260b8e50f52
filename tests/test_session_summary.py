"""Tests for tracker.session_summary: the original API's summary dict and periodic report text."""

from __future__ import annotations

from tracker.fold import SessionState
from tracker.session_summary import active_states, report_text, summary

SECOND = 1_000_000
NOW = 1_800_000_000 * SECOND  # 2027-01-15T08:00:00Z

ANN = SessionState("s1", "ann", (101, 202), registered_at=NOW - 90 * SECOND, last_activity=NOW - 5 * SECOND,
                   questions_asked=3, questions_answered=2, cycles_completed=2, errors=1,
                   response_time_total_ms=3000.0)
BOB = SessionState("s2", "bob", (), status="ended", registered_at=NOW - 60 * SECOND, ended_at=NOW - 30 * SECOND,
                   questions_asked=1, questions_answered=1, response_time_total_ms=1001.0)
QUIET = SessionState("s3", "ann", (7,), first_activity=NOW - 400 * SECOND, last_activity=NOW - 300 * SECOND)


class TestActiveStates:
    def test_ended_sessions_are_not_active(self) -> None:
        """Without a timeout, every session not unregistered is active, however long it has been silent."""
        assert active_states([ANN, BOB, QUIET], NOW, None) == [ANN, QUIET]

    def test_a_session_silent_for_the_timeout_is_not_active(self) -> None:
        """A session whose last activity plus the timeout is now or earlier is not active; a second less is."""
        assert active_states([ANN, QUIET], NOW, 300 * SECOND) == [ANN]
        assert active_states([ANN, QUIET], NOW, 300 * SECOND + 1) == [ANN, QUIET]


class TestSummary:
    def test_the_original_keys_and_values(self) -> None:
        """Counts are sums over every session; the mean response time over every answer; details of active ones."""
        got = summary([ANN, BOB, QUIET], NOW, 300 * SECOND)
        assert got == {
            "timestamp": "2027-01-15T08:00:00Z",
            "total_active_sessions": 1,
            "total_inactive_sessions": 2,
            "total_sessions_tracked": 3,
            "total_questions_asked": 4,
            "total_questions_answered": 3,
            "total_cycles_completed": 2,
            "total_errors": 1,
            "average_response_time_ms": 1333.67,
            "sessions_by_user": {"ann": 2, "bob": 1},
            "active_session_details": [{
                "session_id": "s1", "username": "ann", "questions_asked": 3, "questions_answered": 2,
                "cycles_completed": 2, "errors": 1, "duration_seconds": 90.0, "courses_active": 2,
                "course_numbers": [101, 202]}],
        }

    def test_no_sessions(self) -> None:
        """No sessions: zero counts and a mean of 0.0, not a division by zero."""
        got = summary([], NOW)
        assert (got["total_sessions_tracked"], got["average_response_time_ms"], got["active_session_details"]) == (
            0, 0.0, [])


class TestReportText:
    def test_the_original_layout(self) -> None:
        """The periodic report is the original's text: counts, users (an unregistered one named so), details."""
        report = {**summary([ANN, SessionState("s4")], NOW), "report_time": "2027-01-15T08:00:00Z",
                  "uptime_seconds": 150.0}
        rule = "=" * 80
        assert report_text(report) == "\n".join([
            "", rule, "PERIODIC SESSION TRACKING REPORT - 2027-01-15T08:00:00Z", rule,
            "Uptime: 150.00 seconds (2.50 minutes)",
            "Total Active Sessions: 2", "Total Inactive Sessions: 0", "Total Sessions Tracked: 2",
            "", "Activity Metrics:",
            "  Total Questions Asked: 3", "  Total Questions Answered: 2", "  Total Q&A Cycles Completed: 2",
            "  Total Errors: 1", "  Average Response Time: 1500.00ms",
            "", "Sessions by User:", "  ann: 1 session(s)", "  (unregistered): 1 session(s)",
            "", "Active Session Details:",
            "  Session: s1", "    User: ann", "    Questions: 3 asked, 2 answered", "    Cycles: 2, Errors: 1",
            "    Duration: 90.00s, Courses: 101, 202",
            "  Session: s4", "    User: None", "    Questions: 0 asked, 0 answered", "    Cycles: 0, Errors: 0",
            "    Duration: 0.00s, Courses: none",
            rule, ""])

    def test_no_active_sessions_is_said(self) -> None:
        """With no active session the details are one line saying so."""
        report = {**summary([BOB], NOW), "report_time": "t", "uptime_seconds": 0.0}
        assert "\nNo active sessions\n" in report_text(report)
