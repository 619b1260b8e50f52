"""The ``tracker`` command line: ``main(*argv)`` returns the exit status."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .console import LiveView
from .decoder import Decoder, Quarantine, Rejected, decode_file
from .demo import DemoConfig, run_sessions
from .emitter import LOG_ENV_VAR, EventLog
from .engine import DEFAULT_INTERVAL_S, MAX_INTERVAL_S, Engine
from .errors import TrackerError
from .events import EVENT_TYPES, format_ts, to_ts
from .fold import SessionState, anomalies, fold_all
from .live import DEFAULT_GRACE_S
from .replayer import replay
from .store import DEFAULT_MEMORY_BYTES
from .tail import Tail
from .version import VERSION

__all__ = ("main",)

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_STOPPED = 130  # stopped by SIGINT or SIGTERM before the end


class _UsageError(Exception):
    """A bad argument found after argparse: printed as ``tracker CMD: error: ...``, exit 2."""


def _parse_ts(text: str) -> int:
    if text.lstrip("-").isdigit():
        return to_ts(int(text))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _UsageError(f"--ts: expected ISO-8601 with a UTC offset or epoch microseconds, got {text!r}") from None
    return to_ts(moment)


def _parse_field(event_type: str, item: str) -> tuple[str, Any]:
    name, sep, text = item.partition("=")
    if not sep:
        raise _UsageError(f"expected key=value, got {item!r}")
    spec = EVENT_TYPES[event_type].get(name)
    if spec is None:
        allowed = ", ".join(EVENT_TYPES[event_type]) or "none"
        raise _UsageError(f"{name!r} is not a field of {event_type!r} events (allowed: {allowed})")
    try:
        if spec.kind == "int":
            return name, int(text)
        if spec.kind == "number":
            return name, float(text)
        if spec.kind == "int_list":
            return name, [int(part) for part in text.strip("[]").split(",") if part.strip()]
    except ValueError:
        raise _UsageError(f"{name}: expected {spec.kind.replace('_', ' ')}, got {text!r}") from None
    return name, text


def _cmd_emit(args: argparse.Namespace) -> int:
    if args.type not in EVENT_TYPES:
        raise _UsageError(f"unknown event type {args.type!r} (one of {', '.join(EVENT_TYPES)})")
    fields = dict(_parse_field(args.type, item) for item in args.fields)
    ts = _parse_ts(args.ts) if args.ts is not None else None
    with EventLog(args.log) as log:
        log.emit(args.type, args.session_id, ts=ts, **fields)
    return EXIT_OK


def _print_counts(title: str, counts: dict[str, int]) -> None:
    if not counts:
        return
    print(title)
    width = max(map(len, counts))
    for name, count in counts.items():
        print(f"  {name:<{width}}  {count:>9}")


def _cmd_validate(args: argparse.Namespace) -> int:
    decoder = Decoder(max_line_bytes=args.max_line_bytes)
    quarantine = Quarantine(args.quarantine) if args.quarantine else None
    try:
        for path in args.logs:
            events, rejected, duplicates = decoder.events, decoder.rejected.total(), decoder.duplicates
            try:
                with open(path, "rb") as stream:
                    for item in decoder.decode_stream(stream, source=str(path)):
                        if isinstance(item, Rejected):
                            print(f"  {item.describe()}")
                            if quarantine is not None:
                                quarantine.add(item)
            except OSError as exc:
                raise _UsageError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
            print(f"{path}: {decoder.events - events} events, {decoder.rejected.total() - rejected} rejected, "
                  f"{decoder.duplicates - duplicates} duplicates")
    finally:
        if quarantine is not None:
            quarantine.close()
    if len(args.logs) > 1:
        print(f"total: {decoder.events} events, {decoder.rejected.total()} rejected, {decoder.duplicates} duplicates")
    _print_counts("events by type:", dict(sorted(decoder.by_type.items())))
    _print_counts("rejected lines by reason:", dict(sorted(decoder.rejected.items())))
    _print_counts("writers with missing sequence numbers:", decoder.gaps())
    if quarantine is not None and quarantine.count:
        print(f"{quarantine.count} rejected lines written to {quarantine.path} (reasons in {quarantine.reasons_path})")
    return EXIT_REJECTED if decoder.rejected.total() else EXIT_OK


def _session_table(sessions: dict[str, SessionState]) -> list[str]:
    header = f"{'session':<14} {'user':<12} {'status':<7} {'asked':>6} {'answered':>8} {'cycles':>6} " \
             f"{'errors':>6} {'mean ms':>9} {'max ms':>9}"
    lines = [header]
    for state in sorted(sessions.values(), key=lambda s: s.session_id):
        mean = state.response_time_mean_ms
        lines.append(
            f"{state.session_id[:14]:<14} {(state.username or '-')[:12]:<12} {state.status:<7} "
            f"{state.questions_asked:>6} {state.questions_answered:>8} {state.cycles_completed:>6} "
            f"{state.errors:>6} {'-' if mean is None else f'{mean:.1f}':>9} "
            f"{'-' if state.response_time_max_ms is None else f'{state.response_time_max_ms:.1f}':>9}"
        )
    return lines


def _quiet_watchfiles() -> None:
    """Tail warnings go to stderr as ``tracker tail: warning: ...``; watchfiles' own notices are left out."""
    logging.getLogger("watchfiles").setLevel(logging.ERROR)
    logger = logging.getLogger("tracker")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("tracker: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _cmd_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    log_path, reports = out / "events.jsonl", out / "reports"
    log_path.unlink(missing_ok=True)
    if reports.is_dir():  # a fresh run: the demo's own report folder starts empty
        shutil.rmtree(reports)
    config = DemoConfig(sessions=args.sessions, duration=args.duration, seed=args.seed)
    print(f"simulating {config.sessions} chatbot sessions for {config.duration:g} s, writing {log_path}; "
          f"tracker tail follows it into {reports} ({args.interval} s windows)")
    _quiet_watchfiles()
    tail = Tail([log_path], reports, interval_s=args.interval, grace_s=min(1.0, args.interval / 2))
    view = LiveView(f"tracker demo: {config.sessions} sessions -> {reports}")
    stop = threading.Event()
    follower = threading.Thread(target=tail.run, args=(stop,), kwargs={"on_tick": view.update}, daemon=True)
    follower.start()
    try:
        with EventLog(log_path) as log:
            asyncio.run(run_sessions(log, config))
    finally:
        stop.set()
        follower.join()
        tail.close()
    view.update(tail, force=True)
    sessions = fold_all(event for event in decode_file(log_path) if not isinstance(event, Rejected))
    print("\n".join(_session_table(sessions)))
    found = {name: count for name, count in anomalies(sessions).items() if count}
    _print_counts("anomalies:", found)
    print(f"{tail.stats.events} events, {tail.decoder.rejected.total()} rejected lines, "
          f"{tail.reporter.late} late; reports ({tail.reporter.windows_written} windows) in {reports}")
    print("\n".join(_run_summary(tail.reporter.engine)))
    print(f"check the log with:  tracker validate {log_path}")
    print(f"replay it with:      tracker replay {log_path} --out OTHER_DIR --interval {args.interval}")
    print("                     (gives the same files as the live tail wrote)")
    return EXIT_REJECTED if tail.decoder.rejected.total() else EXIT_OK


def _fmt(value: object) -> str:
    return "-" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)


