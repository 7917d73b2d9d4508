"""Real ASGI hosts (uvicorn, hypercorn, daphne) serving an app on 127.0.0.1 inside one test.

Every helper binds its own listening socket on port 0 *before* the host starts, so the port is
known at once and no test polls for "started": the kernel queues connections on the listening
socket until the host accepts them. Every helper stops its host when its block ends, also when
the test fails or times out.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import hypercorn.asyncio
import hypercorn.config
import hypercorn.trio
import pytest
import sniffio
import uvicorn
from anyio.abc import ByteReceiveStream, Process
from anyio.streams.text import TextReceiveStream

from tests.helpers import TIMEOUT

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The repository root: daphne imports its app by module path from here.
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Listening:
    """Where a host serves."""

    port: int

    def url(self, path: str = "/", scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"


@dataclass(frozen=True)
class Stopped:
    """How a host ended when it stopped by itself (a failed start-up)."""

    answer: bytes  # all a client that connected while it ran ever received from it
    report: str  # what it told the operator: its exception, or its exit code and error log


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


# --- uvicorn (asyncio only) -------------------------------------------------------------------


def _uvicorn(app: ASGIApp, ws: str) -> uvicorn.Server:
    if sniffio.current_async_library() != "asyncio":
        raise RuntimeError("uvicorn runs on asyncio only")
    # log_config=None: leave the logging configuration alone, so uvicorn's records propagate
    # to the root logger (and pytest's caplog) instead of uvicorn's own stderr handlers.
    config = uvicorn.Config(app, ws=ws, lifespan="on", log_level="warning", log_config=None)
    return uvicorn.Server(config)


async def _serve_uvicorn(server: uvicorn.Server, sock: socket.socket) -> int | None:
    """Serve until told to exit; the exit code when uvicorn gives up by itself."""
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:
        # A failed start-up is sys.exit(3) in uvicorn. Caught here, inside the coroutine:
        # asyncio re-raises a SystemExit that escapes a task out of the whole event loop.
        return int(exc.code or 0)
    return None


@asynccontextmanager
async def uvicorn_server(app: ASGIApp, ws: str) -> AsyncIterator[Listening]:
    """Serve ``app`` with uvicorn and its ``ws`` WebSocket implementation."""
    server = _uvicorn(app, ws)

    async def serve(sock: socket.socket) -> None:
        code = await _serve_uvicorn(server, sock)
        if code is not None:  # fail the test now, not when its client times out
            raise RuntimeError(f"uvicorn exited by itself with code {code}")

    with _listening_socket() as sock:
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve, sock)
            try:
                yield Listening(_port(sock))
            finally:
                # uvicorn's main loop checks the flag every 0.1 s, then closes the open
                # WebSockets (1012), waits for their tasks and runs the lifespan shutdown.
                server.should_exit = True


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def uvicorn_until_stopped(app: ASGIApp, ws: str) -> Stopped:
    """Run uvicorn until it stops by itself (a failed start-up), as `uvicorn module:app` would."""
    errors = _Collect()
    log = logging.getLogger("uvicorn.error")

    async def run(sock: socket.socket) -> str:
        log.addHandler(errors)
        try:
            code = await _serve_uvicorn(_uvicorn(app, ws), sock)
        finally:
            log.removeHandler(errors)
        return f"exit code {code}: " + "\n".join(errors.lines)

    return await _until_stopped(run)


async def _until_stopped(run: Callable[[socket.socket], Awaitable[str]]) -> Stopped:
    """``run`` a host on a listening socket that a client has already connected to.

    The kernel queues the client's connection and its request until the host accepts it;
    whatever the client received once the host has stopped shows whether it was ever served.
    """
    with _listening_socket() as sock:
        async with await anyio.connect_tcp("127.0.0.1", _port(sock)) as probe:
            await probe.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            report = await run(sock)
            sock.close()  # resets a connection still waiting in its queue
            answer = b""
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                while True:
                    answer += await probe.receive()
    return Stopped(answer, report)


# --- hypercorn (asyncio and Trio) -------------------------------------------------------------


class _PreboundConfig(hypercorn.config.Config):
    """A hypercorn Config serving our own pre-bound socket.

    ``bind = ["fd://N"]`` would make hypercorn wrap the same descriptor in a second socket
    object and close it, and our own object would close the number again later (by then
    possibly another file's). Handing hypercorn the socket object itself leaves one owner.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        # A Logger instance is used as is: no handlers installed on the global logger tree.
        self.errorlog = logging.getLogger("hypercorn.error")
        # After the shutdown trigger, open connections get this long to end (default 3 s).
        self.graceful_timeout = 1.0

    def create_sockets(self) -> hypercorn.config.Sockets:
        return hypercorn.config.Sockets(
            secure_sockets=[], insecure_sockets=[self._sock], quic_sockets=[]
        )


async def _serve_hypercorn(
    app: ASGIApp, config: hypercorn.config.Config, stop: anyio.Event
) -> None:
    # anyio's Event works on both loops, so one shutdown trigger serves both hypercorns.
    if sniffio.current_async_library() == "trio":
        await hypercorn.trio.serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    else:
        await hypercorn.asyncio.serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


@asynccontextmanager
async def hypercorn_server(app: ASGIApp) -> AsyncIterator[Listening]:
    """Serve ``app`` with hypercorn on the test's own event loop (asyncio or Trio)."""
    stop = anyio.Event()
    with _listening_socket() as sock:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_serve_hypercorn, app, _PreboundConfig(sock), stop)
            try:
                yield Listening(_port(sock))
            finally:
                stop.set()


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


