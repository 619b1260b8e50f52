"""The ``tracker`` command line: ``main(*argv)`` returns the exit status."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

# Only light modules here: ``tracker emit`` (and its --help) must start without polars or watchfiles. The
# commands that need them import them when they run.
from .emitter import LOG_ENV_VAR, EventLog
from .errors import StoppedError, TrackerError
from .events import EVENT_TYPES, to_ts
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
    seed,
    session_timeout,
    sessions,
)

if TYPE_CHECKING:
    from .decoder import Quarantine
from .summaries import counts_lines, run_summary
from .version import VERSION

__all__ = ("main",)

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_STOPPED = 130  # stopped by SIGINT or SIGTERM before the end
EXIT_THRESHOLDS = 99  # a threshold failed (k6's status), after every report file was written



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
            inner = text.strip().removeprefix("[").removesuffix("]")
            return name, [int(part) for part in inner.split(",")] if inner.strip() else []
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


def _cannot(verb: str, exc: OSError) -> str:
    name = f" {str(exc.filename)!r}" if exc.filename else ""
    return f"cannot {verb}{name}: {exc.strerror or exc}"


def _say_lost(command: str, quarantine: Quarantine) -> None:
    """Say, at the end, how many rejected lines could not be quarantined (a full disk), if any."""
    if quarantine.lost:
        print(f"tracker {command}: {quarantine.lost} of the rejected lines could not be written to {quarantine.path} "
              "(see the warnings above); they are still in their logs", file=sys.stderr)


def _human(args: argparse.Namespace) -> TextIO:
    """Where the human summary goes: stdout, or stderr when stdout is for --json's object."""
    return sys.stderr if getattr(args, "json", False) else sys.stdout


def _print_json(result: dict[str, object]) -> None:
    from .results import dumps

    print(dumps(result))


