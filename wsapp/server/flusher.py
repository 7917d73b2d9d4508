"""Writing the frames of a whole event-loop tick at once, without a task switch per connection.

A broadcast to 10,000 members queues one frame on each of them; a burst of replies queues
several on one. Waking each connection's writer task to send them would cost a task switch per
connection per tick, which is most of what a delivery costs. Instead the outbox of a
connection over a plain socket tells the server's one `Flusher` of each frame it queues
(`frame_queued`): the flusher runs once the tasks ready in this tick have run, and asks every
such outbox to flush, which sends its bytes with one non-blocking `send`, many frames per
call when a tick queued many. Whatever the kernel does not take (a peer that reads slowly) is
left to the outbox's writer task, which waits for the socket under `write_timeout` (see
[wsapp.server.outbox][]).

When a room's messages are among the frames (a backlog may be starting: messages arriving
one per tick from a broker, a publisher yielding between broadcasts), the flusher lets more
ticks run before it writes while they queue more frames still, so that the frames of a
backlog share one system call per connection, which delivers the last of them sooner than
writing each on its own would. It writes as soon as ``QUIET_TICKS`` ticks queue nothing, the
connections to flush hold ``BATCH`` frames each on average, or it has held them for
``MAX_DELAY`` seconds; and at once when it was woken for one frame of one connection.
Replies (what callbacks send, pongs, closes) are written at the end of their tick: they
answer messages, which each connection's reader hands over a read at a time, so the next
ticks bring no more of them to batch, and waiting only added to every reply's latency and
to the loop iterations per message (W1 sparse: about a fifth of the CPU per message).
"""

from __future__ import annotations

from typing import NoReturn, Protocol

import anyio
import anyio.lowlevel

from wsapp.concurrency import signal_factory

__all__ = ["BATCH", "MAX_DELAY", "QUIET_TICKS", "Flushable", "Flusher"]

#: Ticks without a new frame after which the backlog is taken to be over (a message can take
#: two: a client library's reader task, then the task that broadcasts it).
QUIET_TICKS = 2
#: Frames per connection beyond which writing them together saves little more.
BATCH = 8
#: The longest the flusher holds frames back, in seconds.
MAX_DELAY = 0.02


class Flushable(Protocol):
    #: Whether the flusher will flush this connection (it sets and clears it; False at first).
    flush_due: bool

    def flush_now(self) -> None:
        """Send what is queued without waiting (what the socket takes now). Never raises."""


class Flusher:
    """Calls `flush_now` on every connection that queued a frame, at the end of the tick.

    `run` is a task of the server, started before its connections and ended after them.
    """

    def __init__(self) -> None:
        self._due: list[Flushable] = []
        self._new_signal = signal_factory()  # woken once per tick, or per lone reply
        self._wake = self._new_signal()
        self._queued = 0  # frames queued so far (compared before and after a tick)
        self._room_frames = False  # a room's frame is among those due: a backlog may start

    def frame_queued(self, connection: Flushable, room: bool = False) -> None:
        """``connection`` queued a frame (``room``: a room's message, not a reply): flush it
        soon (see the module's docstring)."""
        self._queued += 1
        if room:
            self._room_frames = True
        if not connection.flush_due:
            connection.flush_due = True
            if not self._due:
                self._wake.set()
            self._due.append(connection)

    async def run(self) -> NoReturn:
        while True:
            await self._wake.wait()
            self._wake = self._new_signal()
            if self._room_frames:
                await self._hold()
            self._room_frames = False
            due, self._due = self._due, []
            for connection in due:
                connection.flush_due = False
                connection.flush_now()

    async def _hold(self) -> None:
        """Let ticks run while a backlog keeps queueing frames (see the module's docstring)."""
        held_until = anyio.current_time() + MAX_DELAY
        first = self._queued - len(self._due)  # about: the due connections' first frames
        if len(self._due) == 1 and self._queued - first == 1:
            return  # a lone frame, a reply most likely: there is no backlog to wait for
        quiet = 0
        while quiet < QUIET_TICKS:
            queued = self._queued
            await anyio.lowlevel.checkpoint()
            quiet = quiet + 1 if self._queued == queued else 0
            if self._queued - first >= BATCH * len(self._due):
                return
            if anyio.current_time() >= held_until:
                return
