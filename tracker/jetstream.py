"""NATS JetStream: one client connection on an event-loop thread of its own, for tracker's synchronous readers.

One message crosses the network per event: the event's JSON object (:meth:`~tracker.events.Event.to_record`,
the current version), with the message id :func:`message_id`, so that JetStream drops a message published
again (within the stream's duplicate window) and the central engine drops any other repeat by its content.
Every call that goes to the server is retried with back-off until it works or the command is stopped: a lost
connection, a server restarted or paused, JetStream not ready yet. Each outage is said once when it starts and
once when it ends; nothing is dropped meanwhile. Reading a stream through its consumers is :mod:`tracker.pull`'s
job, on a :class:`Link`. ``nats-py`` is imported only by the calls that need it, so the commands that do not use NATS
never load it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .errors import NatsError, StoppedError

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js.client import JetStreamContext

    from .publish import AckedPublisher

__all__ = (
    "DUPLICATE_WINDOW_S", "MAX_AGE_S", "Link", "StreamRemadeError", "StreamSpec", "TransientError", "message_id",
    "redacted", "subject_taken", "transient_errors", "why",
)

#: How long the stream keeps events (a stream tracker creates; an existing one keeps its own limits).
MAX_AGE_S: Final = 7 * 24 * 3600
#: How long JetStream remembers a message id to drop a repeat: NATS's default.
DUPLICATE_WINDOW_S: Final = 120
#: Waits between retries grow from the first to the last.
BACKOFF_S: Final = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
_T = TypeVar("_T")
_STOPPED: Final = object()
_log = logging.getLogger("tracker.nats")


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """Where events go or come from: the server(s), the stream, and (for shipping) the subject."""

    url: str
    stream: str
    subject: str | None = None

    @property
    def publish_subject(self) -> str:
        """The subject events are published on: ``--subject``, else ``STREAM.events``."""
        return self.subject if self.subject is not None else f"{self.stream}.events"


def message_id(event_id: str, body: bytes) -> str:
    """The JetStream message id of an event: its id and a digest of its content. The same event published twice
    has the same id (the server drops the repeat); two different events that share an ``event_id`` (a writer's
    mistake) keep both, as a replay of the files does."""
    return f"{event_id}:{hashlib.blake2b(body, digest_size=8).hexdigest()}"


def redacted(url: str) -> str:
    """``url`` without its password or token, to print."""
    parts = []
    for one in url.split(","):
        split = urlsplit(one.strip())
        if "@" in split.netloc:  # user:password@ or token@: the host and port as written (IPv6 in brackets)
            one = urlunsplit(split._replace(netloc="***@" + split.netloc.rpartition("@")[2]))
        parts.append(one.strip())
    return ",".join(parts)


def subject_taken(pattern: str, subject: str) -> bool:
    """True when a stream bound to ``pattern`` (with ``*`` and ``>`` wildcards) takes ``subject``."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


class TransientError(Exception):
    """A failure :meth:`Link.retry` tries again after, as after a lost connection: raised by an attempt that got an
    answer it did not expect (a pull request's odd status...)."""


def transient_errors() -> tuple[type[BaseException], ...]:
    """The failures that may heal by waiting (a lost connection, a server restarted or paused, JetStream not ready,
    a :class:`TransientError`): what :meth:`Link.retry` tries again after."""
    import nats.errors
    import nats.js.errors

    return (asyncio.TimeoutError, TimeoutError, OSError, nats.errors.Error, nats.js.errors.Error, TransientError)


