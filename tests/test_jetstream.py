"""Tests for tracker.jetstream: message ids, printed addresses, subjects, and a Link to a real nats-server (its
streams, publishing, closing, outages); its pull consumers are tested in tests/test_pull.py."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import nats
import pytest
from nats.js.api import StorageType

from tests.conftest import NatsServer, _free_port
from tests.helpers import wait_for
from tracker.errors import NatsError, StoppedError
from tracker.jetstream import Link, StreamRemadeError, StreamSpec, message_id, redacted, subject_taken

#: How long a stopped Link may take to give up.
PROMPT_S = 1.5


def stream_messages(url: str, stream: str) -> list[tuple[int, bytes, dict[str, str]]]:
    """Every message the stream holds now, read with a client of its own: (stream sequence, body, headers)."""

    async def read() -> list[tuple[int, bytes, dict[str, str]]]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            state = (await js.stream_info(stream)).state
            found = []
            for seq in range(state.first_seq, state.last_seq + 1) if state.messages else ():
                msg = await js.get_msg(stream, seq)
                found.append((seq, msg.data or b"", dict(msg.headers or {})))
            return found
        finally:
            await nc.close()

    return asyncio.run(read())


def stream_info(url: str, stream: str) -> Any:
    """The server's StreamInfo of ``stream``, read with a client of its own."""

    async def read() -> Any:
        nc = await nats.connect(url)
        try:
            return await nc.jetstream().stream_info(stream)
        finally:
            await nc.close()

    return asyncio.run(read())


def publish_raw(url: str, subject: str, bodies: list[bytes]) -> None:
    """Publish bodies as any other JetStream publisher would (no message ids), each acknowledged."""

    async def send() -> None:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            for body in bodies:
                await js.publish(subject, body)
        finally:
            await nc.close()

    asyncio.run(send())


def delete_stream(url: str, stream: str) -> None:
    """Delete ``stream`` on the server, with a client of its own."""

    async def delete() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().delete_stream(stream)
        finally:
            await nc.close()

    asyncio.run(delete())


@pytest.fixture
def link(nats_server: NatsServer) -> Iterator[Link]:
    """A Link to the test's server (closed at the end)."""
    made = Link(nats_server.url, stop=threading.Event(), warn=lambda _: None, timeout_s=2.0)
    try:
        yield made
    finally:
        made.close()


class TestMessageId:
    """Message ids: the same event the same id, any other event another one."""

    def test_same_event_same_id(self) -> None:
        """The same event id and body always give the same message id (the server drops the repeat)."""
        body = b'{"event_id":"t-1","seq":1}'
        assert message_id("t-1", body) == message_id("t-1", bytes(body))

    def test_other_body_with_the_same_event_id_is_another_message(self) -> None:
        """Two different events sharing an event_id (a writer's mistake) get two ids: both are kept."""
        assert message_id("t-1", b'{"seq":1}') != message_id("t-1", b'{"seq":2}')

    def test_other_event_id_with_the_same_body_is_another_message(self) -> None:
        """The event id is part of the message id."""
        assert message_id("t-1", b"{}") != message_id("t-2", b"{}")
        assert message_id("t-1", b"{}").startswith("t-1")


class TestRedacted:
    """Addresses as printed: passwords and tokens hidden."""

    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            ("nats://ann:s3cret@nats.example:4222", "nats://***@nats.example:4222"),
            ("nats://tok3n@nats.example:4222", "nats://***@nats.example:4222"),
            ("tls://ann:s3cret@a.example:4222, nats://bob:pw2@b.example", "tls://***@a.example:4222,nats://***@b.example"),
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ],
    )
    def test_password_and_token_are_hidden(self, url: str, shown: str) -> None:
        """User, password and token never appear; host and port do, server by server."""
        assert redacted(url) == shown
        for secret in ("ann", "s3cret", "tok3n", "bob", "pw2"):
            assert secret not in redacted(url)

    def test_ipv6_address_stays_an_address(self) -> None:
        """An IPv6 host keeps its brackets, so the printed address still names the server and port."""
        assert redacted("nats://ann:s3cret@[::1]:4222") == "nats://***@[::1]:4222"


