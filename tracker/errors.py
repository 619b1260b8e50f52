"""Exceptions raised by tracker.

This module imports nothing else of the package, so every other module can
import it.
"""

from __future__ import annotations

__all__ = (
    "CheckpointError",
    "OutputIsInputError",
    "ReportError",
    "ThresholdError",
    "EmitError",
    "EventValidationError",
    "ForeignFileError",
    "NatsError",
    "StoppedError",
    "TrackerError",
    "UsageError",
)


class TrackerError(Exception):
    """Root of every error tracker raises on purpose.

    Catch this to handle any failure of tracker itself; anything else that
    escapes is a bug.
    """


class EventValidationError(TrackerError, ValueError):
    """Raised when an event is not valid under the event schema.

    Raised by the emitter before anything is written, and used by the
    decoder to describe a rejected line. ``field`` names the offending
    field (or is ``None`` when the event as a whole is wrong) and ``value``
    is the value that was refused. ``reason`` is a short code for the kind of
    fault: ``schema``, ``not_object``, ``unknown_type``, ``unsupported_version``,
    ``implausible_time`` or ``duplicate_key``.
    """

    def __init__(
        self, message: str, *, field: str | None = None, value: object = None, reason: str = "schema"
    ) -> None:
        super().__init__(message)
        self.field = field
        self.value = value
        self.reason = reason


class EmitError(TrackerError, OSError):
    """Raised when an event could not be appended to the log in full.

    A short write (disk full) or an OS error (ENOSPC, EACCES, EBADF, ...)
    raises this instead of dropping the event silently. ``errno`` is set when
    the OS reported one.
    """


class CheckpointError(TrackerError):
    """Raised when a tail checkpoint cannot be written."""


class ReportError(TrackerError):
    """Raised when events cannot be reported as asked: e.g. they span more windows than a report can hold."""


class OutputIsInputError(TrackerError, ValueError):
    """Raised when a file a command would write (or remove) is one of the logs it reads."""


class ForeignFileError(TrackerError):
    """Raised when a file a command would empty or cut back (its quarantine) holds something it did not write,
    such as a log: the file is left as it is."""


class ThresholdError(TrackerError, ValueError):
    """Raised when a threshold expression is malformed or names a column the reports do not have."""


class NatsError(TrackerError):
    """Raised when NATS JetStream cannot be used as asked: a stream that does not exist or does not take the subject,
    a bad server address. (A connection lost or a server restarted is retried, not raised.)"""


class StoppedError(TrackerError):
    """Raised when a command is stopped (Ctrl-C, SIGTERM) while it waits for something outside: the work done so
    far is kept, and what was not finished is done again at the next start."""


class UsageError(TrackerError):
    """A command's argument found wrong after the parser (a file where a folder goes, a pattern for tail...): the
    command line prints it as ``tracker CMD: error: ...`` and exits with status 2."""
