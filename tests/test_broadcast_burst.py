"""A burst of broadcasts from one tick is written before a member is judged too slow."""

from __future__ import annotations

from typing import Literal

import pytest
from websockets.asyncio.client import connect

import wsapp
from tests.helpers import client, running, url

pytestmark = pytest.mark.anyio

COUNT = 300
SIZE = 16 * 1024


def bursting(on_slow: Literal["close", "drop"]) -> wsapp.App:
    """Members of "feed"; a "go" makes the server broadcast COUNT messages in a loop that
    awaits nothing else (as an app relaying a batch does)."""
    app = wsapp.App(on_slow=on_slow)  # the default outbound_budget: 1 MiB, 64 messages

    @app.on_open
    async def enter(conn: wsapp.Connection) -> None:
        await conn.join("feed")

    @app.on_message
    async def go(conn: wsapp.Connection, message: str) -> None:
        for n in range(COUNT):
            await app.broadcast("feed", f"{n:08d}".ljust(SIZE, "."))
        await conn.send("done")  # behind the burst: a send waits for room, never skipped

    return app


async def read_everything(base: str) -> list[int]:
    """Join, start the burst and read as fast as the client can, until the burst is over or
    the server closes this member; the numbers of the messages received."""
    async with connect(base, max_size=None, max_queue=None) as ws:
        await ws.send("go")
        received = []
        async for message in ws:
            if message == "done":
                break
            received.append(int(message[:8]))
        return received


@pytest.mark.parametrize("on_slow", ["close", "drop"])
@pytest.mark.timeout(30)
async def test_a_member_reading_at_full_speed_receives_a_whole_burst(
    on_slow: Literal["close", "drop"],
) -> None:
    app = bursting(on_slow)
    async with running(app) as server:
        received = await client(read_everything, url(server))
        assert received == list(range(COUNT))
        assert app.rooms.stats.slow_closes == 0
        assert app.rooms.stats.dropped == 0