def _cmd_validate(args: argparse.Namespace) -> int:
    from .decoder import Decoder, Quarantine, Rejected
    from .logs import decode_log, expand_logs, quarantine_outputs, refuse_outputs_that_are_logs
    from .progress import ReadProgress, progress_wanted

    human = _human(args)
    per_log: list[dict[str, object]] = []

    decoder = Decoder(max_line_bytes=args.max_line_bytes)
    try:
        quarantine = Quarantine(args.quarantine) if args.quarantine else None
    except OSError as exc:
        raise _UsageError(_cannot("use", exc)) from exc
    own = [quarantine.path, quarantine.reasons_path] if quarantine is not None else []
    try:
        paths = expand_logs(args.logs, exclude=own)
    except OSError as exc:
        raise _UsageError(_cannot("read", exc)) from exc
    if quarantine is not None:
        refuse_outputs_that_are_logs(paths, quarantine_outputs(quarantine))
        try:
            quarantine.reset()  # this run's rejected lines only, as replay's: the same logs give the same files
        except OSError as exc:
            raise _UsageError(_cannot("use", exc)) from exc
    progress = ReadProgress(_size(paths), label="validate", enabled=progress_wanted(args.quiet))
    seen = [0, 0]  # events and rejected lines the progress line has counted

    def advance(nbytes: int) -> None:
        events, rejected = decoder.events, decoder.rejected.total()
        progress.advance(nbytes, events - seen[0], rejected - seen[1])
        seen[:] = [events, rejected]

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    try:
        with progress:
            for path in paths:
                events, rejected, duplicates = decoder.events, decoder.rejected.total(), decoder.duplicates
                try:
                    for item in decode_log(path, decoder, on_span=advance):
                        if isinstance(item, Rejected):
                            progress.say(f"  {item.describe()}", human)
                            if quarantine is not None:
                                try:
                                    quarantine.add(item)
                                except OSError as exc:  # a full disk: validate stops, its files still pair
                                    raise _UsageError(f"cannot write {str(quarantine.path)!r}: "
                                                      f"{exc.strerror or exc}") from exc
                except OSError as exc:
                    raise _UsageError(_cannot("read", exc)) from exc
                counts = (decoder.events - events, decoder.rejected.total() - rejected,
                          decoder.duplicates - duplicates)
                per_log.append(dict(zip(("path", "events", "rejected", "duplicates"), (str(path), *counts),
                                        strict=True)))
                progress.say(f"{path}: {counts[0]} events, {counts[1]} rejected, {counts[2]} duplicates", human)
    except (_Terminated, KeyboardInterrupt):
        print("tracker validate: stopped before the end: the counts above cover the logs read so far",
              file=sys.stderr)
        return EXIT_STOPPED
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        if quarantine is not None:
            quarantine.close()
    if len(paths) > 1:
        print(f"total: {decoder.events} events, {decoder.rejected.total()} rejected, {decoder.duplicates} duplicates",
              file=human)
    by_type, by_reason = dict(sorted(decoder.by_type.items())), dict(sorted(decoder.rejected.items()))
    for line in (*counts_lines("events by type:", by_type), *counts_lines("rejected lines by reason:", by_reason),
                 *counts_lines("writers with missing sequence numbers:", decoder.gaps())):
        print(line, file=human)
    quarantined = quarantine is not None and quarantine.count
    if quarantine is not None and quarantined:
        print(f"{quarantine.count} rejected lines written to {quarantine.path} (reasons in {quarantine.reasons_path})",
              file=human)
    status = EXIT_REJECTED if decoder.rejected.total() else EXIT_OK
    if args.json:
        _print_json({"command": "validate", "version": 1, "exit_status": status, "logs": per_log,
                     "events": decoder.events, "by_type": by_type, "duplicates": decoder.duplicates,
                     "rejected": {"total": decoder.rejected.total(), "by_reason": by_reason},
                     "writers_with_gaps": dict(decoder.gaps()),
                     "quarantine": str(quarantine.path) if quarantine is not None and quarantined else None})
    return status


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, run_demo

    config = DemoConfig(sessions=args.sessions, duration=args.duration, seed=args.seed)
    # The command as it was run (.venv/bin/tracker, python -m tracker...): a bare "tracker" may not be on the PATH.
    try:
        clean, passed = run_demo(Path(args.out), config, interval_s=args.interval, command=args.invoked_as)
    except OSError as exc:
        raise _UsageError(_cannot("use", exc)) from exc
    return EXIT_THRESHOLDS if not passed else EXIT_OK if clean else EXIT_REJECTED


