"""The life of one connection, from its routed request to `on_close`, for every transport.

A transport (the built-in server, the ASGI adapter; the test client uses the built-in
server's) reads the handshake request and hands it here with a
[Transport][wsapp.transport.Transport].
Everything callbacks can observe happens here, once: routing, admission (origin, capacity),
`on_connect` under `handshake_timeout`, the accept or the refusal (`accept`); then `on_open`,
messages in order and errors (run by a [Dispatcher][wsapp.dispatcher.Dispatcher]), the
close and the exactly-once `on_close`, and the log lines (`run`).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup
from pydantic import BaseModel

from wsapp.connection import Connection
from wsapp.dispatcher import Dispatcher, Parking
from wsapp.endpoint import Callbacks, Endpoint
from wsapp.exceptions import Reject
from wsapp.inbox import Inbox
from wsapp.intake import Inbound, Intake
from wsapp.lifespan import Lifespan
from wsapp.log import client_text, connection_fields, log_close, log_open, logger
from wsapp.operations.looplag import watch_loop_lag
from wsapp.operations.metrics import Metrics
from wsapp.protocol import Refusal
from wsapp.protocol.handshake import no_endpoint
from wsapp.query import validated_query
from wsapp.ratelimit import HandshakeLimiter, RateLimitPolicy
from wsapp.request import Address, Request, is_origin_allowed
from wsapp.rooms import Rooms
from wsapp.routing import Router
from wsapp.settings import Settings, connection_settings
from wsapp.tasks import tasks_for_block
from wsapp.transport import OpenConnections, Transport

__all__ = [
    "Accepted",
    "Capacity",
    "Servable",
    "admission_refusal",
    "handshake",
    "log_refusal",
    "refuse",
    "run",
    "serving",
]


class Servable(Protocol):
    """What a transport needs of an app: its routes, its settings, its hooks.

    [App][wsapp.App] is one; transports depend on this, not on `App`, so that the App can
    own its transports without an import cycle.
    """

    @property
    def router(self) -> Router[Endpoint]: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def hooks(self) -> Lifespan: ...

    @property
    def rooms(self) -> Rooms[Connection]: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def connections(self) -> OpenConnections: ...


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
    cannot push the open connections past `max_connections`. ``with capacity:`` counts one
    connection for the duration of the block (a context manager of its own, not a
    generator: that would be held by every open connection).
    """

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def __enter__(self) -> None:
        self.count += 1

    def __exit__(self, *exc_info: object) -> None:
        self.count -= 1


def log_refusal(refusal: Refusal, path: str, client: Address | None, metrics: Metrics) -> None:
    """The one log line of every refused handshake (status, path, client and why), and its
    count."""
    metrics.handshake_refused(refusal.status)
    shown = client_text(client)
    logger.info(
        "refused %s %s client=%s: %s",
        refusal.status,
        path,
        shown,
        refusal.reason,
        extra={"status": refusal.status, "path": path, "client": shown},
    )


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
    try:
        callbacks = endpoint.bind(conn, metrics)  # a Connector's own __init__ runs here
        if not callbacks.connects:
            return callbacks  # nothing to wait for: no deadline to keep either
        with anyio.CancelScope(deadline=deadline):
            await callbacks.on_connect(conn.request)
            return callbacks
    except Reject as reject:
        return Refusal(reject.status, "by on_connect (Reject)", reject.headers.items(), reject.body)
    except Exception as exc:
        metrics.handler_errors += 1
        logger.exception(
            "on_connect failed for %s %s",
            conn.id,
            conn.request.path,
            extra=connection_fields(conn),
        )
        body = traceback.format_exc() if conn.settings.debug else "Internal Server Error"
        return Refusal(500, f"on_connect raised {type(exc).__name__}", body=body.encode())
    # The deadline's scope ended the wait:
    logger.warning(
        "on_connect for %s %s did not finish within handshake_timeout (%ss); refused with 503",
        conn.id,
        conn.request.path,
        conn.settings.handshake_timeout,
        extra=connection_fields(conn),
    )
    return Refusal(503, "on_connect timed out", body=b"on_connect timed out\n")


class Accepted:
    """A connection whose handshake was accepted: what `run` serves."""

    __slots__ = ("callbacks", "conn", "inbox", "on_rate_limit", "transport")

    def __init__(
        self,
        callbacks: Callbacks,
        conn: Connection,
        transport: Transport,
        inbox: Inbox[Inbound],
        on_rate_limit: RateLimitPolicy,
    ) -> None:
        self.callbacks = callbacks
        self.conn = conn
        self.transport = transport
        self.inbox = inbox
        self.on_rate_limit: RateLimitPolicy = on_rate_limit


