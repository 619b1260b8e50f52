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
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import orjson

from .errors import ReportError

__all__ = ("REPLY_STALL_S", "WRITE_STALL_S", "Flushed", "ReportProcess", "main")

#: The most bytes of lines in one frame (cut at a newline): the child decodes a frame at a time.
FRAME_BYTES: Final = 4 << 20
#: How long the child may take no lines (its pipe full), or give no answer to a flush, while using no CPU at all,
#: before it is taken for stuck (stopped, or hung) and ended. A child slowed down by a busy machine uses some.
WRITE_STALL_S: Final = 60.0
REPLY_STALL_S: Final = 300.0
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


@dataclass(frozen=True, slots=True)
class Flushed:
    """What the child wrote in one flush, what it could not write (written again at the next flush), and what it
    warned of (why it could not write, ...)."""

    written: int
    failed: tuple[str, ...]
    warnings: tuple[str, ...]


class _Interrupted(Exception):
    """A wait on the child ended early: the process is being closed."""


class ReportProcess:
    """The child process that writes a tracker's reports; started by the first call that needs it.

    Calls come from one thread at a time (the tracker's report lock), but for :meth:`close`, which may come from
    any thread: it ends a call in progress within a second. Raises :class:`ReportError` when the child cannot
    be started, has ended (its reason is then :attr:`ended`), could not write the reports, or took no line for
    :data:`WRITE_STALL_S` or gave no answer to a flush for :data:`REPLY_STALL_S` while using no CPU (stopped, or
    hung: it is then killed). Once it has ended, every later call raises: its engine held every event sent so far,
    so a new one would report only part of the run.
    """

    def __init__(self, out_dir: Path, interval_s: int, session_timeout_s: float | None) -> None:
        self.out_dir = out_dir
        self._config = {"out_dir": str(out_dir), "interval_s": interval_s, "session_timeout_s": session_timeout_s}
        self._child: subprocess.Popen[bytes] | None = None
        #: Why the child ended (None while it may still report): every call after raises ReportError with it.
        self.ended: str | None = None
        self.sent = 0  # sends begun so far (0: the child has seen no event)
        #: One exchange with the child at a time; close() and the finalizer take it too, so a descriptor is never
        #: closed while another thread uses it (its number could be a new file's by then). Reentrant: the exchange
        #: that ends the child runs the finalizer, and close() may come from a signal handler in that thread.
        self._shared = _Shared()
        self._finalizer: weakref.finalize[Any, ReportProcess] | None = None

    def start(self) -> None:
        """Start the child now (it takes a second to load polars), unless it already runs."""
        with self._shared.io:
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
        if self.ended is not None:
            raise ReportError(self.ended)
        if self._child is not None:
            return self._child
        if not sys.executable:
            self.ended = "cannot start the report process: this Python does not know its own executable"
            raise ReportError(self.ended)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", "tracker.report_process", orjson.dumps(self._config).decode()],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=env,
                process_group=0)  # its own group: a Ctrl-C in the terminal reaches the program, not this child
        except OSError as exc:
            self.ended = f"cannot start the report process ({sys.executable!r}): {exc}"
            raise ReportError(self.ended) from exc
        assert child.stdin is not None
        assert child.stdout is not None
        os.set_blocking(child.stdin.fileno(), False)  # every wait has a deadline (see _wait)
        os.set_blocking(child.stdout.fileno(), False)
        self._child = child
        self._finalizer = weakref.finalize(self, _end, child, self._shared)
        return child

    def _over(self, why: str) -> ReportError:
        """The reports are over (unless they already were, for an earlier reason): the pipe is closed once no
        thread uses it (:func:`_end`); the error that says why."""
        if self.ended is None:
            self.ended = why
        if self._finalizer is not None:
            self._finalizer()
        return ReportError(self.ended)

    def _abandon(self, child: subprocess.Popen[bytes], why: str) -> ReportError:
        """End the child, whose exchange with this process is broken or stuck; the error that says so."""
        if self.ended is None:
            with contextlib.suppress(OSError):
                child.kill()
        return self._over(f"the report process {why}: it was ended, no more reports from this tracker")

    def _gone(self, child: subprocess.Popen[bytes], cause: BaseException | None) -> ReportError:
        """The child's pipe ended: it exited, or was killed. The error that says how, once and for all."""
        try:
            status = child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return self._abandon(child, "closed its pipe but did not exit")
        how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        error = self._over(f"the report process {how}: no more reports from this tracker")
        error.__cause__ = cause
        return error

    def _wait(self, child: subprocess.Popen[bytes], fd: int, event: int, stall_s: float) -> bool:
        """Wait until ``fd`` is ready for ``event``: False when the child used no CPU for ``stall_s`` (stopped, or
        stuck; a child slowed down by a busy machine still gets some, at nice 19). Wakes every second, to end when
        :meth:`close` is called from another thread."""
        poller = select.poll()
        poller.register(fd, event)
        used, deadline = _cpu_ticks(child.pid), time.monotonic() + stall_s
        while not self._shared.closing:
            left = deadline - time.monotonic()
            if left <= 0:
                now = _cpu_ticks(child.pid)
                if now is None or now == used:
                    return False
                used, deadline = now, time.monotonic() + stall_s
                continue
            if poller.poll(min(left, 1.0) * 1000):
                return True
        raise _Interrupted

    def _exchange(self, child: subprocess.Popen[bytes], frames: list[bytes], reply: bool) -> bytes | None:
        """Write ``frames`` to the child, then read one reply frame if ``reply``. Every failure ends the child
        (a frame cut short, or a reply left unread, would break every exchange after it) and raises
        :class:`ReportError`; an exception from outside (a KeyboardInterrupt) ends it too and goes on."""
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            fd = child.stdin.fileno()
            for frame in frames:
                view = memoryview(frame)
                while view:
                    try:
                        view = view[os.write(fd, view):]
                    except BlockingIOError:
                        if not self._wait(child, fd, select.POLLOUT, WRITE_STALL_S):
                            raise self._abandon(child, f"took no events for {WRITE_STALL_S:g} s, using no CPU "
                                                       f"(stopped, or hung)") from None
            if not reply:
                return None
            fd, data, need = child.stdout.fileno(), bytearray(), _HEADER
            while len(data) < need:
                try:
                    part = os.read(fd, need - len(data))
                except BlockingIOError:
                    if not self._wait(child, fd, select.POLLIN, REPLY_STALL_S):
                        raise self._abandon(child, f"gave no answer to a report for {REPLY_STALL_S:g} s, using "
                                                   f"no CPU (stopped, or hung)") from None
                    continue
                if not part:
                    raise self._gone(child, None)
                data += part
                if len(data) == _HEADER and need == _HEADER:
                    need += int.from_bytes(data[1:], "big")
            return bytes(data[_HEADER:])
        except ReportError:
            raise
        except _Interrupted:
            raise self._abandon(child, "was closed with its tracker") from None
        except OSError as exc:  # EPIPE: it is gone
            raise self._gone(child, exc) from None
        except BaseException:
            self._abandon(child, "was interrupted in the middle of an exchange")
            raise

    def send(self, lines: bytes | bytearray) -> None:
        """Hand complete log lines (each ending in a newline) to the child."""
        if not lines:
            return
        with self._shared.io:
            child = self._start()
            frames, start, size = [], 0, len(lines)
            while start < size:
                end = size if size - start <= FRAME_BYTES else lines.rfind(b"\n", start, start + FRAME_BYTES) + 1
                if end <= start:  # a line longer than a frame (the emitter's lines are far shorter)
                    end = lines.find(b"\n", start + FRAME_BYTES) + 1 or size
                frames.append(_frame(b"L", memoryview(lines)[start:end]))
                start = end
            self.sent += 1
            self._exchange(child, frames, reply=False)

    def flush(self, *, now_us: int | None, final: bool) -> Flushed:
        """Have the child write the closed windows' files (``final``: every window), after every line sent."""
        with self._shared.io:
            child = self._start()
            reply = self._exchange(child, [_frame(b"F", orjson.dumps({"now_us": now_us, "final": final}))], True)
            assert reply is not None
            answer = orjson.loads(reply)
            if "error" in answer:  # its engine may have missed events: no later report could be trusted
                raise self._abandon(child, f"could not fold the events in ({answer['error']})")
        return Flushed(int(answer["written"]), tuple(answer["failed"]), tuple(answer["warnings"]))

    def close(self) -> None:
        """End the child (it exits once it has done what it was sent) without waiting for it; a call in progress
        in another thread ends within a second. Every later call raises :class:`ReportError`."""
        self._shared.closing = True  # before the finalizer waits for the call in progress: it ends it
        self._over("the tracker was closed: its reports are over")

    def forget(self) -> None:
        """In a forked process: let go of the parent's child without touching it (its pipe's ends are closed
        here, so that the child still sees the pipe end when the parent's tracker closes)."""
        child, self._child = self._child, None
        self._shared = _Shared()  # another thread may have held its lock at the fork
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self.ended = "a forked process writes no reports"
        if child is not None:
            for stream in (child.stdin, child.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()  # unbuffered: closes the descriptor, writes nothing
            child.returncode = 0  # not this process's child: nothing to wait for, nor to warn of


def _cpu_ticks(pid: int) -> int | None:
    """The CPU time a process has used (clock ticks, its threads included), from ``/proc``; None where there is
    no such file (not Linux) or the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the line)
    except (OSError, IndexError, ValueError):
        return None


class _Shared:
    """What :func:`_end` shares with its :class:`ReportProcess` (a finalizer may not hold the object itself)."""

    __slots__ = ("closing", "io")

    def __init__(self) -> None:
        self.io = threading.RLock()
        self.closing = False  # an exchange in progress ends within a second, and every later one at once


def _end(child: subprocess.Popen[bytes], shared: _Shared) -> None:
    """Close the child's pipe (it exits once it has done what it was sent), once no other thread uses it; reap
    the child in the background. At the program's exit, a daemon thread may be in an exchange: it ends within a
    second; if it does not, the descriptors are left to the exit to close."""
    shared.closing = True
    if not shared.io.acquire(timeout=3):
        return
    try:
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
    finally:
        shared.io.release()
    with contextlib.suppress(RuntimeError):  # (shutting down: it exits on its own, reaped by whoever inherits it)
        threading.Thread(target=child.wait, name="tracker-report-reaper", daemon=True).start()


# -- the child ---------------------------------------------------------------------------------------------------


class _Child:
    """The child's side: lines in, files out; warnings and failures go back in the replies, never to a terminal."""

    def __init__(self, config: dict[str, Any]) -> None:
        from .decoder import Decoder
        from .live import LiveReporter
        from .store import WindowStore

        self.warnings: list[str] = []
        self.store = WindowStore(warn=self.warnings.append)
        self.live = LiveReporter(Path(config["out_dir"]), interval_s=config["interval_s"], grace_s=0,
                                 session_timeout_s=config["session_timeout_s"], warn=self.warnings.append,
                                 store=self.store)
        self.decoder = Decoder(dedupe=False)
        self.error: str | None = None  # the first failure to fold lines in, said at the next flush

    def add(self, data: bytes) -> None:
        from .batch import decode_block

        if self.error is not None:
            return  # the engine missed events: its reports would be wrong
        try:
            block = decode_block(data, self.decoder)
            if block.rejected:
                self.error = f"a line the emitter wrote was rejected: {block.rejected[0].describe()}"
            else:
                self.live.add_frame(block.frame)
        except Exception as exc:  # a defect: its traceback goes with it
            self.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"

    def flush(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error}
        try:
            final = bool(request["final"])
            if not final and request["now_us"] is not None:
                self.live.advance(now_us=int(request["now_us"]), idle=True)
            result = self.live.flush(final=final)
        except Exception as exc:  # a defect: its traceback goes with it
            return {"error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"}
        warnings, self.warnings[:] = list(self.warnings), []
        return {"written": len(result.written), "failed": [str(p) for p in result.failed], "warnings": warnings}


def main(argv: list[str] | None = None) -> int:
    """The child: read frames from stdin until it ends, answer each flush on the original stdout."""
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the test: the tracker ends this process
    with contextlib.suppress(OSError):  # (a lower priority is always allowed; a sandbox might refuse)
        os.nice(19)  # before polars starts its threads: they inherit it
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    try:
        os.dup2(2, 1)  # a stray print goes to stderr, never into the replies
    except OSError:  # no stderr (a program that closed it): to nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    child = _Child(orjson.loads(args[0]))
    stdin = sys.stdin.buffer
    try:
        while (header := _read_exact(stdin, _HEADER)) is not None:
            payload = _read_exact(stdin, int.from_bytes(header[1:], "big"))
            if payload is None:
                break
            if header[:1] == b"L":
                child.add(payload)
            else:
                replies.write(_frame(b"R", orjson.dumps(child.flush(orjson.loads(payload)))))
    except BrokenPipeError:  # the tracker is gone (its program ended in the middle of a report): nothing to say
        pass
    finally:
        child.store.close()  # the files of windows written out past the memory budget
    return 0


if __name__ == "__main__":
    sys.exit(main())
