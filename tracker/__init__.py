"""tracker: what every session of a chatbot stress test did, from an append-only event log.

The data flow, one module a step: ``emitter`` appends events to a log;
``decoder`` (line by line) and ``batch`` (blocks, with polars) read it back,
quarantining bad lines; ``follow`` follows live files; ``engine`` folds events
into windows and sessions (``sessions`` holds the session rules, ``store``
keeps windows in memory or on disk); ``output`` writes the CSV files. ``live``
closes windows while a test runs, ``tail`` (``tracker tail``) and ``replayer``
(``tracker replay``) drive the same engine. ``session_tracker`` and
``integration_helper`` are the original API on top (``report_process``
makes its reports in a child process).

The public API is small and loaded on first use: ``from tracker import emit``
loads neither polars nor watchfiles.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .emitter import EventLog, emit
from .errors import EmitError, EventValidationError, TrackerError
from .version import VERSION

if TYPE_CHECKING:
    from .decoder import Decoder, Quarantine, Rejected, decode_file
    from .engine import Engine
    from .fold import SessionState, fold, fold_all
    from .live import LiveReporter
    from .replayer import replay
    from .session_tracker import SessionTracker, get_tracker
    from .tail import Tail

__version__ = VERSION

__all__ = (
    "VERSION",
    "EmitError",
    "Engine",
    "EventLog",
    "EventValidationError",
    "Decoder",
    "LiveReporter",
    "Quarantine",
    "Rejected",
    "SessionState",
    "SessionTracker",
    "Tail",
    "TrackerError",
    "decode_file",
    "emit",
    "fold",
    "fold_all",
    "get_tracker",
    "replay",
)

_LAZY = {
    "Decoder": "decoder", "Quarantine": "decoder", "Rejected": "decoder", "decode_file": "decoder",
    "Engine": "engine", "SessionState": "fold", "fold": "fold", "fold_all": "fold", "LiveReporter": "live",
    "replay": "replayer", "SessionTracker": "session_tracker", "get_tracker": "session_tracker", "Tail": "tail",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tracker' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
