"""Tests for tracker.publish: acknowledged publishing, many in flight, against a real nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import nats
from nats.js.api import DiscardPolicy, StorageType, StreamConfig

from tests.conftest import NatsServer
from tests.test_jetstream import stream_messages
from tracker.publish import DUPLICATE, FAILED, NEW, PENDING, AckedPublisher


def items(n: int, tag: str = "m") -> list[tuple[str, bytes]]:
    return [(f"{tag}{i}", b'{"n":%d}' % i) for i in range(n)]


#: What AckedPublisher.send returns: each message's result, the last failure's reason, a refusal for good.
Sent = tuple[list[int], str | None, str | None]


def send(url: str, subject: str, batches: Sequence[list[tuple[str, bytes]]], *, timeout_s: float = 5.0,
         window: int = 20_000, stream: str | None = "P", between: object = None) -> list[Sent]:
    """Each batch through one AckedPublisher, on a stream ``stream`` taking ``P.>`` (made first, unless None)."""

    async def run() -> list[Sent]:
        nc = await nats.connect(url)
        try:
            if stream is not None:
                await nc.jetstream().add_stream(StreamConfig(name=stream, subjects=[f"{stream}.>"],
                                                             storage=StorageType.FILE))
            publisher = AckedPublisher(nc)
            out = []
            for batch in batches:
                out.append(await publisher.send(subject, batch, timeout_s=timeout_s, window=window))
                if callable(between):
                    between()
            return out
        finally:
            await nc.close()

    return asyncio.run(run())


class TestSend:
    """One batch: every message acknowledged, as new or as a repeat."""

    def test_every_message_is_acknowledged_once_stored(self, nats_server: NatsServer) -> None:
        """A batch of 3,000 is stored in order, each with its id, every result NEW."""
        [(results, reason, refused)] = send(nats_server.url, "P.events", [items(3000)])
        assert (results, reason, refused) == ([NEW] * 3000, None, None)
        held = stream_messages(nats_server.url, "P")
        assert [(body, headers["Nats-Msg-Id"]) for _, body, headers in held] == [(b, m) for m, b in items(3000)]

    def test_a_repeat_is_a_duplicate(self, nats_server: NatsServer) -> None:
        """The same ids again are DUPLICATE, and the stream keeps one copy; new ids among them are NEW."""
        first, second = send(nats_server.url, "P.events", [items(50), items(60)])
        assert first == ([NEW] * 50, None, None)
        assert second == ([DUPLICATE] * 50 + [NEW] * 10, None, None)
        assert len(stream_messages(nats_server.url, "P")) == 60

    def test_a_window_smaller_than_the_batch(self, nats_server: NatsServer) -> None:
        """With 7 in flight at most, 500 messages are all acknowledged."""
        [(results, reason, refused)] = send(nats_server.url, "P.events", [items(500)], window=7)
        assert (results, reason, refused) == ([NEW] * 500, None, None)

    def test_no_stream_for_the_subject_fails_each_with_the_reason(self, nats_server: NatsServer) -> None:
        """A subject no stream takes: each message FAILED, and the server's 503 (no responders) is the reason."""
        [(results, reason, refused)] = send(nats_server.url, "elsewhere.events", [items(20)], stream=None)
        assert results == [FAILED] * 20
        assert reason == "503 (no stream takes the subject)"
        assert refused is None  # a stream may come: published again

    def test_a_paused_server_leaves_them_pending(self, nats_server: NatsServer) -> None:
        """No answer within the timeout (the server stopped with SIGSTOP): PENDING, and the reason says so; the next
        batch after it resumed is acknowledged (late answers of the first are not taken as the second's)."""
        paused = [False]

        def resume() -> None:
            if paused[0]:
                nats_server.resume()
                paused[0] = False

        async def run() -> list[Sent]:
            nc = await nats.connect(nats_server.url, allow_reconnect=True)
            nats_server.pause()
            paused[0] = True
            try:
                publisher = AckedPublisher(nc)
                out = [await publisher.send("P.events", items(30), timeout_s=0.5)]
                resume()
                out.append(await publisher.send("P.events", items(30, "n"), timeout_s=5.0))
                return out
            finally:
                await nc.close()

        # The stream is made first; the client connects, then the server is paused.
        send(nats_server.url, "P.none", [[]], timeout_s=1.0)
        try:
            first, second = asyncio.run(run())
        finally:
            resume()
        assert first[0] == [PENDING] * 30
        assert first[1] == "no acknowledgement within 0.5 s"
        assert second == ([NEW] * 30, None, None)

    def test_a_message_the_stream_can_never_take_is_refused_for_good(self, nats_server: NatsServer) -> None:
        """A stream whose max_msg_size is below the message: FAILED, and refused (a 400) with the server's words;
        a full stream (discard new) is FAILED but not refused for good (its limits may change)."""

        async def run() -> list[Sent]:
            nc = await nats.connect(nats_server.url)
            try:
                js = nc.jetstream()
                await js.add_stream(StreamConfig(name="S", subjects=["S.>"], max_msg_size=5))
                await js.add_stream(StreamConfig(name="F", subjects=["F.>"], max_msgs=1, discard=DiscardPolicy.NEW))
                publisher = AckedPublisher(nc)
                return [await publisher.send("S.x", items(2), timeout_s=5.0),
                        await publisher.send("F.x", items(3), timeout_s=5.0)]
            finally:
                await nc.close()

        small, full = asyncio.run(run())
        too_big = "message size exceeds maximum allowed"
        assert small == ([FAILED, FAILED], too_big, too_big)
        assert full == ([NEW, FAILED, FAILED], "maximum messages exceeded", None)
