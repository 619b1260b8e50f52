"""Tests for tracker.pull: durable and one-read pull consumers of a real nats-server's stream, fetched and
acknowledged through a Link."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import nats
import pytest

from tests.conftest import NatsServer
from tests.helpers import wait_for
from tracker.jetstream import Link, StreamSpec
from tracker.pull import Pull, ack, ack_floor, drop, durable, ephemeral, fetch, pending


@pytest.fixture
def link(nats_server: NatsServer) -> Iterator[Link]:
    """A Link to the test's server (closed at the end)."""
    made = Link(nats_server.url, stop=threading.Event(), warn=lambda _: None, timeout_s=2.0)
    try:
        yield made
    finally:
        made.close()


def awaiting_ack(url: str, stream: str, consumer: str) -> int:
    """Messages the consumer delivered and that were not acknowledged, read with a client of its own."""

    async def read() -> int:
        nc = await nats.connect(url)
        try:
            return int((await nc.jetstream().consumer_info(stream, consumer)).num_ack_pending)
        finally:
            await nc.close()

    return asyncio.run(read())


def consumers(url: str, stream: str) -> list[str]:
    """The names of the stream's consumers, read with a client of its own."""

    async def read() -> list[str]:
        nc = await nats.connect(url)
        try:
            return [c.name for c in await nc.jetstream().consumers_info(stream)]
        finally:
            await nc.close()

    return asyncio.run(read())


def delete_consumer(url: str, stream: str, consumer: str) -> None:
    """Delete the consumer on the server, with a client of its own."""

    async def delete() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().delete_consumer(stream, consumer)
        finally:
            await nc.close()

    asyncio.run(delete())


def fetched_until(link: Link, pull: Pull, count: int, wait_s: float, timeout: float = 5.0) -> list[bytes]:
    """The bodies fetched until ``count`` came (fails after ``timeout``)."""
    got: list[bytes] = []

    def enough() -> bool:
        got.extend(m.data for m in fetch(link, pull, 100, wait_s) or [])
        return len(got) >= count

    wait_for(enough, timeout=timeout)
    return got


def published(url: str, link: Link, count: int) -> None:
    """Make the stream LT and publish ``count`` messages ``{"n":0}``, ``{"n":1}``... to it."""
    spec = StreamSpec(url, "LT")
    created, _, _ = link.ensure_stream(spec)
    link.publish(spec, created, [(f"m{i}", b'{"n":%d}' % i) for i in range(count)])


class TestDurable:
    """The durable consumer: made anew from its acknowledged floor, or from the first message."""

    def test_no_consumer_has_no_floor(self, nats_server: NatsServer, link: Link) -> None:
        """A consumer that does not exist has no acknowledged floor (None, not 0)."""
        link.ensure_stream(StreamSpec(nats_server.url, "LT"))
        assert ack_floor(link, "LT", "c") is None

    def test_made_again_after_its_acknowledged_floor(self, nats_server: NatsServer, link: Link) -> None:
        """Three of five messages acknowledged: the consumer made again gives the other two at once (first asked:
        4); made again from the start, it gives all five."""
        published(nats_server.url, link, 5)
        pull, first = durable(link, "LT", "c", from_start=False)
        assert first == 1
        msgs = fetch(link, pull, 3, 0.2)
        assert msgs is not None
        assert len(msgs) == 3
        ack(link, [m.reply for m in msgs])
        wait_for(lambda: ack_floor(link, "LT", "c") == 3)
        pull, first = durable(link, "LT", "c", from_start=False)
        assert first == 4
        assert fetched_until(link, pull, 2, 0.2) == [b'{"n":3}', b'{"n":4}']
        pull, first = durable(link, "LT", "c", from_start=True)
        assert first == 1
        assert len(fetched_until(link, pull, 5, 0.2)) == 5
        assert consumers(nats_server.url, "LT") == ["c"]

    def test_acknowledging_nothing_sends_nothing(self, nats_server: NatsServer, link: Link) -> None:
        """No replies: nothing is acknowledged, the floor stays."""
        published(nats_server.url, link, 1)
        durable(link, "LT", "c", from_start=True)
        ack(link, [])
        assert ack_floor(link, "LT", "c") == 0


class TestEphemeral:
    """A consumer for one read: from a given message on, without acknowledgements, removed after."""

    def test_reads_from_its_first_message_and_is_dropped(self, nats_server: NatsServer, link: Link) -> None:
        """Made from message 2 of 3: gives messages 2 and 3, then nothing is pending; dropped, it is gone."""
        published(nats_server.url, link, 3)
        pull = ephemeral(link, "LT", 2)
        assert fetched_until(link, pull, 2, 0.2) == [b'{"n":1}', b'{"n":2}']
        assert pending(link, pull) == 0
        assert consumers(nats_server.url, "LT") == [pull.consumer]
        drop(link, "LT", pull)
        assert consumers(nats_server.url, "LT") == []

    def test_dropping_a_consumer_that_is_gone_is_harmless(self, nats_server: NatsServer, link: Link) -> None:
        """A consumer deleted meanwhile: drop says nothing and raises nothing."""
        published(nats_server.url, link, 1)
        pull = ephemeral(link, "LT")
        delete_consumer(nats_server.url, "LT", pull.consumer)
        drop(link, "LT", pull)


class TestFetch:
    """Fetching from a pull consumer with requests of our own."""

    def test_a_quiet_stream_gives_nothing_and_then_the_new_messages(self, nats_server: NatsServer,
                                                                     link: Link) -> None:
        """Nothing published: an empty list after the wait; then each message published comes at the next fetch,
        in order."""
        spec = StreamSpec(nats_server.url, "LT")
        created, _, _ = link.ensure_stream(spec)
        pull, first = durable(link, "LT", "c", from_start=True)
        assert first == 1
        assert fetch(link, pull, 100, 0.2) == []
        link.publish(spec, created, [(f"m{i}", b'{"n":%d}' % i) for i in range(3)])
        got = fetched_until(link, pull, 3, 0.2)
        assert got == [b'{"n":0}', b'{"n":1}', b'{"n":2}']

    def test_messages_sent_after_the_request_gave_up_come_at_the_next_fetch(self, nats_server: NatsServer) -> None:
        """The server paused while a fetch waits: the fetch gives up (nothing); once the server resumes, it sends the
        messages that request asked for into the consumer's inbox, and the next fetch gives them at once (not after
        the 60 s ack wait, as an inbox of the request's own would have lost them)."""
        link = Link(nats_server.url, stop=threading.Event(), warn=lambda _: None, timeout_s=0.5)
        try:
            spec = StreamSpec(nats_server.url, "LT")
            created, _, _ = link.ensure_stream(spec)
            link.publish(spec, created, [(f"m{i}", b'{"n":%d}' % i) for i in range(3)])
            pull, _ = durable(link, "LT", "c", from_start=True)
            nats_server.pause()
            try:
                assert fetch(link, pull, 100, 0.1) == []  # no answer: given up
            finally:
                nats_server.resume()
            wait_for(lambda: awaiting_ack(nats_server.url, "LT", "c") == 3)  # sent into the inbox by now
            got = fetched_until(link, pull, 3, 0.1, timeout=10.0)
            assert got == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
        finally:
            link.close()

    def test_a_deleted_consumer_gives_none(self, nats_server: NatsServer, link: Link) -> None:
        """The consumer deleted on the server: None (the caller makes a new one), not an endless retry."""
        published(nats_server.url, link, 1)
        pull, _ = durable(link, "LT", "c", from_start=True)
        delete_consumer(nats_server.url, "LT", "c")
        assert fetch(link, pull, 100, 0.2) is None
