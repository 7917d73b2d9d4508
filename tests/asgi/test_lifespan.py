"""Start-up and shutdown hooks through the ASGI `lifespan` scope of real hosts."""

from __future__ import annotations

import anyio
import pytest
from websockets.asyncio.client import connect

from tests.asgi.hosts import Host
from tests.helpers import ONE_CONNECTION_RUN, Trace, client, hooked_app

pytestmark = pytest.mark.anyio


async def greeting(address: str) -> str:
    async with connect(address) as ws:
        return str(await ws.recv())


async def test_hooks_run_in_order_around_the_connections(host: Host) -> None:
    trace = Trace()
    async with host.serve(hooked_app(trace)) as served:
        # The state a start-up hook set is what the first connection sees.
        assert await client(greeting, served.url()) == "hello from startup"
        await trace.closed.wait()
        assert "shutdown 1" not in trace.names()  # not before the host stops
    assert trace.names() == ONE_CONNECTION_RUN


async def test_shutdown_hooks_wait_for_open_connections_to_close(host: Host) -> None:
    trace = Trace()
    ended: list[int | None] = []

    async def stay(address: str) -> int | None:
        async with connect(address) as ws:
            await ws.recv()
            await ws.wait_closed()  # until the host closes it
            return ws.close_code

    async def stay_connected(address: str) -> None:
        ended.append(await client(stay, address))

    async with anyio.create_task_group() as tg:
        async with host.serve(hooked_app(trace)) as served:
            tg.start_soon(stay_connected, served.url())
            await trace.wait_for("open")
            # The host has stopped (its shutdown hooks ran) with the client still connected.
    assert trace.names()[-3:] == ["close", "shutdown 1", "shutdown 2"]
    assert len(ended) == 1
    if host.closes_connections_on_shutdown is not None:
        # uvicorn closes open WebSockets itself, and reports the close to the app.
        assert ended == [host.closes_connections_on_shutdown]
        assert trace.close_args == (True, host.closes_connections_on_shutdown, "")
    else:
        # Hypercorn gives them graceful_timeout to end, then cancels them: the connection is
        # lost without a closing handshake.
        assert trace.close_args == (False, 1006, "connection lost")


async def test_a_failing_startup_hook_keeps_the_host_from_serving(host: Host) -> None:
    trace = Trace()
    stopped = await host.until_stopped(hooked_app(trace, fail_startup=True))
    # A client that connected as the host started was never answered: it did not serve.
    assert stopped.answer == b""
    # What the operator reads names the hook and its error.
    assert "open_database' failed: ConnectionRefusedError: database unreachable" in stopped.report
    assert host.startup_failure in stopped.report
    # The hooks after the failed one never ran; nothing started, so nothing is shut down.
    assert trace.names() == ["startup 1"]
