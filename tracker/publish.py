"""Publish messages to JetStream with an acknowledgement for each, many in flight at once.

nats-py's ``publish_async`` costs a future, a random token and a semaphore per message (about 30,000 messages a
second on one core here); a shipper catching up on a backlog needs more. This publisher sends plain publishes
whose reply subject names the batch and the message's index, and one wildcard subscription of its own inbox
takes every acknowledgement (about 80,000 a second): JetStream answers a publish that has a reply subject with
its acknowledgement (or an error), whoever sent it. At most ``window`` messages wait for their acknowledgement.
The caller (:meth:`tracker.jetstream.Link.publish`) publishes again, with the same message ids, whatever was not
acknowledged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import orjson

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

__all__ = ("DUPLICATE", "FAILED", "NEW", "PENDING", "AckedPublisher")

#: What became of a message: no answer (yet), stored, stored before (a repeat), refused.
PENDING: Final = 0
NEW: Final = 1
DUPLICATE: Final = 2
FAILED: Final = 3
#: Messages waiting for their acknowledgement at most.
WINDOW: Final = 20_000


@dataclass(slots=True)
class _Batch:
    number: int
    results: list[int]
    answered: int = 0
    reason: str | None = None  # the last refusal's, said to the user
    refused: str | None = None  # a refusal publishing again cannot change (the message is wrong for the stream)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class AckedPublisher:
    """Publishes batches on one connection; one batch at a time."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._prefix: str | None = None
        self._number = 0
        self._batch: _Batch | None = None

    async def _inbox(self) -> str:
        if self._prefix is None:
            prefix = self.nc.new_inbox()
            await self.nc.subscribe(f"{prefix}.*.*", cb=self._answer, pending_msgs_limit=-1, pending_bytes_limit=-1)
            self._prefix = prefix
        return self._prefix

    async def _answer(self, msg: Msg) -> None:
        batch = self._batch
        assert self._prefix is not None
        number, _, index = msg.subject[len(self._prefix) + 1:].partition(".")
        if batch is None or not number.isdigit() or int(number) != batch.number or not index.isdigit():
            return  # a late answer to an earlier batch: that message is published again anyway
        i = int(index)
        if not 0 <= i < len(batch.results) or batch.results[i] != PENDING:
            return
        reason, duplicate, permanent = _read(msg)
        if reason is None:
            batch.results[i] = DUPLICATE if duplicate else NEW
        else:
            batch.results[i], batch.reason = FAILED, reason
            if permanent:
                batch.refused = reason
        batch.answered += 1
        batch.wake.set()

    async def send(self, subject: str, items: Sequence[tuple[str, bytes]], *, timeout_s: float,
                   window: int = WINDOW) -> tuple[list[int], str | None, str | None]:
        """Publish ``(message id, body)`` pairs; return what became of each (:data:`PENDING` when no answer came
        within ``timeout_s`` of the last one) and why the last one failed (None when none did). An exception while
        sending (the connection lost) ends the batch early: the rest stays :data:`PENDING`, the reason says it. The
        third value is a refusal that publishing again cannot change (JetStream's 400: the message does not suit the
        stream, e.g. larger than its max_msg_size), or None."""
        from nats.errors import MaxPayloadError

        prefix = await self._inbox()
        self._number += 1
        batch = self._batch = _Batch(self._number, [PENDING] * len(items))
        reply = f"{prefix}.{batch.number}."
        sent = 0
        try:
            for i, (message_id, body) in enumerate(items):
                await self.nc.publish(subject, body, reply=reply + str(i), headers={"Nats-Msg-Id": message_id})
                sent += 1
                if sent - batch.answered > window and not await self._progress(batch, timeout_s):
                    break
            while batch.answered < sent and await self._progress(batch, timeout_s):
                pass
        except MaxPayloadError:  # an event the server can never take: the caller says so
            raise
        except Exception as exc:  # a lost connection, a full reconnect buffer...: the rest is published again
            batch.reason = str(exc) or type(exc).__name__
        finally:
            self._batch = None
        if batch.reason is None and batch.answered < len(items):
            batch.reason = f"no acknowledgement within {timeout_s:g} s"
        return batch.results, batch.reason, batch.refused

    @staticmethod
    async def _progress(batch: _Batch, timeout_s: float) -> bool:
        """Wait for another answer; False when none came within ``timeout_s``."""
        batch.wake.clear()
        try:
            await asyncio.wait_for(batch.wake.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


def _read(msg: Msg) -> tuple[str | None, bool, bool]:
    """Why JetStream refused a publish (an error answer, no stream for the subject; None for an acknowledgement),
    whether the acknowledgement says the message was a repeat, and whether the refusal is for good (a 400)."""
    headers: dict[str, Any] = dict(msg.headers or {})
    if headers.get("Status"):
        text = f"{headers['Status']} {headers.get('Description', '')}".strip().splitlines()[0]
        return " ".join(text.split()) + (" (no stream takes the subject)" if text.startswith("503") else ""), False, \
            False
    try:
        answer = orjson.loads(msg.data)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        return f"not an acknowledgement: {msg.data[:80]!r}", False, False
    error = answer.get("error")
    if error is not None:
        if not isinstance(error, dict):
            return str(error), False, False
        return str(error.get("description", error)), False, error.get("code") == 400
    return None, bool(answer.get("duplicate")), False
