"""A WebSocket session over an anyio byte stream: the built-in server's transport.

One reader task parses frames and feeds the connection's inbox; every write (messages from
any number of tasks, pongs, pings, the close frame) goes through one lock, so frames never
interleave. Keepalive runs beside the reader. The closing handshake is bounded by
``close_timeout``, writes by ``write_timeout``.
"""

from __future__ import annotations

import contextlib
import os

import anyio
from anyio.abc import ByteStream

from wsapp.connection import Connection, ConnectionClosed, Message, WriteTimeout
from wsapp.protocol import CloseReceived, PingReceived, PongReceived, ProtocolFailure, Session

__all__ = ["SocketTransport"]

ABNORMAL = 1006
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
        self._lock = anyio.Lock(fast_acquire=True)
        self._scope = anyio.CancelScope()
        self._pong_payload = b""
        self._pong_received: anyio.Event | None = None
        self._initiator: tuple[int, str] | None = None  # (code, reason) of the first close
        self._lost: str | None = None  # why the connection ended without a closing handshake

    async def send_message(self, message: Message) -> None:
        async with self._lock:
            if self._session.close_sent or self._lost:
                code, reason = self._initiator or (ABNORMAL, self._lost or "")
                raise ConnectionClosed(code, reason)
            await self._write(self._session.send_message(message))

    async def _write(self, data: bytes) -> None:
        """Write under the lock; a failed or timed-out write ends the connection."""
        try:
            with anyio.fail_after(self._settings.write_timeout):
                await self._stream.send(data)
        except TimeoutError:
            self._abort(f"write timed out after {self._settings.write_timeout}s")
            raise WriteTimeout(ABNORMAL, self._lost or "") from None
        except STREAM_ERRORS:
            self._abort("connection lost while writing")
            raise ConnectionClosed(ABNORMAL, self._lost or "") from None

    def _abort(self, why: str) -> None:
        if not self._session.closed:
            self._lost = self._lost or why
        self._scope.cancel()

    async def close(self, code: int, reason: str) -> None:
        self._conn._inbox.close()  # messages arriving from now on have no one to go to
        if self._session.close_sent or self._lost:
            return
        async with self._lock:
            data = self._session.send_close(code, reason)
            if self._initiator is None:
                self._initiator = (code, reason)
            if not self._session.closed:
                self._scope.deadline = anyio.current_time() + self._settings.close_timeout
            if data:
                with contextlib.suppress(ConnectionClosed):
                    await self._write(data)

    async def run(self) -> None:
        """Read until the connection is closed, then close the socket and record the outcome."""
        try:
            with self._scope:
                async with anyio.create_task_group() as tg:
                    if self._settings.ping_interval is not None:
                        tg.start_soon(self._keepalive)
                    await self._read()
                    tg.cancel_scope.cancel()
            if self._scope.cancelled_caught and not self._lost and not self._session.closed:
                self._lost = "no close frame from the peer within close_timeout"
        finally:
            with anyio.CancelScope(shield=True):
                await self._stream.aclose()
            self._record_outcome()

    def _record_outcome(self) -> None:
        conn = self._conn
        conn.was_clean = self._session.close_sent and self._session.close_received
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
                    await inbox.put(event, settings.read_buffer_size)  # type: ignore[arg-type]
                elif kind is PingReceived:
                    await self._answer_ping(event.payload)  # type: ignore[union-attr]
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

    async def _answer_ping(self, payload: bytes) -> None:
        async with self._lock:
            if not self._session.close_sent and not self._lost:
                with contextlib.suppress(ConnectionClosed):
                    await self._write(self._session.send_pong(payload))

    async def _keepalive(self) -> None:
        settings = self._settings
        while (interval := settings.ping_interval) is not None:
            await anyio.sleep(interval)
            self._pong_payload = os.urandom(4)
            self._pong_received = anyio.Event()
            async with self._lock:
                if self._session.close_sent or self._lost:
                    return
                try:
                    await self._write(self._session.send_ping(self._pong_payload))
                except ConnectionClosed:
                    return
            with anyio.move_on_after(settings.pong_timeout):
                await self._pong_received.wait()
                continue
            await self.close(1011, f"no pong within {settings.pong_timeout}s")
            return
