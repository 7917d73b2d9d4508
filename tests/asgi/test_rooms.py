"""Rooms and broadcast under ASGI hosts: in one process (every host of tests/asgi/hosts.py), and
across the worker processes of `uvicorn --workers 2` through a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import wsapp
from examples import chat_rooms
from tests.asgi.hosts import Host
from tests.helpers import ROOT, RedisServer, client
from tests.rawclient import RawClient
from tests.test_broadcast_burst import COUNT, bursting, read_everything
from wsapp.rooms import TOO_SLOW

pytestmark = pytest.mark.anyio


async def test_broadcasts_reach_the_rooms_members_under_the_host(host: Host) -> None:
    async def talk(base: str) -> list[str]:
        async with (
            connect(f"{base}/rooms/lobby?name=ann") as ann,
            connect(f"{base}/rooms/lobby?name=bob") as bob,
        ):
            heard = [str(await ann.recv()), str(await bob.recv()), str(await ann.recv())]
            await bob.send('{"type": "say", "text": "hi"}')
            heard += [str(await ann.recv()), str(await bob.recv())]
        return heard

    async with host.serve(chat_rooms.app) as listening:
        heard = await client(talk, listening.url(""))
    assert heard == [
        '{"type":"here","room":"lobby","names":["ann"]}',
        '{"type":"here","room":"lobby","names":["ann","bob"]}',
        '{"type":"arrived","room":"lobby","name":"bob"}',
        '{"type":"said","room":"lobby","name":"bob","text":"hi"}',
        '{"type":"said","room":"lobby","name":"bob","text":"hi"}',
    ]
    assert chat_rooms.app.rooms.count("lobby") == 0


@asynccontextmanager
async def uvicorn_workers(broker: str) -> AsyncIterator[int]:
    """`uvicorn tests.apps.pids:app --workers 2` with the broker from the environment."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "uvicorn", "tests.apps.pids:app", "--workers", "2"]
    command += ["--port", str(port), "--ws", "websockets-sansio", "--log-level", "info"]
    process = await anyio.open_process(
        command,
        cwd=ROOT,
        env={**os.environ, "WSAPP_BROKER": broker, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        output, started = "", 0
        async for chunk in process.stdout:  # each worker says so once its lifespan ran
            output += chunk.decode()
            started = output.count("Application startup complete")
            if started == 2:
                break
        assert started == 2, output
        yield port
    finally:
        process.terminate()
        with anyio.CancelScope(shield=True):
            await process.wait()
        await process.aclose()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # (uvicorn runs on asyncio only)
@pytest.mark.timeout(40)
async def test_rooms_span_uvicorn_workers_through_redis(anyio_backend: str) -> None:
    async def talk(base: str) -> tuple[set[str], list[str]]:
        sockets = [await connect(base) for _ in range(16)]
        pids = {str(await ws.recv()) for ws in sockets}
        await sockets[0].send("hello, every worker")
        heard = await asyncio.gather(*(ws.recv() for ws in sockets))
        for ws in sockets:
            await ws.close()
        return pids, [str(message) for message in heard]

    async with RedisServer() as redis, uvicorn_workers(redis.url) as port:
        pids, heard = await client(talk, f"ws://127.0.0.1:{port}/")
    assert len(pids) == 2  # both workers took connections
    assert heard == ["hello, every worker"] * 16


async def test_a_member_that_stops_reading_is_closed_under_the_host(
    host: Host, anyio_backend: str
) -> None:
    if host.name == "hypercorn" and anyio_backend == "trio":
        pytest.skip("hypercorn's Trio worker shields its socket writes (see docs/asgi.md)")
    app = wsapp.App(outbound_budget=256 * 1024, close_timeout=0.5, write_timeout=30)
    closed = anyio.Event()
    codes: list[tuple[int, str]] = []

    @app.on_open
    async def enter(conn: wsapp.Connection) -> None:
        await conn.join("feed")

    @app.on_message
    async def ignore(conn: wsapp.Connection, message: wsapp.Message) -> None:
        """(An endpoint that reads nothing would close as soon as on_open returns.)"""

    @app.on_close
    async def left(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
        codes.append((code, reason))
        closed.set()

    async with host.serve(app) as served, RawClient.connect(served.port):
        with anyio.fail_after(10):
            while not closed.is_set():  # the host blocks its sends; pushes pile up in wsapp
                await app.broadcast("feed", b"x" * 65536)
                await anyio.lowlevel.checkpoint()
    assert codes == [(1008, TOO_SLOW)]
    assert app.rooms.stats.slow_closes == 1


async def test_a_broadcast_given_before_the_close_goes_out_before_it(host: Host) -> None:
    app = wsapp.App()

    @app.on_open
    async def enter(conn: wsapp.Connection) -> None:
        await conn.join("news")
        await app.broadcast("news", "last words")  # queued for the host to send
        await conn.close(4000, "that is all")

    async def listen(url: str) -> tuple[list[str], int | None]:
        heard = []
        async with connect(url) as ws:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    heard.append(str(await ws.recv()))
        return heard, ws.close_code

    async with host.serve(app) as served:
        heard, code = await client(listen, served.url("/"))
    assert (heard, code) == (["last words"], 4000)


@pytest.mark.timeout(30)
async def test_a_member_reading_at_full_speed_receives_a_whole_burst_under_the_host(
    host: Host,
) -> None:
    # Nothing reaches the host within the tick of the burst: the backlog is judged once the
    # host has had its turn at it.
    app = bursting("drop")
    async with host.serve(app) as listening:
        received = await client(read_everything, listening.url("/"))
    assert received == list(range(COUNT))
    assert app.rooms.stats.dropped == 0
