"""One accepted byte stream, from TLS to the last byte: the built-in server's handshake I/O.

The stream handler reads and parses the request head, then hands the request and a
[SocketTransport][wsapp.server.transport.SocketTransport] to the shared handshake sequence
([wsapp.lifecycle.handshake][]), and runs the accepted connection ([wsapp.lifecycle.run][]).
It also keeps track of every stream it serves, so that a shutdown can close them all. The
test client drives its in-memory streams through it too.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketStream
from anyio.streams.tls import TLSStream

from wsapp import lifecycle
from wsapp.concurrency import Nursery
from wsapp.dispatcher import Parking
from wsapp.lifecycle import Accepted, Capacity, Servable
from wsapp.log import logger
from wsapp.operations.plainhttp import PlainAnswer, plain_answer, plain_refusal
from wsapp.protocol import CloseCode, Refusal
from wsapp.protocol.handshake import (
    RequestHead,
    http_response,
    is_websocket_upgrade,
    parse_request_head,
    websocket_key,
)
from wsapp.ratelimit import HandshakeLimiter
from wsapp.request import Address, Request, client_address
from wsapp.server.flusher import Flusher
from wsapp.server.keepalive import Keepalive
from wsapp.server.streams import STREAM_ERRORS
from wsapp.server.transport import SocketTransport
from wsapp.settings import Settings

__all__ = ["StreamHandler"]

GOING_AWAY_REASON = "server shutting down"
RESTART_REASON = "server restarting"


async def _read_head(stream: ByteStream, limit: int) -> tuple[bytes, bytes]:
    """The request head and whatever bytes followed it in the same reads."""
    buffer = bytearray()
    while True:
        chunk = await stream.receive()
        start = max(0, len(buffer) - 3)
        buffer += chunk
        end = buffer.find(b"\r\n\r\n", start)
        if end >= 0:
            if end > limit:
                break
            return bytes(buffer[:end]), bytes(buffer[end + 4 :])
        if len(buffer) > limit + 3:  # a head within the limit, and part of its blank line
            break
    raise Refusal(431, f"request head larger than {limit} bytes")


def _raw_socket(stream: ByteStream) -> socket.socket | None:
    """The socket under ``stream`` (through TLS too), if any: found once per connection, and
    asked directly for the peer's address, since anyio builds every attribute of a stream
    (4.6 µs on asyncio) to answer any one of them."""
    return stream.extra(SocketAttribute.raw_socket, None)


def _peer_address(stream: ByteStream, sock: socket.socket | None) -> Address | None:
    """The peer of ``stream``, whose socket is ``sock`` (None: the stream may still say, as
    the test client's does)."""
    if sock is not None:
        peer = sock.getpeername()
    else:
        peer = stream.extra(SocketAttribute.remote_address, None)
    if isinstance(peer, tuple):  # (IPv6 adds flow and scope ids, after host and port)
        return Address(str(peer[0]), int(peer[1]))
    return None  # unix socket


class StreamHandler:
    """Serves accepted byte streams (sockets, or the test client's in-memory pipes).

    Args:
        app: What to serve.
        settings: The resolved settings (defaults < App < environment < flags).
        ssl_context: Wrap every stream in TLS first.

    Streams are served within `running`, which runs the tasks every connection shares.
    """

    def __init__(
        self, app: Servable, settings: Settings, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.app = app
        self.settings = settings
        self.capacity = Capacity()
        self._handshakes = HandshakeLimiter()
        self._flusher = Flusher()
        self._keepalive = Keepalive()
        self._parking = Parking()
        self._shared: anyio.abc.TaskGroup | None = None  # while running
        self._ssl_context = ssl_context
        self._scheme = "wss" if ssl_context else "ws"
        self._stopping = False
        self._draining = False
        # The handshakes in progress, by stream (the open connections are the app's registry).
        self._handshaking: dict[ByteStream, anyio.CancelScope] = {}
        self._goodbye = (CloseCode.GOING_AWAY, GOING_AWAY_REASON)  # set by close_all

    @property
    def open_connections(self) -> int:
        """Streams being served: handshakes in progress and open connections."""
        return self.capacity.count

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the tasks that serve every connection: the
        [Flusher][wsapp.server.flusher.Flusher], which writes the frames of each tick, and the
        [Keepalive][wsapp.server.keepalive.Keepalive], which sends the pings, and the
        [Parking][wsapp.dispatcher.Parking], which ends the callback tasks of idle
        connections. Streams are handled inside the block, and are over when it ends. The
        callback tasks of connections, and the writer tasks of those whose socket is full,
        run there too."""
        async with anyio.create_task_group() as shared:
            shared.start_soon(self._flusher.run)
            shared.start_soon(self._keepalive.run)
            shared.start_soon(self._parking.run)
            self._shared = shared
            try:
                yield
            finally:
                self._shared = None
            shared.cancel_scope.cancel()

    def drain(self) -> None:
        """Answer the health path with 503 from now on: the shutdown has begun, and new
        clients should go elsewhere while this server still serves."""
        self._draining = True

    def close_all(self, task_group: Nursery, restart: bool = False) -> int:
        """Stop taking streams, drop handshakes in progress, close open connections with 1001
        (1012 for a ``restart``: clients should reconnect), in ``task_group``. Returns how
        many connections were open."""
        self._stopping = True
        if restart:
            self._goodbye = (CloseCode.SERVICE_RESTART, RESTART_REASON)
        opened = 0
        for transport in self.app.connections:
            if isinstance(transport, SocketTransport):  # not one an ASGI host serves
                opened += 1
                task_group.start_soon(transport.close, *self._goodbye)
        for scope in list(self._handshaking.values()):
            scope.cancel()
        return opened

    async def handle(self, stream: ByteStream) -> None:
        """Serve one accepted stream to its end, and close it. Never raises."""
        try:
            if self._stopping:
                return
            with self.capacity:
                accepted = await self._handshake(stream)
                if accepted is not None:
                    # Run from this frame, not one more: it lasts as long as the connection.
                    await lifecycle.run(accepted, self.app, *self._opened(accepted))
        except (Refusal, TimeoutError, *STREAM_ERRORS) as exc:
            logger.debug("handshake abandoned: %r", exc)
        except ssl.SSLError as exc:
            logger.debug("TLS handshake failed: %r", exc)
        except Exception:
            # One connection's failure must never take the server and its other
            # connections down with it.
            logger.exception("unexpected error on a connection; it was dropped")
        finally:
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def _handshake(self, stream: ByteStream) -> Accepted | None:
        """The handshake, within a scope `close_all` cancels: the accepted connection, if
        it was. The scope ends with the handshake, so that an open connection does not keep
        it (half a KiB each)."""
        with anyio.CancelScope() as scope:
            self._handshaking[stream] = scope
            try:
                return await self._serve(stream)
            finally:
                del self._handshaking[stream]
        return None  # cancelled: the server is stopping

    def _opened(self, accepted: Accepted) -> tuple[anyio.abc.TaskGroup, Parking]:
        """What `lifecycle.run` needs to run ``accepted`` (which it counts among the app's
        open connections before it awaits anything, so that `close_all` misses none)."""
        transport = accepted.transport
        assert isinstance(transport, SocketTransport)
        if self._stopping:  # accepted just as close_all ran: closed like the others
            transport.close_now(*self._goodbye)
        assert self._shared is not None  # streams are served while running
        return self._shared, self._parking

    async def _read_request(
        self, stream: ByteStream, deadline: float
    ) -> tuple[ByteStream, RequestHead, bytes] | None:
        """TLS, if any, then the request head, within ``deadline``: the stream to serve, the
        parsed head and the bytes that followed it; None if the client was refused or gave up.

        The deadline's scope lives and dies here: left in the frame of `_serve`, which lasts
        as long as the connection, it would cost every open connection half a KiB.
        """
        with anyio.CancelScope(deadline=deadline):
            if self._ssl_context is not None:
                stream = await TLSStream.wrap(
                    stream,
                    server_side=True,
                    ssl_context=self._ssl_context,
                    standard_compatible=False,
                )
            try:
                head_bytes, trailing = await _read_head(stream, self.settings.max_header_size)
                return stream, parse_request_head(head_bytes), trailing
            except Refusal as refusal:
                await self._refuse(stream, refusal, "-")
                return None
        logger.debug("handshake timed out after %ss", self.settings.handshake_timeout)
        return None

    async def _serve(self, stream: ByteStream) -> Accepted | None:
        settings = self.settings
        # handshake_timeout bounds the whole handshake, TLS and on_connect included: the
        # client is waiting for an answer, and an unanswered socket must not linger.
        deadline = anyio.current_time() + settings.handshake_timeout
        received = await self._read_request(stream, deadline)
        if received is None:
            return None
        stream, head, trailing = received
        try:
            path, raw_path, query = Request.split_target(head.target)
            upgrade = is_websocket_upgrade(head.headers)
            answer = None if upgrade else self._plain_answer(path, head)
            key = websocket_key(head) if upgrade else ""
        except Refusal as refusal:
            await self._refuse(stream, refusal, head.target.partition("?")[0])
            return None
        if answer is not None:
            with anyio.fail_after(settings.write_timeout):
                await stream.send(http_response(*answer))
            return None
        sock = _raw_socket(stream)
        transport = SocketTransport(
            stream,
            settings,
            key,
            trailing,
            self._flusher,
            self._keepalive,
            self._shared,
            raw_socket=sock if isinstance(stream, SocketStream) else None,  # not under TLS
        )
        peer = _peer_address(stream, sock)

        def build_request(params: Mapping[str, Any]) -> Request:
            return Request(
                method=head.method,
                path=path,
                raw_path=raw_path,
                query_string=query,
                headers=head.headers,
                client=client_address(peer, head.headers, settings.trusted_proxies),
                path_params=params,
                scheme=self._scheme,
                http_version=head.http_version,
            )

        return await lifecycle.handshake(
            self.app,
            settings,
            self.capacity,
            self._handshakes,
            path,
            build_request,
            transport,
            deadline,
        )

    def _plain_answer(self, path: str, head: RequestHead) -> PlainAnswer:
        """The answer to a plain HTTP request on the health or metrics path; on any other
        path, the `Refusal` raised (404 or 426)."""
        answer = plain_answer(
            self.settings,
            self.app.metrics,
            path,
            head.method,
            serving=not (self._draining or self._stopping),
            accept=head.headers.get("accept", ""),
        )
        if answer is None:
            raise plain_refusal(self.app.router, path)
        return answer

    async def _refuse(self, stream: ByteStream, refusal: Refusal, path: str) -> None:
        """Refuse a request too malformed to make a transport of."""
        peer = _peer_address(stream, _raw_socket(stream))
        lifecycle.log_refusal(refusal, path, peer, self.app.metrics)
        await SocketTransport(stream, self.settings, "").refuse(refusal)
