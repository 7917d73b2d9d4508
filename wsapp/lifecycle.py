"""The life of one connection, from its routed request to `on_close`, for every transport.

A transport (the built-in server, the ASGI adapter; the test client uses the built-in
server's) reads the handshake request and hands it here with a
[Transport][wsapp.transport.Transport].
Everything callbacks can observe happens in this module, once: routing, admission (origin,
capacity), `on_connect` under `handshake_timeout`, the accept or the refusal, `on_open`,
messages in order, errors, the close and the exactly-once `on_close`, and the log lines.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any, Protocol

import anyio

from wsapp.connection import Connection
from wsapp.endpoint import Callbacks, Endpoint
from wsapp.exceptions import ConnectionClosed, Reject
from wsapp.inbox import Inbox
from wsapp.lifespan import Lifespan
from wsapp.log import logger
from wsapp.looplag import watch_loop_lag
from wsapp.metrics import HANDLER_SAMPLING, Histogram, Metrics
from wsapp.protocol import CloseCode, Refusal
from wsapp.ratelimit import HandshakeLimiter, MessageLimiter, RateLimited, enforce
from wsapp.request import Address, Request, is_origin_allowed
from wsapp.rooms import JoinRefused, Rooms
from wsapp.routing import Router
from wsapp.settings import Settings, connection_settings
from wsapp.tasks import tasks_for_block
from wsapp.transport import Message, Transport

__all__ = [
    "Capacity",
    "Servable",
    "admission_refusal",
    "handle",
    "log_refusal",
    "refuse",
    "serving",
]


class Servable(Protocol):
    """What a transport needs of an app: its routes, its settings, its hooks.

    [App][wsapp.App] is one; transports depend on this, not on `App`, so that the App can
    own its transports without an import cycle.
    """

    @property
    def router(self) -> Router: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def hooks(self) -> Lifespan: ...

    @property
    def rooms(self) -> Rooms: ...

    @property
    def metrics(self) -> Metrics: ...


@asynccontextmanager
async def serving(
    app: Servable,
    settings: Settings,
    guard: Callable[[], anyio.CancelScope] = anyio.CancelScope,
) -> AsyncIterator[None]:
    """What every host runs around its connections, in this order: the rooms (and their
    broker), the start-up hooks, the background tasks, the event-loop lag watcher and (in a
    supervisor's worker) the metrics sharing; and on the way out those tasks cancelled, the
    shutdown hooks, the broker disconnected.

    The rooms come first because a start-up hook may broadcast already. ``guard`` makes the
    scope each hook phase runs in (the built-in server cancels it on a forced shutdown).
    A start-up or shutdown failure raises [LifespanError][wsapp.LifespanError]; a failed
    start-up runs no shutdown hooks.
    """
    async with app.rooms.running(settings):
        with guard():
            await app.hooks.startup()
        async with app.hooks.background(), tasks_for_block() as watchers:
            watchers.start_soon(watch_loop_lag, settings, app.metrics.event_loop_lag)
            if app.metrics.shared is not None and settings.metrics_path is not None:
                watchers.start_soon(app.metrics.share)
            yield
        with guard():
            await app.hooks.shutdown()


class Capacity:
    """The connections one transport holds: handshakes in progress and open connections.

    Counting handshakes too means a burst of clients that never finish their handshake
    cannot push the open connections past `max_connections`.
    """

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Count one connection for the duration of the block."""
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1


def _client(address: Address | None) -> str:
    return f"{address.host}:{address.port}" if address else "-"


def log_refusal(refusal: Refusal, path: str, client: Address | None, metrics: Metrics) -> None:
    """The one log line of every refused handshake (status, path, client and why), and its
    count."""
    metrics.handshake_refused(refusal.status)
    shown = _client(client)
    logger.info(
        "refused %s %s client=%s: %s",
        refusal.status,
        path,
        shown,
        refusal.reason,
        extra={"status": refusal.status, "path": path, "client": shown},
    )


def _fields(conn: Connection, **more: Any) -> dict[str, Any]:
    """The fields of a log line about ``conn``, for JSON logs (see `wsapp.log.FIELDS`)."""
    client = _client(conn.request.client)
    return {"connection": conn.id, "path": conn.request.path, "client": client, **more}


async def refuse(
    transport: Transport, refusal: Refusal, path: str, client: Address | None, metrics: Metrics
) -> None:
    """Log and count ``refusal``, and answer the handshake with it."""
    log_refusal(refusal, path, client, metrics)
    await transport.refuse(refusal)


def admission_refusal(
    request: Request, settings: Settings, others: int, handshakes: HandshakeLimiter
) -> Refusal | None:
    """Why a routed request may not connect at all (before `on_connect` sees it), if it may not.

    ``others`` is how many other connections (open or handshaking) the transport holds;
    ``handshakes`` keeps the handshake rate of each client address.
    """
    client = request.client
    limited = handshakes.refusal(client.host if client else None, settings)
    if limited is not None:
        return limited
    if not is_origin_allowed(request, settings.allowed_origins):
        return Refusal(
            403,
            f"cross-origin request refused: Origin {request.origin!r} is not allowed for host "
            f"{request.headers.get('host', '')!r}; to allow it, add it to allowed_origins "
            "(--allowed-origins, WSAPP_ALLOWED_ORIGINS)",
            body=b"cross-origin request refused\n",
        )
    limit = settings.max_connections
    if limit is not None and others >= limit:
        return Refusal(
            503,
            f"max_connections ({limit}) reached",
            [("Retry-After", "1")],
            body=b"too many connections\n",
        )
    return None


async def _on_connect(
    endpoint: Endpoint, conn: Connection, deadline: float, metrics: Metrics
) -> Callbacks | Refusal:
    """Bind the endpoint, pick the subprotocol, then run `on_connect` (which may change it),
    within ``deadline``: past it, the handshake is refused with 503.

    The deadline's scope lives and dies here: left in the frame of `handle`, which lasts as
    long as the connection, it would cost every open connection half a KiB.
    """
    supported = conn.settings.subprotocols
    conn.subprotocol = next((p for p in conn.request.subprotocols if p in supported), None)
    with anyio.CancelScope(deadline=deadline):
        try:
            callbacks = endpoint.bind(conn, metrics)  # a Connector's own __init__ runs here
            await callbacks.on_connect(conn.request)
        except Reject as reject:
            return Refusal(
                reject.status, "by on_connect (Reject)", reject.headers.items(), reject.body
            )
        except Exception as exc:
            metrics.handler_errors += 1
            logger.exception(
                "on_connect failed for %s %s", conn.id, conn.request.path, extra=_fields(conn)
            )
            body = traceback.format_exc() if conn.settings.debug else "Internal Server Error"
            return Refusal(500, f"on_connect raised {type(exc).__name__}", body=body.encode())
        return callbacks
    logger.warning(
        "on_connect for %s %s did not finish within handshake_timeout (%ss); refused with 503",
        conn.id,
        conn.request.path,
        conn.settings.handshake_timeout,
        extra=_fields(conn),
    )
    return Refusal(503, "on_connect timed out", body=b"on_connect timed out\n")


async def handle(
    app: Servable,
    settings: Settings,
    capacity: Capacity,
    handshakes: HandshakeLimiter,
    path: str,
    build_request: Callable[[Mapping[str, Any]], Request],
    transport: Transport,
    deadline: float,
) -> None:
    """Serve one handshake request to the end: route, admit, `on_connect`, accept or refuse,
    then run the connection. The caller holds ``capacity`` for this connection, and keeps
    the ``handshakes`` rate of its clients.

    ``build_request`` makes the [Request][wsapp.Request] from the route's path parameters;
    ``deadline`` (from `handshake_timeout`) bounds `on_connect`: past it, the handshake is
    refused with 503.
    """
    metrics = app.metrics
    resolved = app.router.resolve(path)
    endpoint, params = resolved if resolved is not None else (None, {})
    request = build_request(params)
    if endpoint is None:
        refusal = Refusal(404, f"no WebSocket endpoint at {path}")
        await refuse(transport, refusal, path, request.client, metrics)
        return
    denied = admission_refusal(request, settings, capacity.count - 1, handshakes)
    if denied is not None:
        await refuse(transport, denied, path, request.client, metrics)
        return
    own_settings = connection_settings(settings)
    inbox = Inbox(metrics, MessageLimiter(own_settings, endpoint.policy.on_rate_limit))
    reading = endpoint.decoder is None
    conn = Connection(
        request,
        own_settings,
        transport,
        inbox if reading else None,
        rooms=app.rooms,
        metrics=metrics,
        on_slow=endpoint.policy.on_slow,
    )
    outcome = await _on_connect(endpoint, conn, deadline, metrics)
    if isinstance(outcome, Refusal):
        await refuse(transport, outcome, path, request.client, metrics)
        return
    if not await transport.accept(conn):
        logger.debug("client left before %s %s opened", conn.id, path)
        return
    await _run(outcome, conn, transport, inbox, app)


async def _dispatch(
    callbacks: Callbacks, inbox: Inbox, conn: Connection, metrics: Metrics
) -> tuple[int, str]:
    """Run `on_open`, then `on_message` per message; the close code to use when they end."""
    on_message = callbacks.on_message
    # Messages to let by before the first timed one: never, unless something reads them.
    untimed = 0 if metrics.timing or conn.settings.metrics_path is not None else sys.maxsize
    durations = metrics.handler_duration
    try:
        try:
            await callbacks.on_open()
        except JoinRefused as refused:  # answered like one in on_message; the rest is skipped
            await _answer(conn, refused)
        if on_message is not None:
            if callbacks.concurrency == 1:
                await _one_at_a_time(on_message, inbox, conn, durations, untimed)
            else:
                await _concurrently(
                    on_message, inbox, conn, durations, untimed, callbacks.concurrency
                )
    except (anyio.EndOfStream, ConnectionClosed):
        pass  # the connection ended first: not an error
    except Exception:
        metrics.handler_errors += 1
        logger.exception(
            "callback failed on connection %s; closing with 1011", conn.id, extra=_fields(conn)
        )
        return CloseCode.INTERNAL_ERROR, "internal error"
    return CloseCode.NORMAL_CLOSURE, ""


async def _answer(conn: Connection, refused: JoinRefused) -> None:
    """A join refused in `on_message` is answered, not an error: the client asked for it."""
    with suppress(ConnectionClosed):
        await conn.send(refused.reply())


async def _one_at_a_time(
    on_message: Callable[[Message], Awaitable[None]],
    inbox: Inbox,
    conn: Connection,
    durations: Histogram,
    untimed: int,
) -> None:
    """In order, each message after the previous one's handler returned (the default).

    One handler run in `HANDLER_SAMPLING` is observed into ``durations``, after ``untimed``
    messages: the per-message path pays a countdown, not two clock readings.
    """
    get = inbox.get
    clock = time.perf_counter
    while True:
        message = await get()
        if isinstance(message, RateLimited):
            await enforce(conn, message)
            continue
        untimed -= 1
        started = clock() if untimed < 0 else 0.0
        # The per-message path: try costs nothing until something is raised.
        try:
            await on_message(message)
        except ConnectionClosed:
            pass  # a reply came too late; the messages still queued are handled anyway
        except JoinRefused as refused:
            await _answer(conn, refused)
        finally:
            if untimed < 0:
                durations.observe(clock() - started)
                untimed = HANDLER_SAMPLING - 1


async def _concurrently(
    on_message: Callable[[Message], Awaitable[None]],
    inbox: Inbox,
    conn: Connection,
    durations: Histogram,
    untimed: int,
    limit: int,
) -> None:
    """``limit`` workers take messages in turn: up to that many handlers at once, and a message
    is taken only when a worker is free, so a busy connection still stops reading."""
    failure: list[Exception] = []
    clock = time.perf_counter

    async def worker() -> None:
        get = inbox.get
        countdown = untimed  # each worker samples its own share
        while True:
            try:
                message = await get()
            except anyio.EndOfStream:
                return
            if isinstance(message, RateLimited):
                await enforce(conn, message)
                continue
            countdown -= 1
            started = clock() if countdown < 0 else 0.0
            try:
                await on_message(message)
            except ConnectionClosed:
                pass
            except JoinRefused as refused:
                await _answer(conn, refused)
            except Exception as exc:
                failure.append(exc)
                tg.cancel_scope.cancel()  # the connection closes with 1011: stop the others
                return
            finally:
                if countdown < 0:
                    durations.observe(clock() - started)
                    countdown = HANDLER_SAMPLING - 1

    async with anyio.create_task_group() as tg:
        for _ in range(limit):
            tg.start_soon(worker)
    if failure:
        raise failure[0]


async def _run(
    callbacks: Callbacks, conn: Connection, transport: Transport, inbox: Inbox, app: Servable
) -> None:
    """Serve an accepted connection: `on_open`, messages, close, then `on_close` exactly once.

    The transport moves bytes beside the callbacks, so control frames keep flowing while a
    callback works.
    """
    started = time.monotonic()
    metrics = app.metrics
    metrics.connection_opened(transport)
    # The log fields are made per line, not kept in this frame: a dict held for the
    # connection's lifetime would cost every open connection a few hundred bytes.
    logger.info(
        "open %s %s client=%s",
        conn.id,
        conn.request.path,
        _client(conn.request.client),
        extra=_fields(conn),
    )
    handlers = anyio.CancelScope()

    async def pump() -> None:
        try:
            await transport.run(inbox)
        finally:
            inbox.close()
            # Callbacks still running get close_timeout to finish; nothing is left hanging.
            handlers.deadline = min(
                handlers.deadline, anyio.current_time() + conn.settings.close_timeout
            )

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            code: int = CloseCode.NORMAL_CLOSURE
            reason = ""  # kept if the callbacks are cancelled: the connection is over then
            with handlers:
                code, reason = await _dispatch(callbacks, inbox, conn, metrics)
            if handlers.cancelled_caught:
                logger.warning(
                    "callbacks of %s still ran after close; cancelled",
                    conn.id,
                    extra=_fields(conn),
                )
            await transport.close(code, reason)
    finally:
        closed = transport.outcome()
        metrics.connection_closed(transport, closed.code)
        conn.close_code, conn.close_reason, conn.was_clean = (
            closed.code,
            closed.reason,
            closed.was_clean,
        )
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + conn.settings.close_timeout
            await app.rooms.leave_all(conn)  # before on_close: its broadcasts must not reach it
            try:
                await callbacks.on_close(closed.was_clean, closed.code, closed.reason)
            except Exception:
                metrics.handler_errors += 1
                logger.exception("on_close failed on connection %s", conn.id, extra=_fields(conn))
        duration = round(time.monotonic() - started, 3)
        logger.info(
            "close %s %s code=%s clean=%s duration=%.3fs",
            conn.id,
            conn.request.path,
            closed.code,
            closed.was_clean,
            duration,
            extra=_fields(conn, code=closed.code, clean=closed.was_clean, duration=duration),
        )
