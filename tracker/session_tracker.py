"""The original ``SessionTracker`` API, on top of the event log.

Every call appends its event to an :class:`~tracker.emitter.EventLog` (so the
run can be replayed), folds it into per-session state with
:func:`~tracker.fold.fold`, and queues its line for the
:class:`~tracker.report_process.ReportProcess`, a child process that feeds a
:class:`~tracker.live.LiveReporter`, which writes the CSV reports. The
facade computes nothing itself: the summary is read off the folded
:class:`~tracker.fold.SessionState` values, the CSV files are the ones
``tracker replay`` writes for the same log. This process never loads polars.

As in the original, :func:`get_tracker` and :func:`initialize_tracker` read
``STRESS_TEST_CONFIG`` from a module named ``config`` when there is one (at
first use, see :func:`config_module_settings`), and the register and report
lines reach stderr when the program has configured no logging (see
:data:`CONSOLE_FORMAT`).

```python
tracker = get_tracker()
tracker.start_tracking()                     # a periodic report every 300 s
tracker.register_session("session_1", "user@example.com", [1, 2])
tracker.update_session_activity("session_1", "question_answered", response_time_ms=2000)
await tracker.stop_tracking()                # the final report, every window written
```
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from .emitter import EventLog
from .errors import ReportError
from .events import EVENT_TYPES, event_from_emitted, format_ts
from .fold import SessionState, fold
from .report_process import ReportProcess
from .session_config import (
    CONFIG_MODULE,
    DEFAULT_REPORT_INTERVAL,
    TrackerConfig,
    check_interval,
    check_timeout,
    config_module_settings,
    read_config,
    read_config_module,
)
from .session_summary import active_states, report_text, summary
from .sessions import timeout_us

__all__ = (
    "ACTIVITY_TYPES",
    "CONFIG_MODULE",
    "CONSOLE_FORMAT",
    "DEFAULT_OUT_DIR",
    "DEFAULT_REPORT_INTERVAL",
    "SessionTracker",
    "TrackerConfig",
    "config_module_settings",
    "get_tracker",
    "initialize_tracker",
    "read_config",
)

#: The activity types :meth:`SessionTracker.update_session_activity` accepts (each is an event type).
ACTIVITY_TYPES: Final = ("question_asked", "question_answered", "cycle_completed", "error")
DEFAULT_OUT_DIR: Final = "session_tracking_reports"
#: The format of the console lines printed when the program has configured no logging.
CONSOLE_FORMAT: Final = "%(asctime)s - %(levelname)s - %(message)s"

_logger = logging.getLogger(__name__)  # tracker.session_tracker
_QUESTION_TEXT_MAX: Final = EVENT_TYPES["question_asked"]["question_text"].max_len
_ERROR_MAX: Final = EVENT_TYPES["error"]["error"].max_len
_NO_MESSAGE: Final = "(no message)"
_RUNNER_NAME: Final = "session-tracker-reports"
#: How often the queued events are handed to the report process, in the background (seconds).
DRAIN_S: Final = 0.5
_SECOND: Final = 1_000_000


def _now_us() -> int:
    return time.time_ns() // 1000


class _Console(logging.Handler):
    """Writes to the ``sys.stderr`` of the moment (as ``logging.lastResort`` does), so a redirected stderr is used."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


_console = _Console()
_console.setFormatter(logging.Formatter(CONSOLE_FORMAT))


def _console_level() -> int:
    """The level set on ``tracker.session_tracker`` or ``tracker`` (the root logger's is not asked), else INFO."""
    logger: logging.Logger | None = _logger
    while logger is not None and logger is not logging.root:
        if logger.level:
            return logger.level
        logger = logger.parent
    return logging.INFO


def _log(console: bool, level: int, msg: str, *args: object, exc_info: bool = False) -> None:
    """Log on ``tracker.session_tracker``; with no handler configured for it, print to stderr if ``console``.

    The console is the original's promise of console logs with the session
    metrics: like ``logging.lastResort`` it is used only when no handler is
    configured on the logger or its ancestors (so a line never goes out twice),
    but it prints from INFO (or the level set on the ``tracker.session_tracker``
    or ``tracker`` logger) and writes the time and level.
    """
    if not console or _logger.hasHandlers():
        _logger.log(level, msg, *args, exc_info=exc_info, stacklevel=2)
    elif level >= _console_level() and not _logger.disabled and _logger.manager.disable < level:
        path, line, function, _ = _logger.findCaller(stacklevel=2)
        record = _logger.makeRecord(_logger.name, level, path, line, msg, args,
                                    sys.exc_info() if exc_info else None, function)
        if _logger.filter(record):
            _console.handle(record)


