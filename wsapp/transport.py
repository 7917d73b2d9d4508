"""A WebSocket session over an anyio byte stream: the built-in server's transport.

One reader task parses frames and feeds the connection's inbox. Every frame to send (messages
from any number of tasks, pongs, pings, the close frame) is serialized whole into one output
buffer without awaiting, so frames never interleave and need no lock; one writer task owned
by the connection flushes that buffer, many frames per write when traffic is heavy. Senders
wait only while the buffer holds more than ``HIGH_WATER`` bytes: that is the backpressure, and
``write_timeout`` bounds both the wait and every write.
"""

from __future__ import annotations

import contextlib
import os

import anyio
from anyio.abc import ByteStream

from wsapp.connection import Connection, ConnectionClosed, Message, WriteTimeout
from wsapp.protocol import CloseReceived, PingReceived, PongReceived, ProtocolFailure, Session

__all__ = ["HIGH_WATER", "STREAM_ERRORS", "SocketTransport"]

ABNORMAL = 1006
#: Bytes of unsent frames above which `send` waits for the peer (plus at most one message).
HIGH_WATER = 64 * 1024
STREAM_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class SocketTransport:
    """Moves one connection's frames between its socket and its [Connection][wsapp.Connection]."""

    def __init__(
        self, stream: ByteStream, session: Session, conn: Connection, initial: bytes = b""
    ) -> None:
        self._stream = stream
        self._initial = initial  # frames that arrived right behind the handshake
        self._session = session
        self._conn = conn
        self._settings = conn.settings
        self._scope = anyio.CancelScope()
        self._out = bytearray()
        self._writing = False
        self._wake_writer: anyio.Event | None = None
        self._drained: anyio.Event | None = None
        self._pong_payload = b""
        self._pong_received: anyio.Event | None = None
        self._initiator: tuple[int, str] | None = None  # (code, reason) of the first close
        self._lost: str | None = None  # why the closing handshake could not complete

    def _push(self, frame: bytes) -> None:
        self._out += frame
        if self._wake_writer is not None:
            self._wake_writer.set()
            self._wake_writer = None

    async def send_message(self, message: Message) -> None:
        if self._session.close_sent or self._lost:
            code, reason = self._initiator or (ABNORMAL, self._lost or "")
            raise ConnectionClosed(code, reason)
        self._push(self._session.send_message(message))
        if len(self._out) > HIGH_WATER:
            await self._wait_for_room(HIGH_WATER)

    async def _wait_for_room(self, limit: int) -> None:
        """Wait until at most ``limit`` bytes are unsent (0: until all is written)."""
        timeout = self._settings.write_timeout
        try:
            with anyio.fail_after(timeout):
                while len(self._out) > limit or (limit == 0 and self._writing):
                    if self._lost:
                        raise ConnectionClosed(ABNORMAL, self._lost)
                    if self._drained is None:
                        self._drained = anyio.Event()
                    await self._drained.wait()
        except TimeoutError:
            self._abort(f"write timed out after {timeout}s")
            raise WriteTimeout(ABNORMAL, self._lost or "") from None

    async def _write_loop(self) -> None:
        out = self._out
        while True:
            if not out:
                self._wake_writer = anyio.Event()
                await self._wake_writer.wait()
                continue
            data = bytes(out)
            del out[:]
            self._writing = True
            try:
                with anyio.fail_after(self._settings.write_timeout):
                    await self._stream.send(data)
            except TimeoutError:
                self._abort(f"write timed out after {self._settings.write_timeout}s")
                return
            except STREAM_ERRORS:
                self._abort("connection lost while writing")
                return
            finally:
                self._writing = False
                if self._drained is not None:
                    self._drained.set()
                    self._drained = None

    def _abort(self, why: str) -> None:
        self._lost = self._lost or why
        if self._drained is not None:
            self._drained.set()
            self._drained = None
        self._scope.cancel()

    async def close(self, code: int, reason: str) -> None:
        self._conn._inbox.close()  # messages arriving from now on have no one to go to
        if self._session.close_sent or self._lost:
            return
        if self._initiator is None:
            self._initiator = (code, reason)
        self._push(self._session.send_close(code, reason))
        if not self._session.closed:
            self._scope.deadline = anyio.current_time() + self._settings.close_timeout

    async def run(self) -> None:
        """Read until the connection is closed, then close the socket and record the outcome."""
        try:
            with self._scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._write_loop)
                    if self._settings.ping_interval is not None:
                        tg.start_soon(self._keepalive)
                    await self._read()
                    if not self._lost:
                        # Flush what is left, the close frame above all; a failure is
                        # already recorded in self._lost.
                        with contextlib.suppress(ConnectionClosed):
                            await self._wait_for_room(0)
                    tg.cancel_scope.cancel()
            if self._scope.cancelled_caught and not self._lost and not self._session.closed:
                self._lost = "no close frame from the peer within close_timeout"
        finally:
            with anyio.CancelScope(shield=True):
                await self._stream.aclose()
            self._record_outcome()

    def _record_outcome(self) -> None:
        conn = self._conn
        session = self._session
        conn.was_clean = session.close_sent and session.close_received and self._lost is None
        if self._initiator is not None:
            conn.close_code, conn.close_reason = self._initiator
        else:
            conn.close_code, conn.close_reason = ABNORMAL, self._lost or "connection lost"

    async def _read(self) -> None:
        session, inbox, settings = self._session, self._conn._inbox, self._settings
        receive = self._stream.receive
        pending, self._initial = self._initial, b""
        while not session.closed:
            if pending:
                data, pending = pending, b""
            else:
                try:
                    data = await receive()
                except STREAM_ERRORS:
                    self._lost = self._lost or "connection lost"
                    return
            for event in session.receive_data(data):
                kind = type(event)
                if kind is str or kind is bytes:
                    await inbox.put(
                        event,  # type: ignore[arg-type]
                        settings.read_buffer_size,
                        settings.max_message_size,
                    )
                elif kind is PingReceived:
                    self._push(event.pong)  # type: ignore[union-attr]
                elif kind is PongReceived:
                    if self._pong_received is not None and event.payload == self._pong_payload:  # type: ignore[union-attr]
                        self._pong_received.set()
                elif kind is CloseReceived:
                    assert isinstance(event, CloseReceived)
                    if self._initiator is None:
                        self._initiator = (event.code, event.reason)
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

    async def _keepalive(self) -> None:
        settings = self._settings
        while (interval := settings.ping_interval) is not None:
            await anyio.sleep(interval)
            if self._session.close_sent:
                return
            self._pong_payload = os.urandom(4)
            self._pong_received = anyio.Event()
            self._push(self._session.send_ping(self._pong_payload))
            with anyio.move_on_after(settings.pong_timeout):
                await self._pong_received.wait()
                continue
            await self.close(1011, f"no pong within {settings.pong_timeout}s")
            return