async def hypercorn_until_stopped(app: ASGIApp) -> Stopped:
    """Run hypercorn until it stops by itself (a failed start-up): the error it raises."""

    async def run(sock: socket.socket) -> str:
        never = anyio.Event()  # no shutdown trigger: hypercorn has to stop on its own
        try:
            await _serve_hypercorn(app, _PreboundConfig(sock), never)
        except Exception as exc:  # hypercorn on Trio raises it inside an ExceptionGroup
            return "\n".join(f"{type(e).__name__}: {e}" for e in _leaves(exc))
        return "returned normally"

    return await _until_stopped(run)


# --- the hosts the parametrized tests run against ---------------------------------------------


@dataclass(frozen=True)
class Host:
    """One ASGI host as the parametrized tests see it."""

    name: str
    serve: Callable[[ASGIApp], AbstractAsyncContextManager[Listening]]
    until_stopped: Callable[[ASGIApp], Awaitable[Stopped]]
    trio: bool  # whether it runs on Trio too
    # How the host reports a failed start-up (beside wsapp's message naming the hook).
    startup_failure: str
    # Hypercorn hands the app every close the *client* starts as 1006 without a reason (it
    # drops the peer's close frame), so on_close cannot see the client's code there.
    reports_client_close_code: bool = True
    # The code the host closes still-open WebSockets with when it shuts down, if it does.
    closes_connections_on_shutdown: int | None = None
    marks: tuple[pytest.MarkDecorator, ...] = field(default=())


def _uvicorn_host(ws: str, *marks: pytest.MarkDecorator) -> Host:
    return Host(
        name=f"uvicorn-{ws}",
        serve=partial(uvicorn_server, ws=ws),
        until_stopped=partial(uvicorn_until_stopped, ws=ws),
        trio=False,
        startup_failure="exit code 3:",  # uvicorn's sys.exit(STARTUP_FAILURE)
        closes_connections_on_shutdown=1012,  # Service Restart
        marks=marks,
    )


HOSTS = [
    # uvicorn's "websockets" implementation is deprecated and built on the deprecated legacy
    # API of the websockets package: these are exactly the warnings using it raises.
    _uvicorn_host(
        "websockets",
        pytest.mark.filterwarnings("ignore:websockets.legacy is deprecated:DeprecationWarning"),
        pytest.mark.filterwarnings(
            "ignore:remove second argument of ws_handler:DeprecationWarning"
        ),
        pytest.mark.filterwarnings(
            "ignore:The `websockets` implementation is deprecated"
            ":uvicorn.config.UvicornDeprecationWarning"
        ),
    ),
    _uvicorn_host("websockets-sansio"),
    _uvicorn_host("wsproto"),
    Host(
        name="hypercorn",
        serve=hypercorn_server,
        until_stopped=hypercorn_until_stopped,
        trio=True,
        startup_failure="LifespanFailureError: Lifespan failure in startup.",
        reports_client_close_code=False,
    ),
]


