"""The built-in server: listeners, the handshake on the wire, admission, graceful shutdown."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import ssl
import stat
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio
from anyio.abc import ByteStream, Listener, SocketAttribute, TaskGroup, TaskStatus
from anyio.streams.tls import TLSStream

from wsapp import lifecycle
from wsapp.connection import Connection
from wsapp.endpoint import Callbacks
from wsapp.handshake import (
    HandshakeError,
    http_response,
    negotiate_deflate,
    parse_request_head,
    switching_protocols,
    websocket_key,
)
from wsapp.lifecycle import Refusal
from wsapp.lifespan import LifespanError
from wsapp.protocol import Session
from wsapp.request import Address, Request, client_address
from wsapp.settings import Settings
from wsapp.transport import STREAM_ERRORS, SocketTransport

if TYPE_CHECKING:
    from wsapp.app import App

__all__ = ["Server", "ssl_context_from_files"]

logger = logging.getLogger("wsapp")

GOING_AWAY = 1001


def ssl_context_from_files(certfile: str, keyfile: str | None = None) -> ssl.SSLContext:
    """A server TLS context from PEM files (``keyfile`` may be inside ``certfile``)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


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
        if len(buffer) > limit:
            break
    raise HandshakeError(431, f"request head larger than {limit} bytes")


def _peer_address(stream: ByteStream) -> Address | None:
    peer = stream.extra(SocketAttribute.remote_address, None)
    if isinstance(peer, tuple):
        return Address(str(peer[0]), int(peer[1]))
    return None  # unix socket


