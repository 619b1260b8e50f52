"""Shared helpers: build records and events without an emitter."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import strategies as st

from tracker.events import Event, event_from_record

T0 = 1_795_557_600_000_000  # 2026-11-24T22:00:00Z in epoch microseconds
#: How long a test waits for a process or a file before it fails.
TIMEOUT = 20.0


def wait_for(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Wait until ``condition()`` holds, polling; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.005)


def record(
    seq: int, session_id: str, event_type: str, ts: int = T0, writer: str = "w:1:t", **fields: Any
) -> dict[str, Any]:
    """A valid v1 record of ``event_type`` (fields as given)."""
    token = writer.rsplit(":", 1)[-1]
    return {"v": 1, "ts": ts, "event_id": f"{token}-{seq}", "writer": writer, "seq": seq,
            "session_id": session_id, "type": event_type, **fields}


def event(seq: int, session_id: str, event_type: str, ts: int = T0, writer: str = "w:1:t", **fields: Any) -> Event:
    return event_from_record(record(seq, session_id, event_type, ts, writer, **fields))



text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40)
duration = st.floats(min_value=0, max_value=1e7, allow_nan=False, allow_infinity=False)
count = st.integers(min_value=0, max_value=2**40)
#: (type, fields) of any valid event.
EVENTS = st.one_of(
    st.tuples(st.just("session_registered"),
              st.fixed_dictionaries({"username": text, "course_numbers": st.lists(st.integers(-2**40, 2**40))})),
    st.tuples(st.just("question_asked"),
              st.fixed_dictionaries({}, optional={"question_text": text, "question_id": text})),
    st.tuples(st.just("question_answered"),
              st.fixed_dictionaries({"response_time_ms": duration},
                                    optional={"question_id": text, "time_to_first_token_ms": duration,
                                              "input_tokens": count, "output_tokens": count})),
    st.tuples(st.just("cycle_completed"), st.just({})),
    st.tuples(st.just("error"), st.fixed_dictionaries({"error": text}, optional={"kind": text})),
    st.tuples(st.just("session_unregistered"), st.fixed_dictionaries({"reason": text})),
)


def fork() -> int:
    """``os.fork()``, without the warning Python 3.12+ gives when other threads run (the tests fork on purpose)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


@contextlib.contextmanager
def held_by_another_thread(lock: contextlib.AbstractContextManager[Any]) -> Iterator[None]:
    """While inside, another thread holds ``lock`` (as one would when the process forks)."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(10)
    try:
        yield
    finally:
        release.set()
        holder.join(10)
