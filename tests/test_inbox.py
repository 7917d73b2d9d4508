"""The inbox between a connection's reader and its handlers, a queue, without sockets.

Whether `offer` makes the reader wait is what the peer feels: a waiting reader stops reading
the socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
import pytest

from wsapp.inbox import Inbox
from wsapp.protocol import Message

pytestmark = pytest.mark.anyio


def new_inbox() -> Inbox[Message]:
    return Inbox()


async def put(inbox: Inbox[Message], message: Message, count: int, size: int) -> None:
    """Offer ``message``, waiting for room as a connection's reader does."""
    waiting = inbox.offer(message, count, size)
    if waiting is not None:
        await waiting


class Reader:
    """Puts messages into an inbox in a task of its own, as a connection's reader does, and
    records how many went in."""

    def __init__(self, inbox: Inbox[Message]) -> None:
        self.inbox = inbox
        self.put = 0

    async def put_all(self, messages: Sequence[Message], count: int, size: int) -> None:
        for message in messages:
            await put(self.inbox, message, count, size)
            self.put += 1

    async def settled(self) -> int:
        """How many messages went in before the reader had to wait (or ran out)."""
        await anyio.wait_all_tasks_blocked()
        return self.put


@asynccontextmanager
async def reading(
    inbox: Inbox[Message], messages: Sequence[Message], count: int = 100, size: int = 1 << 20
) -> AsyncIterator[Reader]:
    reader = Reader(inbox)
    async with anyio.create_task_group() as tg:
        tg.start_soon(reader.put_all, messages, count, size)
        yield reader
        inbox.close()  # releases a reader still waiting


async def test_messages_come_out_in_the_order_they_went_in() -> None:
    inbox = new_inbox()
    messages: list[Message] = ["one", b"two", "three", b""]
    for message in messages:
        await put(inbox, message, 100, 1 << 20)
    assert [await inbox.get() for _ in messages] == messages


async def test_a_get_waits_for_the_next_message() -> None:
    inbox = new_inbox()
    got: list[object] = []
    async with anyio.create_task_group() as tg:

        async def get_one() -> None:
            got.append(await inbox.get())

        tg.start_soon(get_one)
        await anyio.wait_all_tasks_blocked()
        assert got == []
        await put(inbox, "hi", 1, 1)
    assert got == ["hi"]


async def test_a_full_count_makes_the_reader_wait_until_a_message_is_taken() -> None:
    inbox = new_inbox()
    async with reading(inbox, ["a", "b", "c", "d"], count=2) as reader:
        assert await reader.settled() == 2
        assert await inbox.get() == "a"
        assert await reader.settled() == 3  # room for exactly one more
        assert [await inbox.get(), await inbox.get(), await inbox.get()] == ["b", "c", "d"]
        assert await reader.settled() == 4


async def test_beyond_the_first_message_the_queued_size_is_bounded() -> None:
    inbox = new_inbox()
    async with reading(inbox, [b"x" * 6, b"y" * 4, b"z"], size=10) as reader:
        assert await reader.settled() == 2  # 6 + 4 = 10 fits; one byte more does not
        assert await inbox.get() == b"x" * 6
        assert await reader.settled() == 3


async def test_the_first_message_always_fits_however_large() -> None:
    inbox = new_inbox()
    async with reading(inbox, [b"x" * 1000, b"y"], size=10) as reader:
        assert await reader.settled() == 1  # worst case: one message plus `size` bytes
        assert await inbox.get() == b"x" * 1000
        assert await reader.settled() == 2


async def test_the_limits_of_each_put_apply_to_that_put() -> None:
    inbox = new_inbox()
    await put(inbox, "a", 1, 100)
    await put(inbox, "b", 2, 100)  # a limit raised since (per-connection settings) applies
    async with reading(inbox, ["c"], count=2) as reader:
        assert await reader.settled() == 0
    assert len(inbox) == 2


