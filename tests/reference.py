"""The independent reference for the report tests.

A plain-Python (stdlib only) computation of the windowed stress-test reports,
written for clarity rather than speed: the report tests compare the production
(polars) reports with :func:`reference_reports` cell by cell. It shares nothing
with the production code except the event dataclasses of ``tracker.events``.

Windows are tumbling, aligned to the Unix epoch and left-closed: an event at
``ts`` (epoch microseconds) lies in window ``k = ts // I`` spanning
``[k * I, (k + 1) * I)``, with ``I = interval_s * 1_000_000``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction

from tracker.events import ErrorReported, Event, QuestionAnswered, SessionRegistered, SessionUnregistered

__all__ = ("reference_reports",)

Row = dict[str, object]

#: The event types counted in the report, by report column.
COUNTED_TYPES: dict[str, str] = {
    "sessions_registered": "session_registered",
    "sessions_unregistered": "session_unregistered",
    "questions_asked": "question_asked",
    "questions_answered": "question_answered",
    "cycles_completed": "cycle_completed",
    "errors": "error",
}

#: The event types counted per session, by report column.
SESSION_COUNTED_TYPES: dict[str, str] = {
    "questions_asked": "question_asked",
    "questions_answered": "question_answered",
    "cycles_completed": "cycle_completed",
    "errors": "error",
}

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

MICROS_PER_SECOND = 1_000_000
SECONDS_PER_DAY = 86_400
DAYS_PER_400_YEARS = 146_097  # the Gregorian calendar repeats every 400 years


def format_utc(ts: int) -> str:
    """``2026-11-24T22:20:00Z`` for epoch microseconds (sub-second part dropped).

    Also formats instants past year 9999 (a last window may end there), which
    :mod:`datetime` cannot represent, by shifting whole 400-year cycles.
    """
    seconds = ts // MICROS_PER_SECOND
    days, second_of_day = divmod(seconds, SECONDS_PER_DAY)
    cycles = 0
    while days >= DAYS_PER_400_YEARS * 20:  # keep well inside datetime's range
        days -= DAYS_PER_400_YEARS
        cycles += 1
    day = date(1970, 1, 1) + timedelta(days=days)
    hour, rest = divmod(second_of_day, 3600)
    minute, second = divmod(rest, 60)
    return f"{day.year + 400 * cycles:04d}-{day.month:02d}-{day.day:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"


def format_utc_micros(ts: int) -> str:
    """``2026-11-24T22:20:00.512345Z``: an event's time, to the microsecond (always six digits)."""
    return format_utc(ts)[:-1] + f".{ts % MICROS_PER_SECOND:06d}Z"


def per_second(count: int, seconds: float) -> float | None:
    return count / seconds if seconds > 0 else None


def run_rates(events: list[Event], seconds: float) -> Row:
    """questions_per_s, answers_per_s, errors_per_s over ``seconds``, and error_rate = errors / (answers + errors)."""
    asked = count_type(events, "question_asked")
    answered = count_type(events, "question_answered")
    errors = count_type(events, "error")
    return {
        "questions_per_s": per_second(asked, seconds),
        "answers_per_s": per_second(answered, seconds),
        "errors_per_s": per_second(errors, seconds),
        "error_rate": errors / (answered + errors) if answered + errors else None,
    }


