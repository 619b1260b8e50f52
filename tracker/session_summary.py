"""What the original API reports of its sessions: the summary dict and the periodic report's text.

Both are read off the folded :class:`~tracker.fold.SessionState` values; nothing is computed from events here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Final

from .events import format_ts
from .fold import SessionState

__all__ = ("active_states", "report_text", "summary")

_SECOND: Final = 1_000_000


def active_states(states: Iterable[SessionState], now_us: int, timeout_us: int | None) -> list[SessionState]:
    """The sessions not unregistered and, with a session timeout, not silent that long by ``now_us``."""
    return [s for s in states if s.status == "active" and not (
        timeout_us is not None and s.last_activity is not None and s.last_activity + timeout_us <= now_us)]


def summary(states: Iterable[SessionState], now_us: int, timeout_us: int | None = None) -> dict[str, Any]:
    """The original's summary dict, from folded session states; with a session timeout, a session silent that long
    (by ``now_us``) is not active (:mod:`tracker.sessions`)."""
    states = list(states)
    active = active_states(states, now_us, timeout_us)
    answered = sum(s.questions_answered for s in states)
    response_total = sum(s.response_time_total_ms for s in states)
    return {
        "timestamp": format_ts(now_us),
        "total_active_sessions": len(active),
        "total_inactive_sessions": len(states) - len(active),
        "total_sessions_tracked": len(states),
        "total_questions_asked": sum(s.questions_asked for s in states),
        "total_questions_answered": answered,
        "total_cycles_completed": sum(s.cycles_completed for s in states),
        "total_errors": sum(s.errors for s in states),
        "average_response_time_ms": round(response_total / answered, 2) if answered else 0.0,
        "sessions_by_user": dict(Counter(s.username for s in states)),
        "active_session_details": [
            {
                "session_id": s.session_id,
                "username": s.username,
                "questions_asked": s.questions_asked,
                "questions_answered": s.questions_answered,
                "cycles_completed": s.cycles_completed,
                "errors": s.errors,
                "duration_seconds": round((now_us - s.started_at) / _SECOND, 2) if s.started_at is not None else 0.0,
                "courses_active": len(s.course_numbers),
                "course_numbers": list(s.course_numbers),
            }
            for s in active
        ],
    }


def _courses(detail: Mapping[str, Any]) -> str:
    """The session's course numbers, ``1, 2`` (``none`` for none); the count for a detail without the list."""
    courses = detail.get("course_numbers")
    if courses is None:
        return str(detail["courses_active"])
    return ", ".join(str(n) for n in courses) or "none"


def report_text(report: Mapping[str, Any]) -> str:
    """The original's periodic report, as one multi-line log message."""
    rule = "=" * 80
    uptime = report["uptime_seconds"]
    lines = [
        "", rule, f"PERIODIC SESSION TRACKING REPORT - {report['report_time']}", rule,
        f"Uptime: {uptime:.2f} seconds ({uptime / 60:.2f} minutes)",
        f"Total Active Sessions: {report['total_active_sessions']}",
        f"Total Inactive Sessions: {report['total_inactive_sessions']}",
        f"Total Sessions Tracked: {report['total_sessions_tracked']}",
        "", "Activity Metrics:",
        f"  Total Questions Asked: {report['total_questions_asked']}",
        f"  Total Questions Answered: {report['total_questions_answered']}",
        f"  Total Q&A Cycles Completed: {report['total_cycles_completed']}",
        f"  Total Errors: {report['total_errors']}",
        f"  Average Response Time: {report['average_response_time_ms']:.2f}ms",
        "", "Sessions by User:",
    ]
    lines += (f"  {'(unregistered)' if user is None else user}: {count} session(s)"
              for user, count in report["sessions_by_user"].items())
    if report["active_session_details"]:
        lines += ["", "Active Session Details:"]
        for s in report["active_session_details"]:
            lines += [
                f"  Session: {s['session_id']}",
                f"    User: {s['username']}",
                f"    Questions: {s['questions_asked']} asked, {s['questions_answered']} answered",
                f"    Cycles: {s['cycles_completed']}, Errors: {s['errors']}",
                f"    Duration: {s['duration_seconds']:.2f}s, Courses: {_courses(s)}",
            ]
    else:
        lines += ["", "No active sessions"]
    lines += [rule, ""]
    return "\n".join(lines)
