"""The bounded inbox between a transport's reader and the handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

from wsapp.concurrency import Signal, signal_factory
from wsapp.ratelimit import RateLimited
from wsapp.transport import Message

if TYPE_CHECKING:
    from wsapp.dispatcher import Parking

__all__ = ["Inbox"]


class Inbox:
    """A FIFO of received messages, bounded in count and in size, with live limits.

    The reader waits on what `offer` returns while the inbox is full; since it then stops
    reading the socket, a slow handler slows the peer down through TCP instead of growing
    memory.
    Full means `count` messages, or (beyond the first message) `size` bytes, so the worst
    case is one message plus `size` bytes, not `count` times the largest message.

    Its consumer may also leave while the inbox is empty (see `summon` and `next`); then a
    message arriving starts another.
    """

    __slots__ = (
        "_closed",
        "_expired",
        "_idle",
        "_items",
        "_new_signal",
        "_parking",
        "_readable",
        "_size",
        "_start_consumer",
        "_writable",
    )

    def __init__(self) -> None:
        # A list, not a deque: it holds at most `count` messages, and an empty deque costs
        # 600 bytes on every idle connection.
        self._items: list[Message | RateLimited] = []
        self._size = 0  # len() of the queued messages (characters for text)
        self._closed = False
        self._new_signal = signal_factory()  # a wait per message: the cheapest way
        self._readable: Signal | None = None
        self._writable: Signal | None = None
        self._parking: Parking | None = None  # with a consumer that leaves when idle
        self._start_consumer: Callable[[], None] | None = None
        self._idle = False  # the consumer left: the next message starts another
        self._expired = False  # the parking sent the waiting consumer away

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, message: Message, count: int, size: int) -> Awaitable[None] | None:
        """Queue ``message`` if there is room for it within ``count`` messages and ``size``
        bytes: None once done; when the inbox is full, what to await until it is queued (or
        the inbox closed). A closed inbox drops it.

        Not a coroutine, for the readers' sake: creating and running one per message costs
        more than all the rest does while there is room, as there nearly always is.
        """
        length = len(message)
        items = self._items
        # `_full` and `_queue`, written out: this is the per-message path.
        if len(items) >= count or (items and self._size + length > size):
            if not self._closed:
                return self._queue_when_room(message, length, count, size)
        elif not self._closed:
            items.append(message)
            self._size += length
            readable = self._readable
            if readable is not None:
                readable.set()
                self._readable = None
            elif self._idle:
                self._wake_consumer()
        return None

    def insert(self, item: Message | RateLimited) -> None:
        """Queue ``item`` now, room or not (for what stands in for messages that were not
        queued, and takes no room itself)."""
        self._queue(item, len(item))

    async def _queue_when_room(self, message: Message, length: int, count: int, size: int) -> None:
        while self._full(length, count, size):
            if self._writable is None:
                self._writable = self._new_signal()
            await self._writable.wait()
        self._queue(message, length)

    def _full(self, length: int, count: int, size: int) -> bool:
        """No room for a message of ``length`` (see the class's docstring), and not closed."""
        items = self._items
        return (len(items) >= count or bool(items and self._size + length > size)) and not (
            self._closed
        )

    def _queue(self, message: Message | RateLimited, length: int) -> None:
        if self._closed:
            return
        self._items.append(message)
        self._size += length
        readable = self._readable
        if readable is not None:  # written out: this is the per-message path
            readable.set()
            self._readable = None
        elif self._idle:
            self._wake_consumer()

    def _wake_consumer(self) -> None:
        """Wake the consumer waiting for a message, or start one if none runs."""
        if self._readable is not None:
            self._readable.set()
            self._readable = None
        elif self._idle and self._start_consumer is not None:
            self._idle = False
            self._start_consumer()

    def summon(self, start_consumer: Callable[[], None], parking: Parking, running: bool) -> None:
        """Let the consumer leave when `next` finds nothing to take: then call
        ``start_consumer`` at the next message (at the first one, unless a consumer is
        ``running`` already). It waits for one at ``parking``, which sends it away after a
        while (see [Parking][wsapp.dispatcher.Parking])."""
        self._start_consumer = start_consumer
        self._parking = parking
        self._idle = not running

    def expire(self) -> None:
        """Send the consumer away if it is still waiting (`next` returns None)."""
        if self._readable is not None and not self._items:
            self._expired = True
            self._wake_consumer()

    async def next(self, linger: bool) -> Message | RateLimited | None:
        """The next message, as `get`; or None, and the consumer must leave, when there is
        none to take and it may not wait (not ``linger``) or the parking sent it away. Only
        an inbox told to `summon` a consumer sends one away."""
        while not self._items:
            parking = self._parking
            if parking is not None and not self._closed:
                if not linger or self._expired:
                    self._expired = False
                    self._idle = True
                    return None
                parking.park(self)
            await self._wait()
        return self._take()

    async def get(self) -> Message | RateLimited:
        """The next message, waiting for one as long as it takes; EndOfStream once the
        inbox is closed and empty."""
        while not self._items:
            await self._wait()
        return self._take()

    async def _wait(self) -> None:
        if self._closed:
            raise anyio.EndOfStream
        if self._readable is None:
            self._readable = self._new_signal()
        await self._readable.wait()

    def take_nowait(self) -> Message | RateLimited | None:
        """The next message if one is queued, else None, without waiting: what `get` and
        `next` return at once when there is one, for the consumers' sake (a coroutine per
        message costs more than the taking)."""
        return self._take() if self._items else None

    def _take(self) -> Message | RateLimited:
        message = self._items.pop(0)
        self._size -= len(message)
        if self._writable is not None:
            self._writable.set()
            self._writable = None
        return message

    def close(self) -> None:
        """No more messages will arrive; readers drain what is queued, then get EndOfStream."""
        self._closed = True
        self._start_consumer = None  # nothing to start, and no reference cycle to collect
        if self._parking is not None:
            self._parking.discard(self)
        for event in (self._readable, self._writable):
            if event is not None:
                event.set()
        self._readable = self._writable = None