class _Terminated(Exception):
    """SIGTERM, raised where the program is, so that clean-up (the replay's spool folder) runs."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


def _thresholds(args: argparse.Namespace, logs: Sequence[Path]) -> list[Any]:
    """The --threshold expressions, checked against the reports' columns, and the --junit file, checked against
    ``logs`` and the report files, before any log is read."""
    from .logs import report_outputs
    from .tables import schemas
    from .thresholds import parse_threshold

    summary, totals = schemas(args.goodput is not None)
    thresholds = [parse_threshold(text, summary, totals) for text in args.threshold]
    if args.junit is not None:
        _check_junit(args, logs, [path for _, path in report_outputs(args.out)])
    return thresholds


def _check_junit(args: argparse.Namespace, logs: Sequence[Path], reports: Sequence[Path]) -> None:
    """Refuse a --junit file that is a log, one of the command's own files (reports, quarantine, checkpoint), a
    folder, or in a folder that does not exist: before anything is read, not after an hour of tail."""
    from .decoder import QUARANTINE_FILE
    from .logs import new_file_problem
    from .tail import CHECKPOINT_DIR

    junit, out = Path(os.path.realpath(args.junit)), Path(os.path.realpath(args.out))
    _refuse_junit(args.junit, logs)
    quarantine = Path(os.path.realpath(args.quarantine if args.quarantine is not None else out / QUARANTINE_FILE))
    own = {Path(os.path.realpath(p)) for p in reports} | {quarantine,
                                                          quarantine.with_name(quarantine.name + ".reasons.jsonl")}
    checkpoint = getattr(args, "checkpoint_dir", None)
    checkpoints = Path(os.path.realpath(checkpoint if checkpoint is not None else out / CHECKPOINT_DIR))
    if junit in own or (junit.parent == out and junit.name.startswith("session_tracking_")) \
            or junit.is_relative_to(checkpoints):
        raise _UsageError(f"--junit {str(args.junit)!r} is one of the files this command writes (a report, the "
                          "quarantine or the checkpoint): give it another name")
    problem = new_file_problem(junit)
    if problem is not None:
        raise _UsageError(f"--junit {str(args.junit)!r}{':' if problem.startswith('the folder') else ''} {problem}")


def _refuse_junit(junit: Path, logs: Sequence[Path]) -> None:
    for log in logs:
        with contextlib.suppress(OSError):
            if os.path.samefile(junit, log):
                raise _UsageError(f"--junit {str(junit)!r} is one of the logs read: not overwritten")


def _verdicts(args: argparse.Namespace, thresholds: list[Any], verdicts: Sequence[Any],
              logs: Sequence[Path], human: TextIO) -> bool | None:
    """Print the thresholds' table and write the --junit file; True when a threshold failed, None when the --junit
    file could not be written (and none failed)."""
    from .output import write_atomically
    from .thresholds import failed, junit_xml, report_lines

    if thresholds:
        print("\n".join(report_lines(verdicts, thresholds)), file=human)
    if args.junit is not None:
        _refuse_junit(args.junit, logs)  # again: a followed folder may have gained it
        args.junit_written = False
        try:
            # Into the file a symlink names (the link stays), never over something that is not a file.
            target = Path(os.path.realpath(args.junit))
            if target.exists() and not target.is_file():
                raise OSError(errno.EEXIST, "it is no longer a regular file")
            write_atomically(target, junit_xml(verdicts, thresholds))
        except OSError as exc:  # the reports are written: say it, and keep the thresholds' status
            print(f"tracker {args.command}: error: cannot write --junit {str(args.junit)!r}: "
                  f"{exc.strerror or exc}", file=sys.stderr)
            return True if failed(verdicts) else None
        args.junit_written = True
        print(f"JUnit report in {args.junit}", file=human)
    return failed(verdicts)


def _size(paths: Sequence[Path]) -> int:
    """The logs' bytes, for the progress line (a file that cannot be read counts 0: its error comes later)."""
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total


