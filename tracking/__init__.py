"""The original ``tracking`` package, as a drop-in: ``from tracking.session_tracker import get_tracker`` works.

Nothing lives here: ``tracking.session_tracker`` and ``tracking.integration_helper``
re-export :mod:`tracker.session_tracker` and :mod:`tracker.integration_helper`
(the same objects), which keep every call in tracker's event log.
"""

from __future__ import annotations

from tracker.session_tracker import SessionTracker, get_tracker, initialize_tracker

__all__ = ("SessionTracker", "get_tracker", "initialize_tracker")
