"""Read a NATS JetStream stream of events: what :mod:`tracker.follow` is for files, for ``tracker tail --nats``
and ``tracker replay --nats``.

Each message is one event's JSON (see :mod:`tracker.ship`); the messages of a fetch are decoded together as the
lines of a log (:func:`~tracker.batch.decode_block`), so a stream and the files it came from give the engine
the same events. A message that is not a valid event (a foreign publisher's) goes to the quarantine, its "line"
being its stream sequence number, never into the reports.

The tail reads through a durable pull consumer and acknowledges a message only after its own checkpoint holds it.
At each start the consumer is made anew from its acknowledged floor (from the first message when the tail has no
usable checkpoint), so a restart gets at once what the last run had not checkpointed; what it had is dropped
again by the engine as a repeat. Messages removed by the stream's limits before they were read are said.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

import orjson
import polars as pl

from .batch import decode_block
from .decoder import Decoder, Rejected
from .engine import Engine
from .errors import NatsError
from .follow import FollowStats
from .frames import EVENT_SCHEMA, events_frame
from .jetstream import Link, StreamSpec
from .limits import DEFAULT_MAX_LINE_BYTES
from .pull import Pull, ack, ack_floor, drop, durable, ephemeral, fetch, pending

__all__ = ("FETCH_BATCH", "StreamReader", "decode_messages", "read_stream")

#: Messages asked for at a time.
FETCH_BATCH: Final = 5_000
_log = logging.getLogger("tracker.consume")


def decode_messages(messages: Iterable[tuple[int, bytes]], decoder: Decoder,
                    source: str) -> tuple[pl.DataFrame, list[Rejected]]:
    """The events of ``(stream sequence, body)`` messages as the engine's frame, and the rejected ones."""
    lines: list[bytes] = []
    seqs: list[int] = []
    odd: list[tuple[int, bytes]] = []  # a body of several lines: decoded on its own (JSON may span lines)
    for seq, body in messages:
        line = body[:-1] if body.endswith(b"\n") else body
        if b"\n" in line or not line:
            odd.append((seq, body))
        else:
            lines.append(line)
            seqs.append(seq)
    frames: list[pl.DataFrame] = []
    rejected: list[Rejected] = []
    if lines:
        block = decode_block(b"\n".join(lines) + b"\n", decoder, source=source, lines=len(lines))
        frames.append(block.frame)
        rejected += [Rejected(r.source, seqs[r.line_no - 1], 0, r.reason, r.detail, r.raw) for r in block.rejected]
    for seq, body in odd:
        try:  # one JSON value over several lines (a pretty-printed event): one line, as JSON allows
            orjson.loads(body)
            one = True
        except orjson.JSONDecodeError:
            one = False
        if one:
            items = decoder.decode(body.rstrip(b"\n") + b"\n", source=source, line_no=seq)
            rejected += [item for item in items if isinstance(item, Rejected)]
            frames.append(events_frame(item for item in items if not isinstance(item, Rejected)))
        else:  # several lines, or none: each line as a log's line
            block = decode_block(body.rstrip(b"\n") + b"\n", decoder, source=source, first_line=seq)
            frames.append(block.frame)
            rejected += [Rejected(r.source, seq, r.offset, r.reason, r.detail, r.raw) for r in block.rejected]
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=EVENT_SCHEMA)
    return frame, rejected


def _stream_seq(msg: Any) -> int:
    """A delivered message's stream sequence, read from its reply subject (``$JS.ACK.<stream>.<consumer>.
    <delivered>.<stream seq>...``, 9 tokens; 12 with a domain and an account, the sequence then 7th); nats-py's
    ``metadata`` parses every field into objects, a tenth of the time of a read."""
    tokens = msg.reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5])
    if len(tokens) >= 12:
        return int(tokens[7])
    return int(msg.metadata.sequence.stream)


def _messages(msgs: list[Any]) -> list[tuple[int, bytes]]:
    return [(_stream_seq(m), bytes(m.data)) for m in msgs]


