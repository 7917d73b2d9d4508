"""Slow-header (slowloris) clients: they must neither delay others nor linger."""

from __future__ import annotations

import time

import anyio
import pytest
from anyio.abc import ByteStream
from websockets.asyncio.client import connect

from tests.helpers import client, port, running, url
from tests.rawclient import handshake
from tests.robustness.helpers import PEER_GONE, Tally, read_until_closed, tally_app

pytestmark = pytest.mark.anyio

TRICKLERS = 500
HANDSHAKE_TIMEOUT = 3.0
BYTE_INTERVAL = 0.2  # a ~150-byte handshake would take ~30 s at this pace


async def echo_once(address: str) -> tuple[float, str | bytes, int | None]:
    """Seconds to open, echo and close; the reply; the close code."""
    start = time.monotonic()
    async with connect(address) as ws:
        await ws.send("hello")
        reply = await ws.recv()
    return time.monotonic() - start, reply, ws.close_code


async def trickle(stream: ByteStream) -> None:
    """Send a valid handshake one byte at a time, never finishing in time."""
    for byte in handshake():
        try:
            await stream.send(bytes([byte]))
        except PEER_GONE:
            return
        await anyio.sleep(BYTE_INTERVAL)


@pytest.mark.timeout(HANDSHAKE_TIMEOUT + 15)
async def test_slowloris_does_not_delay_a_normal_client_and_is_dropped_on_time() -> None:
    tally = Tally()
    lifetimes: list[float] = []  # seconds from connect until the server closed each socket
    answered: list[bytes] = []  # anything the server sent to a trickler
    connected = 0
    all_connected = anyio.Event()
    async with running(tally_app(tally, handshake_timeout=HANDSHAKE_TIMEOUT)) as server:

        async def slowloris() -> None:
            nonlocal connected
            async with await anyio.connect_tcp("127.0.0.1", port(server)) as stream:
                start = anyio.current_time()
                connected += 1
                if connected == TRICKLERS:
                    all_connected.set()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(trickle, stream)
                    answered.append(await read_until_closed(stream))
                    lifetimes.append(anyio.current_time() - start)
                    tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            for _ in range(TRICKLERS):
                tg.start_soon(slowloris)
            await all_connected.wait()
            elapsed, reply, code = await client(echo_once, url(server))
            dropped_before_the_client_finished = len(lifetimes)
        await tally.wait_for_closes(1)
    assert (reply, code) == ("hello", 1000)
    assert elapsed < 2.0, f"a normal handshake took {elapsed:.2f}s behind {TRICKLERS} slowlorises"
    assert dropped_before_the_client_finished == 0  # it was served while all of them trickled
    assert len(lifetimes) == TRICKLERS  # every one was dropped by the server
    # Not dropped early (the server's clock starts at accept, a bit before ours).
    assert min(lifetimes) >= HANDSHAKE_TIMEOUT - 0.5, min(lifetimes)
    assert max(lifetimes) <= HANDSHAKE_TIMEOUT + 3, max(lifetimes)
    assert not any(data.startswith(b"HTTP/1.1 101") for data in answered)
    assert tally.opened == 1 and tally.closes == {(True, 1000): 1}
