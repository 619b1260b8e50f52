"""One-line tracking calls for session code, driven by :data:`STRESS_TEST_CONFIG`.

Each function does nothing when ``STRESS_TEST_CONFIG["enable_session_tracking"]``
is false; otherwise it calls the process-wide tracker,
``get_tracker(STRESS_TEST_CONFIG)``.

:data:`STRESS_TEST_CONFIG` is made at first use (the first call of a
function here, or the first read of the name): the defaults, updated with a
copy of ``config.STRESS_TEST_CONFIG`` when a ``config`` module has one (as
the original's ``from config import STRESS_TEST_CONFIG``). What the program
then sets, with :func:`configure` or in the dict itself, wins.

```python
configure({"tracking_report_interval": 60})
start_tracking()
register_session(session_id, username, [1, 2])
track_question_asked(session_id, question_text)
track_question_answered(session_id, response_time_ms=2000)
track_cycle_completed(session_id)
await stop_tracking()
```
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Final

from .session_tracker import (
    DEFAULT_REPORT_INTERVAL,
    SessionTracker,
    config_module_settings,
    get_tracker,
    read_config,
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

_DEFAULTS: Final[Mapping[str, object]] = {
    "enable_session_tracking": True,
    "tracking_report_interval": DEFAULT_REPORT_INTERVAL,
}
_config_lock = threading.RLock()

#: The tracking settings (see :func:`~tracker.session_tracker.read_config`); mutate it or call :func:`configure`.
#: Made at first use (see :func:`_config`), so the name is bound by :func:`__getattr__` until then.
STRESS_TEST_CONFIG: dict[str, object]


def _config() -> dict[str, object]:
    """:data:`STRESS_TEST_CONFIG`, made on first call: the defaults updated with config.py's (an error propagates)."""
    config: dict[str, object] | None = globals().get("STRESS_TEST_CONFIG")
    if config is None:
        with _config_lock:
            config = globals().get("STRESS_TEST_CONFIG")
            if config is None:
                config = {**_DEFAULTS, **(config_module_settings() or {})}
                globals()["STRESS_TEST_CONFIG"] = config
    return config


def __getattr__(name: str) -> object:
    if name == "STRESS_TEST_CONFIG":
        return _config()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def configure(config: Mapping[str, object]) -> None:
    """Replace the keys of :data:`STRESS_TEST_CONFIG` given in ``config``; a bad value raises ``ValueError`` first."""
    current = _config()
    read_config({**current, **config})
    current.update(config)


def _tracker() -> SessionTracker | None:
    config = _config()
    if not config.get("enable_session_tracking", True):
        return None
    return get_tracker(config)


def start_tracking() -> None:
    """Start the periodic reports."""
    tracker = _tracker()
    if tracker is not None:
        tracker.start_tracking()


async def stop_tracking() -> None:
    """Stop the periodic reports and write the final one."""
    tracker = _tracker()
    if tracker is not None:
        await tracker.stop_tracking()


def register_session(session_id: str, username: str, course_numbers: Sequence[int] | None = None) -> None:
    """Register a new session."""
    tracker = _tracker()
    if tracker is not None:
        tracker.register_session(session_id, username, course_numbers)


def unregister_session(session_id: str, reason: str = "completed") -> None:
    """Mark a session as ended."""
    tracker = _tracker()
    if tracker is not None:
        tracker.unregister_session(session_id, reason)


def track_question_asked(session_id: str, question_text: str | None = None) -> None:
    """A question was asked; its text is kept to 100 characters."""
    tracker = _tracker()
    if tracker is not None:
        tracker.update_session_activity(session_id, "question_asked",
                                        question_text=question_text[:100] if question_text else None)


def track_question_answered(session_id: str, response_time_ms: float | None = None,
                            question_text: str | None = None) -> None:
    """A question was answered after ``response_time_ms`` (required by the event; ``question_text`` is ignored)."""
    tracker = _tracker()
    if tracker is not None:
        tracker.update_session_activity(session_id, "question_answered", response_time_ms=response_time_ms,
                                        question_text=question_text[:100] if question_text else None)


def track_cycle_completed(session_id: str) -> None:
    """A question-and-answer cycle was completed."""
    tracker = _tracker()
    if tracker is not None:
        tracker.update_session_activity(session_id, "cycle_completed")


def track_session_error(session_id: str, error_message: str | None = None) -> None:
    """An error happened in a session; its message is kept to 200 characters."""
    tracker = _tracker()
    if tracker is not None:
        tracker.update_session_activity(session_id, "error",
                                        error_message=error_message[:200] if error_message else None)