class StreamReader:
    """Follows a stream through the durable consumer ``consumer``, handing each fetch's events to ``on_block``."""

    def __init__(self, spec: StreamSpec, decoder: Decoder, on_block: Callable[[pl.DataFrame | None,
                                                                               Iterable[Rejected]], None], *,
                 stop: threading.Event, consumer: str, warn: Callable[[str], None] | None = None,
                 batch: int = FETCH_BATCH, timeout_s: float = 5.0) -> None:
        self.spec, self.decoder, self.on_block, self.consumer, self.batch = spec, decoder, on_block, consumer, batch
        self._warn = warn if warn is not None else _log.warning
        self.stats = FollowStats()
        self.backlog = False
        self.source = f"nats:{spec.stream}"
        self.link = Link(spec.url, stop=stop, warn=self._warn, timeout_s=timeout_s, name="tracker tail")
        try:
            self.created, _, _ = self.link.stream_state(spec.stream)
        except BaseException:
            self.link.close()
            raise
        self.last_seq = 0  # the highest stream sequence folded in
        self._resumed = False
        self._pull: Pull | None = None  # the consumer fetched from, made at the first poll
        self._reconnects = 0
        self._replies: list[str] = []  # read since the last checkpoint: acknowledged once it holds them

    def identity(self) -> list[str]:
        """What a checkpoint of this reader was made for: the stream, as made when (made again: another stream)."""
        return [f"nats:{self.spec.stream}:{self.created}"]

    def paths(self) -> list[Path]:
        """No files: a stream."""
        return []

    def positions(self) -> dict[str, Any]:
        return {"stream": self.spec.stream, "consumer": self.consumer, "seq": self.last_seq}

    def resume(self, position: object) -> None:
        """Go on from a checkpoint's position; ValueError when it is damaged, or when the consumer was acknowledged
        beyond it (another tail reading with the same consumer: this checkpoint does not hold those events)."""
        if not (isinstance(position, dict) and position.get("stream") == self.spec.stream
                and position.get("consumer") == self.consumer and type(position.get("seq")) is int
                and position["seq"] >= 0):
            raise ValueError(f"its stream position is damaged or for another consumer: {position!r}")
        floor = ack_floor(self.link, self.spec.stream, self.consumer)
        if floor is not None and floor > position["seq"]:
            raise ValueError(f"the consumer {self.consumer!r} was acknowledged up to message {floor}, beyond this "
                             f"checkpoint's {position['seq']} (another tail with the same --consumer?)")
        self.last_seq, self._resumed = position["seq"], True

    def _consumer_gone(self) -> None:
        """The consumer was deleted, or the stream with it: made again, from its floor; from the stream's first
        message when the stream itself was made again (its events are new to this tail, or repeats it drops)."""
        created, _, _ = self.link.stream_state(self.spec.stream)
        if created != self.created:
            self._warn(f"NATS: the stream {self.spec.stream!r} was deleted and made again: reading the new one from "
                       "its first message (the events read from the old one stay in the reports; a restart of this "
                       "tail reads only the new one)")
            self.created, self._resumed = created, False
        else:
            self._warn(f"NATS: the consumer {self.consumer!r} was deleted: made again from its acknowledged floor")
        self._open()

    def start_over(self) -> None:
        """Read the stream from its first message (the checkpoint was not usable after all)."""
        self.last_seq, self._resumed = 0, False

    def _open(self) -> None:
        self._reconnects = self.link.reconnects
        self._pull, first = durable(self.link, self.spec.stream, self.consumer, from_start=not self._resumed)
        # From now on the engine holds (or the checkpoint will) everything up to the consumer's floor: a consumer
        # made again (after a reconnection) starts after it.
        self._resumed = True
        _, oldest, _ = self.link.stream_state(self.spec.stream)
        if oldest > first:
            self._warn(f"NATS: messages {first} to {oldest - 1} of the stream {self.spec.stream!r} were removed by "
                       "its limits (max age, size) before this tail read them: their events are not in the reports")

    def poll(self, wait_s: float = 0.05) -> None:
        """Fold in one fetch of messages (waiting at most ``wait_s`` for the first)."""
        if self._pull is None or self.link.reconnects != self._reconnects:
            # After a reconnection the consumer is made again from its floor: messages it had delivered into the
            # lost connection come at once, not after the ack wait (repeats of what was read are dropped).
            self._open()
        assert self._pull is not None  # made just now
        msgs = fetch(self.link, self._pull, self.batch, wait_s)
        if msgs is None:  # the consumer is gone
            self._consumer_gone()
            return
        self.backlog = len(msgs) == self.batch
        if not msgs:
            return
        messages = _messages(msgs)
        frame, rejected = decode_messages(messages, self.decoder, self.source)
        self.on_block(frame, rejected)
        self._replies += [m.reply for m in msgs]
        self.last_seq = max(self.last_seq, *(seq for seq, _ in messages))
        self.stats.last_read = time.time()

    def saved(self) -> None:
        """The checkpoint holds everything read: acknowledge it."""
        replies, self._replies = self._replies, []
        ack(self.link, replies)

    def finish(self) -> None:
        """Nothing to finish: what is not read yet is read at the next start."""

    def release(self) -> None:
        self.link.close()


def read_stream(spec: StreamSpec, engine: Engine, *, stop: threading.Event, on_rejected: Callable[[Rejected], None],
                max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, warn: Callable[[str], None] | None = None,
                on_block: Callable[[int, int, int], None] | None = None, batch: int = FETCH_BATCH,
                timeout_s: float = 5.0) -> int:
    """Fold the stream's messages, from its first to the last one present now, into ``engine``; rejected ones go to
    ``on_rejected``. Returns the number of messages read. ``on_block`` is called as :func:`~tracker.replayer.
    read_events` calls it (with the messages' bytes)."""
    say = warn if warn is not None else _log.warning
    link = Link(spec.url, stop=stop, warn=say, timeout_s=timeout_s, name="tracker replay")
    try:
        created, first, last = link.stream_state(spec.stream)
        if first > 1:
            say(f"NATS: the stream {spec.stream!r} starts at message {first}: the messages before it were removed "
                "by its limits (max age, size), and their events are not in the reports")
        if last < first:
            return 0
        pull = ephemeral(link, spec.stream)
        decoder, read, seen = Decoder(max_line_bytes=max_line_bytes, dedupe=False), 0, 0
        while seen < last:
            msgs = fetch(link, pull, batch, timeout_s)
            if msgs is None:  # the consumer is gone (deleted, or idle past its limit): one from where it was
                again, _, _ = link.stream_state(spec.stream)
                if again != created:
                    raise NatsError(f"the stream {spec.stream!r} was deleted (and made again) while it was read: "
                                    "replay it again")
                pull = ephemeral(link, spec.stream, seen + 1)
                continue
            if not msgs:
                if pending(link, pull) == 0:  # the rest was removed meanwhile
                    break
                continue
            every = _messages(msgs)
            messages = [(seq, body) for seq, body in every if seq <= last]
            seen = max(seen, *(seq for seq, _ in every))
            frame, rejected = decode_messages(messages, decoder, f"nats:{spec.stream}")
            for item in rejected:
                on_rejected(item)
            engine.add(engine.prepared(frame))
            read += len(messages)
            if on_block is not None:
                on_block(sum(len(body) + 1 for _, body in messages), frame.height, len(rejected))
        drop(link, spec.stream, pull)
        return read
    finally:
        link.close()
