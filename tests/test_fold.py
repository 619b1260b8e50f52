"""Tests for tracker.fold: per-session state as a pure fold of events."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import T0, event
from tracker.events import Event
from tracker.fold import ANOMALIES, SessionState, anomalies, event_order, fold, fold_all

S = 1_000_000  # one second in microseconds


def _session(*events: Event) -> SessionState:
    return fold_all(events)[events[0].session_id]


class TestFold:
    def test_registration(self) -> None:
        """Registration sets username, courses, start time and status active."""
        state = fold(None, event(1, "s1", "session_registered", username="ann", course_numbers=[7, 9]))
        assert (state.username, state.course_numbers, state.registered_at, state.status) == ("ann", (7, 9), T0,
                                                                                             "active")

    def test_counts_and_response_times(self) -> None:
        """Questions, answers, cycles, errors and response-time statistics are counted."""
        state = _session(
            event(1, "s1", "session_registered", T0, username="ann", course_numbers=[]),
            event(2, "s1", "question_asked", T0 + S),
            event(3, "s1", "question_answered", T0 + 2 * S, response_time_ms=100.0),
            event(4, "s1", "cycle_completed", T0 + 3 * S),
            event(5, "s1", "question_asked", T0 + 4 * S),
            event(6, "s1", "question_answered", T0 + 5 * S, response_time_ms=300.0),
            event(7, "s1", "error", T0 + 6 * S, error="boom"),
        )
        assert (state.questions_asked, state.questions_answered, state.cycles_completed, state.errors) == (2, 2, 1, 1)
        assert (state.response_time_min_ms, state.response_time_max_ms, state.response_time_mean_ms) == (
            100.0, 300.0, 200.0)
        assert (state.first_activity, state.last_activity, state.last_error) == (T0, T0 + 6 * S, "boom")
        assert all(getattr(state, name) == 0 for name in ANOMALIES)

    def test_unregistration_ends_the_session(self) -> None:
        """Unregistration sets status ended, the end time and the reason."""
        state = _session(
            event(1, "s1", "session_registered", T0, username="ann", course_numbers=[]),
            event(2, "s1", "session_unregistered", T0 + S, reason="done"),
        )
        assert (state.status, state.ended_at, state.end_reason) == ("ended", T0 + S, "done")

    def test_is_pure(self) -> None:
        """fold returns a new state and leaves the one it was given unchanged."""
        before = fold(None, event(1, "s1", "session_registered", username="ann", course_numbers=[]))
        after = fold(before, event(2, "s1", "question_asked"))
        assert (before.questions_asked, after.questions_asked) == (0, 1)
        assert after is not before

    def test_mean_is_none_without_answers(self) -> None:
        """A session with no answer has no mean response time."""
        assert fold(None, event(1, "s1", "question_asked")).response_time_mean_ms is None


class TestAnomalies:
    def test_activity_for_a_session_never_registered(self) -> None:
        """Activity without registration is counted on the session, and the activity still counts."""
        state = _session(event(1, "s1", "question_asked"), event(2, "s1", "cycle_completed"))
        assert (state.unregistered_activity, state.questions_asked, state.started_at) == (2, 1, T0)

    def test_answer_with_no_open_question(self) -> None:
        """An answer without an open question is counted as unmatched, and the answer still counts."""
        state = _session(
            event(1, "s1", "session_registered", T0, username="a", course_numbers=[]),
            event(2, "s1", "question_answered", T0 + 1, response_time_ms=5.0),
        )
        assert (state.unmatched_answers, state.questions_answered) == (1, 1)

    def test_activity_after_unregistration(self) -> None:
        """Activity after the session ended is counted; the end stays as it was."""
        state = _session(
            event(1, "s1", "session_registered", T0, username="a", course_numbers=[]),
            event(2, "s1", "session_unregistered", T0 + 1, reason="done"),
            event(3, "s1", "question_asked", T0 + 2),
            event(4, "s1", "session_unregistered", T0 + 3, reason="again"),
        )
        assert (state.activity_after_end, state.questions_asked, state.ended_at, state.end_reason) == (
            2, 1, T0 + 1, "done")

    def test_second_registration(self) -> None:
        """A second registration is counted and does not overwrite the first."""
        state = _session(
            event(1, "s1", "session_registered", T0, username="a", course_numbers=[1]),
            event(2, "s1", "session_registered", T0 + 1, username="b", course_numbers=[2]),
        )
        assert (state.duplicate_registrations, state.username, state.registered_at) == (1, "a", T0)

    def test_anomalies_sums_every_counter(self) -> None:
        """anomalies() sums each counter over all sessions, zeros included."""
        sessions = fold_all([event(1, "s1", "question_asked"), event(2, "s2", "cycle_completed")])
        assert anomalies(sessions) == Counter({"unregistered_activity": 2, "unmatched_answers": 0,
                                               "activity_after_end": 0, "duplicate_registrations": 0})


STEPS = st.lists(st.tuples(st.sampled_from(["s1", "s2", "s3"]),
                           st.sampled_from(["session_registered", "question_asked", "question_answered",
                                            "cycle_completed", "error", "session_unregistered"]),
                           st.integers(0, 3600)), max_size=60)
FIELDS = {"session_registered": {"username": "u", "course_numbers": [1]}, "question_answered":
          {"response_time_ms": 10.0}, "error": {"error": "e"}, "session_unregistered": {"reason": "r"}}


def _events(steps: list[tuple[str, str, int]]) -> list[Event]:
    return [event(seq, sid, kind, T0 + second * S, **FIELDS.get(kind, {}))  # type: ignore[arg-type]
            for seq, (sid, kind, second) in enumerate(steps, 1)]


class TestFoldAll:
    @settings(max_examples=150, deadline=None)
    @given(STEPS, st.randoms(use_true_random=False))
    def test_file_order_does_not_matter(self, steps: list[tuple[str, str, int]], rnd: random.Random) -> None:
        """fold_all gives the same states however the events were interleaved in the log."""
        events = _events(steps)
        shuffled = events[:]
        rnd.shuffle(shuffled)
        assert fold_all(shuffled) == fold_all(events)

    @settings(max_examples=150, deadline=None)
    @given(STEPS)
    def test_counts_match_an_independent_tally(self, steps: list[tuple[str, str, int]]) -> None:
        """Per-session counters equal a plain Counter of the events by session and type."""
        events = _events(steps)
        tally = Counter((e.session_id, e.TYPE) for e in events)
        for sid, state in fold_all(events).items():
            assert state.questions_asked == tally[sid, "question_asked"]
            assert state.questions_answered == tally[sid, "question_answered"]
            assert state.cycles_completed == tally[sid, "cycle_completed"]
            assert state.errors == tally[sid, "error"]
            assert state.duplicate_registrations == max(0, tally[sid, "session_registered"] - 1)

    def test_continues_from_given_states(self) -> None:
        """fold_all(more, states) equals folding everything at once, and leaves states unchanged."""
        first = [event(1, "s1", "question_asked", T0)]
        more = [event(2, "s1", "question_asked", T0 + S)]
        states = fold_all(first)
        assert fold_all(more, states) == fold_all(first + more)
        assert states["s1"].questions_asked == 1

    @pytest.mark.parametrize("name", ANOMALIES)
    def test_every_anomaly_is_a_field(self, name: str) -> None:
        """Each anomaly name is a counter of SessionState starting at zero."""
        assert getattr(SessionState("s"), name) == 0


class TestEventOrder:
    def test_same_time_registrations_follow_the_writers_sequence(self) -> None:
        """At one instant, seq 9 comes before seq 10 (not "t-10" before "t-9" as text): the first registration."""
        tenth = event(10, "s", "session_registered", T0, username="tenth", course_numbers=[])
        ninth = event(9, "s", "session_registered", T0, username="ninth", course_numbers=[])
        assert fold_all([tenth, ninth])["s"].username == "ninth"
        assert event_order(ninth) < event_order(tenth)

    def test_registrations_equal_in_event_order_do_not_depend_on_arrival(self) -> None:
        """Same (ts, writer, seq, event_id), other names: the lesser (username, courses) is first, as in the engine."""
        bob = event(3, "s", "session_registered", T0, username="bob", course_numbers=[1])
        alice = event(3, "s", "session_registered", T0, username="alice", course_numbers=[2])
        assert fold_all([bob, alice])["s"].username == "alice"
        assert fold_all([alice, bob])["s"].username == "alice"
