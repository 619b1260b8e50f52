"""The original API's reports, made by a child process at the lowest CPU priority.

:class:`~tracker.session_tracker.SessionTracker` runs on the stress test's own
event loop, where no call may wait. So its reports are not made in its
process: :class:`ReportProcess` hands the lines its log got to a child
(``python -m tracker.report_process``), which folds them into the same
:class:`~tracker.live.LiveReporter` as ``tracker tail``'s and writes the
files. The child has its own GIL, never holds the caller's, and runs at nice
19, so on a busy machine the caller's threads get a core first. The caller's
process never loads polars.

The pipe to the child carries frames: one kind byte, an 8-byte length and the
payload. ``L``: complete lines of the log, as the emitter wrote them. ``F``:
a flush (``{"now_us": ..., "final": ...}``), which the child answers on its
own pipe with ``{"written": n, "failed": [...]}`` or ``{"error": "..."}``.
When the pipe ends (the tracker was closed, or its process ended, even by
SIGKILL) the child exits. It runs in a process group of its own and ignores
SIGINT, so a Ctrl-C in the terminal leaves it to write the tracker's final
report.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import traceback
import weakref
from pathlib import Path
from typing import IO, Any, Final

import orjson

from .errors import ReportError

__all__ = ("ReportProcess", "main")

#: The most bytes of lines in one frame (cut at a newline): the child decodes a frame at a time.
FRAME_BYTES: Final = 4 << 20
_HEADER: Final = 9
_ROOT: Final = str(Path(__file__).resolve().parent.parent)  # the folder holding the tracker package


def _frame(kind: bytes, payload: bytes | memoryview) -> bytes:
    return kind + len(payload).to_bytes(8, "big") + payload


def _read_exact(stream: IO[bytes], size: int) -> bytes | None:
    """``size`` bytes, or None when the stream ends first."""
    parts, left = [], size
    while left:
        part = stream.read(left)
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


class ReportProcess:
    """The child process that writes a tracker's reports; started by the first call that needs it.

    Not thread-safe: the tracker calls it under one lock. Raises :class:`ReportError` when the child cannot be
    started, has ended, or could not write the reports; once it has ended, every later call raises (its
    engine held every event sent so far: a new one would report only part of the run).
    """

    def __init__(self, out_dir: Path, interval_s: int, session_timeout_s: float | None) -> None:
        self.out_dir = out_dir
        self._config = {"out_dir": str(out_dir), "interval_s": interval_s, "session_timeout_s": session_timeout_s}
        self._child: subprocess.Popen[bytes] | None = None
        self._ended: str | None = None  # why the child ended, once it has
        self.sent = 0  # sends so far (0: the child has seen no event)
        self._finalizer: weakref.finalize[Any, ReportProcess] | None = None

    def start(self) -> None:
        """Start the child now (it takes a second to load polars), unless it already runs."""
        self._start()

    @property
    def pid(self) -> int | None:
        """The child's process id (None before it started)."""
        return None if self._child is None else self._child.pid

    @property
    def exit_status(self) -> int | None:
        """The child's exit status once it ended and was waited for (-N: killed by signal N), else None."""
        return None if self._child is None else self._child.returncode

    def _start(self) -> subprocess.Popen[bytes]:
        if self._ended is not None:
            raise ReportError(self._ended)
        if self._child is not None:
            return self._child
        if not sys.executable:
            self._ended = "cannot start the report process: this Python does not know its own executable"
            raise ReportError(self._ended)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "tracker.report_process", orjson.dumps(self._config).decode()],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=env,
                process_group=0)  # its own group: a Ctrl-C in the terminal reaches the program, not this child
        except OSError as exc:
            self._ended = f"cannot start the report process ({sys.executable!r}): {exc}"
            raise ReportError(self._ended) from exc
        self._finalizer = weakref.finalize(self, _end, self._child)
        return self._child

    def _failed(self, child: subprocess.Popen[bytes], exc: BaseException | None) -> ReportError:
        """The child is gone: say why, once and for all."""
        try:
            status = child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            status = child.wait()
        how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        self._ended = f"the report process {how}: no more reports from this tracker"
        error = ReportError(self._ended)
        error.__cause__ = exc
        return error

    def _send(self, child: subprocess.Popen[bytes], data: bytes) -> None:
        assert child.stdin is not None
        view = memoryview(data)
        try:
            while view:  # unbuffered: one os.write a call, which a signal may cut short
                view = view[child.stdin.write(view) or 0:]
        except ValueError:  # its pipe was closed: by close(), or at the interpreter's exit
            raise ReportError(self._ended or "the report process was ended: its reports are over") from None
        except OSError as exc:
            raise self._failed(child, exc)  # noqa: B904 - its cause is set

    def send(self, lines: bytes | bytearray) -> None:
        """Hand complete log lines (each ending in a newline) to the child."""
        if not lines:
            return
        child = self._start()
        view, start, size = memoryview(lines), 0, len(lines)
        while start < size:
            end = size if size - start <= FRAME_BYTES else lines.rfind(b"\n", start, start + FRAME_BYTES) + 1
            if end <= start:  # a line longer than a frame (the emitter's lines are far shorter)
                end = lines.find(b"\n", start + FRAME_BYTES) + 1 or size
            self._send(child, _frame(b"L", view[start:end]))
            start = end
        self.sent += 1

    def flush(self, *, now_us: int | None, final: bool) -> int:
        """Have the child write the closed windows' files (``final``: every window), after every line sent; how
        many files it wrote."""
        child = self._start()
        self._send(child, _frame(b"F", orjson.dumps({"now_us": now_us, "final": final})))
        assert child.stdout is not None
        header = _read_exact(child.stdout, _HEADER)
        reply = None if header is None else _read_exact(child.stdout, int.from_bytes(header[1:], "big"))
        if reply is None:
            raise self._failed(child, None)
        answer = orjson.loads(reply)
        if "error" in answer:
            raise ReportError(f"the report process could not write the reports: {answer['error']}")
        if answer["failed"]:
            raise ReportError(f"{len(answer['failed'])} report files could not be written, the first "
                              f"{answer['failed'][0]}")
        return int(answer["written"])

    def close(self) -> None:
        """End the child (it has written what it was asked to); every later call raises :class:`ReportError`."""
        if self._finalizer is not None:
            self._finalizer()
        if self._ended is None:
            self._ended = "the tracker was closed: its reports are over"

    def forget(self) -> None:
        """In a forked process: let go of the parent's child without touching it (its pipe's ends are closed
        here, so that the child still sees the pipe end when the parent's tracker closes)."""
        child, self._child = self._child, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._ended = "a forked process writes no reports"
        if child is not None:
            for stream in (child.stdin, child.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        os.close(stream.fileno())


def _end(child: subprocess.Popen[bytes]) -> None:
    """Close the child's pipe (it then exits) and wait for it; kill it if it does not exit."""
    for stream in (child.stdin, child.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


# -- the child ---------------------------------------------------------------------------------------------------


class _Child:
    """The child's side: lines in, files out."""

    def __init__(self, config: dict[str, Any]) -> None:
        from .decoder import Decoder
        from .live import LiveReporter

        self.live = LiveReporter(Path(config["out_dir"]), interval_s=config["interval_s"], grace_s=0,
                                 session_timeout_s=config["session_timeout_s"])
        self.decoder = Decoder(dedupe=False)
        self.error: str | None = None  # the first failure to fold lines in, said at the next flush

    def add(self, data: bytes) -> None:
        from .batch import decode_block

        if self.error is not None:
            return  # the engine missed events: its reports would be wrong
        try:
            block = decode_block(data, self.decoder)
            if block.rejected:
                raise ValueError(f"a line the emitter wrote was rejected: {block.rejected[0].describe()}")
            self.live.add_frame(block.frame)
        except Exception:
            self.error = "folding the events in failed:\n" + traceback.format_exc()

    def flush(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error}
        try:
            final = bool(request["final"])
            if not final and request["now_us"] is not None:
                self.live.advance(now_us=int(request["now_us"]), idle=True)
            result = self.live.flush(final=final)
        except Exception:
            return {"error": traceback.format_exc()}
        return {"written": len(result.written), "failed": [str(p) for p in result.failed]}


def main(argv: list[str] | None = None) -> int:
    """The child: read frames from stdin until it ends, answer each flush on the original stdout."""
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the test: the tracker ends this process
    with contextlib.suppress(OSError):  # (a lower priority is always allowed; a sandbox might refuse)
        os.nice(19)  # before polars starts its threads: they inherit it
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # a stray print goes to stderr, never into the replies
    child = _Child(orjson.loads(args[0]))
    stdin = sys.stdin.buffer
    while (header := _read_exact(stdin, _HEADER)) is not None:
        payload = _read_exact(stdin, int.from_bytes(header[1:], "big"))
        if payload is None:
            break
        if header[:1] == b"L":
            child.add(payload)
        else:
            replies.write(_frame(b"R", orjson.dumps(child.flush(orjson.loads(payload)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
