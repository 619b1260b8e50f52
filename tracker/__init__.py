"""tracker: what every session of a chatbot stress test did, from an append-only event log.

Data flow, one module a step: ``emitter`` (write events) -> the log ->
``decoder`` (read lines back, quarantine bad ones) -> ``fold`` (per-session
state) -> reports. ``events`` defines the events, ``errors`` the exceptions.
"""

from .decoder import DEFAULT_MAX_LINE_BYTES, REASONS, Decoder, Quarantine, Rejected, decode_file
from .demo import DemoConfig, run_sessions, simulate_session
from .emitter import DEFAULT_LOG_PATH, LOG_ENV_VAR, EventLog, default_log, emit
from .errors import CheckpointError, EmitError, EventValidationError, TrackerError
from .events import (
    CURRENT_VERSION,
    EVENT_TYPES,
    MAX_TS,
    UPCASTERS,
    CycleCompleted,
    ErrorReported,
    Event,
    FieldSpec,
    QuestionAnswered,
    QuestionAsked,
    SessionRegistered,
    SessionUnregistered,
    check_field,
    event_from_record,
    format_ts,
    to_ts,
)
from .fold import ANOMALIES, SessionState, anomalies, event_order, fold, fold_all
from .version import VERSION

__version__ = VERSION

__all__ = (
    "ANOMALIES",
    "CURRENT_VERSION",
    "DEFAULT_LOG_PATH",
    "DEFAULT_MAX_LINE_BYTES",
    "EVENT_TYPES",
    "LOG_ENV_VAR",
    "MAX_TS",
    "REASONS",
    "UPCASTERS",
    "VERSION",
    "CheckpointError",
    "CycleCompleted",
    "Decoder",
    "DemoConfig",
    "EmitError",
    "ErrorReported",
    "Event",
    "EventLog",
    "EventValidationError",
    "FieldSpec",
    "Quarantine",
    "QuestionAnswered",
    "QuestionAsked",
    "Rejected",
    "SessionRegistered",
    "SessionState",
    "SessionUnregistered",
    "TrackerError",
    "anomalies",
    "check_field",
    "decode_file",
    "default_log",
    "emit",
    "event_from_record",
    "event_order",
    "fold",
    "fold_all",
    "format_ts",
    "run_sessions",
    "simulate_session",
    "to_ts",
)
