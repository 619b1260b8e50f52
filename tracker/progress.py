"""A one-line progress display of a read through logs (``tracker replay``, ``tracker validate``), on a terminal only.

The line, on stderr, shows the label, a bar, the bytes read of the total, the events read per second (since the
start), the lines rejected so far and the time left (the time taken, once done)::

    replay ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 1.0/1.0 MB 24,731 events/s 2 rejected 0:00:01

It is not transient: the finished line stays, as a record of the run. When the output is not a terminal, or with
``--quiet`` (see :func:`progress_wanted`), :class:`ReadProgress` does nothing and rich is not even imported; this
module imports neither rich nor polars itself, so ``tracker emit`` stays light.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ("ReadProgress", "progress_wanted")


def progress_wanted(quiet: bool, stream: TextIO | None = None) -> bool:
    """True when a progress line should be shown: not ``quiet``, and ``stream`` (default: stderr) is a terminal."""
    if quiet:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return stream is not None and stream.isatty()
    except (ValueError, OSError):  # closed, or detached
        return False


class ReadProgress:
    """The progress of a read of ``total_bytes``, shown while used as a context manager; does nothing unless
    ``enabled``. :meth:`advance` is called by one thread (rich redraws from a thread of its own, under a lock)."""

    def __init__(self, total_bytes: int, *, label: str, enabled: bool, stream: TextIO | None = None) -> None:
        self._events = self._rejected = 0
        self._start = time.monotonic()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        file = sys.stderr if stream is None else stream
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[rate]} events/s"),
            TextColumn("{task.fields[rejected]} rejected"),
            TimeRemainingColumn(elapsed_when_finished=True),
            console=Console(file=file),
            # stdout stays where it is (a report printed to a pipe must not land on stderr); writes to stderr while
            # the line is shown go above it.
            redirect_stdout=False,
            redirect_stderr=file is sys.stderr,
        )
        self._task = self._progress.add_task(label, total=max(0, total_bytes), rate="0", rejected="0")

    def __enter__(self) -> ReadProgress:
        self._start = time.monotonic()
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()  # draws the line a last time and leaves it

    def say(self, text: str, stream: TextIO) -> None:
        """Write a line of the command's output to ``stream``: above the progress line when both are on the terminal
        (a plain write there would be drawn over), else to ``stream`` as it is."""
        if self._progress is not None and stream.isatty():
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=stream)

    def advance(self, nbytes: int, events: int = 0, rejected: int = 0) -> None:
        """Count ``nbytes`` more read, holding ``events`` events and ``rejected`` rejected lines."""
        if self._progress is None or self._task is None:
            return
        self._events += events
        self._rejected += rejected
        rate = self._events / max(time.monotonic() - self._start, 1e-3)
        self._progress.update(self._task, advance=nbytes, rate=f"{rate:,.0f}", rejected=f"{self._rejected:,}")
