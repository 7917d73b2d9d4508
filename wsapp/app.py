"""App: settings, routes and the callback decorators."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from types import SimpleNamespace
from typing import Any, Literal, TypeVar

import anyio
from anyio.abc import TaskStatus

from wsapp.asgi import ASGIAdapter, Receive, Scope, Send
from wsapp.endpoint import CallbackDecorators, Connector, ConnectorEndpoint, FunctionEndpoint
from wsapp.lifespan import Lifespan
from wsapp.log import logger
from wsapp.messages import DispatchPolicy
from wsapp.routing import Router
from wsapp.server import Backend, Server, run_server
from wsapp.server.listeners import open_listeners, ssl_context_from_files
from wsapp.settings import Settings, resolve_settings

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

    def __init__(self, router: Router, pattern: str, policy: DispatchPolicy) -> None:
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
        **overrides: Shorthand for single settings, e.g. `App(subprotocols=["chat"])`.

    The decorators `on_connect`, `on_open`, `on_message`, `on_invalid` and `on_close`
    declare the callbacks for every path that no `route` claims.

    An `App` is also an ASGI 3 application: `uvicorn module:app` serves it, and Starlette
    or FastAPI can mount it under a path.

    Attributes:
        settings: The app's settings (the environment and flags are layered over them when
            it is served).
        router: Its routes, matched in declaration order.
        hooks: Its start-up and shutdown hooks.
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
        **overrides: Any,
    ) -> None:
        base = settings if settings is not None else Settings()
        unknown = set(overrides) - set(Settings.model_fields)
        if unknown:
            raise TypeError(
                f"App() got unknown setting(s) {sorted(unknown)}; see wsapp.Settings for the list"
            )
        values = {**base.model_dump(exclude_unset=True), **overrides}
        self.settings = Settings.model_validate(values)
        self._default = FunctionEndpoint(DispatchPolicy(concurrency, on_invalid, binary_json))
        self.router = Router()
        self.state = SimpleNamespace()
        self.hooks = Lifespan()
        self._asgi = ASGIAdapter(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI 3 interface: `websocket`, `http` and `lifespan` scopes."""
        await self._asgi(scope, receive, send)

    def _declare(self, name: str, function: F) -> F:
        self._default.declare(name, function)
        self.router.fallback = self._default
        return function

    def on_startup(self, function: F) -> F:
        """Declare a start-up hook (sync or async, no arguments).

        Start-up hooks run in declaration order before the first connection is accepted,
        whatever serves the app (built-in server, ASGI host, test client). If one raises,
        the app does not serve: the built-in server exits with code 1.
        """
        self.hooks.add("startup", function)
        return function

    def on_shutdown(self, function: F) -> F:
        """Declare a shutdown hook (sync or async, no arguments).

        Shutdown hooks run in declaration order after the last connection has closed (and
        its `on_close` has run); all of them run even if one raises.
        """
        self.hooks.add("shutdown", function)
        return function

    def lifespan(self, host_app: object = None) -> AbstractAsyncContextManager[None]:
        """The start-up hooks on entry and the shutdown hooks on exit, as a context manager.

        ASGI hosts run them through the `lifespan` scope, but Starlette and FastAPI do not
        pass that scope to mounted apps: give them this instead,
        `Starlette(routes=[Mount("/ws", app)], lifespan=app.lifespan)`. (``host_app`` is
        the Starlette app they pass in; it is not used.)
        """
        return self.hooks.running()

    def route(
        self,
        pattern: str,
        *,
        concurrency: int = 1,
        on_invalid: Literal["reply", "close"] = "reply",
        binary_json: bool = False,
    ) -> RouteHandlers:
        """Serve `pattern` (e.g. `/rooms/{room}` or `/users/{id:int}`) with its own handlers.

        Decorate a [Connector][wsapp.Connector] class with the result, or declare functions
        with its `on_connect`, `on_open`, `on_message`, `on_invalid` and `on_close`
        decorators (see [RouteHandlers][wsapp.RouteHandlers]).

        Path parameters are converted by their type (`str` by default; `int`, `float`,
        `uuid`, `path`) and available as `conn.request.path_params`. The keyword arguments
        are this route's dispatch policy, as for `App`.
        """
        return RouteHandlers(
            self.router, pattern, DispatchPolicy(concurrency, on_invalid, binary_json)
        )

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
    ) -> Server:
        """Resolve the settings and bind the listening socket; `Server.serve` then serves.

        `uds` listens on a unix socket instead of TCP; `certfile`/`keyfile` (or
        `ssl_context`) serve TLS. `overrides` are settings that win over the environment
        (the CLI passes its flags here). Bad settings raise [ConfigError][wsapp.ConfigError]
        and a busy port `OSError`, before anything is served.
        """
        settings = resolve_settings(self.settings, flags=overrides)
        if "*" in settings.allowed_origins:
            logger.warning(
                "any origin may connect (allow_any_origin): browsers on any site can open "
                "connections carrying your users' cookies"
            )
        if ssl_context is None and certfile is not None:
            ssl_context = ssl_context_from_files(certfile, keyfile)
        listeners, urls = await open_listeners(host, port, uds, ssl_context)
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
        **options: Any,
    ) -> None:
        """Serve in the foreground until SIGINT/SIGTERM: the blocking form of `serve`."""
        run_app(self, backend, host=host, port=port, **options)


def run_app(app: App, backend: Backend, **options: Any) -> bool:
    """Serve ``app`` on ``backend`` with signals handled; True if the shutdown was graceful."""
    return run_server(lambda: app.create_server(**options), backend)
