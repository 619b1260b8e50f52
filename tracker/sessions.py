"""The session rules, each in one place: event order, a session's start and end, and when it is active.

- **Event order** is ``(ts, writer, seq, event_id)``: event time, then the
  writer's own order. It decides which registration is a session's first when
  several share a time, for the fold, the reports and the live view alike.
  Two registrations equal in event order (a writer that reused its numbers)
  are ordered by username, then course numbers as the reports write them
  (``101;202``): never by which was read first.
- A session **starts** at its first registration (in event order), or at its
  first event when it has none; it **ends** at its first unregistration, or
  never.
- With a **session timeout** ``T`` (off by default), a session that has no
  unregistration and whose last event is ``T`` or more before the run's last
  event (the latest event of every log) **timed out**: it ends at its last
  event plus ``T``. An event for it after that moves its last event, and it is
  active again; an unregistration, even a late one, is always its end.
- It is **active in** a window ``[ws, we)`` when it started before ``we`` and
  did not end before ``ws``; **active at the window's end** when it started
  before ``we`` and did not end before ``we``; its status in a window's report
  is ``ended`` (or ``timed_out``) when it ended (timed out) before ``we``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

__all__ = ("ENDED", "ORDER", "TIMED_OUT", "Closing", "Order", "SessionFacts", "closing", "order_key",
           "registration_rank", "timeout_us")

#: The columns (and event attributes) that order events: the one event order of the project.
ORDER: Final = ("ts", "writer", "seq", "event_id")
Order = tuple[int, str, int, str]
#: How a session ended: its unregistration, or silence for the session timeout.
ENDED: Final = "ended"
TIMED_OUT: Final = "timed_out"
#: When and how a session ended (``(ts, ENDED)`` or ``(ts, TIMED_OUT)``), or None while it is active.
Closing = tuple[int, str] | None


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What decides a session's rows: its first event's time, its first registration and its first end."""

    session_id: str
    first_ts: int
    registration: Order | None = None
    username: str | None = None
    course_numbers: tuple[int, ...] = ()
    end: Order | None = None

    @property
    def start_ts(self) -> int:
        """When the session started: its first registration, else its first event."""
        return self.registration[0] if self.registration is not None else self.first_ts

    @property
    def end_ts(self) -> int | None:
        return self.end[0] if self.end is not None else None

    @property
    def courses_text(self) -> str | None:
        """The course numbers as the reports write them (``101;202``), or None when there are none."""
        return ";".join(map(str, self.course_numbers)) if self.course_numbers else None

    def with_first(self, ts: int) -> SessionFacts:
        return replace(self, first_ts=ts) if ts < self.first_ts else self

    def with_registration(self, order: Sequence[object], username: str | None,
                          courses: Sequence[int] | None) -> SessionFacts:
        """The facts after a registration: it is the first one when it comes first (see :func:`registration_rank`)."""
        key, numbers = order_key(order), tuple(courses or ())
        if self.registration is not None and (registration_rank(self.registration, self.username, self.course_numbers)
                                              <= registration_rank(key, username, numbers)):
            return self
        return replace(self, registration=key, username=username, course_numbers=numbers)

    def with_end(self, order: Sequence[object]) -> SessionFacts:
        """The facts after an unregistration: it is the end when it comes first in event order."""
        key = order_key(order)
        return self if self.end is not None and self.end <= key else replace(self, end=key)

    def first_change(self, old: SessionFacts | None, every: int) -> int | None:
        """The first window whose rows may differ between ``old`` facts and these (None: none differs).

        A session's rows run from its start window to its end window, each naming its user, courses and
        status: a new start, name or courses changes them from the earlier start on; a new end, from the
        earlier end on (the rows before it are the same).
        """
        if old is None:
            return min(self.first_ts, self.start_ts) // every
        changed: list[int] = []
        if (old.start_ts, old.username, old.course_numbers) != (self.start_ts, self.username, self.course_numbers):
            changed.append(min(old.start_ts, self.start_ts))
        if old.end_ts != self.end_ts:
            changed.append(min(t for t in (old.end_ts, self.end_ts) if t is not None))
        return min(changed) // every if changed else None


def timeout_us(seconds: float | None) -> int | None:
    """A session timeout in seconds (None: off) in microseconds, at least 1."""
    return None if seconds is None else max(1, round(seconds * 1_000_000))


def closing(facts: SessionFacts, last_ts: int, timeout: int | None, now: int) -> Closing:
    """When and how a session ended, as of the event time ``now`` (the run's last event): at its first
    unregistration; else, with a ``timeout`` (microseconds), at its last event (``last_ts``) plus the timeout once
    ``now`` is that late; else None (active)."""
    if facts.end is not None:
        return facts.end[0], ENDED
    if timeout is not None and last_ts + timeout <= now:
        return last_ts + timeout, TIMED_OUT
    return None


def registration_rank(order: Order, username: str | None, courses: Sequence[int]) -> tuple[Order, str, str]:
    """Which of two registrations of a session is its first: the lesser rank (event order, then username, then the
    course numbers as the reports write them)."""
    return order, username or "", ";".join(map(str, courses))


def order_key(values: Sequence[object]) -> Order:
    """An event-order key from its four values; ValueError when they are not (int, str, int, str)."""
    ts, writer, seq, event_id = values
    if type(ts) is not int or not isinstance(writer, str) or type(seq) is not int or not isinstance(event_id, str):
        raise ValueError(f"an event order must be (ts, writer, seq, event_id), got {list(values)!r}")
    return (ts, writer, seq, event_id)
