"""``tracker ship``: follow local logs and publish each valid event to a NATS JetStream stream.

The local log stays the durable buffer: the process under test writes it as always and never waits on the
network. The :class:`~tracker.follow.Follower` reads the files as ``tracker tail`` does (rotation, truncation,
restarts); each span is decoded line by line: a bad line goes to the local quarantine, never to the stream, and
each event is published as its JSON object with its :func:`~tracker.jetstream.message_id`. The files' positions
are saved only after JetStream acknowledged every event before them (at-least-once): after a crash the events
since the last save are published again, and the repeat is dropped by the server (within its duplicate window)
or by the central engine (by content).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import orjson

from .batch import decode_events
from .decoder import DEFAULT_MAX_LINE_BYTES, QUARANTINE_FILE, Decoder, Quarantine, Rejected
from .events import Event
from .follow import Follower, FollowStats, check_positions
from .jetstream import Link, StreamRemadeError, StreamSpec, message_id
from .logs import folder_logs, lock_folder, refuse_unsafe_outputs
from .output import write_atomically

__all__ = ("STATE_DIR", "ShipStats", "Shipper")

#: The shipper's own folder, beside its first log (or in the folder it follows).
STATE_DIR: Final = ".tracker-ship"
STATE_FILE: Final = "ship.json"
STATE_VERSION: Final = 1
LOCK_FILE: Final = ".tracker-ship.lock"
_log = logging.getLogger("tracker.ship")


@dataclass(slots=True)
class ShipStats:
    """Counts of this run of the shipper."""

    events: int = 0  # acknowledged by JetStream
    duplicates: int = 0  # of those, the ones the server already had
    rejected: Counter[str] = field(default_factory=Counter)
    follow: FollowStats = field(default_factory=FollowStats)


def default_state_dir(targets: Sequence[Path], stream: str) -> Path:
    """``.tracker-ship/STREAM`` in the first target's folder (the target itself when it is a folder)."""
    first = targets[0]
    return (first if first.is_dir() else first.parent) / STATE_DIR / stream


