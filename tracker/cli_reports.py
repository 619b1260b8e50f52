"""The commands that make reports: ``tracker replay``, ``tail``, ``report``, ``compare`` and ``demo``.

Each takes the parsed arguments and returns the exit status; :mod:`tracker.cli` parses and dispatches. The
work lives in the modules they import when they run (the replayer, the tail, the HTML report...).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .cli_common import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_STOPPED,
    EXIT_THRESHOLDS,
    EXIT_USAGE,
    Terminated,
    UsageError,
    cannot,
    command_stream,
    command_thresholds,
    exit_status,
    human_out,
    print_json,
    report_verdicts,
    say_lost,
    stream_json,
    terminate,
    total_size,
)
from .errors import StoppedError
from .summaries import run_summary

__all__ = ("run_compare", "run_demo", "run_replay", "run_report", "run_tail")


def run_demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, run_demo

    config = DemoConfig(sessions=args.sessions, duration=args.duration, seed=args.seed)
    # The command as it was run (.venv/bin/tracker, python -m tracker...): a bare "tracker" may not be on the PATH.
    try:
        clean, passed = run_demo(Path(args.out), config, interval_s=args.interval, command=args.invoked_as)
    except OSError as exc:
        raise UsageError(cannot("use", exc)) from exc
    return EXIT_THRESHOLDS if not passed else EXIT_OK if clean else EXIT_REJECTED


def run_replay(args: argparse.Namespace) -> int:
    from .decoder import QUARANTINE_FILE
    from .logs import expand_logs
    from .progress import ReadProgress, progress_wanted
    from .replayer import replay

    in_main = threading.current_thread() is threading.main_thread()
    stream = command_stream(args)
    try:
        quarantine = Path(args.quarantine) if args.quarantine is not None else Path(args.out) / QUARANTINE_FILE
        logs = expand_logs(args.logs, exclude=[quarantine, quarantine.with_name(f"{quarantine.name}.reasons.jsonl")])
    except OSError:
        logs = []  # replay says what cannot be read
    thresholds = command_thresholds(args, logs)
    previous = signal.signal(signal.SIGTERM, terminate) if in_main else None
    from .console import warnings_to_stderr

    warnings_to_stderr()  # NATS outages, and files that cannot be written to the spool, are said as they happen
    try:
        with ReadProgress(total_size(logs), label="replay", enabled=progress_wanted(args.quiet)) as progress:
            result = replay(args.logs, args.out, interval_s=args.interval, quarantine_path=args.quarantine,
                            memory_bytes=int(args.memory * 2**20), spool_dir=args.spool_dir,
                            max_line_bytes=args.max_line_bytes, session_timeout_s=args.session_timeout,
                            goodput=args.goodput, thresholds=thresholds, on_block=progress.advance, stream=stream,
                            nats_timeout_s=args.nats_timeout)
    except OSError as exc:
        raise UsageError(cannot("use", exc)) from exc
    except (Terminated, KeyboardInterrupt, StoppedError):
        print("tracker replay: stopped before the end; the reports in the folder are incomplete", file=sys.stderr)
        return EXIT_STOPPED
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    read, rejected, human = result.read, result.rejected, human_out(args)
    what = (f"the stream {stream.stream!r}" if stream is not None
            else f"{len(result.logs)} log{'s' if len(result.logs) != 1 else ''}")
    print(f"read {what}: {read.events} events, {rejected.total()} rejected, {read.duplicates} duplicates", file=human)
    if result.quarantine.count:
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(rejected.items()))
        print(f"  rejected lines ({reasons}) in {result.quarantine.path}", file=human)
    say_lost("replay", result.quarantine)
    windows = sum(1 for path in result.written if path.name.startswith("session_tracking_report_"))
    run_files = "the summary, totals, errors" + (", thresholds" if thresholds else "")
    print(f"wrote {len(result.written)} files to {args.out}: {run_files}, {windows} per-window session reports and "
          "the HTML report, session_tracking_report.html", file=human)
    if result.removed:
        print(f"  removed {len(result.removed)} report files of an earlier run", file=human)
    print("\n".join(run_summary(result.engine, result.tables.totals)), file=human)
    status = exit_status(report_verdicts(args, thresholds, result.verdicts, result.logs, human), bool(rejected))
    if args.json:
        from .results import run_figures, verdicts_json

        print_json({
            "command": "replay", "version": 1, "exit_status": status, "logs": [str(p) for p in result.logs],
            "stream": stream_json(stream),
            "out": str(args.out), "interval_s": args.interval, "events": read.events,
            "by_type": dict(sorted(read.by_type.items())),
            "duplicates": read.duplicates,
            "rejected": {"total": rejected.total(), "by_reason": dict(sorted(rejected.items()))},
            "quarantine": str(result.quarantine.path) if result.quarantine.count else None,
            "files_written": sorted(p.name for p in result.written),
            "files_removed": sorted(p.name for p in result.removed),
            "windows": len(list(result.engine.windows())), "run": run_figures(result.tables.totals),
            "thresholds": verdicts_json(result.verdicts),
            "junit": str(args.junit) if getattr(args, "junit_written", False) else None})
    return status


def run_tail(args: argparse.Namespace) -> int:
    import glob

    from .console import LiveView, warnings_to_stderr
    from .tail import Tail

    for target in args.logs:
        if not target.exists() and glob.has_magic(str(target)):
            raise UsageError(f"{str(target)!r} is a pattern: tail follows files, and folders (their *.jsonl "
                              f"files, also those created later): give the folder {str(target.parent)!r}")
    for target in args.logs:
        try:
            target.stat()
        except FileNotFoundError:  # a typo, or a log not written yet: said once, then waited for
            print(f"tracker tail: warning: {str(target)!r} does not exist (yet); waiting for it to appear",
                  file=sys.stderr)
        except OSError:
            pass  # a symbolic link loop, say: the follower says why it cannot read it
    from .logs import folder_logs

    stream = command_stream(args)
    thresholds = command_thresholds(args, [p for t in args.logs for p in (folder_logs(t, []) if t.is_dir() else [t])])
    warnings_to_stderr()
    stop = threading.Event()
    # Ctrl-C and SIGTERM only ask the tail to stop between two steps: an interrupt inside a step (a flush half
    # written, an engine half updated) could lose events.
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        tail = Tail(args.logs, args.out, interval_s=args.interval, grace_s=args.grace,
                    checkpoint_dir=args.checkpoint_dir, quarantine_path=args.quarantine,
                    max_line_bytes=args.max_line_bytes, session_timeout_s=args.session_timeout,
                    goodput=args.goodput, thresholds=thresholds, stream=stream, consumer=args.consumer, stop=stop,
                    nats_timeout_s=args.nats_timeout)
    except BaseException as exc:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if isinstance(exc, OSError):
            raise UsageError(cannot("use", exc)) from exc
        if isinstance(exc, StoppedError):
            print("tracker tail: stopped before NATS could be reached; nothing was read", file=sys.stderr)
            return EXIT_STOPPED
        raise
    names = f"nats:{stream.stream}" if stream is not None else ", ".join(str(p) for p in args.logs)
    view = LiveView(f"tracker tail {names} -> {args.out}", human_out(args)) if not args.quiet else None
    try:
        tail.run(stop, on_tick=view.update if view is not None else None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        final = tail.close()
        if view is not None:
            view.close(tail)
    stats, human, rejected = tail.stats, human_out(args), tail.decoder.rejected
    print(f"stopped: {stats.events} events, {rejected.total()} rejected lines, "
          f"{tail.reporter.late} late events, {stats.rotations} rotations, {stats.truncations} truncations, "
          f"{tail.reporter.engine.duplicates} duplicates", file=human)
    if tail.quarantine.count:
        print(f"  rejected lines in {tail.quarantine.path}", file=human)
    say_lost("tail", tail.quarantine)
    if final is None or final.failed:
        missing = "no report could be made" if final is None else f"{len(final.failed)} report files not written"
        print(f"tracker tail: {missing} in {args.out} (see the warnings above); replay the logs once the cause is "
              "fixed", file=sys.stderr)
        status = EXIT_USAGE
    else:
        print(f"reports in {args.out} (every window written; replay gives the same files)", file=human)
        print("\n".join(run_summary(tail.reporter.engine, tail.reporter.engine.totals())), file=human)
        status = exit_status(report_verdicts(args, thresholds, tail.reporter.writer.verdicts, tail.paths(), human),
                         bool(rejected.total()))
    if args.json:
        from .results import run_figures, verdicts_json

        print_json({
            "command": "tail", "version": 1, "exit_status": status, "logs": [str(p) for p in args.logs],
            "stream": stream_json(stream),
            "out": str(args.out), "interval_s": args.interval, "events": stats.events,
            "by_type": {t: n for t, n in sorted(tail.reporter.engine.counts.items()) if n},
            "duplicates": tail.reporter.engine.duplicates,
            "rejected": {"total": rejected.total(), "by_reason": dict(sorted(rejected.items()))},
            "late": tail.reporter.late, "rotations": stats.rotations, "truncations": stats.truncations,
            "quarantine": str(tail.quarantine.path) if tail.quarantine.count else None,
            "files_failed": [] if final is None else sorted(p.name for p in final.failed),
            "run": run_figures(tail.reporter.engine.totals()),
            "thresholds": verdicts_json(tail.reporter.writer.verdicts),
            "junit": str(args.junit) if getattr(args, "junit_written", False) else None})
    return status


def run_report(args: argparse.Namespace) -> int:
    from .html_report import REPORT_HTML, HtmlReport
    from .output import add_to_manifest, write_atomically

    out = Path(args.out)
    data = HtmlReport().render(out)  # ReportError (no reports there) is a usage error
    try:
        write_atomically(out / REPORT_HTML, data)
        add_to_manifest(out, REPORT_HTML)  # a later run into the folder replaces it as its own
    except OSError as exc:
        raise UsageError(cannot("write", exc)) from exc
    print(f"wrote {out / REPORT_HTML} ({len(data):,} bytes) from the reports in {out}")
    return EXIT_OK


def run_compare(args: argparse.Namespace) -> int:
    from .compare import check_html, compare_html, evaluate_all, gate_lines, parse_gate, read_run, table_lines
    from .output import write_atomically

    gates = [parse_gate(text) for text in args.fail_if]  # a malformed gate: exit 2 before anything is read
    html = check_html(args.html)
    a, b = read_run(args.run_a), read_run(args.run_b)
    verdicts = evaluate_all(gates, a, b)
    human = human_out(args)
    print("\n".join(table_lines(a, b)), file=human)
    unwritten = False
    try:
        write_atomically(html, compare_html(a, b, verdicts))
    except OSError as exc:  # the table is printed: say it, and keep the gates' status
        print(f"tracker compare: error: cannot write --html {str(args.html)!r}: {exc.strerror or exc}",
              file=sys.stderr)
        unwritten = True
    else:
        print(f"wrote {args.html}", file=human)
    if verdicts:
        print("\n".join(gate_lines(verdicts)), file=human)
    status = EXIT_THRESHOLDS if not all(v.ok for v in verdicts) else EXIT_USAGE if unwritten else EXIT_OK
    if args.json:
        from .compare import figure_rows
        from .results import compare_result

        print_json(compare_result(a, b, figure_rows(a, b), verdicts, None if unwritten else html, status))
    return status
