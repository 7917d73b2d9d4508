"""A burst of broadcasts from one tick is written before a member is judged too slow."""

from __future__ import annotations

import ssl
from typing import Any, Literal

import pytest
import trustme
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


async def read_everything(base: str, **options: Any) -> list[int]:
    """Join, start the burst and read as fast as the client can, until the burst is over or
    the server closes this member; the numbers of the messages received."""
    async with connect(base, max_size=None, max_queue=None, **options) as ws:
        await ws.send("go")
        received = []
        async for message in ws:
            if message == "done":
                break
            received.append(int(message[:8]))
        return received


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server's context and a client's that trusts it, for 127.0.0.1."""
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    return server_context, client_context


@pytest.mark.parametrize("on_slow", ["close", "drop"])
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.timeout(30)
async def test_a_member_reading_at_full_speed_receives_a_whole_burst(
    on_slow: Literal["close", "drop"], tls: bool
) -> None:
    app = bursting(on_slow)
    server_options: dict[str, Any] = {}
    client_options: dict[str, Any] = {}
    if tls:  # written by the connection's writer task, not at the end of the tick
        server_options["ssl_context"], client_options["ssl"] = tls_contexts()
    async with running(app, **server_options) as server:
        received = await client(read_everything, url(server), **client_options)
        assert received == list(range(COUNT))
        assert app.rooms.stats.slow_closes == 0
        assert app.rooms.stats.dropped == 0