class TestSubjectTaken:
    """Which subjects a stream's subject pattern takes."""

    @pytest.mark.parametrize(
        ("pattern", "subject", "taken"),
        [
            ("LT.events", "LT.events", True),
            ("LT.events", "LT.other", False),
            ("LT.events", "LT.events.x", False),
            ("LT.>", "LT.events", True),
            ("LT.>", "LT.events.host1", True),
            ("LT.>", "LT", False),
            ("LT.>", "OTHER.events", False),
            ("LT.*", "LT.events", True),
            ("LT.*", "LT.events.host1", False),
            ("LT.*", "LT", False),
            ("*.events", "XY.events", True),
            ("*.events", "XY.errors", False),
            ("LT.*.x", "LT.a.x", True),
            ("LT.*.x", "LT.a.y", False),
            ("LT.*.>", "LT.a", False),
            ("LT.*.>", "LT.a.b.c", True),
            (">", "any.thing", True),
        ],
    )
    def test_wildcards(self, pattern: str, subject: str, taken: bool) -> None:
        """``*`` takes exactly one token, ``>`` one or more at the end, anything else only itself."""
        assert subject_taken(pattern, subject) is taken


class TestEnsureStream:
    """Opening a stream: made when missing, refused when it does not take the subject."""

    def test_creates_a_file_stream_bound_to_its_name(self, nats_server: NatsServer, link: Link) -> None:
        """A missing stream is made: file storage, subjects STREAM.>, 7 days, a 2-minute duplicate window."""
        created, first, last = link.ensure_stream(StreamSpec(nats_server.url, "LT"))
        info = stream_info(nats_server.url, "LT")
        assert info.config.storage == StorageType.FILE
        assert info.config.subjects == ["LT.>"]
        assert info.config.max_age == 7 * 24 * 3600
        assert info.config.duplicate_window == 120
        assert created
        assert (first, last) == (0, 0)

    def test_existing_stream_is_kept_and_its_sequences_given(self, nats_server: NatsServer, link: Link) -> None:
        """An existing stream is opened as it is: same creation time, its first and last sequence numbers."""
        spec = StreamSpec(nats_server.url, "LT")
        created, _, _ = link.ensure_stream(spec)
        publish_raw(nats_server.url, "LT.events", [b"a", b"b", b"c"])
        assert link.ensure_stream(spec) == (created, 1, 3)

    def test_subject_outside_the_stream_is_refused(self, nats_server: NatsServer, link: Link) -> None:
        """A subject the existing stream does not take: NatsError naming the stream, the subject and its subjects."""
        link.ensure_stream(StreamSpec(nats_server.url, "LT"))
        with pytest.raises(NatsError) as info:
            link.ensure_stream(StreamSpec(nats_server.url, "LT", "other.events"))
        assert str(info.value) == ("the stream 'LT' does not take the subject 'other.events' (it takes LT.>): give "
                                   "--subject one of those")
        assert stream_info(nats_server.url, "LT").config.subjects == ["LT.>"]

    def test_subject_outside_the_name_binds_a_new_stream_to_it(self, nats_server: NatsServer, link: Link) -> None:
        """A new stream with a subject that does not start with its name is bound to that subject only."""
        link.ensure_stream(StreamSpec(nats_server.url, "LT", "loadtest.host1"))
        assert stream_info(nats_server.url, "LT").config.subjects == ["loadtest.host1"]

    def test_subject_another_stream_takes_is_refused_at_once(self, nats_server: NatsServer) -> None:
        """A new stream whose subject another stream already takes cannot be made: NatsError, not retried until
        stopped (a configuration error never heals by waiting)."""
        stop, said = threading.Event(), list[str]()

        def warn(message: str) -> None:  # the first retry is said: stop there, as a user would (Ctrl-C)
            said.append(message)
            stop.set()

        first = Link(nats_server.url, stop=threading.Event(), warn=lambda _: None, timeout_s=2.0)
        try:
            first.ensure_stream(StreamSpec(nats_server.url, "A", "shared.events"))
        finally:
            first.close()
        link = Link(nats_server.url, stop=stop, warn=warn, timeout_s=2.0)
        try:
            with pytest.raises(NatsError, match="'B'"):
                link.ensure_stream(StreamSpec(nats_server.url, "B", "shared.events"))
        finally:
            link.close()


