"""A WebSocket session over an anyio byte stream: the built-in server's transport.

One reader task parses frames and feeds the connection's inbox. Every frame to send (messages
from any number of tasks, pongs, pings, the close frame) is serialized whole into one output
buffer without awaiting, so frames never interleave and need no lock. Over a socket, the
server's [Flusher][wsapp.server.flusher.Flusher] writes that buffer at the end of the tick,
many frames per call when traffic is heavy; what the socket does not take, and every stream
that is not a plain socket (TLS, the test client's), is written by one writer task of the
connection, started the first time it is needed, in the server's group of shared tasks and
within a cancel scope of the connection's: a task group of its own would cost every
connection a few KiB and every handshake tens of µs, for a task most never start. Senders
wait only while the buffer holds more than ``HIGH_WATER`` bytes: that is the backpressure,
and ``write_timeout`` bounds both the wait and every write. Pings are sent when the server's
[Keepalive][wsapp.server.keepalive.Keepalive] calls back: an idle connection over a socket
has no task but its reader.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING, cast

import anyio
from anyio.abc import ByteStream

from wsapp.exceptions import ConnectionClosed, WriteTimeout
from wsapp.intake import Intake
from wsapp.protocol import (
    CloseCode,
    CloseReceived,
    PingReceived,
    PongReceived,
    PreparedMessage,
    ProtocolFailure,
    Refusal,
    Session,
)
from wsapp.protocol.bytequeue import ByteQueue
from wsapp.protocol.handshake import negotiate_deflate, switching_protocols
from wsapp.server.flusher import Flusher
from wsapp.server.keepalive import Keepalive
from wsapp.server.streams import receiver
from wsapp.settings import Settings
from wsapp.transport import Closed, CloseRecord, Message

if TYPE_CHECKING:
    from wsapp.connection import Connection

__all__ = ["HIGH_WATER", "STREAM_ERRORS", "SocketTransport"]

logger = logging.getLogger("wsapp")
#: Bytes of unsent frames above which `send` waits for the peer (plus at most one message).
HIGH_WATER = 64 * 1024
#: The most buffers one vectored write takes (POSIX guarantees at least 16; Linux takes 1024).
IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16
STREAM_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class SocketTransport:
    """One connection over an anyio byte stream: the handshake answer, then its frames.

    Implements [Transport][wsapp.transport.Transport]. ``key`` is the client's
    `Sec-WebSocket-Key`; ``initial`` holds bytes that arrived right behind the request head.
    ``settings`` bounds the handshake answer; once accepted, the connection's own settings
    (read live) take over. With a ``flusher`` and the ``raw_socket`` of a plain socket
    stream, frames go straight to that socket at the end of each tick (and on Trio it is read
    directly too); ``keepalive`` sends the pings. The writer task, if one is needed, runs in
    ``tasks`` (required to `run`; it outlives no connection).
    """

    __slots__ = (
        "_backlog_since",
        "_drained",
        "_flush_due",
        "_flusher",
        "_in_flight",
        "_initial",
        "_intake",
        "_keepalive",
        "_key",
        "_out",
        "_pong_payload",
        "_record",
        "_scope",
        "_session",
        "_settings",
        "_socket",
        "_stream",
        "_tasks",
        "_turns",
        "_wake_writer",
        "_writer_group",
        "_writer_scope",
    )

    def __init__(
        self,
        stream: ByteStream,
        settings: Settings,
        key: str,
        initial: bytes = b"",
        flusher: Flusher | None = None,
        keepalive: Keepalive | None = None,
        tasks: anyio.abc.TaskGroup | None = None,
        raw_socket: socket.socket | None = None,
    ) -> None:
        self._stream = stream
        # Only a plain socket can be flushed without awaiting; other streams wake the writer.
        self._socket = raw_socket if flusher is not None else None
        self._flusher = flusher if self._socket is not None else None
        self._flush_due = False
        self._keepalive = keepalive
        self._tasks = tasks
        # Where to start the writer task once it is needed (None: started, or not running).
        self._writer_group: anyio.abc.TaskGroup | None = None
        # Made with the writer task (most connections never start one), and cancelled when
        # the connection ends, even before the task has begun.
        self._writer_scope: anyio.CancelScope | None = None
        self._settings = settings
        self._key = key
        self._initial = initial
        self._session: Session | None = None
        self._scope = anyio.CancelScope()
        self._out = ByteQueue()
        self._in_flight = 0  # bytes the writer task is sending (not in _out any more)
        # Writes the flusher or the writer task began: each comes after the loop ran other
        # tasks, the peer's chance to read. A backlog queued since the last of them is exempt
        # from the budget, so that the burst one tick produced is not taken for a slow peer.
        self._turns = 0
        self._backlog_since = -1  # `_turns` when the outbox last became non-empty
        self._wake_writer: anyio.Event | None = None
        self._drained: anyio.Event | None = None
        self._pong_payload: bytes | None = None  # of the ping waiting for its pong
        self._record = CloseRecord()
        self._intake: Intake | None = None

    @property
    def opened(self) -> bool:
        return self._session is not None

    @property
    def unsent(self) -> int:
        return len(self._out) + self._in_flight

    async def _write_handshake(self, data: bytes) -> None:
        with anyio.fail_after(self._settings.write_timeout):
            await self._stream.send(data)

    async def refuse(self, refusal: Refusal) -> None:
        with contextlib.suppress(TimeoutError, *STREAM_ERRORS):
            await self._write_handshake(refusal.response())

    async def accept(self, conn: Connection) -> bool:
        headers = list(conn.response_headers.multi_items())
        if conn.subprotocol is not None:
            headers.append(("Sec-WebSocket-Protocol", conn.subprotocol))
        deflate = negotiate_deflate(list(conn.request.extensions), conn.settings)
        if deflate is not None:
            headers.append(("Sec-WebSocket-Extensions", deflate[1]))
        try:
            await self._write_handshake(switching_protocols(self._key, headers))
        except (TimeoutError, *STREAM_ERRORS):
            return False
        self._settings = conn.settings
        self._session = Session(conn.settings, [deflate[0]] if deflate else None)
        return True

    @property
    def _open_session(self) -> Session:
        session = self._session
        if session is None:
            raise RuntimeError("cannot send before the handshake completes (after on_connect)")
        return session

    def _push(self, frame: bytes, payload: bytes = b"") -> None:
        self._out.append(frame)
        if payload:  # a large payload, queued behind its frame header without a copy
            self._out.append(payload)
        flusher = self._flusher
        if flusher is None:
            self._wake()
            return
        flusher.queued += 1
        if not self._flush_due:
            self._flush_due = True
            flusher.schedule(self)

    def _start_writer(self) -> None:
        """Start the writer task if it has not started (it starts with `run` if not yet)."""
        if self._writer_group is not None:
            self._writer_scope = anyio.CancelScope()
            self._writer_group.start_soon(self._write_loop, self._writer_scope)
            self._writer_group = None

    def _wake(self) -> None:
        if self._wake_writer is not None:
            self._wake_writer.set()
            self._wake_writer = None

    def flush_now(self) -> None:
        """Send what the socket takes now (the flusher calls it); the writer task sends the
        rest, waiting for the socket."""
        self._flush_due = False
        self._turns += 1
        self._write_ready()

    def _write_ready(self) -> None:
        out, sock = self._out, self._socket
        if sock is None or self._in_flight or not out or self._record.lost:
            return  # closed, or the writer is on it, or nothing to write or no one to read it
        pieces = out.pieces(IOV_MAX)
        try:
            sent = sock.send(pieces[0]) if len(pieces) == 1 else sock.sendmsg(pieces)
        except OSError:
            sent = 0  # full (or broken: the writer meets the error again, and records it)
        out.pop(sent)
        if out:
            self._start_writer()
            self._wake()
        elif self._drained is not None:
            self._drained.set()
            self._drained = None

    async def send(self, message: Message) -> None:
        session = self._open_session
        if session.close_sent or self._record.lost:
            raise self._record.error()
        self._push(*session.frame_parts(message))
        if len(self._out) > HIGH_WATER:
            await self._wait_for_room(HIGH_WATER)

    def push(self, message: PreparedMessage, limit: int) -> bool:
        session = self._open_session
        if session.close_sent or self._record.lost:
            raise self._record.error()
        frame = session.prepared_frame(message)
        if len(frame) > limit:
            return False
        if not self._out and not self._in_flight:
            self._backlog_since = self._turns
        elif self.unsent + len(frame) > limit:
            self._write_ready()  # what the socket takes now is not waiting any more
            if self.unsent + len(frame) > limit and self._turns != self._backlog_since:
                return False  # the peer had its chance to read the backlog, and did not
        self._push(frame)
        return True

    async def _wait_for_room(self, limit: int) -> None:
        """Wait until at most ``limit`` bytes are unsent (0: until all is written)."""
        timeout = self._settings.write_timeout
        try:
            with anyio.fail_after(timeout):
                while len(self._out) > limit or (limit == 0 and self._in_flight):
                    if self._record.lost:
                        raise self._record.error()
                    if self._drained is None:
                        self._drained = anyio.Event()
                    await self._drained.wait()
        except TimeoutError:
            self.abort(f"write timed out after {timeout}s")
            raise WriteTimeout(CloseCode.ABNORMAL_CLOSURE, self._record.lost or "") from None

    async def _write_loop(self, scope: anyio.CancelScope) -> None:
        with scope:
            try:
                await self._write_all()
            except Exception:
                # The writer runs among the server's shared tasks: nothing it raises may
                # reach them. A bug here loses this connection only.
                logger.exception("writer of a connection failed; the connection is dropped")
                self.abort("internal error while writing")

    async def _write_all(self) -> None:
        out = self._out
        while True:
            if not out:
                self._wake_writer = anyio.Event()
                await self._wake_writer.wait()
                continue
            data = out.take()
            self._in_flight = len(data)
            self._turns += 1
            try:
                with anyio.fail_after(self._settings.write_timeout):
                    # Any bytes-like object will do for the streams served here (sockets,
                    # TLS, the test client's pipe), so what was queued is not copied.
                    await self._stream.send(cast(bytes, data))
            except TimeoutError:
                self.abort(f"write timed out after {self._settings.write_timeout}s")
                return
            except STREAM_ERRORS:
                self.abort("connection lost while writing")
                return
            finally:
                self._in_flight = 0
                if self._drained is not None:
                    self._drained.set()
                    self._drained = None

    def abort(self, why: str) -> None:
        self._record.lose(why)
        if self._drained is not None:
            self._drained.set()
            self._drained = None
        self._scope.cancel()

    async def close(self, code: int, reason: str) -> None:
        self.close_now(code, reason)

    def close_now(self, code: int, reason: str) -> None:
        """`close`, which on this transport never needs to wait: queue our close frame
        (once), and start the wait for the peer's."""
        session = self._session
        if self._intake is not None:
            self._intake.close()  # messages arriving from now on have no one to go to
        if session is None or session.close_sent or self._record.lost:
            return
        self._record.first(code, reason)
        self._push(session.send_close(code, reason))
        if not session.closed:
            self._scope.deadline = anyio.current_time() + self._settings.close_timeout

    async def run(self, intake: Intake) -> None:
        """Read until the connection is closed, then close the socket."""
        session = self._open_session
        if self._tasks is None:
            raise RuntimeError("a SocketTransport runs only with the task group for its writer")
        self._intake = intake
        try:
            with self._scope:
                self._writer_group = self._tasks
                if self._flusher is None or self._out:
                    self._start_writer()
                self._schedule_ping()
                await self._read(session, intake)
                if not self._record.lost and (self._out or self._in_flight):
                    # Flush what is left, the close frame above all; a failure is already
                    # recorded as the cause of the loss.
                    with contextlib.suppress(ConnectionClosed):
                        await self._wait_for_room(0)
            if self._scope.cancelled_caught and not session.closed:
                self._record.lose("no close frame from the peer within close_timeout")
        finally:
            self._writer_group = None
            if self._writer_scope is not None:
                self._writer_scope.cancel()
            if self._keepalive is not None:
                self._keepalive.cancel(self)
            self._socket = None  # no flush may write to it once it is closed
            with anyio.CancelScope(shield=True):
                await self._stream.aclose()

    def outcome(self) -> Closed:
        session = self._open_session
        return self._record.outcome(session.close_sent and session.close_received)

    async def _read(self, session: Session, intake: Intake) -> None:
        receive = receiver(self._stream, self._socket)
        pending, self._initial = self._initial, b""
        while not session.closed:
            if pending:
                data, pending = pending, b""
            else:
                try:
                    data = await receive()
                except STREAM_ERRORS:
                    self._record.lose("connection lost")
                    return
            for event in session.receive_data(data):
                kind = type(event)
                if kind is str or kind is bytes:
                    waiting = intake.offer(event)  # type: ignore[arg-type]
                    if waiting is not None:
                        await waiting
                elif kind is PingReceived:
                    self._push(event.pong)  # type: ignore[union-attr]
                elif kind is PongReceived:
                    if event.payload == self._pong_payload:  # type: ignore[union-attr]
                        self._pong_payload = None
                        self._schedule_ping()
                elif kind is CloseReceived:
                    assert isinstance(event, CloseReceived)
                    self._record.first(event.code, event.reason)
                    # Echo the peer's code, as RFC 6455 section 5.5.1 suggests.
                    await self.close(event.code, event.reason)
                else:
                    assert isinstance(event, ProtocolFailure)
                    await self.close(event.code, event.reason)
                    if session.failed:
                        return  # the parser is gone: fail the connection (RFC 6455 7.1.7)
            if len(self._out) > HIGH_WATER:
                # Pongs (or a close) wait for a peer that does not read: stop reading too,
                # so a ping flood cannot grow the output buffer without bound.
                try:
                    await self._wait_for_room(HIGH_WATER)
                except ConnectionClosed:
                    return

    def _schedule_ping(self) -> None:
        interval = self._settings.ping_interval  # read live: None stops the pings
        if interval is not None and self._keepalive is not None:
            self._keepalive.schedule(self, anyio.current_time() + interval)

    def keepalive(self) -> None:
        """Ping, or close with 1011 if the last ping's pong is overdue (the server's
        [Keepalive][wsapp.server.keepalive.Keepalive] calls it at the time asked for)."""
        session = self._open_session
        if session.close_sent or self._record.lost or self._keepalive is None:
            return
        timeout = self._settings.pong_timeout
        if self._pong_payload is not None:
            self.close_now(CloseCode.INTERNAL_ERROR, f"no pong within {timeout}s")
            return
        self._pong_payload = os.urandom(4)
        self._push(session.send_ping(self._pong_payload))
        self._keepalive.schedule(self, anyio.current_time() + timeout)
