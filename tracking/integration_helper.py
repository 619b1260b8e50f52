"""The original ``tracking.integration_helper``: re-exports :mod:`tracker.integration_helper` (the same objects)."""

from __future__ import annotations

from tracker import integration_helper as _helper
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

__all__ = (
    "STRESS_TEST_CONFIG",
    "configure",
    "register_session",
    "start_tracking",
    "stop_tracking",
    "track_cycle_completed",
    "track_question_answered",
    "track_question_asked",
    "track_session_error",
    "unregister_session",
)

#: tracker.integration_helper's dict, looked up there on each use (it is made at first use, from config.py).
STRESS_TEST_CONFIG: dict[str, object]


def __getattr__(name: str) -> object:
    if name == "STRESS_TEST_CONFIG":
        return _helper.STRESS_TEST_CONFIG
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
