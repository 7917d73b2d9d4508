"""Helpers the tests share: a real server on a free port, clients, and callback traces.

Every async test runs on asyncio and on Trio (the ``anyio_backend`` fixture in conftest.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

import wsapp
from tests.rawclient import RawClient

T = TypeVar("T")

#: Seconds one async test may take unless it is marked `@pytest.mark.timeout(seconds)`.
TIMEOUT = 15


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


def echo_app(**options: Any) -> wsapp.App:
    """An app whose every endpoint echoes each message; ``options`` go to `App`."""
    app = wsapp.App(**options)

    @app.on_message
    async def echo(conn: wsapp.Connection, message: str | bytes) -> None:
        await conn.send(message)

    return app


def url(server: wsapp.Server, path: str = "/") -> str:
    return server.urls[0] + path


def port(server: wsapp.Server) -> int:
    return int(server.urls[0].rsplit(":", 1)[1])


async def client(function: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> T:
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


ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion (for start-up failures, which exit at once)."""
    return subprocess.run(
        [sys.executable, "-m", "wsapp", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


@dataclass
class Served:
    """A `python -m wsapp` process and the lines it printed so far (which can be awaited)."""

    process: Process
    url: str
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    changed: anyio.Event = field(default_factory=anyio.Event)

    async def collect(self, stream: Any, lines: list[str]) -> None:
        buffer = ""
        async for chunk in TextReceiveStream(stream):
            buffer += chunk
            *complete, buffer = buffer.split("\n")
            lines.extend(complete)
            self.changed.set()
            self.changed = anyio.Event()

    async def wait_for(self, lines: list[str], text: str, count: int = 1) -> None:
        while sum(text in line for line in lines) < count:
            await self.changed.wait()


@asynccontextmanager
async def serving(
    *args: str,
    env: dict[str, str] | None = None,
    ready: str = "wsapp serving ",
    max_files: int | None = None,
    stop: bool = False,
    script: str | None = None,
    port: int = 0,
) -> AsyncIterator[Served]:
    """Start the CLI on a free port; yields once it logs ``ready`` (by default the URL it
    serves, which becomes `url`). ``max_files`` lowers its RLIMIT_NOFILE first. The block's
    end waits for the process to exit; with ``stop`` it first sends SIGTERM (a graceful
    shutdown) if it still runs. A ``script`` (Python source) is run instead of the CLI.
    ``port`` is the one to serve on (0: a free one)."""
    command = [sys.executable, "-m", "wsapp", *args, "--port", str(port)]
    if script is not None:
        command = [sys.executable, "-c", script]
    elif max_files is not None:
        # The limit must hold from the start, so the child sets it before wsapp starts.
        command[1:3] = ["-c", _LIMITED.format(max_files)]
    process = await anyio.open_process(
        command, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    )
    served = Served(process, "")
    try:
        async with anyio.create_task_group() as tg:
            assert process.stdout
            assert process.stderr
            tg.start_soon(served.collect, process.stdout, served.stdout)
            tg.start_soon(served.collect, process.stderr, served.stderr)
            await served.wait_for(served.stderr, ready)
            line = next(line for line in served.stderr if ready in line)
            served.url = line.split(ready)[1].strip()
            yield served
            if stop and process.returncode is None:
                process.terminate()
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


_LIMITED = """\
import resource, runpy
resource.setrlimit(resource.RLIMIT_NOFILE, ({0}, {0}))
runpy.run_module("wsapp", run_name="__main__", alter_sys=True)
"""


class RedisServer:
    """A real `redis-server` (Debian's package) on a free port of 127.0.0.1, for one test.

    Started on entry, stopped by its PID on exit; `restart` stops and starts it again on the
    same port (and with nothing remembered, as after a crash).
    """

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: Process | None = None

    async def __aenter__(self) -> RedisServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            message = "needs redis-server: apt-get install redis-server (.ci/run installs it)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        process = await anyio.open_process(
            [executable, *options, "no"],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self._process = process
        assert process.stdout is not None
        output = ""
        async for chunk in TextReceiveStream(process.stdout):
            output += chunk
            if "Ready to accept connections" in output:
                return
        raise RuntimeError(f"redis-server did not start:\n{output}")

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            with anyio.CancelScope(shield=True):
                await process.wait()
            await process.aclose()

    async def restart(self) -> None:
        await self.stop()
        await self.start()


async def poll_until(check: Callable[[], Coroutine[Any, Any, bool]], within: float) -> None:
    """Wait until ``check()`` holds, asking every 0.1 s: for state outside this process (keys
    expiring in Redis), which offers no event to await."""
    with anyio.fail_after(within):
        while not await check():  # noqa: ASYNC110
            await anyio.sleep(0.1)
