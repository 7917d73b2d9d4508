"""A wsapp app as an ASGI 3 application: the same lifecycle, with an ASGI host as transport.

The host (uvicorn, hypercorn, daphne, a Starlette mount) owns the socket, the WebSocket
framing, pings and compression; wsapp builds the [Request][wsapp.Request] from the scope and
runs exactly the code the built-in server runs (`lifecycle.connect`, `lifecycle.run_connection`)
with [ASGITransport][wsapp.asgi.ASGITransport] in place of the socket transport.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import anyio

from wsapp import lifecycle
from wsapp.connection import Connection, ConnectionClosed, Message
from wsapp.datastructures import Headers
from wsapp.endpoint import Callbacks
from wsapp.handshake import HandshakeError, upgrade_required
from wsapp.lifecycle import Refusal
from wsapp.lifespan import LifespanError
from wsapp.protocol import message_too_big
from wsapp.request import Address, Request, client_address
from wsapp.settings import ConfigError, Settings, resolve_settings

if TYPE_CHECKING:
    from wsapp.app import App

__all__ = ["ASGIAdapter", "ASGITransport", "Receive", "Scope", "Send"]

logger = logging.getLogger("wsapp")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

ABNORMAL = 1006
NO_STATUS = 1005
#: The extension that lets an app refuse a handshake with its own HTTP response.
DENIAL_EXTENSION = "websocket.http.response"


def route_path(scope: Scope) -> str:
    """The path relative to where the app is mounted (``root_path``), as routes match it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path


def _encode_headers(items: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in items]


def _request(scope: Scope, path: str, params: dict[str, Any], settings: Settings) -> Request:
    items = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]
    offered = scope.get("subprotocols")
    if offered and not any(name.lower() == "sec-websocket-protocol" for name, _ in items):
        # Some hosts (uvicorn's wsproto implementation) pass the offer in the scope only.
        items.append(("sec-websocket-protocol", ", ".join(offered)))
    headers = Headers(items)
    raw_path = scope.get("raw_path")
    peer = scope.get("client")
    return Request(
        method="GET",
        path=path,
        raw_path=raw_path.decode("latin-1") if raw_path else scope["path"],
        query_string=scope.get("query_string", b"").decode("latin-1"),
        headers=headers,
        client=client_address(
            Address(str(peer[0]), int(peer[1])) if peer else None,
            headers,
            settings.trusted_proxies,
        ),
        path_params=params,
        scheme=scope.get("scheme", "ws"),
        http_version=scope.get("http_version", "1.1"),
    )


def _too_big(message: Message, limit: int) -> bool:
    if isinstance(message, bytes):
        return len(message) > limit
    # A character is 1 to 4 bytes of UTF-8: encode only when the length cannot decide.
    return len(message) > limit or (len(message) * 4 > limit and len(message.encode()) > limit)


