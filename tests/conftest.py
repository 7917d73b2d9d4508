"""Shared helpers: every async test runs on asyncio and on Trio, against a real server."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Generator
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import anyio
import pytest

import wsapp
from tests.rawclient import RawClient

T = TypeVar("T")

pytest_plugins = ["pytester"]  # tests of wsapp's own pytest plugin

#: Seconds one async test may take unless it is marked `@pytest.mark.timeout(seconds)`.
TIMEOUT = 15


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """Bound every async test by a deadline, in its own event loop: a test that hangs fails
    (its tasks cancelled, its servers shut down) instead of stalling the suite."""
    test = pyfuncitem.obj
    if not inspect.iscoroutinefunction(test):
        return (yield)
    marker = pyfuncitem.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker is not None else TIMEOUT

    @functools.wraps(test)
    async def bounded(*args: Any, **kwargs: Any) -> Any:
        with anyio.CancelScope(deadline=anyio.current_time() + limit) as scope:
            return await test(*args, **kwargs)
        if scope.cancelled_caught:
            pytest.fail(f"timed out after {limit}s (mark the test @pytest.mark.timeout(...))")

    pyfuncitem.obj = bounded
    try:
        return (yield)
    finally:
        pyfuncitem.obj = test


@asynccontextmanager
async def running(app: wsapp.App, **options: Any) -> AsyncIterator[wsapp.Server]:
    """Serve ``app`` on a free port of 127.0.0.1 for the duration of the block."""
    async with anyio.create_task_group() as tg:
        server: wsapp.Server = await tg.start(partial(app.serve, "127.0.0.1", 0, **options))
        try:
            yield server
        finally:
            server.shutdown()


@asynccontextmanager
async def raw_peer(app: wsapp.App, **options: Any) -> AsyncIterator[RawClient]:
    """Serve ``app`` and connect a raw-frame client to it."""
    async with running(app, **options) as server, RawClient.connect(port(server)) as raw:
        yield raw


def url(server: wsapp.Server, path: str = "/") -> str:
    return server.urls[0] + path


def port(server: wsapp.Server) -> int:
    return int(server.urls[0].rsplit(":", 1)[1])


async def client(function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Run an asyncio client coroutine (the `websockets` package) in its own thread and loop.

    The server under test runs in the test's own loop, asyncio or Trio; the client is an
    independent peer with its own event loop, as it would be in production.
    """
    return await anyio.to_thread.run_sync(
        lambda: asyncio.run(function(*args, **kwargs)), abandon_on_cancel=True
    )


class Trace:
    """Records callback events and lets a test await them."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.closed = anyio.Event()
        self.close_args: tuple[bool, int, str] | None = None
        self._changed = anyio.Event()

    def add(self, *event: Any) -> None:
        self.events.append(event)
        self._changed.set()
        self._changed = anyio.Event()

    def names(self) -> list[str]:
        return [str(event[0]) for event in self.events]

    async def wait_for(self, name: str, count: int = 1) -> None:
        while self.names().count(name) < count:
            await self._changed.wait()

    def record_close(self, was_clean: bool, code: int, reason: str) -> None:
        self.close_args = (was_clean, code, reason)
        self.add("close", was_clean, code, reason)
        self.closed.set()


def traced_app(trace: Trace, **settings: Any) -> wsapp.App:
    """An echo app whose callbacks record into ``trace``."""
    app = wsapp.App(**settings)

    @app.on_connect
    async def connect(conn: wsapp.Connection, request: wsapp.Request) -> None:
        trace.add("connect", request.path)

    @app.on_open
    async def opened(conn: wsapp.Connection) -> None:
        trace.add("open", conn)

    @app.on_message
    async def message(conn: wsapp.Connection, data: wsapp.Message) -> None:
        trace.add("message", data)
        if data == "fail":
            raise RuntimeError("boom")
        if data == "close-me":
            await conn.close(4000, "as you wish")
            return
        await conn.send(data)

    @app.on_close
    async def closed(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
        trace.record_close(was_clean, code, reason)

    return app


#: What a hooked_app records for one connection in one run, whatever serves it.
ONE_CONNECTION_RUN = ["startup 1", "startup 2", "open", "close", "shutdown 1", "shutdown 2"]


def hooked_app(trace: Trace, fail_startup: bool = False) -> wsapp.App:
    """An echo app with two start-up and two shutdown hooks (one sync each) recording into
    ``trace``; on_open greets with what start-up put in app.state."""
    app = wsapp.App()

    @app.on_startup
    async def open_database() -> None:
        trace.add("startup 1")
        if fail_startup:
            raise ConnectionRefusedError("database unreachable")

    @app.on_startup
    def warm_cache() -> None:  # plain def: runs in a worker thread
        app.state.greeting = "hello from startup"
        # Trace wakes its waiters through an anyio Event, which only the event loop may set.
        anyio.from_thread.run_sync(trace.add, "startup 2")

    @app.on_open
    async def greet(conn: wsapp.Connection) -> None:
        trace.add("open")
        await conn.send(app.state.greeting)

    @app.on_message
    async def echo(conn: wsapp.Connection, message: wsapp.Message) -> None:
        await conn.send(message)

    @app.on_close
    async def closed(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
        trace.record_close(was_clean, code, reason)

    @app.on_shutdown
    async def close_cache() -> None:
        trace.add("shutdown 1")

    @app.on_shutdown
    def close_database() -> None:
        anyio.from_thread.run_sync(trace.add, "shutdown 2")

    return app


@pytest.fixture
def wsapp_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="wsapp")
    return caplog