# --- daphne (a subprocess: Twisted owns its process) ------------------------------------------


class Output:
    """The lines a subprocess prints, which a test can await."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = anyio.Event()

    def add(self, line: str) -> None:
        self.lines.append(line)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, prefix: str) -> str:
        """The first line starting with ``prefix``, once it is printed."""
        while True:
            for line in self.lines:
                if line.startswith(prefix):
                    return line
            await self._changed.wait()


async def _read_lines(process: Process, output: Output, errors: list[str]) -> None:
    assert process.stdout is not None and process.stderr is not None

    async def pump(stream: ByteReceiveStream, add: Callable[[str], None]) -> None:
        buffer = ""
        async for chunk in TextReceiveStream(stream):
            buffer += chunk
            *lines, buffer = buffer.split("\n")
            for line in lines:
                add(line)

    async with anyio.create_task_group() as tg:
        tg.start_soon(pump, process.stdout, output.add)
        tg.start_soon(pump, process.stderr, errors.append)


@dataclass
class Daphne:
    """A daphne process: where it listens and what the app in it prints on stdout."""

    listening: Listening
    output: Output
    errors: list[str]  # its stderr, for the failure message of a test


async def _stop(process: Process) -> None:
    """SIGTERM (Twisted stops its reactor), then SIGKILL if it has not exited within 5 s."""
    if process.returncode is None:
        process.terminate()
        with anyio.move_on_after(5):
            await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


@asynccontextmanager
async def daphne_server(app_path: str) -> AsyncIterator[Daphne]:
    """Serve ``app_path`` (``module:attribute``, importable from the repository root) with daphne.

    Daphne runs Twisted's reactor, which owns its process, so it runs as a subprocess. It is
    given our listening socket by file descriptor and is stopped when the block ends; its
    output is read to the end, so the test sees everything the app printed, even while
    daphne shut down.
    """
    output = Output()
    errors: list[str] = []
    with _listening_socket() as sock:
        command = [sys.executable, "-m", "daphne", "--fd", str(sock.fileno()), "-v", "0"]
        process = await anyio.open_process(
            [*command, app_path],
            cwd=ROOT,
            pass_fds=[sock.fileno()],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
        )
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_read_lines, process, output, errors)
                try:
                    yield Daphne(Listening(_port(sock)), output, errors)
                finally:
                    # Shielded: a test that failed or timed out must not leave daphne running.
                    with anyio.CancelScope(shield=True):
                        await _stop(process)
                # The readers end at the end of its output, once it has exited.
        except BaseException as exc:  # a failing test shows what daphne said
            exc.add_note("daphne's stderr:\n" + "\n".join(errors[-40:]))
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await _stop(process)  # in case starting the readers failed
                await process.aclose()


# --- plain HTTP -------------------------------------------------------------------------------


#: wsapp's answer to a plain HTTP request on a WebSocket route (426 Upgrade Required).
UPGRADE_REQUIRED = b"this is a WebSocket endpoint; send a WebSocket handshake\n"


@dataclass(frozen=True)
class Response:
    status: int
    headers: http.client.HTTPMessage  # case-insensitive lookups
    body: bytes


async def http_get(listening: Listening, path: str) -> Response:
    """A plain HTTP/1.1 GET, as a browser or curl would send it (no Upgrade)."""

    def get() -> Response:
        connection = http.client.HTTPConnection("127.0.0.1", listening.port, timeout=TIMEOUT)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return Response(response.status, response.headers, response.read())
        finally:
            connection.close()

    return await anyio.to_thread.run_sync(get, abandon_on_cancel=True)
