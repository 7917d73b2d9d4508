"""The socket transport's side of the Transport contract, over a real TCP connection: what
`push` (the path broadcasts take) puts on the wire, in which order, and when it refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import pytest

import wsapp
from tests.rawclient import OP_BINARY, OP_TEXT, RawClient, close_frame
from wsapp.connection import Connection
from wsapp.inbox import Inbox
from wsapp.protocol import PreparedMessage
from wsapp.rooms import Rooms
from wsapp.server.transport import SocketTransport

pytestmark = pytest.mark.anyio

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example key


@dataclass
class Pair:
    transport: SocketTransport
    conn: Connection
    peer: RawClient
    inbox: Inbox


@asynccontextmanager
async def accepted(settings: wsapp.Settings | None = None) -> AsyncIterator[Pair]:
    """A SocketTransport past its handshake on one end of a TCP connection, a raw client on
    the other, and the transport running."""
    settings = settings or wsapp.Settings()
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with await anyio.connect_tcp("127.0.0.1", port) as client_end:
            server_end = await listener.listeners[0].accept()  # type: ignore[attr-defined]
            transport = SocketTransport(server_end, settings, KEY)
            request = wsapp.Request("GET", "/", "/", "", wsapp.Headers([("host", "x")]), None)
            conn = Connection(request, settings, transport, rooms=Rooms())
            assert not transport.opened
            assert await transport.accept(conn)
            assert transport.opened
            peer = RawClient(client_end)
            head = await peer.read_until(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
            assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
            inbox = Inbox()
            async with anyio.create_task_group() as tg:
                tg.start_soon(transport.run, inbox)
                yield Pair(transport, conn, peer, inbox)
                tg.cancel_scope.cancel()


async def test_pushed_and_sent_messages_arrive_whole_and_in_the_order_given() -> None:
    async with accepted() as pair:
        shared = PreparedMessage.of("to everyone")
        assert pair.transport.push(shared, 1 << 20)
        await pair.transport.send("to you")
        assert pair.transport.push(PreparedMessage.of(b"\x00" * 70000), 1 << 20)
        await pair.transport.send(b"bytes to you")
        assert await pair.peer.read_frame() == (True, OP_TEXT, b"to everyone")
        assert await pair.peer.read_frame() == (True, OP_TEXT, b"to you")
        assert await pair.peer.read_frame() == (True, OP_BINARY, b"\x00" * 70000)
        assert await pair.peer.read_frame() == (True, OP_BINARY, b"bytes to you")


async def test_push_refuses_beyond_the_limit_of_unsent_bytes_and_queues_nothing() -> None:
    async with accepted() as pair:
        message = PreparedMessage.of("x" * 100)  # a 102-byte frame
        # Nothing is written between pushes (push never waits), so the unsent bytes add up.
        results = [pair.transport.push(message, 500) for _ in range(6)]
        assert results == [True, True, True, True, False, False]
        assert not pair.transport.push(PreparedMessage.of("y" * 600), 500)  # larger than the limit
        await pair.transport.send("after")
        for _ in range(4):
            assert await pair.peer.read_frame() == (True, OP_TEXT, b"x" * 100)
        assert await pair.peer.read_frame() == (True, OP_TEXT, b"after")


async def test_push_is_refused_once_the_connection_is_closing() -> None:
    async with accepted() as pair:
        await pair.transport.close(1000, "bye")
        with pytest.raises(wsapp.ConnectionClosed):
            pair.transport.push(PreparedMessage.of("late"), 1 << 20)
        assert await pair.peer.read_close() == (1000, "bye")
        await pair.peer.send(close_frame(1000))
        await pair.peer.read_eof()
    outcome = pair.transport.outcome()
    assert (outcome.code, outcome.reason, outcome.was_clean) == (1000, "bye", True)
