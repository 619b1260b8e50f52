"""The ``tracker`` command line: the parser and the dispatch. ``main(*argv)`` returns the exit status.

The commands themselves are in :mod:`tracker.cli_logs` (emit, validate, ship) and :mod:`tracker.cli_reports`
(replay, tail, report, compare, demo).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

# Only light modules here: ``tracker emit`` (and its --help) must start without polars or watchfiles. The
# commands that need them import them when they run.
from .cli_common import EXIT_STOPPED, EXIT_USAGE
from .cli_logs import run_emit, run_ship, run_validate
from .cli_reports import run_compare, run_demo, run_replay, run_report, run_tail
from .emitter import LOG_ENV_VAR
from .errors import TrackerError
from .events import EVENT_TYPES
from .limits import DEFAULT_GRACE_S, DEFAULT_INTERVAL_S, DEFAULT_MAX_LINE_BYTES, DEFAULT_MEMORY_BYTES
from .options import (
    MAX_DEMO_SESSIONS,
    MAX_LINE_BYTES,
    MAX_MEMORY_MIB,
    MAX_SEED,
    demo_duration,
    goodput,
    grace,
    interval,
    max_line_bytes,
    memory_mib,
    nats_name,
    nats_subject,
    nats_timeout,
    nats_url,
    path,
    seed,
    session_timeout,
    sessions,
)
from .version import VERSION

__all__ = ("main",)

_JSON_HELP: Final = ("print the result as one JSON object on stdout (schema: schemas/output.schema.json); the human "
                     "summary goes to stderr")
_INTERVAL_HELP: Final = "window length in whole seconds, or with a unit: 90s, 5m, 1.5h, 1d (at most 366d)"
_TIMEOUT_HELP: Final = ("a session with no event for this long before the run's last event counts as ended, "
                        "status timed_out, at its last event plus the timeout: seconds, or with a unit: 90s, 5m, "
                        "1h (default: off)")
_THRESHOLD_HELP: Final = (
    "fail the run (exit status 99, after every file is written) unless COLUMN OP NUMBER holds, OP one of < <= > >=, "
    "COLUMN any number column of the summary or the totals: checked on every window with a value and on the whole "
    "run; prefix run: or window: for one of them (e.g. 'ttft_ms_p95<500', 'run:error_rate<=0.01'); repeatable; the "
    "verdicts go to session_tracking_thresholds.csv")
_GOODPUT_HELP: Final = ("per-request limits in ms, any of response_time_ms, ttft_ms, tpot_ms (e.g. "
                        "response_time_ms=3000,ttft_ms=500,tpot_ms=50): adds goodput_per_s and goodput_ratio, the "
                        "answers within every limit")
_MAX_LINE_HELP: Final = (f"reject longer lines as too_long, keeping their first N bytes (1 to {MAX_LINE_BYTES}; "
                         f"default: {DEFAULT_MAX_LINE_BYTES}, 1 MiB)")


def _report_options(command: argparse.ArgumentParser, threshold_help: str) -> None:
    """The options replay and tail share: where the reports go, how they are made, what gates them."""
    command.add_argument("--out", required=True, type=path, help="folder for the reports")
    command.add_argument("--interval", type=interval, default=DEFAULT_INTERVAL_S, metavar="DURATION",
                         help=f"{_INTERVAL_HELP} (default: {DEFAULT_INTERVAL_S} s)")
    command.add_argument("--session-timeout", type=session_timeout, metavar="DURATION", help=_TIMEOUT_HELP)
    command.add_argument("--threshold", action="append", default=[], metavar="EXPR", help=threshold_help)
    command.add_argument("--junit", type=path, metavar="FILE", help="write the thresholds' verdicts as JUnit XML")
    command.add_argument("--goodput", type=goodput, metavar="LIMITS", help=_GOODPUT_HELP)
    command.add_argument("--quarantine", type=path, metavar="FILE",
                         help="where rejected lines go (default: OUT/quarantine.jsonl)")
    command.add_argument("--max-line-bytes", type=max_line_bytes, default=DEFAULT_MAX_LINE_BYTES, metavar="N",
                         help=_MAX_LINE_HELP)
    command.add_argument("--json", action="store_true", help=_JSON_HELP)


_NATS_HELP: Final = "the NATS server, e.g. nats://127.0.0.1:4222 (several: comma-separated)"


_NATS_TIMEOUT_HELP: Final = ("how long one request to the server (a publish's acknowledgement, a fetch) may take "
                              "before it is tried again: seconds, or with a unit: 0.5s, 10s, 1m (default: 5 s)")


def _nats_options(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument("--nats", type=nats_url, metavar="URL", help=f"{_NATS_HELP}: {what}")
    command.add_argument("--stream", type=nats_name, metavar="NAME", help="the JetStream stream (with --nats)")
    command.add_argument("--nats-timeout", type=nats_timeout, default=5.0, metavar="DURATION",
                         help=_NATS_TIMEOUT_HELP)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracker", description="Track what every session of a chatbot stress test did, from its event log."
    )
    parser.add_argument("--version", action="version", version=f"tracker {VERSION}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    emit = commands.add_parser(
        "emit", help="append one event to a log",
        description="Append one event to a log. Fields are key=value; course_numbers=101,202 for lists.",
        epilog="example: tracker emit question_answered s1 response_time_ms=2150.5",
    )
    emit.add_argument("type", metavar="TYPE", help=f"one of: {', '.join(EVENT_TYPES)}")
    emit.add_argument("session_id", metavar="SESSION_ID")
    emit.add_argument("fields", metavar="key=value", nargs="*", help="the type's fields")
    emit.add_argument("--log", type=path, help=f"log file (default: ${LOG_ENV_VAR}, else ./events.jsonl)")
    emit.add_argument("--ts", help="event time: ISO-8601 with offset, or epoch microseconds (default: now)")
    emit.set_defaults(run=run_emit)

    validate = commands.add_parser(
        "validate", help="check logs line by line",
        description="Check logs line by line: counts by type, every rejected line with its reason. "
                    "Exit status 1 when any line is rejected.",
    )
    validate.add_argument("logs", metavar="LOG", nargs="+",
                          help="log files, quoted glob patterns, or folders (their *.jsonl files)")
    validate.add_argument("--quarantine", type=path, metavar="FILE",
                          help="append rejected lines verbatim to FILE (reasons to FILE.reasons.jsonl)")
    validate.add_argument("--max-line-bytes", type=max_line_bytes, default=DEFAULT_MAX_LINE_BYTES, metavar="N",
                          help=_MAX_LINE_HELP)
    validate.add_argument("--json", action="store_true", help=_JSON_HELP)
    validate.add_argument("--quiet", action="store_true", help="no progress line on a terminal")
    validate.set_defaults(run=run_validate)

    replay_ = commands.add_parser(
        "replay", help="regenerate the reports from logs",
        description="Regenerate the windowed CSV reports from finished logs, merged by event time. "
                    "Exit status 1 when any line is rejected (the rejected lines are quarantined).",
        epilog="example: tracker replay 'run/*.jsonl' --out reports --interval 60",
    )
    replay_.add_argument("logs", metavar="LOG", nargs="*",
                         help="log files, quoted glob patterns, or folders (their *.jsonl files)")
    _nats_options(replay_, "read the stream's events instead of logs, from its first message to the last one "
                           "present when the replay starts")
    _report_options(replay_, _THRESHOLD_HELP)
    replay_.add_argument("--memory", type=memory_mib, default=DEFAULT_MEMORY_BYTES / 2**20, metavar="MIB",
                         help=f"events held in memory before the rest wait on disk, 0 to {MAX_MEMORY_MIB} (1 TiB) "
                              f"(default: {DEFAULT_MEMORY_BYTES >> 20})")
    replay_.add_argument("--spool-dir", type=path, metavar="DIR",
                         help="where events beyond --memory wait, in a temporary folder (default: OUT)")
    replay_.add_argument("--quiet", action="store_true", help="no progress line on a terminal")
    replay_.set_defaults(run=run_replay)

    tail_ = commands.add_parser(
        "tail", help="follow live logs and write reports as windows close",
        description="Follow live logs (files, or folders of *.jsonl) and write the reports as windows close, "
                    "with a live view. Survives rotation, truncation and restarts (a checkpoint in "
                    "OUT/.tracker-checkpoint). Ctrl-C (or SIGTERM) stops: every window is written, the "
                    "checkpoint saved and a summary printed.",
        epilog="example: tracker tail run/events.jsonl --out reports --interval 60",
    )
    tail_.add_argument("logs", metavar="LOG_OR_DIR", nargs="*", type=path,
                       help="log files, or folders (their *.jsonl files); a path that does not exist yet is "
                            "waited for")
    _nats_options(tail_, "follow the stream's events instead of logs (what tracker ship publishes)")
    tail_.add_argument("--consumer", type=nats_name, metavar="NAME",
                       help="the durable consumer reading the stream (default: one per machine and checkpoint "
                            "folder); acknowledged after each checkpoint")
    _report_options(tail_, _THRESHOLD_HELP + "; a window that fails one is said when it closes")
    tail_.add_argument("--grace", type=grace, default=DEFAULT_GRACE_S, metavar="DURATION",
                       help="how long after a window's end late events are awaited: seconds, or with a unit: "
                            f"0.5s, 90s, 5m, 1h (at most 1d; default: {DEFAULT_GRACE_S} s)")
    tail_.add_argument("--checkpoint-dir", type=path, metavar="DIR", help="default: OUT/.tracker-checkpoint")
    tail_.add_argument("--quiet", action="store_true", help="no live view")
    tail_.set_defaults(run=run_tail)

    ship = commands.add_parser(
        "ship", help="publish local logs' events to a NATS JetStream stream",
        description="Follow local logs as tracker tail does (rotation, truncation, restarts) and publish each valid "
                    "event to a NATS JetStream stream, for a central tracker tail --nats or tracker replay --nats. "
                    "Bad lines are quarantined here, never shipped. The files' positions are saved (in "
                    f"{'.tracker-ship/STREAM'} beside the first log) only after JetStream acknowledged every event "
                    "before them; a repeat is dropped by the server and by the central engine. The stream is "
                    "created when missing. Ctrl-C (or SIGTERM) stops. Exit status 1 when lines were rejected.",
        epilog="example: tracker ship run/ --nats nats://central:4222 --stream loadtest",
    )
    ship.add_argument("logs", metavar="LOG_OR_DIR", nargs="+", type=path,
                      help="log files, or folders (their *.jsonl files); a path that does not exist yet is waited for")
    ship.add_argument("--nats", type=nats_url, metavar="URL", required=True, help=_NATS_HELP)
    ship.add_argument("--stream", type=nats_name, metavar="NAME", required=True,
                      help="the JetStream stream (created when missing: file storage, 7 days, subjects NAME.>)")
    ship.add_argument("--subject", type=nats_subject, metavar="SUBJECT",
                      help="the subject to publish on (default: STREAM.events); the stream must take it")
    ship.add_argument("--nats-timeout", type=nats_timeout, default=5.0, metavar="DURATION", help=_NATS_TIMEOUT_HELP)
    ship.add_argument("--once", action="store_true", help="ship what the logs hold now, then exit")
    ship.add_argument("--state-dir", type=path, metavar="DIR",
                      help="where the positions and the quarantine go (default: .tracker-ship/STREAM in the first "
                           "log's folder)")
    ship.add_argument("--quarantine", type=path, metavar="FILE",
                      help="where rejected lines go (default: STATE_DIR/quarantine.jsonl)")
    ship.add_argument("--max-line-bytes", type=max_line_bytes, default=DEFAULT_MAX_LINE_BYTES, metavar="N",
                      help=_MAX_LINE_HELP)
    ship.set_defaults(run=run_ship)

    report = commands.add_parser(
        "report", help="write the HTML report of a reports folder",
        description="Write (again) the self-contained HTML report, session_tracking_report.html, from the CSV files "
                    "of a folder that tracker replay or tracker tail wrote (also one made before the HTML report "
                    "existed). Nothing else is changed.",
        epilog="example: tracker report reports",
    )
    report.add_argument("out", metavar="OUT_DIR", type=path, help="a folder of tracker reports")
    report.set_defaults(run=run_report)

    compare = commands.add_parser(
        "compare", help="compare two runs' reports: figures, charts and gates",
        description="Compare two report folders that tracker replay or tracker tail wrote: RUN_A the baseline, "
                    "RUN_B the run compared with it. Prints the whole-run figures side by side with the change in "
                    "percent ((B - A) / A; 'new' when A is 0, '-' when either is empty), writes an HTML page with "
                    "both runs' curves (x: seconds since each run's start) and checks the --fail-if gates: exit "
                    "status 99, after the page is written, when one fails.",
        epilog="example: tracker compare baseline/ candidate/ --fail-if 'response_time_ms_p95>+10%' "
               "--fail-if 'answers_per_s<-5%' --fail-if 'error_rate>+0.01'",
    )
    compare.add_argument("run_a", metavar="RUN_A", type=path, help="the baseline run's report folder")
    compare.add_argument("run_b", metavar="RUN_B", type=path, help="the report folder of the run compared with it")
    compare.add_argument("--html", type=path, default=Path("compare.html"), metavar="FILE",
                         help="where the comparison page goes (default: ./compare.html)")
    compare.add_argument("--fail-if", action="append", default=[], metavar="EXPR", dest="fail_if",
                         help="fail (exit status 99) when B is worse than A: COLUMN>+N%% (the change in percent is "
                              "above N, e.g. 'response_time_ms_p95>+10%%'), COLUMN<-N%% (below -N, e.g. "
                              "'answers_per_s<-5%%'), or without %% on the difference B - A (e.g. "
                              "'error_rate>+0.01'); COLUMN any number column of the totals; a gate that cannot be "
                              "evaluated (an empty value, a change in percent from 0) fails; repeatable")
    compare.add_argument("--json", action="store_true", help=_JSON_HELP)
    compare.set_defaults(run=run_compare)

    demo = commands.add_parser(
        "demo", help="run a simulated stress test",
        description="Simulate concurrent chatbot sessions writing a log while tracker tail follows it live "
                    "and writes the reports; then show what each session did.",
    )
    demo.add_argument("--sessions", type=sessions, default=20,
                      help=f"concurrent sessions, 1 to {MAX_DEMO_SESSIONS} (default: 20)")
    demo.add_argument("--duration", type=demo_duration, default=30.0, metavar="DURATION",
                      help="how long to run: seconds, or with a unit: 0.5s, 90s, 5m, 1h (at most 1d; default: 30 s)")
    demo.add_argument("--out", type=path, default=Path("tracker-demo"), help="output folder (default: ./tracker-demo)")
    demo.add_argument("--seed", type=seed, default=7, help=f"random seed, 0 to {MAX_SEED} (default: 7)")
    demo.add_argument("--interval", type=interval, default=5, metavar="DURATION",
                      help=f"{_INTERVAL_HELP} (default: 5 s, so the demo writes several)")
    demo.set_defaults(run=run_demo)
    return parser


def main(*argv: str, command: str = "tracker") -> int:
    """Run the command line with ``argv`` (``sys.argv[1:]`` when empty) and return the exit status.

    ``command`` is how the user runs tracker (``tracker``, ``.venv/bin/tracker``, ``python -m tracker``), for
    the commands that print one to type next.
    """
    parser = _parser()
    args = parser.parse_args(argv or sys.argv[1:])
    args.invoked_as = command
    try:
        status: int = args.run(args)
    except TrackerError as exc:  # a UsageError among them
        print(f"tracker {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C before the command took it over (while it imports polars, say)
        print(f"tracker {args.command}: stopped", file=sys.stderr)
        return EXIT_STOPPED
    return status


def _shortest(path: str) -> str:
    """``path``'s bare name when the PATH finds that very file (not another one of the name), else ``path``."""
    import shutil

    name = os.path.basename(path)
    found = shutil.which(name)
    return name if found is not None and os.path.abspath(found) == os.path.abspath(path) else path


def _invocation(argv0: str) -> str:
    """How the user ran tracker, from ``sys.argv[0]``, as a command to type again: ``python -m tracker`` (with
    the very python that runs now) for ``__main__.py``, else the script as typed, or its bare name when the PATH
    finds it. ``.venv/bin/tracker`` stays so: a bare ``tracker`` may not be on the PATH."""
    import shlex

    if not argv0 or argv0 == "-c":
        return "tracker"
    if os.path.basename(argv0) == "__main__.py":
        return f"{shlex.quote(_shortest(sys.executable))} -m tracker"
    return shlex.quote(_shortest(argv0))


def _entry(argv: Sequence[str] | None = None) -> None:
    try:
        status = main(*(argv or sys.argv[1:]), command=_invocation(sys.argv[0]))
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (tracker replay ... | head): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    sys.exit(status)
