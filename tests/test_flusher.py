"""The flusher's timing, without sockets: an idle server writes a lone frame at once, and
replies at the end of their tick; a room's backlog queueing frames tick after tick is written
in batches, not one call per frame."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from wsapp.server.flusher import BATCH, QUIET_TICKS, Flusher

pytestmark = pytest.mark.anyio


class Queue:
    """A connection as the flusher sees it: frames queued, then flushed all at once."""

    def __init__(self, flusher: Flusher, room: bool = True) -> None:
        self.flusher = flusher
        self.room = room  # its frames are a room's messages (else replies)
        self.pending = 0
        self.flush_due = False
        self.flushes: list[int] = []  # frames written by each flush
        self.flushed = anyio.Event()

    def push(self) -> None:
        self.pending += 1
        self.flusher.frame_queued(self, self.room)

    def flush_now(self) -> None:
        self.flushes.append(self.pending)
        self.pending = 0
        self.flushed.set()


async def test_a_lone_frame_is_written_in_the_flushers_first_tick() -> None:
    flusher = Flusher()
    queue = Queue(flusher)
    async with anyio.create_task_group() as tg:
        tg.start_soon(flusher.run)
        await anyio.lowlevel.checkpoint()  # the flusher waits
        queue.push()
        ticks = 0
        while not queue.flushed.is_set():
            await anyio.lowlevel.checkpoint()
            ticks += 1
        tg.cancel_scope.cancel()
    assert queue.flushes == [1]
    assert ticks <= 2  # one for the flusher to wake (Trio may run it after this task)


async def test_two_frames_wait_for_a_quiet_tick_and_go_out_together() -> None:
    flusher = Flusher()
    queue = Queue(flusher)
    async with anyio.create_task_group() as tg:
        tg.start_soon(flusher.run)
        await anyio.lowlevel.checkpoint()
        queue.push()
        queue.push()
        ticks = 0
        while not queue.flushed.is_set():
            await anyio.lowlevel.checkpoint()
            ticks += 1
        tg.cancel_scope.cancel()
    assert queue.flushes == [2]
    assert ticks <= QUIET_TICKS + 2


async def test_a_backlog_of_one_frame_per_tick_is_written_in_batches() -> None:
    flusher = Flusher()
    queues = [Queue(flusher) for _ in range(3)]
    frames = 10 * BATCH
    async with anyio.create_task_group() as tg:
        tg.start_soon(flusher.run)
        for _ in range(frames):
            for queue in queues:
                queue.push()
            await anyio.lowlevel.checkpoint()
        while any(queue.pending for queue in queues):
            await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    for queue in queues:
        assert sum(queue.flushes) == frames
        # Trio runs the tasks of a tick in random order, so a batch may end a frame early.
        assert len(queue.flushes) <= frames // (BATCH - 1) + 1


async def test_replies_are_written_at_the_end_of_their_tick_without_waiting_for_more() -> None:
    flusher = Flusher()
    queues = [Queue(flusher, room=False) for _ in range(3)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(flusher.run)
        await anyio.lowlevel.checkpoint()
        for queue in queues:
            queue.push()
            queue.push()
        ticks = 0
        while not all(queue.flushed.is_set() for queue in queues):
            await anyio.lowlevel.checkpoint()
            ticks += 1
        tg.cancel_scope.cancel()
    assert [queue.flushes for queue in queues] == [[2], [2], [2]]
    assert ticks <= 2  # as a lone frame: no quiet ticks waited for