async def handshake(
    app: Servable,
    settings: Settings,
    capacity: Capacity,
    handshakes: HandshakeLimiter,
    path: str,
    build_request: Callable[[Mapping[str, Any]], Request],
    transport: Transport,
    deadline: float,
) -> Accepted | None:
    """Answer one handshake request: route, admit, `on_connect`, then accept or refuse.
    The caller holds ``capacity`` for this connection, and keeps the ``handshakes`` rate of
    its clients; it then `run`s the connection, if accepted.

    ``build_request`` makes the [Request][wsapp.Request] from the route's path parameters;
    ``deadline`` (from `handshake_timeout`) bounds `on_connect`: past it, the handshake is
    refused with 503.
    """
    metrics = app.metrics
    resolved = app.router.resolve(path)
    endpoint, params = resolved if resolved is not None else (None, {})
    request = build_request(params)
    if endpoint is None:
        await refuse(transport, no_endpoint(path), path, request.client, metrics)
        return None
    denied = admission_refusal(request, settings, capacity.count - 1, handshakes)
    query: BaseModel | None = None
    if denied is None and endpoint.query is not None:
        validated = validated_query(endpoint.query, request.query_params)
        if isinstance(validated, Refusal):
            denied = validated
        else:
            query = validated
    if denied is not None:
        await refuse(transport, denied, path, request.client, metrics)
        return None
    own_settings = connection_settings(settings)
    inbox: Inbox[Inbound] = Inbox()
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
    if query is not None:
        conn.query = query
    outcome = await _on_connect(endpoint, conn, deadline, metrics)
    if isinstance(outcome, Refusal):
        await refuse(transport, outcome, path, request.client, metrics)
        return None
    if not await transport.accept(conn):
        logger.debug("client left before %s %s opened", conn.id, path)
        return None
    return Accepted(outcome, conn, transport, inbox, endpoint.policy.on_rate_limit)


async def run(
    accepted: Accepted, app: Servable, tasks: TaskGroup, parking: Parking | None = None
) -> None:
    """Serve an accepted connection: `on_open`, messages, close, then `on_close` exactly once.

    The transport reads in this task, into the connection's
    [Intake][wsapp.intake.Intake]; the callbacks run beside it in a task of ``tasks`` (see
    [wsapp.dispatcher][]; with ``parking``, only while they have work), so control frames
    keep flowing while a callback works.
    """
    callbacks, conn, transport, inbox = (
        accepted.callbacks,
        accepted.conn,
        accepted.transport,
        accepted.inbox,
    )
    started = time.monotonic()
    metrics = app.metrics
    metrics.connection_opened()
    app.connections.add(transport)
    log_open(conn)
    dispatcher = Dispatcher(callbacks, conn, transport, inbox, metrics, tasks, parking)
    intake = Intake(inbox, metrics, conn.settings, accepted.on_rate_limit, dispatcher)
    try:
        dispatcher.start()
        try:
            await transport.run(intake)
        finally:
            intake.close()
            # Callbacks still running get close_timeout to finish; nothing is left hanging.
            await dispatcher.finish(conn.settings.close_timeout)
    finally:
        closed = transport.outcome()
        app.connections.discard(transport)
        metrics.connection_closed(closed.code)
        conn.close_code, conn.close_reason, conn.was_clean = (
            closed.code,
            closed.reason,
            closed.was_clean,
        )
        if callbacks.closes or app.rooms.rooms_of(conn):  # else nothing here awaits
            with anyio.CancelScope(shield=True) as scope:
                scope.deadline = anyio.current_time() + conn.settings.close_timeout
                await app.rooms.leave_all(conn)  # before on_close: its broadcasts must not reach it
                try:
                    await callbacks.on_close(closed.was_clean, closed.code, closed.reason)
                except Exception:
                    metrics.handler_errors += 1
                    logger.exception(
                        "on_close failed on connection %s",
                        conn.id,
                        extra=connection_fields(conn),
                    )
        duration = round(time.monotonic() - started, 3)
        log_close(conn, closed.code, closed.was_clean, duration)
    if dispatcher.failure is not None:
        raise dispatcher.failure  # the transport failed beside the callbacks: as if here
