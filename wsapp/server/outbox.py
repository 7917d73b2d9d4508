"""One connection's outgoing bytes, and the only way they reach its socket.

Every frame to send (messages from any number of tasks, pongs, pings, the close frame) is
queued whole in the connection's `Outbox` without awaiting, so frames never interleave and
need no lock. Two paths write the queue, and the outbox alone decides which one may:

- over a plain socket, the server's [Flusher][wsapp.server.flusher.Flusher] asks the outbox
  to flush at the end of the tick, and it sends what the kernel takes at once, many frames
  per call when traffic is heavy, without awaiting;
- what the kernel does not take, and everything on a stream that is not a plain socket (TLS,
  the test client's), is written by the outbox's writer task, which waits for the stream
  under ``write_timeout``. While it has bytes in flight the socket is not flushed, so bytes
  stay in order.

The writer task is started the first time it is needed, in the server's group of shared
tasks, within a cancel scope of the outbox's that `close` cancels: the task never outlives
its connection, and a task group of the connection's own would cost every connection a few
KiB and every handshake tens of µs, for a task most never start.

Senders wait only while more than ``HIGH_WATER`` bytes are queued (the backpressure), and
``write_timeout`` bounds both the wait and every write. Broadcasts are judged by the outbound
budget instead, without waiting (`offer`).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Protocol, cast

import anyio
from anyio.abc import ByteStream

from wsapp.exceptions import WriteTimeout
from wsapp.protocol import CloseCode
from wsapp.protocol.bytequeue import ByteQueue
from wsapp.server.flusher import Flusher
from wsapp.server.streams import STREAM_ERRORS
from wsapp.transport import CloseRecord

__all__ = ["HIGH_WATER", "Outbox", "Owner"]

logger = logging.getLogger("wsapp")
#: Bytes of unsent frames above which `send` waits for the peer (plus at most one message).
HIGH_WATER = 64 * 1024
#: The most buffers one vectored write takes (POSIX guarantees at least 16; Linux takes 1024).
IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16


class Owner(Protocol):
    """What an outbox needs of its connection."""

    @property
    def write_timeout(self) -> float:
        """Seconds a write, or a wait for room, may take (read live)."""
        ...

    def abort(self, why: str) -> None:
        """Drop the connection: a write failed or timed out (``why``). Never raises."""


class Outbox:
    """The frames queued for one connection's peer, and the writing of them.

    ``stream`` is the connection's; with a ``flusher`` and the ``raw_socket`` of a plain socket
    stream, the flusher flushes the outbox straight to that socket. The connection's
    ``record`` tells whether anyone is left to read; ``owner`` bounds the writes and is told
    of their failures. The writer task, if one is needed, runs in ``tasks`` (required to
    `start`), and only between `start` and `close`.
    """

    __slots__ = (
        "_drained",
        "_flusher",
        "_had_turn",
        "_in_flight",
        "_owner",
        "_queue",
        "_record",
        "_running",
        "_socket",
        "_stream",
        "_tasks",
        "_writer",
        "_writer_idle",
        "flush_due",
    )

    def __init__(
        self,
        stream: ByteStream,
        record: CloseRecord,
        owner: Owner,
        tasks: anyio.abc.TaskGroup | None = None,
        flusher: Flusher | None = None,
        raw_socket: socket.socket | None = None,
    ) -> None:
        self._stream = stream
        self._record = record
        self._owner = owner
        # Only a plain socket can be flushed without awaiting; other streams wake the writer.
        self._socket = raw_socket if flusher is not None else None
        self._flusher = flusher if self._socket is not None else None
        self.flush_due = False  # the flusher's to set and clear
        self._queue = ByteQueue()
        self._in_flight = 0  # bytes the writer task is sending (not in _queue any more)
        # Whether the flusher or the writer task began a write since the backlog began (when
        # `offer` found the outbox empty): each write comes after the loop ran other tasks,
        # the peer's chance to read. A backlog queued since the last of them is exempt from
        # the budget, so that the burst one tick produced is not taken for a slow peer.
        self._had_turn = True
        self._tasks = tasks
        self._running = False  # between `start` and `close`: the writer task may start
        # The writer task's scope, made when the task is started (most connections never
        # start one), and cancelled by `close` even before the task has begun.
        self._writer: anyio.CancelScope | None = None
        self._writer_idle: anyio.Event | None = None  # what the idle writer waits on: work
        self._drained: anyio.Event | None = None  # set when bytes were written, or lost

    @property
    def unsent(self) -> int:
        """Bytes queued or being written, not yet handed to the network."""
        return len(self._queue) + self._in_flight

    @property
    def full(self) -> bool:
        """More than ``HIGH_WATER`` bytes wait: senders should wait for room."""
        return len(self._queue) > HIGH_WATER

    def push(self, frame: bytes, payload: bytes = b"") -> bool:
        """Queue ``frame`` whole behind what is queued, and have it written soon. A large
        ``payload`` goes right behind its frame header, queued without a copy.

        Returns whether the outbox is now `full` (the sender should wait for room): it saves
        the sender a call.
        """
        queue = self._queue
        queue.append(frame)
        if payload:
            queue.append(payload)
        flusher = self._flusher
        if flusher is None:
            self._wake_writer()
        else:
            flusher.frame_queued(self)
        return len(queue) > HIGH_WATER

    def offer(self, frame: bytes, limit: int) -> bool:
        """`push` ``frame`` unless the unsent bytes would then exceed ``limit`` (the outbound
        budget): False means refused, and nothing was queued.

        Only a backlog wsapp has had a turn at writing counts against the budget: until the
        flusher or the writer task begins a write, the frames offered since the outbox was
        last empty are queued whole (a burst of one tick is not a slow peer); a frame larger
        than ``limit``, never.
        """
        if len(frame) > limit:
            return False
        if not self._queue and not self._in_flight:
            self._had_turn = False
        elif self.unsent + len(frame) > limit:
            self._write_ready()  # what the socket takes now is not waiting any more
            if self.unsent + len(frame) > limit and self._had_turn:
                return False  # the peer had its chance to read the backlog, and did not
        # `push`, written out: this is the per-delivery path, where the call costs 3 %.
        self._queue.append(frame)
        flusher = self._flusher
        if flusher is None:
            self._wake_writer()
        else:
            flusher.frame_queued(self, room=True)
        return True

    def flush_now(self) -> None:
        """Send what the socket takes now (the flusher calls it); the writer task sends the
        rest, waiting for the socket."""
        self._had_turn = True
        self._write_ready()

    def _write_ready(self) -> None:
        queue, sock = self._queue, self._socket
        if sock is None or self._in_flight or not queue or self._record.lost:
            return  # closed, or the writer is on it, or nothing to write or no one to read it
        pieces = queue.pieces(IOV_MAX)
        try:
            sent = sock.send(pieces[0]) if len(pieces) == 1 else sock.sendmsg(pieces)
        except OSError:
            sent = 0  # full (or broken: the writer meets the error again, and records it)
        queue.pop(sent)
        if queue:
            self._start_writer()
            self._wake_writer()
        elif self._drained is not None:
            self.wake_senders()

    async def wait_for_room(self) -> None:
        """Wait until at most ``HIGH_WATER`` bytes are queued (the backpressure).

        Raises [WriteTimeout][wsapp.WriteTimeout] after ``write_timeout``, having dropped the
        connection, and [ConnectionClosed][wsapp.ConnectionClosed] once it is lost.
        """
        await self._wait_below(HIGH_WATER)

    async def drain(self) -> None:
        """Wait until everything queued is written: the connection's last flush, the close
        frame above all. Raises as `wait_for_room` does (the cause of the loss is recorded)."""
        await self._wait_below(0)

    async def _wait_below(self, limit: int) -> None:
        """Wait until at most ``limit`` bytes are unsent (0: until all is written)."""
        timeout = self._owner.write_timeout
        try:
            with anyio.fail_after(timeout):
                while len(self._queue) > limit or (limit == 0 and self._in_flight):
                    if self._record.lost:
                        raise self._record.error()
                    if self._drained is None:
                        self._drained = anyio.Event()
                    await self._drained.wait()
        except TimeoutError:
            self._owner.abort(f"write timed out after {timeout}s")
            raise WriteTimeout(CloseCode.ABNORMAL_CLOSURE, self._record.lost or "") from None

    def wake_senders(self) -> None:
        """Wake the senders waiting for room to look again (they raise once the connection
        is lost)."""
        drained = self._drained
        if drained is not None:
            self._drained = None
            drained.set()

    def start(self) -> None:
        """The connection runs: the writer task may start from now on, and starts at once if
        there is no socket to flush, or bytes are waiting."""
        if self._tasks is None:
            raise RuntimeError("a connection's outbox runs only with the task group for its writer")
        self._running = True
        if self._flusher is None or self._queue:
            self._start_writer()

    def close(self) -> None:
        """The connection is over: end the writer task (started or not), and write nothing
        to the socket any more."""
        self._running = False
        if self._writer is not None:
            self._writer.cancel()
        self._socket = None

    def _start_writer(self) -> None:
        """Start the writer task, unless it has started or the connection is not running."""
        tasks = self._tasks
        if self._running and self._writer is None and tasks is not None:
            self._writer = anyio.CancelScope()
            tasks.start_soon(self._write_loop, self._writer)

    def _wake_writer(self) -> None:
        idle = self._writer_idle
        if idle is not None:
            self._writer_idle = None
            idle.set()

    async def _write_loop(self, scope: anyio.CancelScope) -> None:
        with scope:
            try:
                await self._write_all()
            except Exception:
                # The writer runs among the server's shared tasks: nothing it raises may
                # reach them. A bug here loses this connection only.
                logger.exception("writer of a connection failed; the connection is dropped")
                self._owner.abort("internal error while writing")

    async def _write_all(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                self._writer_idle = anyio.Event()
                await self._writer_idle.wait()
                continue
            data = queue.take()
            self._in_flight = len(data)
            self._had_turn = True
            timeout = self._owner.write_timeout
            try:
                with anyio.fail_after(timeout):
                    # Any bytes-like object will do for the streams served here (sockets,
                    # TLS, the test client's pipe), so what was queued is not copied.
                    await self._stream.send(cast(bytes, data))
            except TimeoutError:
                self._owner.abort(f"write timed out after {timeout}s")
                return
            except STREAM_ERRORS:
                self._owner.abort("connection lost while writing")
                return
            finally:
                self._in_flight = 0
                self.wake_senders()
