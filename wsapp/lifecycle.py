"""The callback lifecycle of one connection, shared by every transport.

A transport (the built-in server, the ASGI adapter) parses the handshake into a
[Request][wsapp.Request] and moves messages; everything callbacks can observe (ordering,
refusals, error handling, the exactly-once `on_close`, the log lines) happens here, once.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from wsapp.connection import Connection, ConnectionClosed, Message, Transport
from wsapp.endpoint import Callbacks, Endpoint
from wsapp.handshake import HandshakeError
from wsapp.request import Request, is_origin_allowed
from wsapp.settings import Settings

__all__ = [
    "Refusal",
    "Reject",
    "admission_refusal",
    "connect",
    "log_refusal",
    "run_connection",
]

logger = logging.getLogger("wsapp")

INTERNAL_ERROR = 1011


class Reject(Exception):
    """Raise in `on_connect` to refuse the handshake with exactly this HTTP response.

    Args:
        status: An HTTP status code from 300 to 599 (e.g. 401, 403, 429, 302).
        body: The response body; `str` is sent as UTF-8 text.
        headers: Extra response headers (e.g. `{"WWW-Authenticate": "Bearer"}`).
    """

    def __init__(
        self, status: int, body: str | bytes = "", headers: dict[str, str] | None = None
    ) -> None:
        if not 300 <= status <= 599:
            raise ValueError(f"Reject status must be 300-599, not {status}")
        super().__init__(status, body)
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.headers = dict(headers or {})


@dataclass(frozen=True, slots=True)
class Refusal:
    """The HTTP response that refuses a handshake."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


def log_refusal(refusal: HandshakeError, path: str) -> None:
    """The log line of a handshake wsapp refuses itself (every transport writes the same)."""
    logger.info("refused %s %s: %s", refusal.status, path, refusal.body)


def admission_refusal(request: Request, settings: Settings, active: int) -> HandshakeError | None:
    """Why a routed request may not connect at all (before `on_connect` sees it), if it may not.

    ``active`` is how many connections the transport already serves.
    """
    if not is_origin_allowed(request, settings.allowed_origins):
        return HandshakeError(403, "cross-origin request refused")
    limit = settings.max_connections
    if limit is not None and active >= limit:
        return HandshakeError(503, "too many connections")
    return None


async def connect(endpoint: Endpoint, conn: Connection) -> Callbacks | Refusal:
    """Bind the endpoint, pick the subprotocol, then run `on_connect` (which may change it).

    Returns the connection's callbacks to go on with, or the Refusal to answer instead.
    """
    supported = conn.settings.subprotocols
    conn.subprotocol = next((p for p in conn.request.subprotocols if p in supported), None)
    try:
        callbacks = endpoint.bind(conn)  # a Connector's own __init__ runs here
        await callbacks.on_connect(conn.request)
    except Reject as reject:
        logger.info("refused %s %s by on_connect", reject.status, conn.request.path)
        return Refusal(reject.status, reject.body, list(reject.headers.items()))
    except Exception:
        logger.exception("on_connect failed for %s %s", conn.id, conn.request.path)
        body = traceback.format_exc() if conn.settings.debug else "Internal Server Error"
        return Refusal(500, body.encode())
    return callbacks


async def _dispatch(callbacks: Callbacks, conn: Connection) -> tuple[int, str]:
    """Run `on_open`, then `on_message` per message; the close code to use when they end."""
    on_message = callbacks.on_message
    conn._reads_allowed = on_message is None
    try:
        await callbacks.on_open()
        if on_message is not None:
            if callbacks.concurrency == 1:
                await _one_at_a_time(on_message, conn)
            else:
                await _concurrently(on_message, conn, callbacks.concurrency)
    except (anyio.EndOfStream, ConnectionClosed):
        pass  # the connection ended first: not an error
    except Exception:
        logger.exception("callback failed on connection %s; closing with 1011", conn.id)
        return INTERNAL_ERROR, "internal error"
    return 1000, ""


async def _one_at_a_time(
    on_message: Callable[[Message], Awaitable[None]], conn: Connection
) -> None:
    """In order, each message after the previous one's handler returned (the default)."""
    get = conn._inbox.get
    while True:
        message = await get()
        # Not contextlib.suppress: this is the per-message path, and try is free.
        try:  # noqa: SIM105
            await on_message(message)
        except ConnectionClosed:
            pass  # a reply came too late; the messages still queued are handled anyway


async def _concurrently(
    on_message: Callable[[Message], Awaitable[None]], conn: Connection, limit: int
) -> None:
    """``limit`` workers take messages in turn: up to that many handlers at once, and a message
    is taken only when a worker is free, so a busy connection still stops reading."""
    failure: list[Exception] = []

    async def worker() -> None:
        get = conn._inbox.get
        while True:
            try:
                message = await get()
            except anyio.EndOfStream:
                return
            try:
                await on_message(message)
            except ConnectionClosed:
                pass
            except Exception as exc:
                failure.append(exc)
                tg.cancel_scope.cancel()  # the connection closes with 1011: stop the others
                return

    async with anyio.create_task_group() as tg:
        for _ in range(limit):
            tg.start_soon(worker)
    if failure:
        raise failure[0]


async def _pump(
    transport_run: Callable[[], Awaitable[None]], conn: Connection, handlers: anyio.CancelScope
) -> None:
    try:
        await transport_run()
    finally:
        conn._inbox.close()
        # Callbacks still running get close_timeout to finish; nothing is left hanging.
        handlers.deadline = min(
            handlers.deadline, anyio.current_time() + conn.settings.close_timeout
        )


async def run_connection(
    callbacks: Callbacks,
    conn: Connection,
    transport: Transport,
    transport_run: Callable[[], Awaitable[None]],
) -> None:
    """Serve an accepted connection: `on_open`, messages, close, then `on_close` exactly once.

    ``transport_run`` moves bytes until the connection is closed and records how it closed
    on ``conn``; it runs beside the callbacks, so control frames keep flowing while a
    callback works.
    """
    started = time.monotonic()
    client = conn.request.client
    logger.info(
        "open %s %s client=%s",
        conn.id,
        conn.request.path,
        f"{client.host}:{client.port}" if client else "-",
    )
    conn._transport = transport
    handlers = anyio.CancelScope()
    code, reason = 1000, ""  # kept if the callbacks are cancelled: the connection is over then
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_pump, transport_run, conn, handlers)
            with handlers:
                code, reason = await _dispatch(callbacks, conn)
            if handlers.cancelled_caught:
                logger.warning("callbacks of %s still ran after close; cancelled", conn.id)
            await transport.close(code, reason)
    finally:
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + conn.settings.close_timeout
            try:
                await callbacks.on_close(conn.was_clean, conn.close_code or 1006, conn.close_reason)
            except Exception:
                logger.exception("on_close failed on connection %s", conn.id)
        logger.info(
            "close %s %s code=%s clean=%s duration=%.3fs",
            conn.id,
            conn.request.path,
            conn.close_code,
            conn.was_clean,
            time.monotonic() - started,
        )
