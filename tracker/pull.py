"""Pull consumers of a JetStream stream, on a :class:`~tracker.jetstream.Link`: for the central ``tracker tail --nats``
and ``tracker replay --nats`` (:mod:`tracker.consume`).

The tail reads through a durable consumer (:func:`durable`) with explicit acknowledgements (:func:`ack`), made anew
at each start from its acknowledged floor (:func:`ack_floor`); replay reads once through a consumer without
acknowledgements (:func:`ephemeral`) and removes it after (:func:`drop`). :func:`fetch` sends pull requests of its
own into one inbox a consumer (:class:`Pull`), kept for its life, so that a message the server sends late waits
there for the next fetch. Every call is retried by the Link as any other, until it works or the command is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from .errors import StoppedError
from .jetstream import Link, TransientError, transient_errors, why

if TYPE_CHECKING:
    from nats.aio.msg import Msg

__all__ = ("ACK_WAIT_S", "Pull", "ack", "ack_floor", "drop", "durable", "ephemeral", "fetch", "pending")

#: A message the central tail was given and did not acknowledge is given again after this long.
ACK_WAIT_S: Final = 60.0


@dataclass(slots=True, eq=False)
class Pull:
    """A pull consumer to fetch from (its stream and its name), and the inbox its messages come to: one for every
    request, so that a message the server sends late (after the request that asked for it gave up) is kept for the
    next fetch, never lost to an inbox nobody reads."""

    stream: str
    consumer: str
    box: list[Msg] = field(default_factory=list)  # delivered, not fetched yet
    status: list[str] = field(default_factory=list)  # the last request's end (404, 408, 409...)
    want: int = 0  # how many messages in the box end the wait
    changed: asyncio.Event | None = None
    inbox: str = ""


class _PullError(TransientError):
    """A pull request the server answered with an unexpected status (retried)."""


def durable(link: Link, stream: str, name: str, *, from_start: bool) -> tuple[Pull, int]:
    """A pull subscription of the durable consumer ``name``, made anew so that it gives every message after its
    acknowledged floor at once (or every message, ``from_start``); returns it and the first sequence asked."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import NotFoundError

    async def make() -> tuple[Pull, int]:
        floor = 0
        try:
            info = await link.js.consumer_info(stream, name)
        except NotFoundError:
            info = None
        if info is not None:
            floor = int(info.ack_floor.stream_seq)
            await link.js.delete_consumer(stream, name)
        first = 1 if from_start else floor + 1
        config = ConsumerConfig(durable_name=name, ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S,
                                max_ack_pending=-1, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                opt_start_seq=first)
        await link.js.add_consumer(stream, config)
        return Pull(stream, name), first

    return link.call(link.retry(f"opening the consumer {name!r} of the stream {stream!r}", make))