class Link:
    """A NATS connection and its JetStream context, on an event loop in a thread of its own.

    Synchronous code calls :meth:`call`; it returns when the work is done, or raises
    :class:`~tracker.errors.StoppedError` when ``stop`` is set first.
    """

    def __init__(self, url: str, *, stop: threading.Event, warn: Callable[[str], None] | None = None,
                 timeout_s: float = 5.0, ping_s: float = 5.0, name: str = "tracker") -> None:
        self.url, self.stop, self.timeout_s, self.ping_s, self.name = url, stop, timeout_s, ping_s, name
        self._warn = warn if warn is not None else _log.warning
        self._outage: str | None = None  # what is failing now, said once
        self._closing = False
        #: Reconnections so far: messages a consumer delivered into the lost connection are given again only after
        #: the ack wait, unless the reader asks for them (see StreamReader).
        self.reconnects = 0
        self._publisher: AckedPublisher | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tracker-nats", daemon=True)
        self._thread.start()
        self.nc: Client
        self.js: JetStreamContext
        try:
            self.nc = self.call(self.retry(f"connecting to {redacted(url)}", self._connect))
        except BaseException:
            self._stop_loop()
            raise
        self.js = self.nc.jetstream(timeout=timeout_s)

    # -- the loop --------------------------------------------------------------------

    def call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the connection's loop and wait for it (or for ``stop``)."""
        future = asyncio.run_coroutine_threadsafe(self._unless_stopped(coro), self._loop)
        # Waited for with wait(), not result(timeout=): the coroutine's own TimeoutError (a flush, a request) is the
        # same class as result()'s, and must be raised, not taken for "not done yet".
        while not concurrent.futures.wait([future], timeout=0.1).done:
            if self.stop.is_set():
                future.cancel()
                raise StoppedError("stopped while waiting for NATS")
        result = future.result()
        if result is _STOPPED:
            raise StoppedError("stopped while waiting for NATS")
        return result  # type: ignore[return-value]

    async def _unless_stopped(self, coro: Coroutine[Any, Any, _T]) -> _T | object:
        """``coro``'s result; once stopped, whatever it raises (the caller no longer waits) is :data:`_STOPPED`,
        never an exception nobody retrieves."""
        try:
            return await coro
        except BaseException:
            if self.stop.is_set():
                return _STOPPED
            raise

    async def retry(self, what: str, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """``attempt()`` until it works, waiting longer after each failure (said once an outage); a request the
        server refuses as bad (a subject another stream takes...) is a :class:`NatsError` at once."""
        from nats.js.errors import BadRequestError

        retryable = transient_errors()
        for tries in range(1 << 62):
            try:
                result = await attempt()
            except BadRequestError as exc:
                raise NatsError(f"{what}: the server refused it: {exc.description or exc}") from None
            except retryable as exc:
                if self.stop.is_set():
                    raise StoppedError(f"stopped while {what}") from None
                delay = BACKOFF_S[min(tries, len(BACKOFF_S) - 1)]
                self.down(f"NATS: {what} failed ({why(exc)}); trying again every {BACKOFF_S[-1]:g} s at most")
                await asyncio.sleep(delay)
                continue
            if self.nc_connected():
                self.up()
            return result
        raise AssertionError("unreachable")

    def nc_connected(self) -> bool:
        """True while the connection is up (before it is made: True, as a call that worked made it)."""
        nc = getattr(self, "nc", None)
        return nc is None or bool(nc.is_connected)

    def down(self, message: str) -> None:
        """Say an outage once (a new kind of failure is said too)."""
        if self._outage != message:
            self._outage = message
            self._warn(message)

    def up(self) -> None:
        if self._outage is not None:
            self._outage = None
            self._warn(f"NATS: {redacted(self.url)} works again")

    async def _connect(self) -> Client:
        import nats

        async def disconnected() -> None:
            if self._closing:
                return
            self.down(f"NATS: disconnected from {redacted(self.url)}; reconnecting")

        async def reconnected() -> None:
            self.reconnects += 1
            self.up()

        async def error(exc: Exception) -> None:  # said by the calls that fail; nats-py would log a traceback
            _log.debug("nats: %s", exc)

        # nats-py keeps trying a first connection as long as later ones (forever): bounded here, so that the
        # outage is said and retried by retry() like any other.
        return await asyncio.wait_for(nats.connect(
            servers=[part.strip() for part in self.url.split(",")], name=self.name, connect_timeout=self.timeout_s,
            allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5, ping_interval=self.ping_s,
            max_outstanding_pings=2, disconnected_cb=disconnected, reconnected_cb=reconnected, error_cb=error),
            timeout=self.timeout_s)

    def close(self) -> None:
        """Close the connection (what is buffered is sent first: every publish and acknowledgement was already
        waited for) and the loop's thread."""
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.nc.close(), self._loop).result(timeout=self.timeout_s)
        self._stop_loop()

    def _stop_loop(self) -> None:
        async def cancel_the_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_the_rest(), self._loop).result(timeout=self.timeout_s)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    # -- streams ------------------------------------------------------------------------

    def ensure_stream(self, spec: StreamSpec) -> tuple[str, int, int]:
        """Create the stream when missing (file storage, :data:`MAX_AGE_S`, :data:`DUPLICATE_WINDOW_S`) and check
        that it takes the publish subject; return its creation time (its identity) and its first and last
        message's sequence numbers."""
        info = self.call(self.retry(f"opening the stream {spec.stream!r}", lambda: self._ensure(spec)))
        return _created(info), int(info.state.first_seq), int(info.state.last_seq)

    async def _ensure(self, spec: StreamSpec) -> Any:
        """The stream's info, made first when missing; NatsError when it does not take the publish subject."""
        from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        subject = spec.publish_subject
        try:
            info = await self.js.stream_info(spec.stream)
        except NotFoundError:
            bound = f"{spec.stream}.>" if subject.startswith(f"{spec.stream}.") else subject
            config = StreamConfig(name=spec.stream, subjects=[bound], storage=StorageType.FILE,
                                  retention=RetentionPolicy.LIMITS, discard=DiscardPolicy.OLD,
                                  max_age=MAX_AGE_S, duplicate_window=DUPLICATE_WINDOW_S)
            try:
                info = await self.js.add_stream(config)
            except Exception as exc:  # another shipper made it meanwhile: read it
                if "already in use" not in str(exc):
                    raise
                info = await self.js.stream_info(spec.stream)
        subjects = list(info.config.subjects or [])
        if not any(subject_taken(pattern, subject) for pattern in subjects):
            raise NatsError(f"the stream {spec.stream!r} does not take the subject {subject!r} (it takes "
                            f"{', '.join(subjects) or 'none'}): give --subject one of those")
        return info

    def stream_state(self, stream: str) -> tuple[str, int, int]:
        """The stream's creation time and its first and last sequence numbers (NatsError when it does not exist)."""
        from nats.js.errors import NotFoundError

        async def look() -> Any:
            try:
                return await self.js.stream_info(stream)
            except NotFoundError:
                return None

        info = self.call(self.retry(f"reading the stream {stream!r}", look))
        if info is None:
            raise NatsError(f"there is no stream {stream!r} on {redacted(self.url)}")
        return _created(info), int(info.state.first_seq), int(info.state.last_seq)

    # -- publishing -------------------------------------------------------------------

    def publish(self, spec: StreamSpec, created: str, items: Sequence[tuple[str, bytes]]) -> int:
        """Publish ``(message id, body)`` pairs on ``spec``'s subject and wait until JetStream acknowledged every one,
        publishing again what was not (with the same id); return how many the server already had. When no stream
        takes the subject, the stream is made again; :class:`StreamRemadeError` when it is not the one made at
        ``created`` (what was shipped to the old one is gone)."""
        return self.call(self._publish(spec, created, items)) if items else 0

    async def _publish(self, spec: StreamSpec, created: str, items: Sequence[tuple[str, bytes]]) -> int:
        subject = spec.publish_subject
        from nats.errors import MaxPayloadError

        from .publish import DUPLICATE, NEW, AckedPublisher

        if self._publisher is None:
            self._publisher = AckedPublisher(self.nc)
        pending, duplicates = list(items), 0
        for tries in range(1 << 62):
            try:
                results, reason, refused = await self._publisher.send(subject, pending, timeout_s=self.timeout_s)
            except MaxPayloadError:
                largest = max(pending, key=lambda item: len(item[1]))
                raise NatsError(f"an event of {len(largest[1])} bytes ({largest[0]}) is larger than the server's "
                                f"max_payload ({self.nc.max_payload} bytes): raise it in the server's "
                                "configuration") from None
            if refused is not None:
                raise NatsError(f"the stream refuses events for good: {refused} (the positions are saved up to the "
                                "last event it took; change the stream's limits, then ship again)")
            duplicates += results.count(DUPLICATE)
            pending = [item for item, result in zip(pending, results, strict=True) if result not in (NEW, DUPLICATE)]
            if not pending:
                self.up()
                return duplicates
            if self.stop.is_set():
                raise StoppedError(f"stopped with {len(pending)} events not acknowledged by NATS")
            if reason is not None and reason.startswith("503"):  # no stream: deleted? (made again if so)
                with contextlib.suppress(*transient_errors()):
                    now = _created(await self._ensure(spec))
                    if now != created:
                        raise StreamRemadeError(now)
            self.down(f"NATS: publishing failed ({reason}); {len(pending)} events are published again until the "
                      "server acknowledges them")
            await asyncio.sleep(BACKOFF_S[min(tries, len(BACKOFF_S) - 1)])
        raise AssertionError("unreachable")


class StreamRemadeError(NatsError):
    """The stream was deleted (and made again) while events were shipped to it: ``created`` is the new one's."""

    def __init__(self, created: str) -> None:
        super().__init__("the stream was deleted and made again")
        self.created = created


def _created(info: Any) -> str:
    """A stream's creation time as text: a stream deleted and made again is another stream."""
    created = getattr(info, "created", None)
    return str(created) if created is not None else ""


def why(exc: BaseException | None) -> str:
    """What ``exc`` says, in at most about 200 characters, to print (its class when it says nothing)."""
    if exc is None:
        return "no reason given"
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "..."

