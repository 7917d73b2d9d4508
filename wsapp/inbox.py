"""The bounded inbox between a transport's reader and the handlers: a queue, nothing else."""

from __future__ import annotations

from collections.abc import Awaitable, Sized
from typing import Generic, Protocol, TypeVar

import anyio

from wsapp.concurrency import Signal, signal_factory

__all__ = ["Inbox", "Waiter"]

T = TypeVar("T", bound=Sized)


class Waiter(Protocol):
    """What an inbox tells, once, when it was asked to (`Inbox.notify`)."""

    def wake(self) -> None:
        """Something was queued, or the inbox closed. Called at most once per `notify`, by
        whatever queued or closed: it must not wait, and must not raise."""
        ...


class Inbox(Generic[T]):
    """A FIFO of received items, bounded in count and in size, with live limits.

    The reader waits on what `offer` returns while the inbox is full; since it then stops
    reading the socket, a slow handler slows the peer down through TCP instead of growing
    memory.
    Full means `count` items, or (beyond the first item) `size`, the sum of their `len()`,
    so the worst case is one item plus `size`, not `count` times the largest item.

    Consumers `get` the items (or `take_nowait` them); one that leaves while the inbox is
    empty can ask to be told when the next item arrives (`notify`) instead of waiting.
    Once closed, it takes nothing more, and its consumers drain what it holds.
    """

    __slots__ = ("_closed", "_items", "_new_signal", "_readable", "_size", "_waiter", "_writable")

    def __init__(self) -> None:
        # A list, not a deque: it holds at most `count` items, and an empty deque costs
        # 600 bytes on every idle connection.
        self._items: list[T] = []
        self._size = 0  # len() of the queued items (characters for text)
        self._closed = False
        self._new_signal = signal_factory()  # a wait per message: the cheapest way
        self._readable: Signal | None = None
        self._writable: Signal | None = None
        self._waiter: Waiter | None = None  # to tell at the next item, once

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        """Whether the inbox was closed: it takes nothing more."""
        return self._closed

    def offer(self, item: T, count: int, size: int) -> Awaitable[None] | None:
        """Queue ``item`` if there is room for it within ``count`` items and ``size``: None
        once done; when the inbox is full, what to await until it is queued (or the inbox
        closed). A closed inbox drops it.

        Not a coroutine, for the readers' sake: creating and running one per message costs
        more than all the rest does while there is room, as there nearly always is.
        """
        length = len(item)
        items = self._items
        # `_full` and `_queue`, written out: this is the per-message path.
        if len(items) >= count or (items and self._size + length > size):
            if not self._closed:
                return self._queue_when_room(item, length, count, size)
        elif not self._closed:
            items.append(item)
            self._size += length
            readable = self._readable
            if readable is not None:
                readable.set()
                self._readable = None
            else:
                waiter = self._waiter
                if waiter is not None:
                    self._waiter = None
                    waiter.wake()
        return None

    def insert(self, item: T) -> None:
        """Queue ``item`` now, room or not (for what stands in for items that were not
        queued, and takes no room itself)."""
        self._queue(item, len(item))

    async def _queue_when_room(self, item: T, length: int, count: int, size: int) -> None:
        while self._full(length, count, size):
            if self._writable is None:
                self._writable = self._new_signal()
            await self._writable.wait()
        self._queue(item, length)

    def _full(self, length: int, count: int, size: int) -> bool:
        """No room for an item of ``length`` (see the class's docstring), and not closed."""
        items = self._items
        return (len(items) >= count or bool(items and self._size + length > size)) and not (
            self._closed
        )

    def _queue(self, item: T, length: int) -> None:
        if self._closed:
            return
        self._items.append(item)
        self._size += length
        if self._readable is not None:
            self._readable.set()
            self._readable = None
        else:
            self._wake_waiter()

    def _wake_waiter(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None  # once, and no reference cycle left to collect
            waiter.wake()

    def notify(self, waiter: Waiter) -> None:
        """Call ``waiter.wake()`` once, when the next item is queued or the inbox closes
        (in place of a waiter asked for before)."""
        self._waiter = waiter

    async def get(self) -> T:
        """The next item, waiting for one as long as it takes; EndOfStream once the inbox
        is closed and empty."""
        while not self._items:
            if self._closed:
                raise anyio.EndOfStream
            if self._readable is None:
                self._readable = self._new_signal()
            await self._readable.wait()
        return self._take()

    def take_nowait(self) -> T | None:
        """The next item if one is queued, else None, without waiting: what `get` returns
        at once when there is one, for the consumers' sake (a coroutine per message costs
        more than the taking)."""
        return self._take() if self._items else None

    def _take(self) -> T:
        item = self._items.pop(0)
        self._size -= len(item)
        if self._writable is not None:
            self._writable.set()
            self._writable = None
        return item

    def close(self) -> None:
        """No more items will arrive; consumers drain what is queued, then get EndOfStream
        (and a waiter asked for is told)."""
        self._closed = True
        for event in (self._readable, self._writable):
            if event is not None:
                event.set()
        self._readable = self._writable = None
        self._wake_waiter()