def ephemeral(link: Link, stream: str, first: int = 1) -> Pull:
    """A pull subscription reading the stream once from its message ``first`` on, without acknowledgements."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    async def make() -> Pull:
        info = await link.js.add_consumer(stream, ConsumerConfig(
            ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=first,
            inactive_threshold=300.0))
        return Pull(stream, info.name)

    return link.call(link.retry(f"reading the stream {stream!r}", make))


def ack_floor(link: Link, stream: str, name: str) -> int | None:
    """The stream sequence up to which the consumer ``name`` was acknowledged (None: there is no such consumer)."""
    from nats.js.errors import NotFoundError

    async def look() -> int | None:
        try:
            info = await link.js.consumer_info(stream, name)
        except NotFoundError:
            return None
        return int(info.ack_floor.stream_seq)

    return link.call(link.retry(f"reading the consumer {name!r}", look))


def pending(link: Link, pull: Pull) -> int:
    """Messages of the stream the consumer has not given yet."""

    async def look() -> int:
        return int((await link.js.consumer_info(pull.stream, pull.consumer)).num_pending)

    return link.call(link.retry("reading the consumer", look))


def drop(link: Link, stream: str, pull: Pull) -> None:
    """Remove a consumer made for one read (the server would after a while anyway)."""

    async def remove() -> None:
        await link.js.delete_consumer(stream, pull.consumer)

    failures: tuple[type[BaseException], ...] = (StoppedError, *transient_errors())
    with contextlib.suppress(*failures):
        link.call(remove())


def fetch(link: Link, pull: Pull, batch: int, wait_s: float) -> list[Msg] | None:
    """Up to ``batch`` messages, waiting at most ``wait_s`` for the first (none: an empty list); None when the
    consumer is gone (deleted, or its stream deleted and maybe made again): the caller makes a new one.

    One pull request whose messages come to an inbox subscription of its own (nats-py's ``fetch`` makes a task
    and a uuid for every message: a quarter of the time of a read); it ends when ``batch`` messages came, or
    with the server's 404 (none) or 408 (the request expired)."""
    import orjson

    async def open_inbox() -> None:
        async def take(msg: Msg) -> None:
            code = msg.headers.get("Status") if msg.headers else None
            if code is None:
                pull.box.append(msg)
                if len(pull.box) < pull.want:
                    return
            elif code == "100":  # a heartbeat
                return
            else:
                pull.status.append(f"{code} {msg.headers.get('Description', '') if msg.headers else ''}".strip())
            assert pull.changed is not None
            pull.changed.set()

        pull.changed = asyncio.Event()
        pull.inbox = link.nc.new_inbox()
        await link.nc.subscribe(pull.inbox, cb=take, pending_msgs_limit=-1, pending_bytes_limit=-1)

    async def request(asked: dict[str, object], want: int, wait_s: float) -> str | None:
        """One pull request; wait until ``want`` messages are in the box or the request ended (its status)."""
        assert pull.changed is not None
        pull.status.clear()
        pull.changed.clear()
        pull.want = want
        await link.nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{pull.stream}.{pull.consumer}", orjson.dumps(asked),
                              reply=pull.inbox)
        if len(pull.box) < want:
            with contextlib.suppress(TimeoutError):  # no answer at all: as a quiet stream (an outage is said by
                await asyncio.wait_for(pull.changed.wait(), wait_s)  # the connection's callbacks)
        return pull.status[0] if pull.status else None

    def drain() -> list[Msg]:
        got, pull.box[:] = pull.box[:batch], pull.box[batch:]
        return got

    async def attempt() -> list[Msg] | None:
        if pull.changed is None:
            await open_inbox()
        if pull.box:  # sent late to an earlier request
            return drain()
        status = await request({"batch": batch, "no_wait": True}, batch, link.timeout_s)
        if not pull.box and (status is None or status.startswith("404")):  # nothing now: wait for the next one
            expires = max(wait_s, 0.05)
            status = await request({"batch": 1, "expires": int(expires * 1e9)}, 1, expires + link.timeout_s)
        got = drain()
        ended_well = status is None or status.startswith(("404", "408"))  # none left, or the request expired
        if not ended_well and not got and await _gone(link, pull):  # 409 deleted, 503 no consumer answers...
            return None
        if not ended_well and status is not None and not status.startswith("409"):
            raise _PullError(status)
        return got

    return link.call(link.retry("reading the stream", attempt))


async def _gone(link: Link, pull: Pull) -> bool:
    """True when the consumer (or its stream) no longer exists."""
    from nats.js.errors import NotFoundError, ServiceUnavailableError

    try:
        await link.js.consumer_info(pull.stream, pull.consumer)
    except (NotFoundError, ServiceUnavailableError):
        return True
    return False


def ack(link: Link, replies: Sequence[str]) -> None:
    """Acknowledge messages by their reply subjects (a lost acknowledgement gives the message again later: the
    engine drops the repeat)."""
    if not replies:
        return

    async def send() -> None:
        for reply in replies:
            await link.nc.publish(reply, b"+ACK")
        # nats-py's own flush timeout cancels its PONG future, and the late PONG then kills its read loop
        # (InvalidStateError): the flush is waited for here instead, and left to finish in the background.
        await asyncio.wait_for(asyncio.shield(link.nc.flush(timeout=3600)), link.timeout_s)

    failures: tuple[type[BaseException], ...] = (StoppedError, *transient_errors())
    try:
        link.call(send())
    except failures as exc:
        link.down(f"NATS: acknowledging {len(replies)} messages failed ({why(exc)}); they are read again "
                  f"after {ACK_WAIT_S:g} s and their repeats dropped")
