"""A WebSocket session over an anyio byte stream: the built-in server's transport.

One reader task parses frames and hands each message to the connection's intake. Every frame
to send (messages from any number of tasks, pongs, pings, the close frame) is serialized whole
and queued in the connection's [Outbox][wsapp.server.outbox.Outbox] without awaiting, and the
outbox alone writes to the stream: see [wsapp.server.outbox][] for the flusher's path, the
writer task's, the backpressure and the outbound budget. Pings are sent when the server's
[Keepalive][wsapp.server.keepalive.Keepalive] calls back: an idle connection over a socket
has no task but its reader.
"""

from __future__ import annotations

import contextlib
import os
import socket

import anyio
from anyio.abc import ByteStream

from wsapp.exceptions import ConnectionClosed
from wsapp.intake import Intake
from wsapp.protocol import (
    CloseCode,
    CloseReceived,
    Message,
    PingReceived,
    PongReceived,
    PreparedMessage,
    ProtocolFailure,
    Refusal,
    Session,
)
from wsapp.protocol.handshake import negotiate_deflate, switching_protocols
from wsapp.server.flusher import Flusher
from wsapp.server.keepalive import Keepalive
from wsapp.server.outbox import Outbox
from wsapp.server.streams import STREAM_ERRORS, receiver
from wsapp.settings import Settings
from wsapp.transport import Accepting, Closed, CloseRecord

__all__ = ["SocketTransport"]


class SocketTransport:
    """One connection over an anyio byte stream: the handshake answer, then its frames.

    Implements [Transport][wsapp.transport.Transport]. ``key`` is the client's
    `Sec-WebSocket-Key`; ``initial`` holds bytes that arrived right behind the request head.
    ``settings`` bounds the handshake answer; once accepted, the connection's own settings
    (read live) take over. With a ``flusher`` and the ``raw_socket`` of a plain socket
    stream, frames go straight to that socket at the end of each tick (and on Trio it is read
    directly too); ``keepalive`` sends the pings. The outbox's writer task, if one is needed,
    runs in ``tasks`` (required to `run`; it outlives no connection).
    """

    __slots__ = (
        "_draining",
        "_initial",
        "_intake",
        "_keepalive",
        "_key",
        "_outbox",
        "_pong_payload",
        "_record",
        "_scope",
        "_session",
        "_settings",
        "_socket",
        "_stream",
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
        # The socket is read directly only where it is also flushed (see Outbox).
        self._socket = raw_socket if flusher is not None else None
        self._keepalive = keepalive
        self._settings = settings
        self._key = key
        self._initial = initial
        self._session: Session | None = None
        self._scope = anyio.CancelScope()
        self._pong_payload: bytes | None = None  # of the ping waiting for its pong
        self._record = CloseRecord()
        self._outbox = Outbox(stream, self._record, self, tasks, flusher, self._socket)
        self._intake: Intake | None = None
        # The reader's close waits for the callbacks' replies: no other close meanwhile.
        self._draining = False

    @property
    def opened(self) -> bool:
        return self._session is not None

    @property
    def unsent(self) -> int:
        return self._outbox.unsent

    @property
    def write_timeout(self) -> float:
        """Seconds a write, or a wait for room, may take (the connection's setting, read
        live; what the outbox asks)."""
        return self._settings.write_timeout

    async def _write_handshake(self, data: bytes) -> None:
        with anyio.fail_after(self._settings.write_timeout):
            await self._stream.send(data)

    async def refuse(self, refusal: Refusal) -> None:
        with contextlib.suppress(TimeoutError, *STREAM_ERRORS):
            await self._write_handshake(refusal.response())

    async def accept(self, conn: Accepting) -> bool:
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

    async def send(self, message: Message) -> None:
        session = self._open_session
        if session.close_sent or self._record.lost:
            raise self._record.error()
        if self._outbox.push(*session.frame_parts(message)):
            await self._outbox.wait_for_room()

    def push(self, message: PreparedMessage, limit: int) -> bool:
        session = self._open_session
        if session.close_sent or self._record.lost:
            raise self._record.error()
        return self._outbox.offer(session.prepared_frame(message), limit)

    def abort(self, why: str) -> None:
        self._record.lose(why)
        self._outbox.wake_senders()
        self._scope.cancel()

    async def close(self, code: int, reason: str) -> None:
        self.close_now(code, reason)

    def close_now(self, code: int, reason: str) -> None:
        """`close`, which on this transport never needs to wait: queue our close frame
        (once), and start the wait for the peer's."""
        session = self._session
        if self._intake is not None:
            self._intake.close()  # messages arriving from now on have no one to go to
        if session is None or session.close_sent or self._record.lost or self._draining:
            return
        self._record.first(code, reason)
        self._outbox.push(session.send_close(code, reason))
        if not session.closed:
            self._scope.deadline = anyio.current_time() + self._settings.close_timeout

    async def run(self, intake: Intake) -> None:
        """Read until the connection is closed, then close the socket."""
        session = self._open_session
        outbox = self._outbox
        outbox.start()  # the writer task may run from now on (and `close` below ends it)
        self._intake = intake
        try:
            with self._scope:
                self._schedule_ping()
                await self._read(session, intake)
                if not self._record.lost and outbox.unsent:
                    with contextlib.suppress(ConnectionClosed):
                        await outbox.drain()
            if self._scope.cancelled_caught and not session.closed:
                self._record.lose("no close frame from the peer within close_timeout")
        finally:
            outbox.close()  # before the stream: no flush may write to a closed socket
            if self._keepalive is not None:
                self._keepalive.cancel(self)
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
                    self._outbox.push(event.pong)  # type: ignore[union-attr]
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
                    await self._close_after_replies(intake, event)
                    if session.failed:
                        return  # the parser is gone: fail the connection (RFC 6455 7.1.7)
            if self._outbox.full:
                # Pongs (or a close) wait for a peer that does not read: stop reading too,
                # so a ping flood cannot grow the output buffer without bound.
                try:
                    await self._outbox.wait_for_room()
                except ConnectionClosed:
                    return

    async def _close_after_replies(self, intake: Intake, failure: ProtocolFailure) -> None:
        """Close for what the peer sent, once the callbacks have handled the messages read
        before it, their replies sent: the peer broke the rules after those, not before.
        Nothing is read meanwhile, and a close asked for meanwhile gives way to this one."""
        self._record.first(failure.code, failure.reason)  # on_close is told this one, whatever
        self._draining = True
        try:
            await intake.drain(self._settings.close_timeout)
        finally:
            self._draining = False
        self.close_now(failure.code, failure.reason)

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
        self._outbox.push(session.send_ping(self._pong_payload))
        self._keepalive.schedule(self, anyio.current_time() + timeout)