def _run_summary(engine: Engine) -> list[str]:
    """The whole-run figures of the totals table, for people."""
    t = engine.totals().row(0, named=True)
    if t["run_start"] is None:
        return ["whole run: no events"]
    start = format_ts(t["run_start"])
    end = format_ts(t["run_end"])
    rt = ", ".join(f"{name} {_fmt(t[f'response_time_ms_{name}'])}" for name in ("mean", "p50", "p95", "p99", "max"))
    return [
        f"whole run: {start} to {end}, {len(list(engine.windows()))} windows of {engine.interval_s} s",
        f"  sessions {t['sessions']} (at most {t['max_active_sessions']} active), "
        f"questions {t['questions_asked']}, answers {t['questions_answered']} ({t['answers_per_s']:.3f}/s), "
        f"cycles {t['cycles_completed']}, errors {t['errors']}",
        f"  response time ms: {rt}",
    ]


class _Terminated(Exception):
    """SIGTERM, raised where the program is, so that clean-up (the replay's spool folder) runs."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


def _cmd_replay(args: argparse.Namespace) -> int:
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    try:
        result = replay(args.logs, args.out, interval_s=args.interval, quarantine_path=args.quarantine,
                        memory_bytes=int(args.memory * 2**20), spool_dir=args.spool_dir)
    except OSError as exc:
        name = f" {str(exc.filename)!r}" if exc.filename else ""
        raise _UsageError(f"cannot use{name}: {exc.strerror or exc}") from exc
    except (_Terminated, KeyboardInterrupt):
        print("tracker replay: stopped before the end; the reports in the folder are incomplete", file=sys.stderr)
        return EXIT_STOPPED
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    read, rejected = result.read, result.rejected
    print(f"read {len(result.logs)} log{'s' if len(result.logs) != 1 else ''}: {read.events} events, "
          f"{rejected.total()} rejected, {read.duplicates} duplicates")
    if result.quarantine.count:
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(rejected.items()))
        print(f"  rejected lines ({reasons}) in {result.quarantine.path}")
    print(f"wrote {len(result.written)} files to {args.out}: the summary, totals, errors and "
          f"{len(result.written) - 3} per-window session reports")
    if result.removed:
        print(f"  removed {len(result.removed)} session reports of an earlier run")
    print("\n".join(_run_summary(result.engine)))
    return EXIT_REJECTED if rejected else EXIT_OK


def _cmd_tail(args: argparse.Namespace) -> int:
    _quiet_watchfiles()
    try:
        tail = Tail(args.logs, args.out, interval_s=args.interval, grace_s=args.grace,
                    checkpoint_dir=args.checkpoint_dir, quarantine_path=args.quarantine)
    except OSError as exc:
        name = f" {str(exc.filename)!r}" if exc.filename else ""
        raise _UsageError(f"cannot use{name}: {exc.strerror or exc}") from exc
    names = ", ".join(str(p) for p in args.logs)
    view = LiveView(f"tracker tail {names} -> {args.out}") if not args.quiet else None
    stop = threading.Event()
    # Ctrl-C and SIGTERM only ask the tail to stop between two steps: an interrupt inside a step (a flush half
    # written, an engine half updated) could lose events.
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        tail.run(stop, on_tick=view.update if view is not None else None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        final = tail.close()
    if view is not None:
        view.update(tail, force=True)
    stats = tail.stats
    print(f"stopped: {stats.events} events, {tail.decoder.rejected.total()} rejected lines, "
          f"{tail.reporter.late} late events, {stats.rotations} rotations, {stats.truncations} truncations, "
          f"{tail.reporter.engine.duplicates} duplicates")
    if tail.quarantine.count:
        print(f"  rejected lines in {tail.quarantine.path}")
    if final is None or final.failed:
        missing = "no report could be made" if final is None else f"{len(final.failed)} report files not written"
        print(f"tracker tail: {missing} in {args.out} (see the warnings above); replay the logs once the cause is "
              "fixed", file=sys.stderr)
        return EXIT_USAGE
    print(f"reports in {args.out} (every window written; replay gives the same files)")
    print("\n".join(_run_summary(tail.reporter.engine)))
    return EXIT_REJECTED if tail.decoder.rejected.total() else EXIT_OK


def _number(text: str, cast: type[int] | type[float], minimum: float, *, strict: bool) -> float:
    """An argparse value: ``text`` as ``cast``, above ``minimum`` (or equal to it unless ``strict``)."""
    try:
        value = cast(text)
    except ValueError:
        expected = "whole seconds" if cast is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not (value > minimum if strict else value >= minimum):
        raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum:g}, got {text!r}")
    return value


def _interval(text: str) -> int:
    value = int(_number(text, int, 1, strict=False))
    if value > MAX_INTERVAL_S:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_INTERVAL_S} (366 days), got {text!r}")
    return value


def _non_negative(text: str) -> float:
    return _number(text, float, 0, strict=False)


def _positive(text: str) -> float:
    return _number(text, float, 0, strict=True)


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
    emit.add_argument("--log", help=f"log file (default: ${LOG_ENV_VAR}, else ./events.jsonl)")
    emit.add_argument("--ts", help="event time: ISO-8601 with offset, or epoch microseconds (default: now)")
    emit.set_defaults(run=_cmd_emit)

    validate = commands.add_parser(
        "validate", help="check logs line by line",
        description="Check logs line by line: counts by type, every rejected line with its reason. "
                    "Exit status 1 when any line is rejected.",
    )
    validate.add_argument("logs", metavar="LOG", nargs="+", type=Path)
    validate.add_argument("--quarantine", type=Path, metavar="FILE",
                          help="append rejected lines verbatim to FILE (reasons to FILE.reasons.jsonl)")
    validate.add_argument("--max-line-bytes", type=int, default=1 << 20, metavar="N",
                          help="reject longer lines (default: 1 MiB)")
    validate.set_defaults(run=_cmd_validate)

    replay_ = commands.add_parser(
        "replay", help="regenerate the reports from logs",
        description="Regenerate the windowed CSV reports from finished logs, merged by event time. "
                    "Exit status 1 when any line is rejected (the rejected lines are quarantined).",
        epilog="example: tracker replay 'run/*.jsonl' --out reports --interval 60",
    )
    replay_.add_argument("logs", metavar="LOG", nargs="+", help="log files or quoted glob patterns")
    replay_.add_argument("--out", required=True, type=Path, help="folder for the reports")
    replay_.add_argument("--interval", type=_interval, default=DEFAULT_INTERVAL_S, metavar="SECONDS",
                         help=f"window length (default: {DEFAULT_INTERVAL_S})")
    replay_.add_argument("--quarantine", type=Path, metavar="FILE",
                         help="where rejected lines go (default: OUT/quarantine.jsonl)")
    replay_.add_argument("--memory", type=_non_negative, default=DEFAULT_MEMORY_BYTES / 2**20, metavar="MIB",
                         help="events held in memory before the rest wait on disk "
                              f"(default: {DEFAULT_MEMORY_BYTES >> 20})")
    replay_.add_argument("--spool-dir", type=Path, metavar="DIR",
                         help="where events beyond --memory wait, in a temporary folder (default: OUT)")
    replay_.set_defaults(run=_cmd_replay)

    tail_ = commands.add_parser(
        "tail", help="follow live logs and write reports as windows close",
        description="Follow live logs (files, or folders of *.jsonl) and write the reports as windows close, "
                    "with a live view. Survives rotation, truncation and restarts (a checkpoint in "
                    "OUT/.tracker-checkpoint). Ctrl-C (or SIGTERM) stops: every window is written, the "
                    "checkpoint saved and a summary printed.",
        epilog="example: tracker tail run/events.jsonl --out reports --interval 60",
    )
    tail_.add_argument("logs", metavar="LOG_OR_DIR", nargs="+", type=Path)
    tail_.add_argument("--out", required=True, type=Path, help="folder for the reports")
    tail_.add_argument("--interval", type=_interval, default=DEFAULT_INTERVAL_S, metavar="SECONDS",
                       help=f"window length (default: {DEFAULT_INTERVAL_S})")
    tail_.add_argument("--grace", type=_non_negative, default=DEFAULT_GRACE_S, metavar="SECONDS",
                       help=f"how long after a window's end late events are awaited (default: {DEFAULT_GRACE_S})")
    tail_.add_argument("--checkpoint-dir", type=Path, metavar="DIR", help="default: OUT/.tracker-checkpoint")
    tail_.add_argument("--quarantine", type=Path, metavar="FILE", help="default: OUT/quarantine.jsonl")
    tail_.add_argument("--quiet", action="store_true", help="no live view")
    tail_.set_defaults(run=_cmd_tail)

    demo = commands.add_parser(
        "demo", help="run a simulated stress test",
        description="Simulate concurrent chatbot sessions writing a log while tracker tail follows it live "
                    "and writes the reports; then show what each session did.",
    )
    demo.add_argument("--sessions", type=int, default=20, help="concurrent sessions (default: 20)")
    demo.add_argument("--duration", type=_positive, default=30.0, help="seconds to run (default: 30)")
    demo.add_argument("--out", default="tracker-demo", help="output folder (default: ./tracker-demo)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    demo.add_argument("--interval", type=_interval, default=5, metavar="SECONDS",
                      help="report window (default: 5, so the demo writes several)")
    demo.set_defaults(run=_cmd_demo)
    return parser


def main(*argv: str) -> int:
    """Run the command line with ``argv`` (``sys.argv[1:]`` when empty) and return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv or sys.argv[1:])
    try:
        status: int = args.run(args)
    except (_UsageError, TrackerError) as exc:
        print(f"tracker {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return status


def _entry(argv: Sequence[str] | None = None) -> None:
    try:
        status = main(*(argv or sys.argv[1:]))
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (tracker replay ... | head): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    sys.exit(status)
