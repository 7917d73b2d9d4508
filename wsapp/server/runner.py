"""The running server: hooks, accept loops, signals and the graceful shutdown."""

from __future__ import annotations

import importlib
import signal
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import anyio
from anyio.abc import SocketListener, TaskStatus

from wsapp.concurrency import Nursery, open_nursery
from wsapp.lifecycle import Servable, serving
from wsapp.lifespan import LifespanError
from wsapp.log import logger
from wsapp.server.handler import StreamHandler
from wsapp.server.listeners import accept_forever
from wsapp.server.streams import acceptor
from wsapp.settings import ConfigError, Settings

__all__ = ["Backend", "Server", "require_backend", "run_server"]

Backend = Literal["asyncio", "uvloop", "trio"]


class Server:
    """A running wsapp server.

    `await task_group.start(app.serve, ...)` returns it once listening, which is how tests
    and embedding programs learn the real port (`port=0`) and stop the server.

    Attributes:
        urls: One URL per listening socket, like `ws://127.0.0.1:8000`.
        forced: True if shutdown was forced (a second signal) instead of graceful.
        restarting: True if the shutdown is a restart (`shutdown(restart=True)`, SIGHUP):
            connections are closed with 1012 instead of 1001.
    """

    def __init__(
        self,
        app: Servable,
        settings: Settings,
        listeners: Sequence[SocketListener],
        urls: list[str],
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.urls: list[str] = urls
        self.forced: bool = False
        self.restarting: bool = False
        self._listeners = listeners
        self._handler = StreamHandler(app, settings, ssl_context)
        self._stop = anyio.Event()
        self._forced = anyio.Event()
        self._connections: Nursery | None = None
        self._hooks = anyio.CancelScope()

    @property
    def active_connections(self) -> int:
        """Connections being served: handshakes in progress and open connections."""
        return self._handler.open_connections

    def shutdown(self, *, restart: bool = False) -> None:
        """Start a graceful shutdown: the health path answers 503 from now on; after
        `drain_delay`, stop accepting and close every connection with 1001, or with 1012
        (service restart, so clients reconnect) for a ``restart``."""
        self.restarting = self.restarting or restart
        self._handler.drain()
        self._stop.set()

    def force_shutdown(self) -> None:
        """Cancel every connection now, without waiting for closing handshakes."""
        self.forced = True
        self._stop.set()
        self._forced.set()
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
        failure: LifespanError | ConfigError | None = None
        async with anyio.create_task_group() as supervisor:
            if handle_signals:  # watches until the very end: a second signal forces exit
                await supervisor.start(self._watch_signals)
            try:
                async with serving(self.app, self.settings, guard=self._hooks_scope):
                    if not self.forced:
                        await self._serve_connections(task_status)
            except (LifespanError, ConfigError) as exc:  # raised alone, not in a group
                failure = exc
            finally:
                await self._close_listeners()
            supervisor.cancel_scope.cancel()
        if isinstance(failure, ConfigError):
            raise failure  # it never served: the one line saying why is all there is to say
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
        async with self._handler.running():
            await self._serve_until_stopped(task_status)

    async def _serve_until_stopped(self, task_status: TaskStatus[Server]) -> None:
        async with open_nursery() as connections:  # a task per connection, and cheap
            self._connections = connections
            async with anyio.create_task_group() as accepting:
                for listener in self._listeners:
                    accepting.start_soon(
                        accept_forever, acceptor(listener), self._handler.handle, connections
                    )
                for url in self.urls:
                    logger.info("wsapp serving %s", url)
                task_status.started(self)
                await self._stop.wait()
                await self._drain()
                accepting.cancel_scope.cancel()
            await self._close_listeners()
            connections.cancel_scope.deadline = anyio.current_time() + self.settings.close_timeout
            opened = self._handler.close_all(connections, self.restarting)
            if not self.forced:
                code = 1012 if self.restarting else 1001
                logger.info("shutting down: closing %d connection(s) with %d", opened, code)

    async def _drain(self) -> None:
        """Keep serving for `drain_delay`, the health path answering 503, so that a load
        balancer stops sending new clients first; a forced shutdown cuts it short."""
        delay = self.settings.drain_delay
        if not delay or self.forced:
            return
        logger.info("shutting down: draining for %ss (the health path answers 503)", delay)
        with anyio.move_on_after(delay):
            await self._forced.wait()

    async def _close_listeners(self) -> None:
        listeners, self._listeners = self._listeners, ()
        for listener in listeners:
            await listener.aclose()

    async def _watch_signals(self, *, task_status: TaskStatus[None]) -> None:
        # SIGHUP (from --reload) is a restart: the same graceful shutdown, closing with 1012.
        restart = getattr(signal, "SIGHUP", None)
        watched = [signal.SIGINT, signal.SIGTERM, *([restart] if restart else [])]
        with anyio.open_signal_receiver(*watched) as signals:
            task_status.started()
            async for signum in signals:
                if self._stop.is_set():
                    logger.warning("second %s: forcing exit", signal.Signals(signum).name)
                    self.force_shutdown()
                    return
                how = "restarting" if signum == restart else "shutting down"
                logger.info("%s received: %s gracefully", signal.Signals(signum).name, how)
                self.shutdown(restart=signum == restart)


class _Ready:
    """A task status that calls back once the server serves."""

    def __init__(self, callback: Callable[[Server], None]) -> None:
        self._callback = callback

    def started(self, value: Server | None = None) -> None:
        assert value is not None
        self._callback(value)


def require_backend(backend: Backend) -> None:
    """Raise RuntimeError, naming the extra to install, if ``backend`` is not installed
    (uvloop and trio are extras: a user should read that, not anyio's traceback)."""
    if backend != "asyncio":
        try:
            importlib.import_module(backend)
        except ImportError:
            raise RuntimeError(
                f"backend {backend!r} needs {backend}: pip install 'wsapp[{backend}]'"
            ) from None


def run_server(
    server_factory: Callable[[], Awaitable[Server]],
    backend: Backend,
    ready: Callable[[Server], None] | None = None,
) -> bool:
    """Run ``await server_factory()`` (which returns a Server) and serve it on ``backend``
    with signals handled; True if the shutdown was graceful. ``ready`` is called once it
    serves."""
    servers: list[Server] = []

    async def main() -> None:
        servers.append(await server_factory())
        status: TaskStatus[Server] = anyio.TASK_STATUS_IGNORED if ready is None else _Ready(ready)
        await servers[0].serve(handle_signals=True, task_status=status)

    require_backend(backend)
    backend_options: dict[str, Any] = {"use_uvloop": True} if backend == "uvloop" else {}
    anyio.run(
        main,
        backend="asyncio" if backend == "uvloop" else backend,
        backend_options=backend_options,
    )
    return not (servers and servers[0].forced)
