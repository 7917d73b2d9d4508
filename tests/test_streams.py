"""The built-in server's asyncio stream (`ProtocolStream`) over real TCP sockets.

asyncio only: on Trio the server serves anyio's own socket streams, which need no stand-in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketListener, SocketStream

from wsapp.server.streams import ProtocolStream, acceptor

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

MiB = 1 << 20


@asynccontextmanager
async def connected() -> AsyncIterator[tuple[SocketStream, SocketStream]]:
    """(the server's ProtocolStream, the client's stream) of one TCP connection."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listeners:
        listener = listeners.listeners[0]
        assert isinstance(listener, SocketListener)
        port = listener.extra(SocketAttribute.local_port)
        async with await anyio.connect_tcp("127.0.0.1", port) as client:
            server = await acceptor(listener)()
            assert isinstance(server, ProtocolStream)
            async with server:
                yield server, client


async def read_at_least(stream: SocketStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        data += await stream.receive()
    return bytes(data)


async def test_bytes_arrive_in_order_both_ways_and_the_end_is_seen() -> None:
    async with connected() as (server, client):
        await client.send(b"hello ")
        await client.send(b"server")
        assert await read_at_least(server, 12) == b"hello server"
        await server.send(b"x" * (3 * MiB))  # returns once the loop has written it all
        assert await read_at_least(client, 3 * MiB) == b"x" * (3 * MiB)
        await client.send_eof()
        with pytest.raises(anyio.EndOfStream):
            await server.receive()


async def test_a_send_cancelled_while_the_peer_does_not_read_leaves_the_stream_usable() -> None:
    async with connected() as (server, client):
        payload = b"y" * (16 * MiB)  # more than loopback's buffers hold
        with anyio.move_on_after(0.2) as waited:
            await server.send(payload)
        assert waited.cancelled_caught  # the peer reads nothing: the send could not finish

        async with anyio.create_task_group() as tg:
            tg.start_soon(server.send, b"end")  # waits for the same drain, then goes on
            received = await read_at_least(client, len(payload) + 3)
        assert received == payload + b"end"


async def test_reading_stops_at_the_limit_when_the_server_does_not_read() -> None:
    async with connected() as (server, client):
        sent = 0
        chunk = b"z" * 65536
        with anyio.move_on_after(0.5):
            while True:  # the client's sends block once both sides' buffers are full
                await client.send(chunk)
                sent += len(chunk)
        assert sent < 64 * MiB  # bounded: the server stopped reading from the socket
        # All of it arrives (and perhaps part of the send cut short by the timeout).
        received = await read_at_least(server, sent)
        assert received == b"z" * len(received)


async def test_many_chunks_read_in_small_pieces_come_out_whole_and_in_order() -> None:
    pattern = bytes(range(256)) * (4 * MiB // 256)
    async with connected() as (server, client), anyio.create_task_group() as tg:

        async def write_in_pieces() -> None:
            for start in range(0, len(pattern), 1000):
                await client.send(pattern[start : start + 1000])

        tg.start_soon(write_in_pieces)
        received = bytearray()
        while len(received) < len(pattern):
            piece = await server.receive(777)  # splits chunks; many wait behind one another
            assert len(piece) <= 777
            received += piece
        assert bytes(received) == pattern