def _cmd_replay(args: argparse.Namespace) -> int:
    from .decoder import QUARANTINE_FILE
    from .logs import expand_logs
    from .progress import ReadProgress, progress_wanted
    from .replayer import replay

    in_main = threading.current_thread() is threading.main_thread()
    stream = _stream(args)
    try:
        quarantine = Path(args.quarantine) if args.quarantine is not None else Path(args.out) / QUARANTINE_FILE
        logs = expand_logs(args.logs, exclude=[quarantine, quarantine.with_name(f"{quarantine.name}.reasons.jsonl")])
    except OSError:
        logs = []  # replay says what cannot be read
    thresholds = _thresholds(args, logs)
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    from .console import warnings_to_stderr

    warnings_to_stderr()  # NATS outages, and files that cannot be written to the spool, are said as they happen
    try:
        with ReadProgress(_size(logs), label="replay", enabled=progress_wanted(args.quiet)) as progress:
            result = replay(args.logs, args.out, interval_s=args.interval, quarantine_path=args.quarantine,
                            memory_bytes=int(args.memory * 2**20), spool_dir=args.spool_dir,
                            max_line_bytes=args.max_line_bytes, session_timeout_s=args.session_timeout,
                            goodput=args.goodput, thresholds=thresholds, on_block=progress.advance, stream=stream,
                            nats_timeout_s=args.nats_timeout)
    except OSError as exc:
        raise _UsageError(_cannot("use", exc)) from exc
    except (_Terminated, KeyboardInterrupt, StoppedError):
        print("tracker replay: stopped before the end; the reports in the folder are incomplete", file=sys.stderr)
        return EXIT_STOPPED
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    read, rejected, human = result.read, result.rejected, _human(args)
    what = (f"the stream {stream.stream!r}" if stream is not None
            else f"{len(result.logs)} log{'s' if len(result.logs) != 1 else ''}")
    print(f"read {what}: {read.events} events, {rejected.total()} rejected, {read.duplicates} duplicates", file=human)
    if result.quarantine.count:
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(rejected.items()))
        print(f"  rejected lines ({reasons}) in {result.quarantine.path}", file=human)
    _say_lost("replay", result.quarantine)
    windows = sum(1 for path in result.written if path.name.startswith("session_tracking_report_"))
    run_files = "the summary, totals, errors" + (", thresholds" if thresholds else "")
    print(f"wrote {len(result.written)} files to {args.out}: {run_files}, {windows} per-window session reports and "
          "the HTML report, session_tracking_report.html", file=human)
    if result.removed:
        print(f"  removed {len(result.removed)} report files of an earlier run", file=human)
    print("\n".join(run_summary(result.engine, result.tables.totals)), file=human)
    status = _status(_verdicts(args, thresholds, result.verdicts, result.logs, human), bool(rejected))
    if args.json:
        from .results import run_figures, verdicts_json

        _print_json({
            "command": "replay", "version": 1, "exit_status": status, "logs": [str(p) for p in result.logs],
            "stream": _stream_json(stream),
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


def _cmd_tail(args: argparse.Namespace) -> int:
    import glob

    from .console import LiveView, warnings_to_stderr
    from .tail import Tail

    for target in args.logs:
        if not target.exists() and glob.has_magic(str(target)):
            raise _UsageError(f"{str(target)!r} is a pattern: tail follows files, and folders (their *.jsonl "
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

    stream = _stream(args)
    thresholds = _thresholds(args, [p for t in args.logs for p in (folder_logs(t, []) if t.is_dir() else [t])])
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
            raise _UsageError(_cannot("use", exc)) from exc
        if isinstance(exc, StoppedError):
            print("tracker tail: stopped before NATS could be reached; nothing was read", file=sys.stderr)
            return EXIT_STOPPED
        raise
    names = f"nats:{stream.stream}" if stream is not None else ", ".join(str(p) for p in args.logs)
    view = LiveView(f"tracker tail {names} -> {args.out}", _human(args)) if not args.quiet else None
    try:
        tail.run(stop, on_tick=view.update if view is not None else None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        final = tail.close()
        if view is not None:
            view.close(tail)
    stats, human, rejected = tail.stats, _human(args), tail.decoder.rejected
    print(f"stopped: {stats.events} events, {rejected.total()} rejected lines, "
          f"{tail.reporter.late} late events, {stats.rotations} rotations, {stats.truncations} truncations, "
          f"{tail.reporter.engine.duplicates} duplicates", file=human)
    if tail.quarantine.count:
        print(f"  rejected lines in {tail.quarantine.path}", file=human)
    _say_lost("tail", tail.quarantine)
    if final is None or final.failed:
        missing = "no report could be made" if final is None else f"{len(final.failed)} report files not written"
        print(f"tracker tail: {missing} in {args.out} (see the warnings above); replay the logs once the cause is "
              "fixed", file=sys.stderr)
        status = EXIT_USAGE
    else:
        print(f"reports in {args.out} (every window written; replay gives the same files)", file=human)
        print("\n".join(run_summary(tail.reporter.engine, tail.reporter.engine.totals())), file=human)
        status = _status(_verdicts(args, thresholds, tail.reporter.writer.verdicts, tail.paths(), human),
                         bool(rejected.total()))
    if args.json:
        from .results import run_figures, verdicts_json

        _print_json({
            "command": "tail", "version": 1, "exit_status": status, "logs": [str(p) for p in args.logs],
            "stream": _stream_json(stream),
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


def _stream(args: argparse.Namespace) -> Any:
    """The --nats/--stream stream a command reads (a StreamSpec), or None when it reads logs."""
    from .jetstream import StreamSpec

    if (args.nats is None) != (args.stream is None):
        raise _UsageError("--nats and --stream go together: the server's address and the stream's name")
    if args.nats is None:
        if not args.logs:
            raise _UsageError("give the logs to read, or --nats URL --stream NAME")
        return None
    if args.logs:
        raise _UsageError("give the logs to read or --nats URL --stream NAME, not both")
    return StreamSpec(args.nats, args.stream, getattr(args, "subject", None))


def _stream_json(stream: Any) -> dict[str, str] | None:
    """The stream a command read, for --json (the address without its password)."""
    from .jetstream import redacted

    return None if stream is None else {"nats": redacted(stream.url), "stream": stream.stream}


def _cmd_ship(args: argparse.Namespace) -> int:
    from .console import warnings_to_stderr
    from .jetstream import StreamSpec
    from .ship import Shipper

    spec = StreamSpec(args.nats, args.stream, args.subject)
    warnings_to_stderr()
    stop, stopped = threading.Event(), False
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            shipper = Shipper(args.logs, spec, stop=stop, state_dir=args.state_dir, quarantine_path=args.quarantine,
                              max_line_bytes=args.max_line_bytes, timeout_s=args.nats_timeout)
        except OSError as exc:
            raise _UsageError(_cannot("use", exc)) from exc
        try:
            shipper.run(once=args.once)
        except StoppedError:
            stopped = True
        finally:
            pending = shipper.pending_bytes()
            shipper.release()
    except StoppedError:
        print("tracker ship: stopped before NATS could be reached; nothing was shipped", file=sys.stderr)
        return EXIT_STOPPED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stats, rejected = shipper.stats, shipper.decoder.rejected
    print(f"shipped {stats.events} events to the stream {spec.stream!r} ({stats.duplicates} of them it had already), "
          f"{rejected.total()} rejected lines", file=_human(args))
    if shipper.quarantine.count:
        print(f"  rejected lines in {shipper.quarantine.path} (never shipped)", file=_human(args))
    _say_lost("ship", shipper.quarantine)
    if pending:
        print(f"  {pending} bytes not shipped yet (an unfinished last line, or stopped first): shipped by the next "
              "tracker ship of these logs", file=_human(args))
    if stopped:
        print("tracker ship: stopped while NATS had not acknowledged every event: the next tracker ship of these "
              "logs publishes them again", file=sys.stderr)
        return EXIT_STOPPED
    return EXIT_REJECTED if rejected.total() else EXIT_OK


def _status(failed: bool | None, rejected: bool) -> int:
    """99 when a threshold failed, else 2 when the --junit file could not be written (None), else 1 when lines
    were rejected, else 0."""
    return EXIT_THRESHOLDS if failed else EXIT_USAGE if failed is None else EXIT_REJECTED if rejected else EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from .html_report import REPORT_HTML, HtmlReport
    from .output import add_to_manifest, write_atomically

    out = Path(args.out)
    data = HtmlReport().render(out)  # ReportError (no reports there) is a usage error
    try:
        write_atomically(out / REPORT_HTML, data)
        add_to_manifest(out, REPORT_HTML)  # a later run into the folder replaces it as its own
    except OSError as exc:
        raise _UsageError(_cannot("write", exc)) from exc
    print(f"wrote {out / REPORT_HTML} ({len(data):,} bytes) from the reports in {out}")
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import check_html, compare_html, evaluate_all, gate_lines, parse_gate, read_run, table_lines
    from .output import write_atomically

    gates = [parse_gate(text) for text in args.fail_if]  # a malformed gate: exit 2 before anything is read
    html = check_html(args.html)
    a, b = read_run(args.run_a), read_run(args.run_b)
    verdicts = evaluate_all(gates, a, b)
    human = _human(args)
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

        _print_json(compare_result(a, b, figure_rows(a, b), verdicts, None if unwritten else html, status))
    return status


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
    command.add_argument("--out", required=True, type=Path, help="folder for the reports")
    command.add_argument("--interval", type=interval, default=DEFAULT_INTERVAL_S, metavar="DURATION",
                         help=f"{_INTERVAL_HELP} (default: {DEFAULT_INTERVAL_S} s)")
    command.add_argument("--session-timeout", type=session_timeout, metavar="DURATION", help=_TIMEOUT_HELP)
    command.add_argument("--threshold", action="append", default=[], metavar="EXPR", help=threshold_help)
    command.add_argument("--junit", type=Path, metavar="FILE", help="write the thresholds' verdicts as JUnit XML")
    command.add_argument("--goodput", type=goodput, metavar="LIMITS", help=_GOODPUT_HELP)
    command.add_argument("--quarantine", type=Path, metavar="FILE",
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
    emit.add_argument("--log", help=f"log file (default: ${LOG_ENV_VAR}, else ./events.jsonl)")
    emit.add_argument("--ts", help="event time: ISO-8601 with offset, or epoch microseconds (default: now)")
    emit.set_defaults(run=_cmd_emit)

    validate = commands.add_parser(
        "validate", help="check logs line by line",
        description="Check logs line by line: counts by type, every rejected line with its reason. "
                    "Exit status 1 when any line is rejected.",
    )
    validate.add_argument("logs", metavar="LOG", nargs="+",
                          help="log files, quoted glob patterns, or folders (their *.jsonl files)")
    validate.add_argument("--quarantine", type=Path, metavar="FILE",
                          help="append rejected lines verbatim to FILE (reasons to FILE.reasons.jsonl)")
    validate.add_argument("--max-line-bytes", type=max_line_bytes, default=DEFAULT_MAX_LINE_BYTES, metavar="N",
                          help=_MAX_LINE_HELP)
    validate.add_argument("--json", action="store_true", help=_JSON_HELP)
    validate.add_argument("--quiet", action="store_true", help="no progress line on a terminal")
    validate.set_defaults(run=_cmd_validate)

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
    replay_.add_argument("--spool-dir", type=Path, metavar="DIR",
                         help="where events beyond --memory wait, in a temporary folder (default: OUT)")
    replay_.add_argument("--quiet", action="store_true", help="no progress line on a terminal")
    replay_.set_defaults(run=_cmd_replay)

    tail_ = commands.add_parser(
        "tail", help="follow live logs and write reports as windows close",
        description="Follow live logs (files, or folders of *.jsonl) and write the reports as windows close, "
                    "with a live view. Survives rotation, truncation and restarts (a checkpoint in "
                    "OUT/.tracker-checkpoint). Ctrl-C (or SIGTERM) stops: every window is written, the "
                    "checkpoint saved and a summary printed.",
        epilog="example: tracker tail run/events.jsonl --out reports --interval 60",
    )
    tail_.add_argument("logs", metavar="LOG_OR_DIR", nargs="*", type=Path,
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
    tail_.add_argument("--checkpoint-dir", type=Path, metavar="DIR", help="default: OUT/.tracker-checkpoint")
    tail_.add_argument("--quiet", action="store_true", help="no live view")
    tail_.set_defaults(run=_cmd_tail)

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
    ship.add_argument("logs", metavar="LOG_OR_DIR", nargs="+", type=Path,
                      help="log files, or folders (their *.jsonl files); a path that does not exist yet is waited for")
    ship.add_argument("--nats", type=nats_url, metavar="URL", required=True, help=_NATS_HELP)
    ship.add_argument("--stream", type=nats_name, metavar="NAME", required=True,
                      help="the JetStream stream (created when missing: file storage, 7 days, subjects NAME.>)")
    ship.add_argument("--subject", type=nats_subject, metavar="SUBJECT",
                      help="the subject to publish on (default: STREAM.events); the stream must take it")
    ship.add_argument("--nats-timeout", type=nats_timeout, default=5.0, metavar="DURATION", help=_NATS_TIMEOUT_HELP)
    ship.add_argument("--once", action="store_true", help="ship what the logs hold now, then exit")
    ship.add_argument("--state-dir", type=Path, metavar="DIR",
                      help="where the positions and the quarantine go (default: .tracker-ship/STREAM in the first "
                           "log's folder)")
    ship.add_argument("--quarantine", type=Path, metavar="FILE",
                      help="where rejected lines go (default: STATE_DIR/quarantine.jsonl)")
    ship.add_argument("--max-line-bytes", type=max_line_bytes, default=DEFAULT_MAX_LINE_BYTES, metavar="N",
                      help=_MAX_LINE_HELP)
    ship.set_defaults(run=_cmd_ship)

    report = commands.add_parser(
        "report", help="write the HTML report of a reports folder",
        description="Write (again) the self-contained HTML report, session_tracking_report.html, from the CSV files "
                    "of a folder that tracker replay or tracker tail wrote (also one made before the HTML report "
                    "existed). Nothing else is changed.",
        epilog="example: tracker report reports",
    )
    report.add_argument("out", metavar="OUT_DIR", help="a folder of tracker reports")
    report.set_defaults(run=_cmd_report)

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
    compare.add_argument("run_a", metavar="RUN_A", type=Path, help="the baseline run's report folder")
    compare.add_argument("run_b", metavar="RUN_B", type=Path, help="the report folder of the run compared with it")
    compare.add_argument("--html", type=Path, default=Path("compare.html"), metavar="FILE",
                         help="where the comparison page goes (default: ./compare.html)")
    compare.add_argument("--fail-if", action="append", default=[], metavar="EXPR", dest="fail_if",
                         help="fail (exit status 99) when B is worse than A: COLUMN>+N%% (the change in percent is "
                              "above N, e.g. 'response_time_ms_p95>+10%%'), COLUMN<-N%% (below -N, e.g. "
                              "'answers_per_s<-5%%'), or without %% on the difference B - A (e.g. "
                              "'error_rate>+0.01'); COLUMN any number column of the totals; a gate that cannot be "
                              "evaluated (an empty value, a change in percent from 0) fails; repeatable")
    compare.add_argument("--json", action="store_true", help=_JSON_HELP)
    compare.set_defaults(run=_cmd_compare)

    demo = commands.add_parser(
        "demo", help="run a simulated stress test",
        description="Simulate concurrent chatbot sessions writing a log while tracker tail follows it live "
                    "and writes the reports; then show what each session did.",
    )
    demo.add_argument("--sessions", type=sessions, default=20,
                      help=f"concurrent sessions, 1 to {MAX_DEMO_SESSIONS} (default: 20)")
    demo.add_argument("--duration", type=demo_duration, default=30.0, metavar="DURATION",
                      help="how long to run: seconds, or with a unit: 0.5s, 90s, 5m, 1h (at most 1d; default: 30 s)")
    demo.add_argument("--out", default="tracker-demo", help="output folder (default: ./tracker-demo)")
    demo.add_argument("--seed", type=seed, default=7, help=f"random seed, 0 to {MAX_SEED} (default: 7)")
    demo.add_argument("--interval", type=interval, default=5, metavar="DURATION",
                      help=f"{_INTERVAL_HELP} (default: 5 s, so the demo writes several)")
    demo.set_defaults(run=_cmd_demo)
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
    except (_UsageError, TrackerError) as exc:
        print(f"tracker {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
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