async def test_close_lets_the_queued_messages_drain_then_ends_the_stream() -> None:
    inbox = new_inbox()
    await put(inbox, "a", 10, 100)
    await put(inbox, "b", 10, 100)
    inbox.close()
    assert [await inbox.get(), await inbox.get()] == ["a", "b"]
    with pytest.raises(anyio.EndOfStream):
        await inbox.get()
    with pytest.raises(anyio.EndOfStream):
        await inbox.get()  # and keeps ending it


async def test_close_wakes_a_waiting_get_with_end_of_stream() -> None:
    inbox = new_inbox()
    ended = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def get_one() -> None:
            with pytest.raises(anyio.EndOfStream):
                await inbox.get()
            ended.set()

        tg.start_soon(get_one)
        await anyio.wait_all_tasks_blocked()
        inbox.close()
        await ended.wait()


async def test_close_releases_a_waiting_reader_and_drops_what_it_was_putting() -> None:
    inbox = new_inbox()
    async with reading(inbox, ["a", "b", "c"], count=1) as reader:
        assert await reader.settled() == 1
        inbox.close()
        assert await reader.settled() == 3  # the reader went on; nobody will handle them
    await put(inbox, "after", 10, 100)
    assert await inbox.get() == "a"
    with pytest.raises(anyio.EndOfStream):
        await inbox.get()


async def test_offer_queues_at_once_while_there_is_room_and_gives_the_wait_when_full() -> None:
    inbox = new_inbox()
    assert inbox.offer("a", 2, 100) is None
    assert inbox.offer("b", 2, 100) is None
    waiting = inbox.offer("c", 2, 100)
    assert waiting is not None and len(inbox) == 2  # not queued until there is room

    async def wait_for_room() -> None:
        assert waiting is not None
        await waiting

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_for_room)
        await anyio.wait_all_tasks_blocked()
        assert len(inbox) == 2
        assert await inbox.get() == "a"
    assert [await inbox.get(), await inbox.get()] == ["b", "c"]
    assert inbox.offer("d", 2, 100) is None


async def test_take_nowait_takes_what_is_queued_and_makes_room() -> None:
    inbox = new_inbox()
    assert inbox.take_nowait() is None
    assert inbox.offer("", 1, 100) is None  # an empty message is a message, not "none"
    waiting = inbox.offer("next", 1, 100)
    assert waiting is not None
    async with anyio.create_task_group() as tg:

        async def wait_for_room() -> None:
            assert waiting is not None
            await waiting

        tg.start_soon(wait_for_room)
        await anyio.wait_all_tasks_blocked()
        assert inbox.take_nowait() == ""
    assert inbox.take_nowait() == "next"
    assert inbox.take_nowait() is None


async def test_insert_queues_beyond_the_bounds_in_order() -> None:
    inbox = new_inbox()
    assert inbox.offer("a", 1, 100) is None
    inbox.insert("marker")  # the inbox is full: it is queued all the same, after "a"
    assert len(inbox) == 2
    assert [inbox.take_nowait(), inbox.take_nowait()] == ["a", "marker"]


class Told:
    """A waiter that counts how often the inbox told it."""

    def __init__(self) -> None:
        self.times = 0

    def wake(self) -> None:
        self.times += 1


async def test_a_waiter_is_told_once_at_the_next_item_then_forgotten() -> None:
    inbox = new_inbox()
    told = Told()
    inbox.notify(told)
    assert told.times == 0
    assert inbox.offer("a", 10, 100) is None
    assert inbox.offer("b", 10, 100) is None
    inbox.insert("c")
    assert told.times == 1  # once: it asks again when it wants to be told again
    inbox.notify(told)
    inbox.insert("d")
    assert told.times == 2


async def test_a_waiter_is_told_at_the_close_and_not_after() -> None:
    inbox = new_inbox()
    told, replaced = Told(), Told()
    inbox.notify(replaced)
    inbox.notify(told)  # in place of the one before
    inbox.close()
    assert (told.times, replaced.times) == (1, 0)
    assert inbox.offer("late", 10, 100) is None  # dropped: nothing to tell
    assert told.times == 1
    assert inbox.closed and len(inbox) == 0
