"""Start-up and shutdown hooks with the built-in server (ASGI hosts: tests/asgi)."""

from __future__ import annotations

import signal
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect

import wsapp
from tests.helpers import (
    ONE_CONNECTION_RUN,
    Trace,
    client,
    hooked_app,
    run_cli,
    running,
    serving,
    url,
)

pytestmark = pytest.mark.anyio


async def test_hooks_run_in_order_around_the_connections() -> None:
    trace = Trace()

    async def greeting(address: str) -> Any:
        async with connect(address) as ws:
            return await ws.recv()

    async with running(hooked_app(trace)) as server:
        assert trace.names() == ["startup 1", "startup 2"]  # before serving
        assert await client(greeting, url(server)) == "hello from startup"
        await trace.wait_for("close")
    assert trace.names() == ONE_CONNECTION_RUN


async def test_shutdown_hooks_run_after_open_connections_are_closed() -> None:
    trace = Trace()

    async def stay(address: str) -> int | None:
        async with connect(address) as ws:
            await ws.wait_closed()
            return ws.close_code

    async with anyio.create_task_group() as tg, running(hooked_app(trace)) as server:
        codes: list[int | None] = []

        async def run_client() -> None:
            codes.append(await client(stay, url(server)))

        tg.start_soon(run_client)
        await trace.wait_for("open")
        server.shutdown()
    assert codes == [1001]
    assert trace.events[-3:] == [
        ("close", True, 1001, "server shutting down"),
        ("shutdown 1",),
        ("shutdown 2",),
    ]


async def test_a_failing_start_up_hook_stops_the_server_before_it_serves() -> None:
    app = wsapp.App()
    shutdowns: list[str] = []

    @app.on_startup
    async def connect_database() -> None:
        raise ConnectionRefusedError("database unreachable")

    @app.on_shutdown
    def close_database() -> None:
        shutdowns.append("ran")

    server = await app.create_server("127.0.0.1", 0)
    with pytest.raises(wsapp.LifespanError) as failed:
        await server.serve()
    assert str(failed.value) == (
        "start-up hook 'test_a_failing_start_up_hook_stops_the_server_before_it_serves"
        ".<locals>.connect_database' failed: ConnectionRefusedError: database unreachable"
    )
    # Nothing listens any more, and the shutdown of what never started is not run.
    host, port = server.urls[0].removeprefix("ws://").rsplit(":", 1)
    with pytest.raises(OSError, match=r"refused|connect"):
        await anyio.connect_tcp(host, int(port))
    assert shutdowns == []


async def test_every_shutdown_hook_runs_even_when_one_fails() -> None:
    app = wsapp.App()
    ran: list[str] = []

    @app.on_shutdown
    async def flush_cache() -> None:
        ran.append("flush")
        raise RuntimeError("cache gone")

    @app.on_shutdown
    async def close_pool() -> None:
        ran.append("pool")

    server = await app.create_server("127.0.0.1", 0)
    server.shutdown()  # serve starts up, then stops at once
    with pytest.raises(wsapp.LifespanError, match=r"shutdown hook\(s\) \['.*flush_cache'\]"):
        await server.serve()
    assert ran == ["flush", "pool"]


def test_hooks_with_parameters_are_refused_when_declared() -> None:
    app = wsapp.App()
    with pytest.raises(TypeError, match="must take no arguments; reach shared resources"):

        @app.on_startup
        def needs_app(app: wsapp.App) -> None:
            pass


def test_cli_exits_1_with_the_hook_named_when_start_up_fails() -> None:
    result = run_cli("tests.apps.hooks:app", "--port", "0", env={"HOOKS_FAIL": "startup"})
    assert result.returncode == 1
    assert (
        "wsapp: error: start-up hook 'open_pool' failed: "
        "ConnectionRefusedError: database unreachable" in result.stderr.splitlines()
    )
    assert "wsapp serving" not in result.stderr


@pytest.mark.parametrize(("fail", "exit_code"), [(None, 0), ("shutdown", 1)])
async def test_cli_runs_the_hooks_around_a_signal_shutdown(
    fail: str | None, exit_code: int
) -> None:
    env = {"HOOKS_FAIL": fail} if fail else {}
    async with serving("tests.apps.hooks:app", env=env) as served:
        assert served.stdout == ["startup"]
        served.process.send_signal(signal.SIGTERM)
    assert served.process.returncode == exit_code
    if fail:
        assert "wsapp: error: shutdown hook(s) ['close_pool'] failed" in "\n".join(served.stderr)
    else:
        assert served.stdout == ["startup", "shutdown"]