class ASGIAdapter:
    """Serves one app's ASGI scopes; `App.__call__` delegates here."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._settings: Settings | None = None
        self._active = 0
        self._warned = False  # about hooks that never ran, once

    @property
    def settings(self) -> Settings:
        """The app's settings with the environment applied, resolved once (hosts have no flags)."""
        if self._settings is None:
            self._settings = resolve_settings(self.app.settings)
        return self._settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "http":
            await self._http(scope, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:  # the ASGI spec: an app raises on scope types it does not know
            raise ValueError(f"wsapp cannot serve ASGI scope type {kind!r}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        hooks = self.app._lifespan
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self._settings = resolve_settings(self.app.settings)
                    await hooks.startup()
                except (ConfigError, LifespanError) as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await hooks.shutdown()
                except LifespanError as exc:
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, send: Send) -> None:
        path = route_path(scope)
        if self.app.router.resolve(path) is None:
            answer = HandshakeError(404, f"no WebSocket endpoint at {path}")
        else:
            answer = upgrade_required()
        body = answer.body.encode() + b"\n"
        headers = [*answer.headers, ("Content-Type", "text/plain; charset=utf-8")]
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": _encode_headers(headers),
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return  # the client left before the host even asked us
        if self.app._lifespan.needs_startup and not self._warned:
            self._warned = True
            logger.warning(
                "a connection arrived but the start-up hooks have not run: this ASGI server "
                "sent no lifespan scope. Mounted in Starlette or FastAPI? Pass "
                "lifespan=app.lifespan to the host app."
            )
        settings = self.settings
        path = route_path(scope)
        resolved = self.app.router.resolve(path)
        if resolved is None:
            await _deny(scope, send, path, HandshakeError(404, f"no WebSocket endpoint at {path}"))
            return
        endpoint, params = resolved
        request = _request(scope, path, params, settings)
        refusal = lifecycle.admission_refusal(request, settings, self._active)
        if refusal is not None:
            await _deny(scope, send, path, refusal)
            return
        self._active += 1
        try:
            conn = Connection(request, settings.model_copy(deep=True))
            callbacks: Callbacks | Refusal = Refusal(503, b"on_connect timed out\n")
            with anyio.move_on_after(settings.handshake_timeout) as timer:
                callbacks = await lifecycle.connect(endpoint, conn)
            if timer.cancelled_caught:
                logger.warning(
                    "on_connect for %s %s did not finish within handshake_timeout (%ss); refused",
                    conn.id,
                    path,
                    settings.handshake_timeout,
                )
            if isinstance(callbacks, Refusal):
                await _deny(scope, send, path, callbacks)
                return
            try:
                await send(
                    {
                        "type": "websocket.accept",
                        "subprotocol": conn.subprotocol,
                        "headers": _encode_headers(list(conn.response_headers.multi_items())),
                    }
                )
            except OSError:  # the client left during on_connect: it never opened
                logger.debug("client left before %s %s opened", conn.id, path)
                return
            transport = ASGITransport(conn, receive, send)
            await lifecycle.run_connection(callbacks, conn, transport, transport.run)
        finally:
            self._active -= 1


async def _deny(scope: Scope, send: Send, path: str, refusal: HandshakeError | Refusal) -> None:
    """Refuse the handshake with ``refusal``'s response, or a bare 403 if the host cannot."""
    if isinstance(refusal, HandshakeError):
        lifecycle.log_refusal(refusal, path)
        refusal = Refusal(refusal.status, refusal.body.encode() + b"\n", refusal.headers)
    if DENIAL_EXTENSION not in scope.get("extensions", {}):
        logger.info(
            "the ASGI server cannot send a %s response (no %s extension): it sends 403",
            refusal.status,
            DENIAL_EXTENSION,
        )
        await send({"type": "websocket.close", "code": 1008})
        return
    await send(
        {
            "type": "websocket.http.response.start",
            "status": refusal.status,
            "headers": _encode_headers(refusal.headers),
        }
    )
    await send({"type": "websocket.http.response.body", "body": refusal.body})


class ASGITransport:
    """Moves one connection's messages between the ASGI host and its Connection.

    The host does the framing, pings and the closing handshake; this keeps wsapp's guarantees
    on top: whole messages from many tasks (one `send` at a time), `write_timeout`,
    `max_message_size`, the bounded inbox, and the close code and cleanliness on_close gets.
    """

    def __init__(self, conn: Connection, receive: Receive, send: Send) -> None:
        self._conn = conn
        self._settings = conn.settings
        self._receive = receive
        self._send = send
        # fast_acquire: no checkpoint when uncontended, which is nearly always (per message).
        self._lock = anyio.Lock(fast_acquire=True)
        self._send_started: float | None = None  # when the send in progress began
        self._scope = anyio.CancelScope()
        self._initiator: tuple[int, str] | None = None  # (code, reason) of the first close
        self._disconnect: tuple[int, str] | None = None  # what the host reported at the end
        self._lost: str | None = None

    def _closed_error(self) -> ConnectionClosed:
        code, reason = self._initiator or self._disconnect or (ABNORMAL, self._lost or "")
        return ConnectionClosed(code, reason)

    async def _send_event(self, event: MutableMapping[str, Any]) -> None:
        # No timeout scope here: one per message would cost more than the rest of the send.
        # _watch_writes enforces write_timeout from beside.
        async with self._lock:
            self._send_started = anyio.current_time()
            try:
                await self._send(event)
            except OSError:  # ASGI 2.4: sending after the client left raises an OSError
                self._lose("connection lost while writing")
                raise self._closed_error() from None
            finally:
                self._send_started = None

    async def _watch_writes(self) -> None:
        """Drop the connection once a send has waited `write_timeout` for the host.

        Checked every half timeout, so a stalled send is found within 1.5 times write_timeout;
        dropping it ends the connection, and the stalled callback is then cancelled after
        close_timeout like any callback outliving its connection.
        """
        while True:
            timeout = self._settings.write_timeout
            await anyio.sleep(timeout / 2)
            started = self._send_started
            if started is not None and anyio.current_time() - started >= timeout:
                self._lose(f"write timed out after {timeout}s")
                return

    def _lose(self, why: str) -> None:
        self._lost = self._lost or why
        self._scope.cancel()

    async def send_message(self, message: Message) -> None:
        if self._initiator is not None or self._disconnect is not None or self._lost:
            raise self._closed_error()
        if type(message) is str:
            await self._send_event({"type": "websocket.send", "text": message})
        else:
            await self._send_event({"type": "websocket.send", "bytes": message})

    async def close(self, code: int, reason: str) -> None:
        self._conn._inbox.close()
        if self._initiator is not None or self._disconnect is not None or self._lost:
            return
        self._initiator = (code, reason)
        try:
            await self._send_event({"type": "websocket.close", "code": code, "reason": reason})
        except ConnectionClosed:
            return
        self._scope.deadline = anyio.current_time() + self._settings.close_timeout

    async def run(self) -> None:
        """Receive until the host reports the disconnect, then record how the connection ended."""
        try:
            with self._scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._watch_writes)
                    await self._read()
                    tg.cancel_scope.cancel()
            if self._scope.cancelled_caught and self._disconnect is None and not self._lost:
                self._lost = "no close frame from the peer within close_timeout"
        finally:
            self._record_outcome()

    async def _read(self) -> None:
        inbox, settings = self._conn._inbox, self._settings
        while True:
            event = await self._receive()
            kind = event["type"]
            if kind == "websocket.receive":
                text = event.get("text")
                message: Message | None = text if text is not None else event.get("bytes")
                if message is None:
                    continue
                limit = settings.max_message_size
                if _too_big(message, limit):
                    failure = message_too_big(limit)
                    await self.close(failure.code, failure.reason)
                    continue  # the host still reports the disconnect
                await inbox.put(message, settings.read_buffer_size, limit)
            elif kind == "websocket.disconnect":
                # int(): some hosts report an IntEnum (uvicorn's wsproto implementation)
                self._disconnect = (int(event.get("code", NO_STATUS)), event.get("reason") or "")
                return

    def _record_outcome(self) -> None:
        conn = self._conn
        ended = self._disconnect
        if self._initiator is None and ended is not None and ended[0] != ABNORMAL:
            self._initiator = ended  # the peer closed first, cleanly
        completed = ended is not None and ended[0] != ABNORMAL and self._lost is None
        conn.was_clean = self._initiator is not None and completed
        if self._initiator is not None:
            conn.close_code, conn.close_reason = self._initiator
        else:
            conn.close_code, conn.close_reason = ABNORMAL, self._lost or "connection lost"