def chat_figures(events: list[Event], seconds: float) -> Row:
    """TTFT and TPOT statistics and token sums of the answers among ``events``, output tokens per ``seconds``.

    TPOT (vLLM's): (response time - TTFT) / (output tokens - 1), for answers with a TTFT and >= 2 output tokens
    whose TTFT is at most their response time.
    """
    answers = [e for e in events if isinstance(e, QuestionAnswered)]
    ttft = [a.time_to_first_token_ms for a in answers if a.time_to_first_token_ms is not None]
    tpot = [(a.response_time_ms - a.time_to_first_token_ms) / (a.output_tokens - 1) for a in answers
            if a.time_to_first_token_ms is not None and a.output_tokens is not None and a.output_tokens >= 2
            and a.time_to_first_token_ms <= a.response_time_ms]
    output_tokens = sum(a.output_tokens for a in answers if a.output_tokens is not None)
    return {
        "ttft_ms_mean": mean(ttft),
        "ttft_ms_p50": percentile(ttft, 0.50),
        "ttft_ms_p90": percentile(ttft, 0.90),
        "ttft_ms_p95": percentile(ttft, 0.95),
        "ttft_ms_p99": percentile(ttft, 0.99),
        "ttft_ms_max": maximum(ttft),
        "tpot_ms_mean": mean(tpot),
        "tpot_ms_p50": percentile(tpot, 0.50),
        "tpot_ms_p95": percentile(tpot, 0.95),
        "tpot_ms_p99": percentile(tpot, 0.99),
        "input_tokens": sum(a.input_tokens for a in answers if a.input_tokens is not None),
        "output_tokens": output_tokens,
        "output_tokens_per_s": per_second(output_tokens, seconds),
        **failed_figures(events),
    }


def failed_figures(events: list[Event]) -> Row:
    """Mean, p95 and max of the failed requests' times: errors that carry response_time_ms."""
    failed = [e.response_time_ms for e in events if isinstance(e, ErrorReported) and e.response_time_ms is not None]
    return {"failed_response_time_ms_mean": mean(failed), "failed_response_time_ms_p95": percentile(failed, 0.95),
            "failed_response_time_ms_max": maximum(failed)}


def is_good(answer: QuestionAnswered, limits: dict[str, float]) -> bool:
    """Whether an answer meets every goodput limit. A limit whose value the answer lacks is not met; an answer with
    a TTFT but fewer than two output tokens, or a TTFT over its response time, has no time per output token, and
    meets any TPOT limit."""
    for name, limit in limits.items():
        ttft, tokens = answer.time_to_first_token_ms, answer.output_tokens
        if name == "response_time_ms" and not answer.response_time_ms <= limit:
            return False
        if name == "ttft_ms" and (ttft is None or not ttft <= limit):
            return False
        if name == "tpot_ms":
            if ttft is None or tokens is None:
                return False
            if tokens >= 2 and ttft <= answer.response_time_ms and not (
                    answer.response_time_ms - ttft) / (tokens - 1) <= limit:
                return False
    return True


def goodput(events: list[Event], seconds: float, limits: dict[str, float] | None) -> Row:
    """goodput_per_s and goodput_ratio of ``events`` (no columns without limits)."""
    if limits is None:
        return {}
    answers = [e for e in events if isinstance(e, QuestionAnswered)]
    good = sum(1 for a in answers if is_good(a, limits))
    return {"goodput_per_s": per_second(good, seconds), "goodput_ratio": good / len(answers) if answers else None}