class TestPublish:
    """Publishing with acknowledgements: repeats counted, a deleted stream made again."""

    def test_publishing_again_counts_the_duplicates(self, nats_server: NatsServer, link: Link) -> None:
        """The same (id, body) pairs published twice: 0 duplicates, then all of them; the stream holds one copy."""
        spec = StreamSpec(nats_server.url, "LT")
        created, _, _ = link.ensure_stream(spec)
        items = [(f"t-{i}:x", f'{{"seq":{i}}}'.encode()) for i in range(1, 6)]
        assert link.publish(spec, created, items) == 0
        assert link.publish(spec, created, items) == 5
        assert link.publish(spec, created, [*items[:2], ("t-9:x", b'{"seq":9}')]) == 2
        held = stream_messages(nats_server.url, "LT")
        assert [(body, headers["Nats-Msg-Id"]) for _, body, headers in held] == [
            *((body, mid) for mid, body in items), (b'{"seq":9}', "t-9:x")]

    def test_nothing_to_publish(self, nats_server: NatsServer, link: Link) -> None:
        """No items: nothing is sent, 0 duplicates."""
        spec = StreamSpec(nats_server.url, "LT")
        created, _, _ = link.ensure_stream(spec)
        assert link.publish(spec, created, []) == 0
        assert stream_messages(nats_server.url, "LT") == []


    def test_a_stream_deleted_is_made_again_and_said(self, nats_server: NatsServer, link: Link) -> None:
        """The stream deleted before a publish: made again (the publish is acknowledged by nobody first), and
        StreamRemadeError names the new one's creation, not the old one's."""
        spec = StreamSpec(nats_server.url, "LT")
        created, _, _ = link.ensure_stream(spec)

        async def drop() -> None:
            nc = await nats.connect(nats_server.url)
            try:
                await nc.jetstream().delete_stream("LT")
            finally:
                await nc.close()

        asyncio.run(drop())
        with pytest.raises(StreamRemadeError) as info:
            link.publish(spec, created, [("a:1", b"{}")])
        assert info.value.created != created
        assert info.value.created == link.stream_state("LT")[0]


class TestClose:
    """Closing a Link."""

    def test_closing_twice_is_harmless(self, nats_server: NatsServer) -> None:
        """A second close() does nothing: no error, no coroutine left unawaited (cleanup code may close twice)."""
        link = Link(nats_server.url, stop=threading.Event(), warn=lambda _: None, timeout_s=2.0)
        link.close()
        assert not [t for t in threading.enumerate() if t.name == "tracker-nats"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            link.close()
            gc.collect()
        assert [str(w.message) for w in caught] == []


class TestNoServer:
    """A Link to an address where no server listens."""

    def test_stop_from_another_thread_ends_the_wait(self) -> None:
        """A Link to a port where no server listens waits; ``stop`` set from another thread ends it promptly with
        StoppedError, and its loop thread is gone."""
        stop = threading.Event()
        timer = threading.Timer(0.5, stop.set)
        timer.start()
        started = time.monotonic()
        try:
            with pytest.raises(StoppedError):
                Link(f"nats://127.0.0.1:{_free_port()}", stop=stop, warn=lambda _: None, timeout_s=0.5)
        finally:
            timer.cancel()
        assert stop.is_set()
        assert time.monotonic() - started < 0.5 + PROMPT_S
        assert not [t for t in threading.enumerate() if t.name == "tracker-nats"]

    def test_the_outage_is_said_while_connecting(self) -> None:
        """No server at the address: the failing connection is said (address shown, password hidden) while the
        Link keeps trying, not after a silent wait that never ends."""
        stop, said = threading.Event(), list[str]()
        port = _free_port()
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(Link, f"nats://ann:s3cret@127.0.0.1:{port}", stop=stop, warn=said.append,
                                 timeout_s=0.5)
            try:
                wait_for(lambda: bool(said), timeout=3.0)
            finally:
                stop.set()
                with pytest.raises(StoppedError):
                    future.result(timeout=5.0)
        assert f"127.0.0.1:{port}" in said[0]
        assert "s3cret" not in " ".join(said)
