"""App: settings, routes and the callback decorators."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, Literal, TypeVar

import anyio
from anyio.abc import TaskStatus
from pydantic import BaseModel
from pydantic_core import to_json

from wsapp.asgi import ASGIAdapter, Receive, Scope, Send
from wsapp.connection import Connection
from wsapp.endpoint import (
    CallbackDecorators,
    Connector,
    ConnectorEndpoint,
    Endpoint,
    FunctionEndpoint,
    as_async,
    check_signature,
)
from wsapp.lifecycle import serving
from wsapp.lifespan import Lifespan
from wsapp.log import LogFormat, configure_logging, logger
from wsapp.messages import DispatchPolicy
from wsapp.operations.metrics import Metrics
from wsapp.protocol import PreparedMessage
from wsapp.protocol.frames import OPCODE_TEXT
from wsapp.rooms import Rooms, prepare
from wsapp.routing import Router
from wsapp.server import Backend, Server, run_server
from wsapp.server.listeners import open_listeners, ssl_context_from_files
from wsapp.settings import ConfigError, Settings, resolve_settings, unknown_setting
from wsapp.transport import OpenConnections

__all__ = ["App", "RouteHandlers", "run_app"]

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type[Connector])


class RouteHandlers(CallbackDecorators):
    """The handlers of one route, as `app.route(pattern)` returns them.

    Use it in one of two ways: as a class decorator for a [Connector][wsapp.Connector]
    (`@app.route("/rooms/{room}")` above the class), or keep it and declare functions with
    its decorators, exactly as on the App (`chat = app.route("/rooms/{room}")`, then
    `@chat.on_message`), several typed `on_message` handlers included.
    """

    def __init__(self, router: Router[Endpoint], pattern: str, policy: DispatchPolicy) -> None:
        self.pattern = pattern
        self._router = router
        self._policy = policy
        self._functions = FunctionEndpoint(policy)
        self._connector: type[Connector] | None = None
        router.add(pattern, self._functions)

    def _declare(self, name: str, function: F) -> F:
        if self._connector is not None:
            raise TypeError(
                f"route {self.pattern!r} is served by the class {self._connector.__qualname__}; "
                f"declare {name} as its method instead"
            )
        return self._functions.declare(name, function)

    def _functions_endpoint(self) -> FunctionEndpoint:
        if self._connector is not None:
            raise TypeError(
                f"route {self.pattern!r} is served by the class {self._connector.__qualname__}; "
                "set its `sends` class attribute instead"
            )
        return self._functions

    def __call__(self, cls: C) -> C:
        """Serve this route with a Connector class (the class form)."""
        if self._functions.declared or self._connector is not None:
            raise TypeError(
                f"route {self.pattern!r} already has its handlers; a route is served by one "
                "Connector class or by functions, not both"
            )
        self._router.replace(self.pattern, ConnectorEndpoint(cls, self._policy))
        self._connector = cls
        return cls


class App(CallbackDecorators):
    """A WebSocket application: callbacks, routes and settings.

    Args:
        settings: The defaults for every connection; `WSAPP_*` environment variables and
            command line flags override them when the server starts.
        concurrency: How many messages of one connection the decorated `on_message`
            handlers run at once (1: one at a time, in order). See "Dispatch and ordering".
        on_invalid: What answers a message that does not decode into what the handler
            takes: `"reply"` (an error reply; the connection stays) or `"close"` (1007).
            An `@app.on_invalid` callback overrides it.
        binary_json: Decode binary messages as JSON too (text messages always are).
        on_slow: What a broadcast does to a member that cannot keep up (more than its
            `outbound_budget` unsent): `"close"` it with 1008, or `"drop"` the message for
            it. See "Rooms and broadcasting".
        on_rate_limit: What a message over a rate limit does (`rate_limit_messages`,
            `rate_limit_bytes`): `"close"` the connection with 1008, or `"drop"` it and
            answer with an error reply. See "Security and rate limits".
        **overrides: Shorthand for single settings, e.g. `App(subprotocols=["chat"])`.

    The five dispatch policies (`concurrency` to `on_rate_limit`) are also those of every
    `route`, except where the route sets its own.

    The decorators `on_connect`, `on_open`, `on_message`, `on_invalid` and `on_close`
    declare the callbacks for every path that no `route` claims.

    An `App` is also an ASGI 3 application: `uvicorn module:app` serves it, and Starlette
    or FastAPI can mount it under a path.

    Attributes:
        settings: The app's settings (the environment and flags are layered over them when
            it is served).
        router: Its routes, matched in declaration order.
        hooks: Its start-up and shutdown hooks.
        rooms: Its [Rooms][wsapp.rooms.Rooms] in this process: members, counts, presence.
        metrics: Its [Metrics][wsapp.operations.metrics.Metrics] in this process: connections,
            messages, refusals, errors, latency (served on `metrics_path`).
        connections: Its [OpenConnections][wsapp.transport.OpenConnections] in this
            process: how many, and what they have still to write.
        state: A namespace for resources shared by all connections (`app.state.db = ...`),
            typically set by an `on_startup` hook.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        concurrency: int = 1,
        on_invalid: Literal["reply", "close"] = "reply",
        binary_json: bool = False,
        on_slow: Literal["close", "drop"] = "close",
        on_rate_limit: Literal["close", "drop"] = "close",
        **overrides: Any,
    ) -> None:
        base = settings if settings is not None else Settings()
        # A TypeError, as for any unexpected keyword argument; a bad value is a ConfigError.
        for name in sorted(overrides):
            if name not in Settings.model_fields:
                raise TypeError(f"App() got an {unknown_setting(name)}")
        values = {**base.model_dump(exclude_unset=True), **overrides}
        self.settings: Settings = Settings(**values)
        self._default = FunctionEndpoint(
            DispatchPolicy(concurrency, on_invalid, binary_json, on_slow, on_rate_limit)
        )
        self.router: Router[Endpoint] = Router()
        self.state: SimpleNamespace = SimpleNamespace()
        self.hooks: Lifespan = Lifespan()
        self.rooms: Rooms[Connection] = Rooms()
        self.connections: OpenConnections = OpenConnections()
        self.metrics: Metrics = Metrics(self.rooms, self.connections)
        self._asgi = ASGIAdapter(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI 3 interface: `websocket`, `http` and `lifespan` scopes."""
        await self._asgi(scope, receive, send)

    def _declare(self, name: str, function: F) -> F:
        self._default.declare(name, function)
        self.router.fallback = self._default
        return function

    def _functions_endpoint(self) -> FunctionEndpoint:
        return self._default

    def on_startup(self, function: F) -> F:
        """Declare a start-up hook (sync or async, no arguments).

        Start-up hooks run in declaration order before the first connection is accepted,
        whatever serves the app (built-in server, ASGI host, test client). If one raises,
        the app does not serve: the built-in server exits with code 1.
        """
        self.hooks.add("startup", function)
        return function

    def background(self, function: F) -> F:
        """Declare a background task: `async def` with no arguments, started once the
        start-up hooks have run and cancelled when the app stops, before the shutdown hooks
        (a ticker that broadcasts, a consumer of a queue). One that raises is logged; the
        connections go on being served.
        """
        self.hooks.add("background", function)
        return function

    def on_shutdown(self, function: F) -> F:
        """Declare a shutdown hook (sync or async, no arguments).

        Shutdown hooks run in declaration order after the last connection has closed (and
        its `on_close` has run); all of them run even if one raises.
        """
        self.hooks.add("shutdown", function)
        return function

    def lifespan(self, host_app: object = None) -> AbstractAsyncContextManager[None]:
        """The app's rooms, start-up hooks and background tasks on entry, and the shutdown
        hooks on exit, as a context manager.

        ASGI hosts run them through the `lifespan` scope, but Starlette and FastAPI do not
        pass that scope to mounted apps: give them this instead,
        `Starlette(routes=[Mount("/ws", app)], lifespan=app.lifespan)`. (``host_app`` is
        the Starlette app they pass in; it is not used.)
        """
        return serving(self, resolve_settings(self.settings))

    def route(
        self,
        pattern: str,
        *,
        concurrency: int | None = None,
        on_invalid: Literal["reply", "close"] | None = None,
        binary_json: bool | None = None,
        on_slow: Literal["close", "drop"] | None = None,
        on_rate_limit: Literal["close", "drop"] | None = None,
    ) -> RouteHandlers:
        """Serve `pattern` (e.g. `/rooms/{room}` or `/users/{id:int}`) with its own handlers.

        Decorate a [Connector][wsapp.Connector] class with the result, or declare functions
        with its `on_connect`, `on_open`, `on_message`, `on_invalid` and `on_close`
        decorators (see [RouteHandlers][wsapp.RouteHandlers]).

        Path parameters are converted by their type (`str` by default; `int`, `float`,
        `uuid`, `path`) and available as `conn.request.path_params`.

        The keyword arguments are this route's dispatch policy, as for `App`: each one the
        route does not set is the App's (`App(on_slow="drop")` makes every route drop,
        unless a route says `on_slow="close"`).
        """
        chosen: dict[str, Any] = {
            "concurrency": concurrency,
            "on_invalid": on_invalid,
            "binary_json": binary_json,
            "on_slow": on_slow,
            "on_rate_limit": on_rate_limit,
        }
        policy = replace(
            self._default.policy,
            **{name: value for name, value in chosen.items() if value is not None},
        )
        return RouteHandlers(self.router, pattern, policy)

    async def broadcast(
        self,
        room: str,
        message: str | bytes | BaseModel,
        *,
        exclude: Connection | None = None,
    ) -> None:
        """Send ``message`` to every member of ``room`` (in every process, with a broker),
        except ``exclude`` (typically the sender).

        `str` goes as a text message, `bytes` as a binary one, a pydantic model as its JSON:
        serialized once, framed once for every member that can share the frame. It never
        waits for a member: one that cannot keep up is closed or skipped (the endpoint's
        `on_slow`). Members of a room receive its messages in the same order.
        """
        await self.rooms.send_prepared(room, prepare(message), exclude.id if exclude else None)

    async def broadcast_json(
        self, room: str, data: Any, *, exclude: Connection | None = None
    ) -> None:
        """`broadcast` ``data`` (dicts, lists, models, datetimes...) as JSON text."""
        await self.rooms.send_prepared(
            room, PreparedMessage(OPCODE_TEXT, to_json(data)), exclude.id if exclude else None
        )

    def on_join(self, pattern: str) -> Callable[[F], F]:
        """Declare who may join the rooms matching ``pattern`` (the route syntax:
        `game:{id:int}`): `on_join(conn, room, params)` returns False (or raises
        [JoinRefused][wsapp.JoinRefused] with a reason) to refuse. Patterns are tried in
        declaration order; a room no pattern matches may be joined by anyone.
        """

        def declare(function: F) -> F:
            check_signature("on_join", function)
            self.rooms.authorize(pattern, as_async(function))
            return function

        return declare

    def allow_any_origin(self) -> None:
        """Accept cross-origin browser connections from any site.

        Any page on the web can then open a connection with your users' cookies: only do
        this when no cookie or ambient credential authorizes anything here.
        """
        if "*" not in self.settings.allowed_origins:
            self.settings.allowed_origins = [*self.settings.allowed_origins, "*"]

    async def create_server(
        self,
        host: str | None = "127.0.0.1",
        port: int = 8000,
        *,
        uds: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        overrides: Mapping[str, Any] | None = None,
        reuse_port: bool = False,
        fd: int | None = None,
        **more_settings: Any,
    ) -> Server:
        """Resolve the settings and bind the listening socket; `Server.serve` then serves.

        `reuse_port` lets several processes listen on the same port (`SO_REUSEPORT`, which
        `--workers` uses on Linux); `fd` serves an already listening socket given by its file
        descriptor (inherited from a supervisor or a service manager) instead of binding one.

        `uds` listens on a unix socket instead of TCP; `certfile`/`keyfile` (or
        `ssl_context`) serve TLS. `overrides` are settings that win over the environment
        (the CLI passes its flags here); ``more_settings`` are more of them by name, as
        `app.run(broker="redis://localhost:6379")` gives. Bad settings or TLS files raise
        [ConfigError][wsapp.ConfigError], and an address that cannot be listened on (a busy
        port, a host that does not resolve) an `OSError` naming it, before anything is served.
        """
        if keyfile is not None and certfile is None:
            raise ConfigError(
                f"keyfile={keyfile!r} without certfile: pass the certificate too "
                "(certfile=...), or neither to serve without TLS"
            )
        if ssl_context is not None and certfile is not None:
            raise ConfigError(
                "both ssl_context and certfile given: pass one of them (load the files into "
                "the context yourself with context.load_cert_chain(certfile, keyfile))"
            )
        for name in sorted(more_settings):
            if name not in Settings.model_fields:
                raise TypeError(f"create_server() got an {unknown_setting(name)}")
        flags = {**(overrides or {}), **more_settings}
        settings = resolve_settings(self.settings, flags=flags)
        if "*" in settings.allowed_origins:
            logger.warning(
                "any origin may connect (allow_any_origin): browsers on any site can open "
                "connections carrying your users' cookies"
            )
        if certfile is not None:
            ssl_context = ssl_context_from_files(certfile, keyfile)
        listeners, urls = await open_listeners(
            host, port, uds, ssl_context, reuse_port=reuse_port, fd=fd
        )
        return Server(self, settings, listeners, urls, ssl_context)

    async def serve(
        self,
        host: str | None = "127.0.0.1",
        port: int = 8000,
        *,
        handle_signals: bool = False,
        task_status: TaskStatus[Server] = anyio.TASK_STATUS_IGNORED,
        **options: Any,
    ) -> None:
        """Serve until shut down; `options` are those of `create_server`.

        `server = await task_group.start(app.serve, "127.0.0.1", 0)` returns the running
        [Server][wsapp.Server] once it listens (its `urls` show the real port), and
        `server.shutdown()` stops it gracefully. With `handle_signals`, SIGINT/SIGTERM start
        a graceful shutdown and a second one forces it.
        """
        server = await self.create_server(host, port, **options)
        await server.serve(handle_signals=handle_signals, task_status=task_status)

    def run(
        self,
        host: str | None = "127.0.0.1",
        port: int = 8000,
        *,
        backend: Backend = "asyncio",
        log_format: LogFormat = "text",
        **options: Any,
    ) -> None:
        """Serve in the foreground until SIGINT/SIGTERM: the blocking form of `serve`.

        `options` are those of `create_server`, settings by name included
        (`app.run(broker="redis://localhost:6379/0")`): as `python -m wsapp`'s flags do, they
        win over the App's settings and the `WSAPP_*` environment.

        Logs to stderr at level INFO (the serving URL, each connection's open and close), as
        `python -m wsapp` does, as text or (``log_format="json"``) JSON lines, unless the
        program configured logging itself."""
        configure_logging(style=log_format)
        run_app(self, backend, host=host, port=port, **options)


def run_app(
    app: App, backend: Backend, ready: Callable[[Server], None] | None = None, **options: Any
) -> bool:
    """Serve ``app`` on ``backend`` with signals handled; True if the shutdown was graceful.

    ``ready`` is called once the server listens and its start-up hooks have run."""
    return run_server(lambda: app.create_server(**options), backend, ready)
