"""Peers that stop reading or vanish: detected, dropped, and harmless to everyone else."""

from __future__ import annotations

import asyncio
import threading
import time

import anyio
import pytest
from websockets.asyncio.client import connect

import wsapp
from tests.helpers import Trace, client, port, running, traced_app, url
from tests.rawclient import OP_CLOSE, OP_PING, RawClient
from tests.robustness.helpers import MiB, PeakMemory

pytestmark = pytest.mark.anyio

WRITE_TIMEOUT = 0.5
FLOOD_MESSAGES = 256  # of 1 MiB each: what on_open attempts to send to a peer that never reads


async def echo_until(address: str, stop: threading.Event) -> tuple[int, float, bool]:
    """Echo numbered messages until ``stop`` is set, then five more.

    Returns how many echoed, the slowest round trip, and whether ``stop`` was ever seen.
    """
    slowest = 0.0
    count = 0
    async with connect(address) as ws:
        remaining = 5
        for count in range(1, 2001):  # paced below: at most ~10 s
            start = time.monotonic()
            await ws.send(f"m{count}")
            assert await ws.recv() == f"m{count}"
            slowest = max(slowest, time.monotonic() - start)
            if stop.is_set():
                remaining -= 1
                if remaining == 0:
                    break
            await asyncio.sleep(0.005)  # pacing, so that the loop bound is ~10 s
    return count, slowest, stop.is_set()


async def test_peer_that_stops_reading_gets_write_timeout_and_costs_no_memory() -> None:
    failures: list[BaseException] = []
    closes: dict[str, tuple[bool, int, str]] = {}
    echo_open = anyio.Event()
    flood_closed = anyio.Event()
    flood_closed_for_thread = threading.Event()  # the same, for the echo client's thread
    app = wsapp.App(write_timeout=WRITE_TIMEOUT, ping_interval=None)

    @app.on_open
    async def opened(conn: wsapp.Connection) -> None:
        if conn.request.path == "/echo":
            echo_open.set()
            return
        message = bytes(MiB)
        try:
            for _ in range(FLOOD_MESSAGES):
                await conn.send(message)
        except wsapp.WriteTimeout as exc:
            failures.append(exc)
            raise

    @app.on_message
    async def echo(conn: wsapp.Connection, message: wsapp.Message) -> None:
        await conn.send(message)

    @app.on_close
    async def closed(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
        closes[conn.request.path] = (was_clean, code, reason)
        if conn.request.path == "/flood":
            flood_closed.set()
            flood_closed_for_thread.set()

    async with running(app) as server, anyio.create_task_group() as tg:
        outcome: list[tuple[int, float, bool]] = []

        async def bystander() -> None:
            outcome.append(await client(echo_until, url(server, "/echo"), flood_closed_for_thread))

        tg.start_soon(bystander)
        await echo_open.wait()
        memory = PeakMemory()
        async with RawClient.connect(port(server), "/flood") as raw:  # and never reads
            with anyio.fail_after(WRITE_TIMEOUT + 5):
                await flood_closed.wait()
            await raw.read_eof()  # the server dropped the socket
    echoed, slowest, saw_the_flood_end = outcome[0]
    assert len(failures) == 1
    assert str(failures[0]).endswith(f"'write timed out after {WRITE_TIMEOUT}s')")
    assert closes["/flood"] == (False, 1006, f"write timed out after {WRITE_TIMEOUT}s")
    assert memory.growth < 40 * MiB, f"{memory} while sending a {FLOOD_MESSAGES} MiB flood"
    assert saw_the_flood_end  # the bystander was connected the whole time
    assert echoed > 5 and slowest < 1.0, (echoed, slowest)
    assert closes["/echo"] == (True, 1000, "")


PING_INTERVAL, PONG_TIMEOUT, CLOSE_TIMEOUT = 0.1, 0.2, 0.3


@pytest.mark.parametrize("reads", [False, True], ids=["reads-nothing", "reads-but-never-pongs"])
async def test_vanished_peer_is_detected_by_keepalive(reads: bool) -> None:
    trace = Trace()
    app = traced_app(
        trace, ping_interval=PING_INTERVAL, pong_timeout=PONG_TIMEOUT, close_timeout=CLOSE_TIMEOUT
    )
    bound = PING_INTERVAL + PONG_TIMEOUT + CLOSE_TIMEOUT + 1.0
    frames: list[tuple[int, bytes]] = []

    async def read_to_the_end(raw: RawClient) -> None:
        while (frames or [(0, b"")])[-1][0] != OP_CLOSE:
            _, opcode, payload = await raw.read_frame()
            frames.append((opcode, payload))
        await raw.read_eof()

    async with running(app) as server, RawClient.connect(port(server)) as raw:
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            if reads:
                tg.start_soon(read_to_the_end, raw)
            with anyio.fail_after(bound):
                await trace.closed.wait()
            detected_after = anyio.current_time() - start
            if not reads:
                await read_to_the_end(raw)
    assert trace.close_args == (False, 1011, f"no pong within {PONG_TIMEOUT}s")
    assert detected_after >= PING_INTERVAL + PONG_TIMEOUT
    assert frames[0][0] == OP_PING
    assert frames[-1] == (
        OP_CLOSE,
        (1011).to_bytes(2, "big") + f"no pong within {PONG_TIMEOUT}s".encode(),
    )