def _activity_fields(activity_type: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The event fields of one ``update_session_activity`` call, in the original's keyword names."""
    if activity_type not in ACTIVITY_TYPES:
        raise ValueError(f"activity_type: must be one of {', '.join(ACTIVITY_TYPES)}, got {activity_type!r}")
    fields = dict(kwargs)
    if activity_type == "question_asked":
        text = fields.get("question_text")
        if isinstance(text, str):
            fields["question_text"] = text[:_QUESTION_TEXT_MAX] or None
    elif activity_type == "question_answered":
        fields.pop("question_text", None)  # the original helper passes it; the event has no such field
    elif activity_type == "error":
        message, error = fields.pop("error_message", None), fields.pop("error", None)
        if message is not None and error is not None:
            raise ValueError(f"error: give error_message or error, not both (got {message!r} and {error!r})")
        message = message if message is not None else error
        text = "" if message is None else message if isinstance(message, str) else str(message)
        fields["error"] = text[:_ERROR_MAX] or _NO_MESSAGE
    return fields


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and, when it runs on this loop, wait until it has finished."""
    if task.done():
        return
    loop = task.get_loop()
    if loop is asyncio.get_running_loop():
        task.cancel()
        await asyncio.wait([task])
    elif not loop.is_closed():
        loop.call_soon_threadsafe(task.cancel)


class SessionTracker:
    """Tracks concurrent chatbot sessions: the original API, every call an event in the log.

    ``log`` defaults to ``EventLog()`` ($TRACKER_LOG, else ./events.jsonl),
    opened on first use; ``out_dir`` (default ``session_tracking_reports``)
    receives the CSV reports, in windows of ``report_interval`` seconds. With
    ``enabled=False`` every method does nothing and nothing is written. The
    register, unregister and report lines are logged on the
    ``tracker.session_tracker`` logger; when the program has configured no
    handler for it (nor for ``tracker`` or the root logger), they are printed
    to stderr (:data:`CONSOLE_FORMAT`), unless ``console_logging=False``.
    Methods may be called from any thread.
    """

    def __init__(self, report_interval: int = DEFAULT_REPORT_INTERVAL, *, log: EventLog | None = None,
                 out_dir: str | os.PathLike[str] | None = None, enabled: bool = True,
                 console_logging: bool = True, session_timeout: float | None = None) -> None:
        self.report_interval = check_interval("report_interval", report_interval)
        self.session_timeout = check_timeout("session_timeout", session_timeout)
        self.enabled = enabled
        self.console_logging = console_logging
        self.periodic_reports: list[dict[str, Any]] = []
        self.is_tracking = False
        self.start_time: float | None = None  # epoch seconds, set by start_tracking
        self._log = log
        self._owns_log = log is None
        self._timeout_us = timeout_us(self.session_timeout)
        self._reports = ReportProcess(Path(out_dir if out_dir is not None else DEFAULT_OUT_DIR), self.report_interval,
                                      self.session_timeout)
        self._sessions: dict[str, SessionState] = {}
        #: Lines appended to the log, not yet handed to the report process: one buffer (each line orjson returns
        #: holds about 4 KiB, so keeping the lines themselves would cost 4 KiB an event).
        self._lines = bytearray()
        self._reports_ended_said = False
        self._closed = False  # close() was called: the reports are over on purpose
        self._state_lock = threading.Lock()  # the log, _sessions, _lines: held for microseconds
        self._report_lock = threading.RLock()  # the reporter; taken before _state_lock, never after
        self._control_lock = threading.Lock()  # starting and stopping the periodic reports
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: False in a forked process (and in one forked from the process that made it): it records, never reports,
        #: as polars, which the reports use, cannot run in a process forked after its threads started.
        self._reporting = not _forked
        _trackers.add(self)

    def _after_fork(self) -> None:
        """In a forked child: new locks (the parent's may have been held by threads the child does not have), and
        no reports: the events go to the log, under the child's own writer identity, and the parent's tracker (or
        ``tracker tail``/``tracker replay`` of the log, for every process) reports them. Its engine may have been
        mid-update when the process forked, its files are the parent's, and polars may not run here."""
        self._state_lock, self._report_lock, self._control_lock = threading.Lock(), threading.RLock(), threading.Lock()
        self._lines = bytearray()
        self._reports.forget()
        self._task, self._thread, self._stop = None, None, threading.Event()
        self._reporting = False

    @property
    def out_dir(self) -> Path:
        """Where the CSV reports are written."""
        return self._reports.out_dir

    @property
    def sessions(self) -> dict[str, SessionState]:
        """A snapshot of every session's folded state, by session id."""
        with self._state_lock:
            return dict(self._sessions)

    # -- events ---------------------------------------------------------------

    def _emit(self, event_type: str, session_id: str, **fields: Any) -> SessionState:
        """Append one event to the log, fold it in and queue its line for the report process; the session's new
        state. The lines go to that process in the background (:meth:`_drain`) every :data:`DRAIN_S` s."""
        with self._state_lock:
            if self._log is None:
                self._log = EventLog()
            record, line = self._log.append(event_type, session_id, **fields)
            state = self._sessions[session_id] = fold(self._sessions.get(session_id), event_from_emitted(record))
            if self._reporting and self._reports.ended is None:  # (ended: no report process will take them)
                self._lines += line
        return state

    def _drain(self) -> None:
        """Hand the queued lines to the report process (off the caller's event loop; each step that holds the GIL
        is short: see :class:`~tracker.report_process.ReportProcess`)."""
        with self._report_lock:
            with self._state_lock:
                lines, self._lines = self._lines, bytearray()
            self._reports.send(lines)

    def register_session(self, session_id: str, username: str, course_numbers: Sequence[int] | None = None) -> None:
        """Register a new active session."""
        if not self.enabled:
            return
        self._emit("session_registered", session_id, username=username, course_numbers=list(course_numbers or ()))
        _log(self.console_logging, logging.INFO, "[TRACKER] Registered session: %s (User: %s)", session_id, username)

    def update_session_activity(self, session_id: str, activity_type: str, **kwargs: Any) -> None:
        """Record one activity of a session (one of :data:`ACTIVITY_TYPES`).

        Keywords are the event's fields; for ``error`` the message is
        ``error_message`` or ``error``. Raises ``ValueError`` (nothing
        written) for another activity type or an unknown or invalid keyword.
        Activity of a session never registered is recorded, and counted as
        an anomaly by the fold.
        """
        if not self.enabled:
            return
        self._emit(activity_type, session_id, **_activity_fields(activity_type, kwargs))

    def unregister_session(self, session_id: str, reason: str = "completed") -> None:
        """Mark a session as ended."""
        if not self.enabled:
            return
        state = self._emit("session_unregistered", session_id, reason=reason)
        started, ended = state.started_at, state.ended_at
        duration = (ended - started) / _SECOND if started is not None and ended is not None else 0.0
        _log(self.console_logging, logging.INFO, "[TRACKER] Unregistered session: %s (Reason: %s, Duration: %.2fs)",
             session_id, reason, duration)

    # -- summaries ------------------------------------------------------------

    def get_active_session_count(self) -> int:
        """How many sessions are active (not unregistered)."""
        if not self.enabled:
            return 0
        with self._state_lock:
            return len(active_states(self._sessions.values(), _now_us(), self._timeout_us))

    def _summary_at(self, now_us: int) -> dict[str, Any]:
        if not self.enabled:
            return summary((), now_us)
        with self._state_lock:
            states = list(self._sessions.values())
        return summary(states, now_us, self._timeout_us)

    def get_session_summary(self) -> dict[str, Any]:
        """Totals over every session tracked, and the details of the active ones."""
        return self._summary_at(_now_us())

    def generate_periodic_report(self) -> dict[str, Any]:
        """The summary with ``report_time`` and ``uptime_seconds``, appended to :attr:`periodic_reports`."""
        now_us = _now_us()
        uptime = round(now_us / _SECOND - self.start_time, 2) if self.start_time is not None else 0.0
        report = {"report_time": format_ts(now_us - now_us % _SECOND), "uptime_seconds": uptime,
                  **self._summary_at(now_us)}
        if self.enabled:
            self.periodic_reports.append(report)
        return report

    def log_periodic_report(self, report: Mapping[str, Any]) -> None:
        """Log ``report`` and write the CSV reports of the windows closed by now (when they cannot be written,
        say why at ERROR)."""
        if not self.enabled:
            return
        _log(self.console_logging, logging.INFO, "%s", report_text(report))
        try:
            self._write_reports(final=False)
        except ReportError as exc:
            _log(self.console_logging, logging.ERROR, "[TRACKER] Periodic report failed: %s%s", exc,
                 self._replay_hint())

    def _write_reports(self, *, final: bool) -> None:
        if not self._reporting:
            if final:
                _log(self.console_logging, logging.INFO, "[TRACKER] No reports from this forked process: its "
                     "events are in the log %s (tracker tail or tracker replay of it reports every process)",
                     self._log.path if self._log is not None else "(none yet)")
            return
        with self._report_lock:
            now_us = _now_us()  # before taking the events: any event emitted later is at or after it
            self._drain()
            flushed = self._reports.flush(now_us=None if final else now_us, final=final)
        for warning in flushed.warnings:
            _log(self.console_logging, logging.WARNING, "[TRACKER] %s", warning)
        if flushed.failed:
            _log(self.console_logging, logging.WARNING, "[TRACKER] %d report files could not be written, the first "
                 "%s (written again at the next report)", len(flushed.failed), flushed.failed[0])
        _log(self.console_logging, logging.INFO, "[TRACKER] Reports written to: %s (%d files updated)",
             self._reports.out_dir.resolve(), flushed.written)

    # -- periodic reports -----------------------------------------------------

    def _periodic_report(self) -> None:
        try:
            self.log_periodic_report(self.generate_periodic_report())
        except Exception:
            _log(self.console_logging, logging.ERROR, "[TRACKER] Periodic report failed", exc_info=True)

    def _drain_safely(self) -> None:
        try:
            self._drain()
        except ReportError as exc:
            self._say_ended(exc)
        except Exception:
            _log(self.console_logging, logging.ERROR, "[TRACKER] Handing the events to the report process failed",
                 exc_info=True)

    def _say_ended(self, exc: ReportError) -> None:
        """Say, once, why the reports are over (the next periodic report says it again); a close is no failure."""
        if not self._reports_ended_said and not self._closed:
            self._reports_ended_said = True
            _log(self.console_logging, logging.ERROR, "[TRACKER] %s%s", exc, self._replay_hint())

    def _replay_hint(self) -> str:
        if self._log is None:
            return ""
        return f" (every event is in the log: `tracker replay {self._log.path}` writes the reports)"

    def _start_reports(self, *, wait: bool = True) -> None:
        """Start the report process unless it runs (it loads polars in its own time); without ``wait``, only when
        the reports are not busy (then the runner starts it)."""
        if not self._reporting or not self._report_lock.acquire(blocking=wait):
            return
        try:
            self._reports.start()
        except ReportError as exc:
            self._say_ended(exc)
        finally:
            self._report_lock.release()

    async def _report_task(self) -> None:
        await asyncio.to_thread(self._start_reports)
        due = time.monotonic() + self.report_interval
        while True:
            await asyncio.sleep(min(DRAIN_S, max(0.0, due - time.monotonic())))
            if time.monotonic() >= due:
                due += self.report_interval
                await asyncio.to_thread(self._periodic_report)  # polars must not stall the sessions' loop
            else:
                await asyncio.to_thread(self._drain_safely)

    def _report_thread(self, stop: threading.Event) -> None:
        self._start_reports()
        due = time.monotonic() + self.report_interval
        while not stop.wait(min(DRAIN_S, max(0.0, due - time.monotonic()))):
            if time.monotonic() >= due:
                due += self.report_interval
                self._periodic_report()
            else:
                self._drain_safely()

    def _runner_alive(self) -> bool:
        return ((self._task is not None and not self._task.done())
                or (self._thread is not None and self._thread.is_alive()))

    def start_tracking(self) -> None:
        """Start the report process and a report every ``report_interval`` seconds: an asyncio task when a loop runs
        here, else a thread."""
        if not self.enabled:
            return
        # Here, before the sessions' load: starting a process forks this one (tens of ms on a big process), which
        # a call of a session would wait for.
        self._start_reports(wait=False)
        with self._control_lock:
            if self.is_tracking and self._runner_alive():
                return
            self.is_tracking = True
            self.start_time = time.time()
            try:
                loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self._task = loop.create_task(self._report_task(), name=_RUNNER_NAME)
            else:
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._report_thread, args=(self._stop,),
                                                name=_RUNNER_NAME, daemon=True)
                self._thread.start()
        _log(self.console_logging, logging.INFO, "[TRACKER] Session tracking started (reports every %ss)",
             self.report_interval)

    def _final_report(self) -> None:
        report = self.generate_periodic_report()
        _log(self.console_logging, logging.INFO, "%s", report_text(report))
        try:
            self._write_reports(final=True)
        except ReportError as exc:
            _log(self.console_logging, logging.ERROR, "[TRACKER] Final report failed: %s%s", exc, self._replay_hint())

    async def stop_tracking(self) -> None:
        """Stop the periodic reports, then log the final report and write every window's CSV report."""
        if not self.enabled:
            return
        with self._control_lock:
            if not self.is_tracking:
                return
            self.is_tracking = False
            task, self._task = self._task, None
            thread, self._thread = self._thread, None
            self._stop.set()
        if task is not None:
            await _cancel(task)
        if thread is not None:
            await asyncio.to_thread(thread.join)
        await asyncio.to_thread(self._final_report)
        _log(self.console_logging, logging.INFO, "[TRACKER] Session tracking stopped")

    def halt(self) -> None:
        """Stop the periodic reports and end the report process at once, without a final report (for a tracker
        being replaced: its reports are over)."""
        self._closed = True
        self._reports.close()  # first: a report in progress ends within a second, and the thread with it
        with self._control_lock:
            self.is_tracking = False
            task, self._task = self._task, None
            thread, self._thread = self._thread, None
            self._stop.set()
        if task is not None and not task.done():
            task.get_loop().call_soon_threadsafe(task.cancel)
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _hand_over(self, new: SessionTracker) -> bool:
        """Give this tracker's sessions, log and queued events to ``new``, a replacement with other settings that
        has recorded nothing; False (nothing moved) when some of them already reached the reports, whose windows
        cannot change."""
        with self._report_lock, self._state_lock, new._state_lock:
            if self._reports.sent or new._sessions or new._log is not None:
                return False
            new._sessions, new._lines, new._log, new._owns_log = (
                self._sessions, self._lines, self._log, self._owns_log)
            self._sessions, self._lines, self._log, self._owns_log = {}, bytearray(), None, False
        return True

    def close(self) -> None:
        """End the report process (its reports are over: write the final one first, with :meth:`stop_tracking`)
        and close the log if this tracker opened it (a later event opens it again); a log passed in stays open."""
        self._closed = True
        self._reports.close()  # (not under the report lock: a report in progress ends within a second)
        with self._state_lock:
            self._lines = bytearray()  # in the log: no report process will take them
            if self._owns_log and self._log is not None:
                self._log.close()
                self._log = None


_tracker: SessionTracker | None = None
_tracker_lock = threading.Lock()
#: Every tracker of this process, made new in a forked child (:meth:`SessionTracker._after_fork`).
_trackers: weakref.WeakSet[SessionTracker] = weakref.WeakSet()


#: True in a process made by fork() (not exec) from one that imported this module: its trackers do not report.
_forked = False


def _after_fork_in_child() -> None:
    global _tracker_lock, _forked
    _tracker_lock = threading.Lock()
    _forked = True
    for tracker in list(_trackers):
        tracker._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _replace(tracker: SessionTracker) -> SessionTracker:
    """Make ``tracker`` the process-wide one; the replaced one's reports stop and its own log is closed.

    Call with the lock held.
    """
    global _tracker
    old, _tracker = _tracker, tracker
    if old is not None:
        old.halt()  # two report runners must not write one folder
        old.close()
    return tracker


def _new_tracker(settings: TrackerConfig) -> SessionTracker:
    return SessionTracker(settings.report_interval, enabled=settings.enabled, console_logging=settings.console_logging,
                          session_timeout=settings.session_timeout)


def get_tracker(config: Mapping[str, object] | None = None) -> SessionTracker:
    """The process-wide tracker, created on first call from ``config`` (see :func:`read_config`).

    Without ``config``: the current tracker, else a new one made from
    ``config.STRESS_TEST_CONFIG`` when a ``config`` module has it (see
    :func:`config_module_settings`), else from the defaults. When ``config``
    is given and asks for other settings than the current tracker has, and
    that tracker is not tracking, it is replaced.
    """
    if config is None:
        current = _tracker
        if current is not None:
            return current
        settings = read_config_module()  # outside the lock: config.py may call get_tracker itself
    else:
        settings = read_config(config)
    with _tracker_lock:
        current = _tracker
        if current is not None and (config is None or current.is_tracking or settings == TrackerConfig(
                current.enabled, current.report_interval, current.console_logging, current.session_timeout)):
            return current
        new = _new_tracker(settings)
        if current is not None and current.sessions and not current._hand_over(new):
            _logger.warning("[TRACKER] The tracking settings changed (%s) after events were reported with %s s "
                            "windows: keeping those settings, so that no event is lost", settings,
                            current.report_interval)
            return current
        return _replace(new)


def initialize_tracker(report_interval: int | None = None) -> SessionTracker:
    """Replace the process-wide tracker with a new one (whether or not the old one is tracking).

    Its settings are ``config.STRESS_TEST_CONFIG``'s, as for :func:`get_tracker`;
    a ``report_interval`` given here wins over the config's.
    """
    settings = read_config_module()
    if report_interval is not None:
        settings = TrackerConfig(settings.enabled, report_interval, settings.console_logging,
                                 settings.session_timeout)
    tracker = _new_tracker(settings)
    with _tracker_lock:
        return _replace(tracker)
