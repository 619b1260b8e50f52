"""What the commands of the command line share: exit statuses, messages, SIGTERM, the thresholds' gate.

Only light modules at the top (``tracker emit`` must start without polars or watchfiles): the rest is imported
where it is used.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from .errors import UsageError

if TYPE_CHECKING:
    from .decoder import Quarantine

__all__ = (
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_STOPPED",
    "EXIT_THRESHOLDS",
    "EXIT_USAGE",
    "Terminated",
    "UsageError",
    "cannot",
    "command_stream",
    "command_thresholds",
    "exit_status",
    "human_out",
    "print_json",
    "refuse_junit",
    "report_verdicts",
    "say_lost",
    "stream_json",
    "terminate",
    "total_size",
)

EXIT_OK: Final = 0
EXIT_REJECTED: Final = 1
EXIT_USAGE: Final = 2
EXIT_STOPPED: Final = 130  # stopped by SIGINT or SIGTERM before the end
EXIT_THRESHOLDS: Final = 99  # a threshold failed (k6's status), after every report file was written


def cannot(verb: str, exc: OSError) -> str:
    name = f" {str(exc.filename)!r}" if exc.filename is not None else ""
    return f"cannot {verb}{name}: {exc.strerror or exc}"


def say_lost(command: str, quarantine: Quarantine) -> None:
    """Say, at the end, how many rejected lines could not be quarantined (a full disk), if any."""
    if quarantine.lost:
        print(f"tracker {command}: {quarantine.lost} of the rejected lines could not be written to {quarantine.path} "
              "(see the warnings above); they are still in their logs", file=sys.stderr)


def human_out(args: argparse.Namespace) -> TextIO:
    """Where the human summary goes: stdout, or stderr when stdout is for --json's object."""
    return sys.stderr if getattr(args, "json", False) else sys.stdout


def print_json(result: dict[str, object]) -> None:
    from .results import dumps

    print(dumps(result))


class Terminated(Exception):
    """SIGTERM, raised where the program is, so that clean-up (the replay's spool folder) runs."""


def terminate(signum: int, frame: object) -> None:
    raise Terminated


def command_thresholds(args: argparse.Namespace, logs: Sequence[Path]) -> list[Any]:
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
    refuse_junit(args.junit, logs)
    quarantine = Path(os.path.realpath(args.quarantine if args.quarantine is not None else out / QUARANTINE_FILE))
    own = {Path(os.path.realpath(p)) for p in reports} | {quarantine,
                                                          quarantine.with_name(quarantine.name + ".reasons.jsonl")}
    checkpoint = getattr(args, "checkpoint_dir", None)
    checkpoints = Path(os.path.realpath(checkpoint if checkpoint is not None else out / CHECKPOINT_DIR))
    if junit in own or (junit.parent == out and junit.name.startswith("session_tracking_")) \
            or junit.is_relative_to(checkpoints):
        raise UsageError(f"--junit {str(args.junit)!r} is one of the files this command writes (a report, the "
                          "quarantine or the checkpoint): give it another name")
    problem = new_file_problem(junit)
    if problem is not None:
        raise UsageError(f"--junit {str(args.junit)!r}{':' if problem.startswith('the folder') else ''} {problem}")


def refuse_junit(junit: Path, logs: Sequence[Path]) -> None:
    for log in logs:
        with contextlib.suppress(OSError):
            if os.path.samefile(junit, log):
                raise UsageError(f"--junit {str(junit)!r} is one of the logs read: not overwritten")


def report_verdicts(args: argparse.Namespace, thresholds: list[Any], verdicts: Sequence[Any],
              logs: Sequence[Path], human: TextIO) -> bool | None:
    """Print the thresholds' table and write the --junit file; True when a threshold failed, None when the --junit
    file could not be written (and none failed)."""
    from .output import write_atomically
    from .thresholds import failed, junit_xml, report_lines

    if thresholds:
        print("\n".join(report_lines(verdicts, thresholds)), file=human)
    if args.junit is not None:
        refuse_junit(args.junit, logs)  # again: a followed folder may have gained it
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


def total_size(paths: Sequence[Path]) -> int:
    """The logs' bytes, for the progress line (a file that cannot be read counts 0: its error comes later)."""
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total


def command_stream(args: argparse.Namespace) -> Any:
    """The --nats/--stream stream a command reads (a StreamSpec), or None when it reads logs."""
    from .jetstream import StreamSpec

    if (args.nats is None) != (args.stream is None):
        raise UsageError("--nats and --stream go together: the server's address and the stream's name")
    if args.nats is None:
        if not args.logs:
            raise UsageError("give the logs to read, or --nats URL --stream NAME")
        return None
    if args.logs:
        raise UsageError("give the logs to read or --nats URL --stream NAME, not both")
    return StreamSpec(args.nats, args.stream, getattr(args, "subject", None))


def stream_json(stream: Any) -> dict[str, str] | None:
    """The stream a command read, for --json (the address without its password)."""
    from .jetstream import redacted

    return None if stream is None else {"nats": redacted(stream.url), "stream": stream.stream}


def exit_status(failed: bool | None, rejected: bool) -> int:
    """99 when a threshold failed, else 2 when the --junit file could not be written (None), else 1 when lines
    were rejected, else 0."""
    return EXIT_THRESHOLDS if failed else EXIT_USAGE if failed is None else EXIT_REJECTED if rejected else EXIT_OK