def neutralise(text: str) -> str:
    """Prefix a quote to text a spreadsheet would read as a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def neutralise_optional(text: str | None) -> str | None:
    return None if text is None else neutralise(text)


def percentile(values: list[float], q: float) -> float | None:
    """Exact percentile with linear interpolation (numpy's default method: the rank ``(n - 1) * q`` taken in
    floating point, as numpy does), interpolated in exact rational arithmetic (no overflow between values near
    the largest double), rounded once."""
    if not values:
        return None
    x = sorted(values)
    h = Fraction((len(x) - 1) * q)
    lower = math.floor(h)
    if lower >= len(x) - 1:
        return x[-1]
    return float(Fraction(x[lower]) + (h - lower) * (Fraction(x[lower + 1]) - Fraction(x[lower])))


def mean(values: list[float]) -> float | None:
    """The exact mean, rounded once (no overflow for values near the largest double)."""
    return float(sum(map(Fraction, values)) / len(values)) if values else None


def maximum(values: list[float]) -> float | None:
    return max(values) if values else None


def response_time_stats(answers: list[float]) -> Row:
    """The response_time_ms_* columns of the summary and totals rows."""
    return {
        "response_time_ms_mean": mean(answers),
        "response_time_ms_p50": percentile(answers, 0.50),
        "response_time_ms_p90": percentile(answers, 0.90),
        "response_time_ms_p95": percentile(answers, 0.95),
        "response_time_ms_p99": percentile(answers, 0.99),
        "response_time_ms_max": maximum(answers),
    }


def response_times(events: list[Event]) -> list[float]:
    return [e.response_time_ms for e in events if isinstance(e, QuestionAnswered)]


def count_type(events: list[Event], event_type: str) -> int:
    return sum(1 for e in events if e.type == event_type)


@dataclass(frozen=True)
class Session:
    session_id: str
    start: int
    end: int | None  # None: never unregistered (nor timed out)
    how: str  # "ended" (unregistered) or "timed_out"
    registration: SessionRegistered | None  # the first one
    events: list[Event]  # canonical order

    def alive_in(self, ws: int, we: int) -> bool:
        return self.start < we and (self.end is None or self.end >= ws)

    def alive_at_end(self, we: int) -> bool:
        return self.start < we and (self.end is None or self.end >= we)


def build_sessions(events: list[Event], timeout: int | None = None) -> dict[str, Session]:
    """Every session, by session_id, from events in canonical order. With a ``timeout`` (microseconds), a session
    never unregistered whose last event is that long before the run's last event ends then plus the timeout."""
    run_end = max(e.ts for e in events) if events else 0
    by_id: dict[str, list[Event]] = {}
    for event in events:
        by_id.setdefault(event.session_id, []).append(event)
    sessions: dict[str, Session] = {}
    for session_id, own in by_id.items():
        registrations = [e for e in own if isinstance(e, SessionRegistered)]
        unregistrations = [e for e in own if isinstance(e, SessionUnregistered)]
        # The first in event order (events come sorted); equal ones (a writer reusing its numbers): the lesser name,
        # then the lesser course list as text.
        registration = min(registrations, key=lambda e: (e.ts, e.writer, e.seq, e.event_id, e.username,
                                                         ";".join(str(n) for n in e.course_numbers)),
                           default=None)
        last = max(e.ts for e in own)
        end, how = (unregistrations[0].ts, "ended") if unregistrations else (None, "ended")
        if end is None and timeout is not None and run_end - last >= timeout:
            end, how = last + timeout, "timed_out"
        sessions[session_id] = Session(
            session_id=session_id,
            start=registration.ts if registration is not None else own[0].ts,
            end=end,
            how=how,
            registration=registration,
            events=own,
        )
    return sessions


def empty_totals() -> Row:
    row: Row = {"run_start": None, "run_end": None, "sessions": 0, "max_active_sessions": 0}
    row.update(dict.fromkeys(COUNTED_TYPES, 0))
    row.update(response_time_stats([]))
    row["duration_s"] = None
    row.update(dict.fromkeys(("questions_per_s", "answers_per_s", "errors_per_s", "error_rate")))
    row.update(chat_figures([], 0.0))
    return row