class Shipper:
    """Follows logs and publishes their events to ``spec``'s stream."""

    def __init__(self, targets: Sequence[str | os.PathLike[str]], spec: StreamSpec, *, stop: threading.Event,
                 state_dir: str | os.PathLike[str] | None = None,
                 quarantine_path: str | os.PathLike[str] | None = None,
                 max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, timeout_s: float = 5.0) -> None:
        self.targets = [Path(t) for t in targets]
        self.spec, self.stop = spec, stop
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir(self.targets, spec.stream)
        self.warnings: list[str] = []
        self.quarantine = Quarantine(quarantine_path if quarantine_path is not None
                                     else self.state_dir / QUARANTINE_FILE, warn=self._warn)
        own = [self.quarantine.path, self.quarantine.reasons_path]
        logs = [p for t in self.targets for p in (folder_logs(t, own) if t.is_dir() else [t])]
        refuse_unsafe_outputs(logs, self.quarantine)
        self._lock = self._lock_folder()
        self.decoder = Decoder(max_line_bytes=max_line_bytes, dedupe=False)
        self.follower = Follower(self.targets, self.decoder, self._take, warn=self._warn, exclude=own,
                                 decode=decode_events)
        self.stats = ShipStats(rejected=self.decoder.rejected, follow=self.follower.stats)
        self._saved_state = b""
        self._save_failing = False
        self.link: Link | None = None
        try:
            self.link = Link(spec.url, stop=stop, warn=self._warn, timeout_s=timeout_s, name="tracker ship")
            self.created, _, _ = self.link.ensure_stream(spec)
            self._restore()
        except BaseException:
            self.release()
            raise

    def _lock_folder(self) -> int:
        """One shipper a state folder: two would publish the same lines and save each other's positions."""
        return lock_folder(self.state_dir, LOCK_FILE, "another tracker ship", "give this one another --state-dir")

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        _log.warning(message)

    # -- shipping -----------------------------------------------------------------------

    def _take(self, events: list[Event] | None, rejected: Iterable[Rejected]) -> None:
        """Quarantine a block's bad lines, publish its events and wait for JetStream's acknowledgements."""
        for item in rejected:
            self.quarantine.keep(item, self._warn)  # a full disk: counted by its reason, and said
        if events and self.link is not None:
            items = []
            for event in events:
                body = orjson.dumps(event.to_record())
                items.append((message_id(event.event_id, body), body))
            self.stats.duplicates += self.link.publish(self.spec, self.created, items)
            self.stats.events += len(items)

    def step(self) -> bool:
        """Ship what the files hold now (a backlog in steps of the follower's size), then save the positions;
        True when there was anything new."""
        before = (self.stats.events, self.decoder.rejected.total())
        try:
            self.follower.poll()
        except StreamRemadeError as exc:
            self._start_over(exc.created)
            return True
        self.save()
        return (self.stats.events, self.decoder.rejected.total()) != before

    def save(self) -> None:
        """Save the files' positions (everything before them is acknowledged) when they moved, atomically."""
        self.quarantine.flush()
        state = orjson.dumps({
            "version": STATE_VERSION, "targets": self._identity(), "stream": self.spec.stream,
            "created": self.created, "files": self.follower.positions(),
            "quarantine": list(self.quarantine.position())})
        if state == self._saved_state:
            return
        try:
            write_atomically(self.state_dir / STATE_FILE, state)
        except OSError as exc:  # a full disk: keep shipping (a restart publishes again what came since)
            if not self._save_failing:  # said once, until it works again
                self._warn(f"positions not saved in {self.state_dir} ({exc.strerror or exc}); tried again after "
                           "every read (a restart meanwhile ships again what came since the last save)")
            self._save_failing = True
            return
        if self._save_failing:
            self._warn(f"positions saved again in {self.state_dir}")
            self._save_failing = False
        self._saved_state = state

    def _start_over(self, created: str) -> None:
        """The stream was deleted and made again while shipping: what it held is gone, so every log is shipped
        again from its start into the new one."""
        self._warn(f"NATS: the stream {self.spec.stream!r} was deleted and made again: shipping every log again from "
                   "its start")
        self.created = created
        self.follower.release()
        self.decoder.rejected.clear()
        self.quarantine.reset()
        self.follower = Follower(self.targets, self.decoder, self._take, warn=self._warn,
                                 exclude=[self.quarantine.path, self.quarantine.reasons_path], decode=decode_events)
        self.stats.follow = self.follower.stats
        self._saved_state = b""
        self.save()

    def _identity(self) -> list[str]:
        return sorted(str(t.absolute()) for t in self.targets)

    def _restore(self) -> None:
        path = self.state_dir / STATE_FILE
        if not path.exists():
            self.quarantine.reset()
            return
        try:
            state = orjson.loads(path.read_bytes())
            if not isinstance(state, dict):
                raise ValueError(f"expected an object, got {type(state).__name__}")
            if state.get("version") != STATE_VERSION:
                raise ValueError(f"version {state.get('version')!r}, expected {STATE_VERSION}")
            if state.get("targets") != self._identity():
                raise ValueError(f"it was made for other logs: {state.get('targets')!r}")
            if (state.get("stream"), state.get("created")) != (self.spec.stream, self.created):
                raise ValueError(f"it was made for another stream (or the stream {self.spec.stream!r} was made "
                                 "again since)")
            resume = check_positions(state.get("files"))
            self.quarantine.restore(state.get("quarantine"))
        except (OSError, ValueError) as exc:
            self._warn(f"shipper state {path} is unusable ({exc}); shipping every log from the start (the stream "
                       "and the central engine drop the repeats)")
            self.quarantine.reset()
            with contextlib.suppress(OSError):
                path.unlink()
            return
        self.follower.resume(resume)

    # -- running ------------------------------------------------------------------------

    def run(self, *, once: bool = False, on_tick: Callable[[Shipper], None] | None = None,
            tick_ms: int = 250, debounce_ms: int = 10, step_ms: int = 5) -> None:
        """Ship until ``stop`` is set (or, ``once``, until the files are read to their end)."""
        import watchfiles

        self.step()
        while self.follower.backlog and not self.stop.is_set():
            self.step()
        if on_tick is not None:
            on_tick(self)
        if once:
            return
        for _changes in watchfiles.watch(
            *self.follower.watch_dirs(), watch_filter=None, debounce=debounce_ms, step=step_ms, stop_event=self.stop,
            rust_timeout=tick_ms, yield_on_timeout=True, raise_interrupt=False, recursive=False,
        ):
            self.step()
            while self.follower.backlog and not self.stop.is_set():
                self.step()
            if on_tick is not None:
                on_tick(self)
            if self.stop.is_set():
                break

    def pending_bytes(self) -> int:
        """Bytes of complete lines the files hold beyond the saved positions (0 once everything is shipped)."""
        total = 0
        for entry in self.follower.positions():
            with contextlib.suppress(OSError):
                total += max(0, os.stat(entry["path"]).st_size - entry["offset"])
        return total

    def release(self) -> None:
        """Close the connection (after what is buffered), the files and the quarantine."""
        if self.link is not None:
            self.link.close()
            self.link = None
        self.quarantine.close()
        self.follower.release()
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1
