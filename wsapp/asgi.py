"""A wsapp app as an ASGI 3 application: the same lifecycle, with an ASGI host as transport.

The host (uvicorn, hypercorn, daphne, a Starlette mount) owns the socket, the WebSocket
framing, pings and compression; wsapp builds the [Request][wsapp.Request] from the scope and
runs exactly the lifecycle the built-in server runs ([wsapp.lifecycle.handshake][], then
[wsapp.lifecycle.run][]) with [ASGITransport][wsapp.asgi.ASGITransport] in place of the
socket transport.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, MutableMapping
from typing import Any

import anyio

from wsapp import lifecycle
from wsapp.datastructures import Headers
from wsapp.exceptions import ConnectionClosed
from wsapp.intake import Intake
from wsapp.lifecycle import Capacity, Servable, serving
from wsapp.lifespan import LifespanError
from wsapp.log import logger
from wsapp.operations.plainhttp import plain_answer, plain_refusal
from wsapp.protocol import (
    CloseCode,
    Message,
    PreparedMessage,
    ProtocolFailure,
    Refusal,
    message_too_big,
)
from wsapp.ratelimit import HandshakeLimiter
from wsapp.request import Address, Request, client_address
from wsapp.settings import ConfigError, Settings, resolve_settings
from wsapp.transport import Accepting, Closed, CloseRecord

__all__ = ["ASGIAdapter", "ASGITransport", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

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


def _request(scope: Scope, path: str, params: Mapping[str, Any], settings: Settings) -> Request:
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


def _send_event(message: Message) -> dict[str, Any]:
    if type(message) is str:
        return {"type": "websocket.send", "text": message}
    return {"type": "websocket.send", "bytes": message}


class ASGIAdapter:
    """Serves one app's ASGI scopes; `App.__call__` delegates here."""

    def __init__(self, app: Servable) -> None:
        self.app = app
        self._settings: Settings | None = None
        self._capacity = Capacity()
        self._handshakes = HandshakeLimiter()
        self._warned = False  # about hooks that never ran, once
        self._shutting_down = False  # the host sent lifespan.shutdown

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
        """Serve the app (rooms, hooks, background tasks) from the host's start-up message to
        its shutdown message."""
        if (await receive())["type"] != "lifespan.startup":
            return
        phase = "startup"
        try:
            self._settings = resolve_settings(self.app.settings)
            async with serving(self.app, self._settings):
                await send({"type": "lifespan.startup.complete"})
                phase = "shutdown"
                while (await receive())["type"] != "lifespan.shutdown":
                    pass
                self._shutting_down = True
        except (ConfigError, LifespanError, ConnectionError, RuntimeError) as exc:
            await send({"type": f"lifespan.{phase}.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.shutdown.complete"})

    async def _http(self, scope: Scope, send: Send) -> None:
        path = route_path(scope)
        accept = next((v for k, v in scope["headers"] if k.lower() == b"accept"), b"")
        plain = plain_answer(
            self.settings,
            self.app.metrics,
            path,
            scope["method"],
            serving=not self._shutting_down,
            accept=accept.decode("latin-1"),
        )
        if plain is not None:
            await self._respond(send, *plain)
            return
        answer = plain_refusal(self.app.router, path)
        headers = [*answer.headers, ("Content-Type", "text/plain; charset=utf-8")]
        await self._respond(send, answer.status, headers, answer.body)

    @staticmethod
    async def _respond(
        send: Send, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        await send(
            {"type": "http.response.start", "status": status, "headers": _encode_headers(headers)}
        )
        await send({"type": "http.response.body", "body": body})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return  # the client left before the host even asked us
        if self.app.hooks.needs_startup and not self._warned:
            self._warned = True
            logger.warning(
                "a connection arrived but the start-up hooks have not run: this ASGI server "
                "sent no lifespan scope. Mounted in Starlette or FastAPI? Pass "
                "lifespan=app.lifespan to the host app."
            )
        settings = self.settings
        path = route_path(scope)
        transport = ASGITransport(scope, receive, send, settings)

        def build_request(params: Mapping[str, Any]) -> Request:
            return _request(scope, path, params, settings)

        deadline = anyio.current_time() + settings.handshake_timeout
        with self._capacity:
            accepted = await lifecycle.handshake(
                self.app,
                settings,
                self._capacity,
                self._handshakes,
                path,
                build_request,
                transport,
                deadline,
            )
            if accepted is not None:
                # The host owns this task, not us: the callbacks' task is this connection's.
                async with anyio.create_task_group() as tasks:
                    await lifecycle.run(accepted, self.app, tasks)


class ASGITransport:
    """Moves one connection's messages between the ASGI host and its Connection.

    Implements [Transport][wsapp.transport.Transport]. The host does the framing, pings and
    the closing handshake; this keeps wsapp's guarantees on top: whole messages from many
    tasks (one host `send` at a time), `write_timeout`, `max_message_size`, the bounded
    inbox, and the close code and cleanliness on_close gets.
    """

    def __init__(self, scope: Scope, receive: Receive, send: Send, settings: Settings) -> None:
        self._scope_extensions = scope.get("extensions") or {}
        self._settings = settings
        self._receive = receive
        self._send = send
        self._opened = False
        # One host send at a time: a semaphore of one, not a lock, which would find the
        # current task at every acquire and release to check an owner that `_send_in_turn`
        # keeps right anyway.
        self._turn = anyio.Semaphore(1)
        # Host sends begun so far, and whether one is in progress: what _watch_writes checks.
        self._sends = 0
        self._sending = False
        self._scope = anyio.CancelScope()
        self._record = CloseRecord()
        self._disconnect: tuple[int, str] | None = None  # what the host reported at the end
        self._intake: Intake | None = None
        # The reader's close waits for the callbacks' replies: no other close meanwhile.
        self._draining = False
        self._pushed: deque[PreparedMessage] = deque()
        self._pushed_bytes = 0
        # `_sends` when the pushed backlog began: a backlog the host has not had a turn at
        # yet is the burst of one tick, not a slow peer, and is not judged by the limit.
        self._backlog_since = 0
        self._wake_pusher: anyio.Event | None = None

    @property
    def opened(self) -> bool:
        return self._opened

    @property
    def unsent(self) -> int:
        return self._pushed_bytes

    @property
    def _ended(self) -> bool:
        record = self._record
        return record.initiator is not None or self._disconnect is not None or bool(record.lost)

    async def refuse(self, refusal: Refusal) -> None:
        """Refuse with ``refusal``'s response, or a bare 403 if the host cannot send one."""
        if DENIAL_EXTENSION not in self._scope_extensions:
            logger.info(
                "the ASGI server cannot send a %s response (no %s extension): it sends 403",
                refusal.status,
                DENIAL_EXTENSION,
            )
            await self._send({"type": "websocket.close", "code": int(CloseCode.POLICY_VIOLATION)})
            return
        await self._send(
            {
                "type": "websocket.http.response.start",
                "status": refusal.status,
                "headers": _encode_headers(refusal.headers),
            }
        )
        await self._send({"type": "websocket.http.response.body", "body": refusal.body})

    async def accept(self, conn: Accepting) -> bool:
        try:
            await self._send(
                {
                    "type": "websocket.accept",
                    "subprotocol": conn.subprotocol,
                    "headers": _encode_headers(list(conn.response_headers.multi_items())),
                }
            )
        except OSError:  # the client left during on_connect: it never opened
            return False
        self._settings = conn.settings
        self._opened = True
        return True

    async def _send_in_turn(self, event: MutableMapping[str, Any] | None) -> None:
        """In this connection's turn to send, to the host: the pushed messages (given first),
        then ``event`` if any.

        The turn is taken without a checkpoint when it is free, which is nearly always: once
        per message, the checkpoint of a plain ``acquire`` would cost more than the rest of
        wsapp's send. No timeout scope either, nor even a clock reading, for the same reason:
        `_watch_writes` enforces `write_timeout` from beside.
        """
        turn = self._turn
        try:
            turn.acquire_nowait()
        except anyio.WouldBlock:
            await turn.acquire()
        try:
            pushed = self._pushed
            while True:
                current: MutableMapping[str, Any]
                if pushed:
                    message = pushed.popleft()
                    self._pushed_bytes -= len(message)
                    current = _send_event(message.message)
                elif event is not None:
                    current, event = event, None
                else:
                    break
                self._sends += 1
                self._sending = True
                try:
                    await self._send(current)
                except OSError:  # ASGI 2.4: sending after the client left raises an OSError
                    self.abort("connection lost while writing")
                    raise self._record.error() from None
                finally:
                    self._sending = False
        finally:
            turn.release()

    async def _watch_writes(self) -> None:
        """Drop the connection once a send has waited `write_timeout` for the host.

        Checked every half timeout: a send still the same one in progress three checks in a
        row has waited at least the timeout, so a stalled send is found within 1.5 times
        write_timeout; dropping it ends the connection, and the stalled callback is then
        cancelled after close_timeout like any callback outliving its connection.
        """
        watched: int | None = None  # the send in progress at the last check
        checks = 0  # in a row that found it still in progress
        while True:
            timeout = self._settings.write_timeout
            await anyio.sleep(timeout / 2)
            current = self._sends if self._sending else None
            checks = checks + 1 if current is not None and current == watched else 0
            watched = current
            if checks >= 2:
                self.abort(f"write timed out after {timeout}s")
                return

    async def _send_pushed(self) -> None:
        """Deliver pushed messages while no callback is sending."""
        while True:
            if not self._pushed:
                self._wake_pusher = anyio.Event()
                await self._wake_pusher.wait()
                continue
            try:
                await self._send_in_turn(None)
            except ConnectionClosed:
                return

    def abort(self, why: str) -> None:
        self._record.lose(why)
        self._scope.cancel()

    def send(self, message: Message) -> Coroutine[Any, Any, None]:
        # Not a coroutine itself: the send is `_send_in_turn`'s, a frame less per message.
        if not self._opened:
            raise RuntimeError("cannot send before the handshake completes (after on_connect)")
        if self._ended:
            raise self._record.error()
        return self._send_in_turn(_send_event(message))

    def push(self, message: PreparedMessage, limit: int) -> bool:
        if not self._opened:
            raise RuntimeError("cannot push before the handshake completes (after on_connect)")
        if self._ended:
            raise self._record.error()
        pushed = self._pushed
        if not pushed:
            if len(message) > limit:
                return False
            # A send in progress (a host that may be stuck) gives it no exemption.
            self._backlog_since = -1 if self._sending else self._sends
        elif self._pushed_bytes + len(message) > limit and self._sends != self._backlog_since:
            return False
        pushed.append(message)
        self._pushed_bytes += len(message)
        if self._wake_pusher is not None:
            self._wake_pusher.set()
            self._wake_pusher = None
        return True

    async def close(self, code: int, reason: str) -> None:
        if self._intake is not None:
            self._intake.close()
        if not self._opened or self._ended or self._draining:
            return
        self._record.first(code, reason)
        # The whole closing handshake gets close_timeout, including the wait behind a send
        # the host is stalling (a slow consumer's): past it, the connection is dropped.
        timeout = self._settings.close_timeout
        self._scope.deadline = anyio.current_time() + timeout
        # int(): hosts may check the type (autobahn refuses an IntEnum)
        event = {"type": "websocket.close", "code": int(code), "reason": reason}
        with anyio.move_on_after(timeout):
            try:
                await self._send_in_turn(event)  # after what was pushed, as on the socket
            except ConnectionClosed:
                return

    async def run(self, intake: Intake) -> None:
        """Receive until the host reports the disconnect."""
        self._intake = intake
        with self._scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_writes)
                tg.start_soon(self._send_pushed)
                await self._read(intake)
                tg.cancel_scope.cancel()
        if self._scope.cancelled_caught and self._disconnect is None:
            self._record.lose("no close frame from the peer within close_timeout")

    async def _close_after_replies(self, intake: Intake, failure: ProtocolFailure) -> None:
        """Close for what the peer sent, once the callbacks have handled the messages
        received before it, their replies sent (as the socket transport does); nothing is
        received meanwhile, and a close asked for meanwhile gives way to this one."""
        self._draining = True
        try:
            await intake.drain(self._settings.close_timeout)
        finally:
            self._draining = False
        await self.close(failure.code, failure.reason)

    def outcome(self) -> Closed:
        ended = self._disconnect
        completed = ended is not None and ended[0] != CloseCode.ABNORMAL_CLOSURE
        if ended is not None and completed:
            self._record.first(*ended)  # the peer closed first, cleanly (if we did not)
        return self._record.outcome(completed)

    async def _read(self, intake: Intake) -> None:
        settings = self._settings
        while True:
            event = await self._receive()
            kind = event["type"]
            if kind == "websocket.receive":
                text = event.get("text")
                message: Message | None = text if text is not None else event.get("bytes")
                if message is None:
                    continue
                limit = settings.max_message_size
                # A character is at most 4 bytes: no call at all for the messages nowhere near.
                if len(message) * 4 > limit and _too_big(message, limit):
                    await self._close_after_replies(intake, message_too_big(limit))
                    continue  # the host still reports the disconnect
                waiting = intake.offer(message)
                if waiting is not None:
                    await waiting
            elif kind == "websocket.disconnect":
                # int(): some hosts report an IntEnum (uvicorn's wsproto implementation)
                code = int(event.get("code", CloseCode.NO_STATUS_RCVD))
                self._disconnect = (code, event.get("reason") or "")
                return
