"""Per-session state, always derived: ``fold(state, event)`` returns a new state.

State is never stored on its own; it is the fold of the events. Anomalies
(activity for a session that was never registered, an answer with no open
question, activity after unregistration, a second registration) are counted
on the session, never raised, and the event still counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Final, NamedTuple

from .events import (
    ErrorReported,
    Event,
    QuestionAnswered,
    QuestionAsked,
    SessionRegistered,
    SessionUnregistered,
)
from .sessions import Order, registration_rank

__all__ = ("ANOMALIES", "SessionState", "anomalies", "event_order", "fold", "fold_all")

#: The anomaly counters of :class:`SessionState`.
ANOMALIES: Final = (
    "unregistered_activity",
    "unmatched_answers",
    "activity_after_end",
    "duplicate_registrations",
)


class SessionState(NamedTuple):
    """What one session did, as of the events folded so far. Times are epoch microseconds (UTC).

    Immutable (a named tuple: a new state costs a microsecond, a third of a frozen dataclass's).
    """

    session_id: str
    username: str | None = None
    course_numbers: tuple[int, ...] = ()
    status: str = "active"  # "active" or "ended"
    registered_at: int | None = None
    ended_at: int | None = None
    end_reason: str | None = None
    first_activity: int | None = None
    last_activity: int | None = None
    questions_asked: int = 0
    questions_answered: int = 0
    cycles_completed: int = 0
    errors: int = 0
    last_error: str | None = None
    open_questions: int = 0
    response_time_total_ms: float = 0.0
    response_time_min_ms: float | None = None
    response_time_max_ms: float | None = None
    unregistered_activity: int = 0
    unmatched_answers: int = 0
    activity_after_end: int = 0
    duplicate_registrations: int = 0

    @property
    def started_at(self) -> int | None:
        """The registration time, or the first event's when the session never registered."""
        return self.registered_at if self.registered_at is not None else self.first_activity

    @property
    def response_time_mean_ms(self) -> float | None:
        if not self.questions_answered:
            return None
        return self.response_time_total_ms / self.questions_answered


def fold(state: SessionState | None, event: Event) -> SessionState:
    """The state of ``event.session_id`` after ``event``; ``state`` is ``None`` before its first event."""
    if state is None:
        state = SessionState(session_id=event.session_id)
    ts = event.ts
    changes: dict[str, Any] = {}
    if state.first_activity is None or ts < state.first_activity:
        changes["first_activity"] = ts
    if state.last_activity is None or ts > state.last_activity:
        changes["last_activity"] = ts
    registered = state.registered_at is not None
    if isinstance(event, SessionRegistered):
        if registered:
            changes["duplicate_registrations"] = state.duplicate_registrations + 1
        else:
            changes.update(username=event.username, course_numbers=event.course_numbers, registered_at=ts)
        return state._replace(**changes)
    if not registered:
        changes["unregistered_activity"] = state.unregistered_activity + 1
    if state.status == "ended":
        changes["activity_after_end"] = state.activity_after_end + 1
    if isinstance(event, SessionUnregistered):
        if state.status != "ended":
            changes.update(status="ended", ended_at=ts, end_reason=event.reason)
    elif isinstance(event, QuestionAsked):
        changes["questions_asked"] = state.questions_asked + 1
        changes["open_questions"] = state.open_questions + 1
    elif isinstance(event, QuestionAnswered):
        rt = event.response_time_ms
        changes["questions_answered"] = state.questions_answered + 1
        changes["response_time_total_ms"] = state.response_time_total_ms + rt
        if state.response_time_min_ms is None or rt < state.response_time_min_ms:
            changes["response_time_min_ms"] = rt
        if state.response_time_max_ms is None or rt > state.response_time_max_ms:
            changes["response_time_max_ms"] = rt
        if state.open_questions:
            changes["open_questions"] = state.open_questions - 1
        else:
            changes["unmatched_answers"] = state.unmatched_answers + 1
    elif isinstance(event, ErrorReported):
        changes["errors"] = state.errors + 1
        changes["last_error"] = event.error
    else:  # CycleCompleted
        changes["cycles_completed"] = state.cycles_completed + 1
    return state._replace(**changes)


def event_order(event: Event) -> Order:
    """The event order of :mod:`tracker.sessions` (``ts``, ``writer``, ``seq``, ``event_id``): one order for the
    same events however they were interleaved in files."""
    return (event.ts, event.writer, event.seq, event.event_id)


def _rank(event: Event) -> tuple[Order, str, str]:
    """Event order, and for registrations equal in it, :func:`~tracker.sessions.registration_rank`'s."""
    if isinstance(event, SessionRegistered):
        return registration_rank(event_order(event), event.username, event.course_numbers)
    return event_order(event), "", ""


def fold_all(
    events: Iterable[Event], sessions: Mapping[str, SessionState] | None = None
) -> dict[str, SessionState]:
    """Fold events, in event-time order, into a new mapping of ``session_id`` to state."""
    result = dict(sessions or {})
    for event in sorted(events, key=_rank):
        result[event.session_id] = fold(result.get(event.session_id), event)
    return result


def anomalies(sessions: Mapping[str, SessionState]) -> Counter[str]:
    """Every anomaly counter summed over the sessions."""
    total: Counter[str] = Counter(dict.fromkeys(ANOMALIES, 0))
    for state in sessions.values():
        for name in ANOMALIES:
            total[name] += getattr(state, name)
    return total
