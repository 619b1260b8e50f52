"""The commands on logs themselves: ``tracker emit`` (append one event), ``validate`` (check), ``ship`` (to NATS).

Each takes the parsed arguments and returns the exit status; :mod:`tracker.cli` parses and dispatches.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import datetime
from typing import Any

from .cli_common import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_STOPPED,
    Terminated,
    UsageError,
    cannot,
    human_out,
    print_json,
    say_lost,
    terminate,
    total_size,
)
from .emitter import EventLog
from .errors import StoppedError
from .events import EVENT_TYPES, to_ts
from .summaries import counts_lines

__all__ = ("run_emit", "run_ship", "run_validate")


def _parse_ts(text: str) -> int:
    if text.lstrip("-").isdigit():
        return to_ts(int(text))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--ts: expected ISO-8601 with a UTC offset or epoch microseconds, got {text!r}") from None
    return to_ts(moment)


def _parse_field(event_type: str, item: str) -> tuple[str, Any]:
    name, sep, text = item.partition("=")
    if not sep:
        raise UsageError(f"expected key=value, got {item!r}")
    spec = EVENT_TYPES[event_type].get(name)
    if spec is None:
        allowed = ", ".join(EVENT_TYPES[event_type]) or "none"
        raise UsageError(f"{name!r} is not a field of {event_type!r} events (allowed: {allowed})")
    try:
        if spec.kind == "int":
            return name, int(text)
        if spec.kind == "number":
            return name, float(text)
        if spec.kind == "int_list":
            inner = text.strip().removeprefix("[").removesuffix("]")
            return name, [int(part) for part in inner.split(",")] if inner.strip() else []
    except ValueError:
        raise UsageError(f"{name}: expected {spec.kind.replace('_', ' ')}, got {text!r}") from None
    return name, text


def run_emit(args: argparse.Namespace) -> int:
    if args.type not in EVENT_TYPES:
        raise UsageError(f"unknown event type {args.type!r} (one of {', '.join(EVENT_TYPES)})")
    fields = dict(_parse_field(args.type, item) for item in args.fields)
    ts = _parse_ts(args.ts) if args.ts is not None else None
    with EventLog(args.log) as log:
        log.emit(args.type, args.session_id, ts=ts, **fields)
    return EXIT_OK


def run_validate(args: argparse.Namespace) -> int:
    from .decoder import Decoder, Quarantine, Rejected
    from .logs import decode_log, expand_logs, refuse_unsafe_outputs
    from .progress import ReadProgress, progress_wanted

    human = human_out(args)
    per_log: list[dict[str, object]] = []

    decoder = Decoder(max_line_bytes=args.max_line_bytes)
    try:
        quarantine = Quarantine(args.quarantine) if args.quarantine else None
    except OSError as exc:
        raise UsageError(cannot("use", exc)) from exc
    own = [quarantine.path, quarantine.reasons_path] if quarantine is not None else []
    try:
        paths = expand_logs(args.logs, exclude=own)
    except OSError as exc:
        raise UsageError(cannot("read", exc)) from exc
    if quarantine is not None:
        refuse_unsafe_outputs(paths, quarantine)
        try:
            quarantine.reset()  # this run's rejected lines only, as replay's: the same logs give the same files
        except OSError as exc:
            raise UsageError(cannot("use", exc)) from exc
    progress = ReadProgress(total_size(paths), label="validate", enabled=progress_wanted(args.quiet))
    seen = [0, 0]  # events and rejected lines the progress line has counted

    def advance(nbytes: int) -> None:
        events, rejected = decoder.events, decoder.rejected.total()
        progress.advance(nbytes, events - seen[0], rejected - seen[1])
        seen[:] = [events, rejected]

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminate) if in_main else None
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
                                    raise UsageError(f"cannot write {str(quarantine.path)!r}: "
                                                      f"{exc.strerror or exc}") from exc
                except OSError as exc:
                    raise UsageError(cannot("read", exc)) from exc
                counts = (decoder.events - events, decoder.rejected.total() - rejected,
                          decoder.duplicates - duplicates)
                per_log.append(dict(zip(("path", "events", "rejected", "duplicates"), (str(path), *counts),
                                        strict=True)))
                progress.say(f"{path}: {counts[0]} events, {counts[1]} rejected, {counts[2]} duplicates", human)
    except (Terminated, KeyboardInterrupt):
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
        print_json({"command": "validate", "version": 1, "exit_status": status, "logs": per_log,
                     "events": decoder.events, "by_type": by_type, "duplicates": decoder.duplicates,
                     "rejected": {"total": decoder.rejected.total(), "by_reason": by_reason},
                     "writers_with_gaps": dict(decoder.gaps()),
                     "quarantine": str(quarantine.path) if quarantine is not None and quarantined else None})
    return status


def run_ship(args: argparse.Namespace) -> int:
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
            raise UsageError(cannot("use", exc)) from exc
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
          f"{rejected.total()} rejected lines", file=human_out(args))
    if shipper.quarantine.count:
        print(f"  rejected lines in {shipper.quarantine.path} (never shipped)", file=human_out(args))
    say_lost("ship", shipper.quarantine)
    if pending:
        print(f"  {pending} bytes not shipped yet (an unfinished last line, or stopped first): shipped by the next "
              "tracker ship of these logs", file=human_out(args))
    if stopped:
        print("tracker ship: stopped while NATS had not acknowledged every event: the next tracker ship of these "
              "logs publishes them again", file=sys.stderr)
        return EXIT_STOPPED
    return EXIT_REJECTED if rejected.total() else EXIT_OK