def reference_reports(events: list[Event], interval_s: int, session_timeout_s: float | None = None,
                      goodput_limits: dict[str, float] | None = None) -> dict[str, list[Row]]:
    """The summary, totals, sessions and errors reports of ``events`` in windows of ``interval_s`` seconds (with a
    session timeout of ``session_timeout_s`` seconds, or none; with goodput columns for ``goodput_limits``)."""
    if not events:
        empty = empty_totals()
        if goodput_limits is not None:
            empty.update(goodput_per_s=None, goodput_ratio=None)
        return {"summary": [], "totals": [empty], "sessions": [], "errors": []}

    # Event order: time, then the writer's own order (its name and sequence number), then the id.
    ordered = sorted(events, key=lambda e: (e.ts, e.writer, e.seq, e.event_id))
    interval = interval_s * MICROS_PER_SECOND
    first_k = min(e.ts for e in ordered) // interval
    last_k = max(e.ts for e in ordered) // interval
    windows = range(first_k, last_k + 1)
    timeout = None if session_timeout_s is None else max(1, round(session_timeout_s * MICROS_PER_SECOND))
    sessions = build_sessions(ordered, timeout)
    run_start, run_end = ordered[0].ts, ordered[-1].ts  # the first and the last event (sorted by time first)

    summary: list[Row] = []
    session_rows: list[Row] = []
    error_rows: list[Row] = []
    active_counts: list[int] = []
    for k in windows:
        ws, we = k * interval, (k + 1) * interval
        window_start, window_end = format_utc(ws), format_utc(we)
        in_window = [e for e in ordered if ws <= e.ts < we]

        # summary
        active = sum(1 for s in sessions.values() if s.alive_in(ws, we))
        active_counts.append(active)
        row: Row = {
            "window_start": window_start,
            "window_end": window_end,
            "active_sessions": active,
            "active_at_end": sum(1 for s in sessions.values() if s.alive_at_end(we)),
        }
        for column, event_type in COUNTED_TYPES.items():
            row[column] = count_type(in_window, event_type)
        row.update(response_time_stats(response_times(in_window)))
        # The part of [ws, we) that the run covers: the first and last windows only partly.
        covered = max(0, min(we, run_end) - max(ws, run_start)) / MICROS_PER_SECOND
        row["seconds"] = covered
        row.update(run_rates(in_window, covered))
        row.update(chat_figures(in_window, covered))
        row.update(goodput(in_window, covered, goodput_limits))
        summary.append(row)

        # sessions
        for session_id in sorted(sessions):
            session = sessions[session_id]
            if not session.alive_in(ws, we):
                continue
            own_in_window = [e for e in session.events if ws <= e.ts < we]
            own_so_far = [e for e in session.events if e.ts < we]
            registration = session.registration
            courses = ";".join(str(n) for n in registration.course_numbers) if registration is not None else ""
            answers = response_times(own_in_window)
            srow: Row = {
                "window_start": window_start,
                "window_end": window_end,
                "session_id": neutralise(session_id),
                "username": neutralise(registration.username) if registration is not None else None,
                "course_numbers": neutralise(courses) if courses else None,
                "status": session.how if session.end is not None and session.end < we else "active",
            }
            for column, event_type in SESSION_COUNTED_TYPES.items():
                srow[column] = count_type(own_in_window, event_type)
            srow["response_time_ms_mean"] = mean(answers)
            srow["response_time_ms_p95"] = percentile(answers, 0.95)
            srow["response_time_ms_max"] = maximum(answers)
            own_answers = [e for e in own_in_window if isinstance(e, QuestionAnswered)]
            srow["ttft_ms_p95"] = percentile([a.time_to_first_token_ms for a in own_answers
                                              if a.time_to_first_token_ms is not None], 0.95)
            srow["output_tokens"] = sum(a.output_tokens for a in own_answers if a.output_tokens is not None)
            answered, errors = len(own_answers), count_type(own_in_window, "error")
            srow["error_rate"] = errors / (answered + errors) if answered + errors else None
            for column, event_type in SESSION_COUNTED_TYPES.items():
                srow[column + "_total"] = count_type(own_so_far, event_type)
            session_rows.append(srow)

        # errors
        occurrences: dict[tuple[str | None, str], list[ErrorReported]] = {}
        for event in in_window:
            if isinstance(event, ErrorReported):
                occurrences.setdefault((event.kind, event.error), []).append(event)
        for (kind, message), seen in sorted(occurrences.items(), key=lambda item: (item[0][0] or "", item[0][1])):
            error_rows.append({
                "window_start": window_start,
                "window_end": window_end,
                "kind": neutralise_optional(kind),
                "message": neutralise(message),
                "count": len(seen),
                "sessions": len({e.session_id for e in seen}),
                "first_seen": format_utc_micros(min(e.ts for e in seen)),
                "last_seen": format_utc_micros(max(e.ts for e in seen)),
            })

    totals: Row = {
        "run_start": format_utc_micros(run_start),
        "run_end": format_utc_micros(run_end),
        "sessions": len(sessions),
        "max_active_sessions": max(active_counts),
    }
    for column, event_type in COUNTED_TYPES.items():
        totals[column] = count_type(ordered, event_type)
    totals.update(response_time_stats(response_times(ordered)))
    duration = (run_end - run_start) / MICROS_PER_SECOND
    totals["duration_s"] = duration
    totals.update(run_rates(ordered, duration))
    totals.update(chat_figures(ordered, duration))
    totals.update(goodput(ordered, duration, goodput_limits))

    return {"summary": summary, "totals": [totals], "sessions": session_rows, "errors": error_rows}
