"""Tests for tracker.progress and the read hooks it hangs on: replay's ``on_block``, decode_log's ``on_span``."""

from __future__ import annotations

import fcntl
import io
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Final

import orjson
import pytest

from tests.helpers import TIMEOUT, record
from tracker.decoder import Decoder, Rejected
from tracker.logs import decode_log
from tracker.progress import ReadProgress, progress_wanted
from tracker.replayer import replay

ROOT = Path(__file__).parent.parent
#: A child that shows the progress of a 1 MB read in ten steps of 100 kB, 500 events and 1 rejected line each.
CHILD = """
import sys
from tracker.progress import ReadProgress, progress_wanted
with ReadProgress(1_000_000, label="replay", enabled=progress_wanted(sys.argv[1] == "quiet")) as progress:
    for _ in range(10):
        progress.advance(100_000, events=500, rejected=1)
"""
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: Variables that would make rich guess the terminal otherwise than from the file itself.
_RICH_ENV = ("FORCE_COLOR", "NO_COLOR", "COLUMNS", "LINES", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "TERM")


def _line(seq: int, session: str = "s1") -> bytes:
    return orjson.dumps(record(seq, session, "cycle_completed")) + b"\n"


def _log(path: Path, events: int, bad: int = 0, tail: bytes = b"") -> Path:
    """A log of ``events`` valid lines and ``bad`` invalid ones among them, then ``tail``."""
    lines = [_line(seq) for seq in range(1, events + 1)]
    for i in range(bad):
        lines.insert(i * 7 + 3, b'{"not": "an event"}\n')
    path.write_bytes(b"".join(lines) + tail)
    return path


def _child(quiet: bool, on_terminal: bool, command: list[str] | None = None,
           stdout: int | None = None, status: int = 0) -> bytes:
    """What the child (:data:`CHILD`, or ``command``) writes to its stdout and stderr, both on a pseudo-terminal or
    on pipes (with ``stdout``, a file descriptor, only stderr on the terminal)."""
    env = {k: v for k, v in os.environ.items() if k not in _RICH_ENV}
    env["TERM"] = "xterm-256color"
    command = command if command is not None else [sys.executable, "-c", CHILD, "quiet" if quiet else "shown"]
    if not on_terminal:
        done = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL, env=env, cwd=ROOT,
                              timeout=TIMEOUT, check=True)
        return done.stdout + done.stderr
    master, slave = os.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # room for the whole line
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=slave if stdout is None else stdout,
                                 stderr=slave, env=env, cwd=ROOT)
        os.close(slave)
        slave = -1
        output, deadline = b"", time.monotonic() + TIMEOUT
        while True:  # until the child's end closes the terminal (EIO on Linux, or end of file)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([master], [], [], left)[0]:
                child.kill()
                child.wait()
                pytest.fail(f"the child did not finish within {TIMEOUT} s; it wrote {output!r}")
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            output += data
        assert child.wait(TIMEOUT) == status, output
        return output
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


class TestByteCounts:
    """The hooks' byte counts sum to the logs' sizes, over several blocks."""

    def test_replay_sums_to_the_file_size(self, tmp_path: Path) -> None:
        log = _log(tmp_path / "run.jsonl", 60, bad=4)
        calls: list[tuple[int, int, int]] = []
        result = replay([log], tmp_path / "out", block_bytes=512, on_block=lambda *c: calls.append(c))
        assert len(calls) > 5
        assert sum(c[0] for c in calls) == log.stat().st_size
        assert sum(c[1] for c in calls) == result.read.events == 60
        assert sum(c[2] for c in calls) == sum(result.rejected.values()) == 4

    def test_replay_of_several_logs_counts_duplicates_as_read(self, tmp_path: Path) -> None:
        first, second = _log(tmp_path / "a.jsonl", 20), _log(tmp_path / "b.jsonl", 30)  # b repeats a's 20 events
        calls: list[tuple[int, int, int]] = []
        result = replay([first, second], tmp_path / "out", block_bytes=300, on_block=lambda *c: calls.append(c))
        assert sum(c[0] for c in calls) == first.stat().st_size + second.stat().st_size
        assert sum(c[1] for c in calls) == 50
        assert result.read.events == 30

    def test_decode_log_sums_to_the_file_size_after_each_span(self, tmp_path: Path) -> None:
        log = _log(tmp_path / "run.jsonl", 40, bad=3)
        items: list[object] = []
        seen: list[tuple[int, int]] = []  # (items yielded so far, bytes of the span)
        items.extend(decode_log(log, Decoder(), block_bytes=400, on_span=lambda n: seen.append((len(items), n))))
        assert len(items) == 43
        assert len(seen) > 5
        assert sum(n for _, n in seen) == log.stat().st_size
        assert 0 < seen[0][0] < seen[-1][0] == len(items)  # each call comes after its span's lines

    def test_over_long_lines_count_their_skipped_rest(self, tmp_path: Path) -> None:
        """An over-long line (its rest skipped unread), one in zeros, and an unterminated one at the end."""
        tail = b"x" * 900 + b"\n" + _line(99) + b"\0" * 700 + _line(100) + b"y" * 800
        log = _log(tmp_path / "run.jsonl", 10, tail=tail)
        spans: list[int] = []
        items = list(decode_log(log, Decoder(max_line_bytes=300), block_bytes=256, on_span=spans.append))
        assert [i.reason for i in items if isinstance(i, Rejected)] == ["too_long", "too_long", "too_long"]
        assert len(items) == 15  # 12 events and 3 rejected lines
        assert sum(spans) == log.stat().st_size
        blocks: list[int] = []
        replay([log], tmp_path / "out", block_bytes=256, max_line_bytes=300,
               on_block=lambda nbytes, *_: blocks.append(nbytes))
        assert sum(blocks) == log.stat().st_size