class Server:
    """A running wsapp server.

    `await task_group.start(app.serve, ...)` returns it once listening, which is how tests
    and embedding programs learn the real port (`port=0`) and stop the server.

    Attributes:
        urls: One URL per listening socket, like `ws://127.0.0.1:8000`.
        forced: True if shutdown was forced (a second signal) instead of graceful.
    """

    def __init__(
        self,
        app: App,
        settings: Settings,
        listeners: Sequence[Listener[ByteStream]],
        urls: list[str],
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.urls = urls
        self.forced = False
        self._listeners = listeners
        self._ssl_context = ssl_context
        self._scheme = "wss" if ssl_context else "ws"
        self._stop = anyio.Event()
        self._admitted = 0
        self._handshakes: set[anyio.CancelScope] = set()
        self._transports: set[SocketTransport] = set()
        self._connections: TaskGroup | None = None
        self._hooks = anyio.CancelScope()

    @property
    def active_connections(self) -> int:
        """Connections past the handshake checks and not yet closed."""
        return self._admitted

    def shutdown(self) -> None:
        """Start a graceful shutdown: stop accepting, close every connection with 1001."""
        self._stop.set()

    def force_shutdown(self) -> None:
        """Cancel every connection now, without waiting for closing handshakes."""
        self.forced = True
        self._stop.set()
        self._hooks.cancel()
        if self._connections is not None:
            self._connections.cancel_scope.cancel()

    async def serve(
        self,
        *,
        handle_signals: bool = False,
        task_status: TaskStatus[Server] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept and serve connections until `shutdown` (or a signal, with `handle_signals`)."""
        hooks = self.app._lifespan
        failure: LifespanError | None = None
        async with anyio.create_task_group() as supervisor:
            if handle_signals:  # watches until the very end: a second signal forces exit
                await supervisor.start(self._watch_signals)
            try:
                with self._hooks_scope():
                    await hooks.startup()
                if not self.forced:
                    await self._serve_connections(task_status)
                    with self._hooks_scope():
                        await hooks.shutdown()
            except LifespanError as exc:
                failure = exc
            finally:
                await self._close_listeners()
            supervisor.cancel_scope.cancel()
        logger.info("wsapp stopped%s", " (forced)" if self.forced else "")
        if failure is not None:
            raise failure

    def _hooks_scope(self) -> anyio.CancelScope:
        """The scope a start-up or shutdown hook runs in: a forced shutdown cancels it."""
        self._hooks = anyio.CancelScope()
        if self.forced:
            self._hooks.cancel()
        return self._hooks

    async def _serve_connections(self, task_status: TaskStatus[Server]) -> None:
        async with anyio.create_task_group() as connections:
            self._connections = connections
            async with anyio.create_task_group() as accepting:
                for listener in self._listeners:
                    accepting.start_soon(listener.serve, self._handle, connections)
                for url in self.urls:
                    logger.info("wsapp serving %s", url)
                task_status.started(self)
                await self._stop.wait()
                accepting.cancel_scope.cancel()
            await self._close_listeners()
            await self._close_all()

    async def _close_listeners(self) -> None:
        listeners, self._listeners = self._listeners, ()
        for listener in listeners:
            await listener.aclose()

    async def _close_all(self) -> None:
        assert self._connections is not None
        if not self.forced:
            logger.info("shutting down: closing %d connection(s) with 1001", len(self._transports))
        for scope in self._handshakes:
            scope.cancel()
        self._connections.cancel_scope.deadline = anyio.current_time() + self.settings.close_timeout
        for transport in self._transports:
            self._connections.start_soon(transport.close, GOING_AWAY, "server shutting down")

    async def _watch_signals(self, *, task_status: TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                if self._stop.is_set():
                    logger.warning("second %s: forcing exit", signal.Signals(signum).name)
                    self.force_shutdown()
                    return
                logger.info("%s received: shutting down gracefully", signal.Signals(signum).name)
                self.shutdown()

    async def _handle(self, stream: ByteStream) -> None:
        admitted = False
        try:
            with anyio.CancelScope() as handshake_scope:
                self._handshakes.add(handshake_scope)
                try:
                    accepted = await self._handshake(stream)
                    if accepted is None:
                        return
                    admitted = True
                    callbacks, conn, transport = accepted
                    self._transports.add(transport)
                finally:
                    self._handshakes.discard(handshake_scope)
            if handshake_scope.cancelled_caught:
                return
            try:
                if self._stop.is_set():
                    await transport.close(GOING_AWAY, "server shutting down")
                await lifecycle.run_connection(callbacks, conn, transport, transport.run)
            finally:
                self._transports.discard(transport)
        except (HandshakeError, TimeoutError, *STREAM_ERRORS) as exc:
            logger.debug("handshake abandoned: %r", exc)
        except ssl.SSLError as exc:
            logger.debug("TLS handshake failed: %r", exc)
        except Exception:
            # One connection's failure must never take the server and its other
            # connections down with it.
            logger.exception("unexpected error on a connection; it was dropped")
        finally:
            if admitted:
                self._admitted -= 1
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def _handshake(
        self, stream: ByteStream
    ) -> tuple[Callbacks, Connection, SocketTransport] | None:
        """Read and answer the opening handshake; the connection's parts if it opened.

        The whole of it, TLS and `on_connect` included, must finish within handshake_timeout:
        the client is waiting for an answer, and an unanswered socket must not linger.
        """
        with anyio.move_on_after(self.settings.handshake_timeout):
            return await self._negotiate(stream)
        logger.debug("handshake timed out after %ss", self.settings.handshake_timeout)
        return None

    async def _negotiate(
        self, stream: ByteStream
    ) -> tuple[Callbacks, Connection, SocketTransport] | None:
        settings = self.settings
        if self._ssl_context is not None:
            stream = await TLSStream.wrap(
                stream, server_side=True, ssl_context=self._ssl_context, standard_compatible=False
            )
        try:
            head_bytes, trailing = await _read_head(stream, settings.max_header_size)
        except HandshakeError as refusal:
            await self._refuse(stream, refusal, "-")
            return None
        path = "-"
        try:
            head = parse_request_head(head_bytes)
            path, raw_path, query = Request.split_target(head.target)
            resolved = self.app.router.resolve(path)
            if resolved is None:
                raise HandshakeError(404, f"no WebSocket endpoint at {path}")
            key = websocket_key(head)
        except HandshakeError as refusal:
            await self._refuse(stream, refusal, path)
            return None
        endpoint, params = resolved
        request = Request(
            method=head.method,
            path=path,
            raw_path=raw_path,
            query_string=query,
            headers=head.headers,
            client=client_address(_peer_address(stream), head.headers, settings.trusted_proxies),
            path_params=params,
            scheme=self._scheme,
            http_version=head.http_version,
        )
        denied = lifecycle.admission_refusal(request, settings, self._admitted)
        if denied is not None:
            await self._refuse(stream, denied, path)
            return None
        self._admitted += 1
        opened = False
        try:
            conn = Connection(request, settings.model_copy(deep=True))
            try:
                callbacks = await lifecycle.connect(endpoint, conn)
            except anyio.get_cancelled_exc_class():
                logger.warning(
                    "on_connect for %s %s did not finish within handshake_timeout (%ss) or "
                    "before shutdown; connection dropped",
                    conn.id,
                    path,
                    settings.handshake_timeout,
                )
                raise
            if isinstance(callbacks, Refusal):
                response = http_response(callbacks.status, callbacks.headers, callbacks.body)
                await self._send(stream, response)
                return None
            headers = list(conn.response_headers.multi_items())
            if conn.subprotocol is not None:
                headers.append(("Sec-WebSocket-Protocol", conn.subprotocol))
            deflate = negotiate_deflate(list(request.extensions), conn.settings)
            if deflate is not None:
                headers.append(("Sec-WebSocket-Extensions", deflate[1]))
            await self._send(stream, switching_protocols(key, headers))
            opened = True
        finally:
            if not opened:
                self._admitted -= 1
        session = Session(conn.settings, [deflate[0]] if deflate else None)
        return callbacks, conn, SocketTransport(stream, session, conn, trailing)

    async def _send(self, stream: ByteStream, data: bytes) -> None:
        with anyio.fail_after(self.settings.write_timeout):
            await stream.send(data)

    async def _refuse(self, stream: ByteStream, refusal: HandshakeError, path: str) -> None:
        lifecycle.log_refusal(refusal, path)
        body = refusal.body.encode() + b"\n"
        with contextlib.suppress(TimeoutError, *STREAM_ERRORS):
            await self._send(stream, http_response(refusal.status, refusal.headers, body))


async def open_listeners(
    host: str | None, port: int, uds: str | None, ssl_context: ssl.SSLContext | None
) -> tuple[list[Listener[ByteStream]], list[str]]:
    """Listening sockets and the URL of each."""
    scheme = "wss" if ssl_context else "ws"
    if uds is not None:
        if await anyio.Path(uds).exists():
            if not stat.S_ISSOCK((await anyio.Path(uds).stat()).st_mode):
                raise OSError(f"{uds} exists and is not a socket; refusing to replace it")
            os.unlink(uds)  # a stale socket from a previous run
        listener = await anyio.create_unix_listener(uds)
        return [listener], [f"{scheme}+unix://{uds}"]
    multi = await anyio.create_tcp_listener(local_host=host, local_port=port)
    urls = []
    for sub in multi.listeners:
        bound_host, bound_port = sub.extra(SocketAttribute.local_address)[:2]  # type: ignore[str-unpack]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
        urls.append(f"{scheme}://{shown}:{bound_port}")
    return [multi], urls