class TestProgressWanted:
    """Progress is shown only on a terminal, and never when quiet."""

    def test_not_on_a_file_nor_when_quiet(self) -> None:
        assert not progress_wanted(False, io.StringIO())
        assert not progress_wanted(True, io.StringIO())
        closed = io.StringIO()
        closed.close()
        assert not progress_wanted(False, closed)

    def test_disabled_writes_nothing(self) -> None:
        stream = io.StringIO()
        with ReadProgress(100, label="replay", enabled=progress_wanted(False, stream), stream=stream) as progress:
            progress.advance(100, events=3, rejected=1)
        assert stream.getvalue() == ""

    def test_disabled_is_a_no_op_without_rich(self) -> None:
        code = ("import sys\nfrom tracker.progress import ReadProgress\n"
                "with ReadProgress(10, label='x', enabled=False) as p:\n    p.advance(10, 1, 1)\n"
                "assert not {'rich', 'polars', 'watchfiles'} & {m.split('.')[0] for m in sys.modules}, sys.modules")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT, timeout=TIMEOUT)
        assert done.returncode == 0, done.stderr
        assert done.stdout == done.stderr == b""


class TestTerminal:
    """On a real pseudo-terminal the line is drawn and stays; on a pipe or when quiet nothing is written."""

    def test_line_on_a_terminal(self) -> None:
        text = _ANSI.sub("", _child(quiet=False, on_terminal=True).decode())
        last = text.replace("\r\n", "\n").split("\r")[-1]  # the finished line, as it stays
        assert last.startswith("replay ")
        assert "1.0/1.0 MB" in last
        assert "events/s" in last
        assert "10 rejected" in last
        assert last.endswith("\n")

    def test_nothing_on_a_pipe(self) -> None:
        assert _child(quiet=False, on_terminal=False) == b""

    def test_nothing_on_a_terminal_when_quiet(self) -> None:
        assert _child(quiet=True, on_terminal=True) == b""


class TestCommands:
    """tracker replay and validate draw the line on a terminal's stderr; stdout keeps the summary (or the JSON)."""

    @pytest.mark.parametrize("command", ["replay", "validate"])
    def test_line_on_the_terminal_and_the_summary_on_stdout(self, tmp_path: Path, command: str) -> None:
        """stderr on a pseudo-terminal gets the progress line, stdout (a file) the human summary, unchanged."""
        log = _log(tmp_path / "events.jsonl", 2000, bad=3)
        args = [sys.executable, "-m", "tracker", command, str(log),
                *(["--out", str(tmp_path / "out")] if command == "replay" else [])]
        with (tmp_path / "stdout").open("wb") as stdout:
            text = _ANSI.sub("", _child(False, True, args, stdout.fileno(), status=1).decode())
        last = text.replace("\r\n", "\n").split("\r")[-1]
        assert last.startswith(f"{command} ")
        assert "events/s" in last
        assert "3 rejected" in last
        summary = (tmp_path / "stdout").read_text()
        assert "3 rejected" in summary
        assert "events/s" not in summary
        with open(os.devnull, "wb") as null:
            quiet = _child(False, True, [*args, "--quiet"], null.fileno(), status=1)
        assert b"events/s" not in quiet

    def test_json_on_stdout_alone(self, tmp_path: Path) -> None:
        """replay --json with stderr on a terminal: stdout is exactly one JSON object."""
        log = _log(tmp_path / "events.jsonl", 200)
        args = [sys.executable, "-m", "tracker", "replay", str(log), "--out", str(tmp_path / "out"), "--json"]
        with (tmp_path / "stdout").open("wb") as stdout:
            text = _ANSI.sub("", _child(False, True, args, stdout.fileno()).decode())
        assert "events/s" in text
        assert orjson.loads((tmp_path / "stdout").read_bytes())["events"] == 200

    def test_rejected_lines_stay_clear_of_the_line(self, tmp_path: Path) -> None:
        """validate with stdout and stderr on one terminal: each rejected line is a line of its own, never drawn
        after a stale progress line (they go above the line, through its console)."""
        log = _log(tmp_path / "events.jsonl", 3000, bad=5)
        args = [sys.executable, "-m", "tracker", "validate", str(log)]
        screen = _screen(_child(False, True, args, status=1).decode())
        rejected = [line for line in screen if "schema:" in line]
        assert len(rejected) == 5, screen
        assert all(line.startswith("  ") and "━" not in line for line in rejected), rejected
        assert screen[-1].startswith("validate ━") or any(line.startswith("validate ━") for line in screen)


_CSI: Final = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


def _screen(output: str) -> list[str]:
    """The lines a terminal shows after ``output``: carriage returns, newlines, erase-line (``ESC[2K``) and
    cursor-up (``ESC[nA``) played as a terminal plays them; colours and other sequences ignored."""
    lines, row, col = [""], 0, 0
    position = 0
    while position < len(output):
        match = _CSI.match(output, position)
        if match is not None:
            argument, command = match.groups()
            if command == "K" and argument == "2":
                lines[row], col = "", 0
            elif command == "A":
                row = max(0, row - int(argument or "1"))
            position = match.end()
            continue
        char = output[position]
        position += 1
        if char == "\r":
            col = 0
        elif char == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        else:
            line = lines[row]
            lines[row] = line[:col] + char + line[col + 1:]
            col += 1
    return [line for line in lines if line.strip()]
