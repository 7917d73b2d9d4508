"""The socket transport's side of the Transport contract, over a real TCP connection: what
`push` (the path broadcasts take) puts on the wire, in which order, and when it refuses.

Each test runs twice: as the built-in server serves sockets (its stream, frames written by the
flusher at the end of each tick, the writer task finishing what the socket did not take), and
as it serves any other stream (every frame written by the writer task)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import pytest
from anyio.abc import SocketAttribute

import wsapp
from tests.rawclient import OP_BINARY, OP_TEXT, RawClient, close_frame
from wsapp.connection import Connection
from wsapp.inbox import Inbox
from wsapp.intake import Inbound, Intake
from wsapp.operations.metrics import Metrics
from wsapp.protocol import PreparedMessage
from wsapp.rooms import Rooms
from wsapp.server.flusher import Flusher
from wsapp.server.streams import acceptor
from wsapp.server.transport import SocketTransport
from wsapp.transport import OpenConnections

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("flushed", [True, False], ids=["flusher", "writer-task"]),
]

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example key


@dataclass
class Pair:
    transport: SocketTransport
    conn: Connection
    peer: RawClient
    inbox: Inbox[Inbound]


class Unhandled:
    """No callbacks handle the messages here: there is nothing to wait for."""

    async def catch_up(self, grace: float) -> None:
        return None


@asynccontextmanager
async def accepted(
    flushed: bool,
    settings: wsapp.Settings | None = None,
    wrap: Callable[[anyio.abc.ByteStream], anyio.abc.ByteStream] = lambda stream: stream,
) -> AsyncIterator[Pair]:
    """A SocketTransport past its handshake on one end of a TCP connection (its stream passed
    through ``wrap``), a raw client on the other, and the transport running."""
    settings = settings or wsapp.Settings()
    flusher = Flusher() if flushed else None
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listeners:
        port = listeners.extra(anyio.abc.SocketAttribute.local_port)
        listener = listeners.listeners[0]
        assert isinstance(listener, anyio.abc.SocketListener)
        async with (
            await anyio.connect_tcp("127.0.0.1", port) as client_end,
            anyio.create_task_group() as tg,
        ):
            server_end = await (acceptor(listener) if flushed else listener.accept)()
            stream = wrap(server_end)
            sock = server_end.extra(SocketAttribute.raw_socket) if stream is server_end else None
            transport = SocketTransport(
                stream, settings, KEY, flusher=flusher, tasks=tg, raw_socket=sock
            )
            request = wsapp.Request("GET", "/", "/", "", wsapp.Headers([("host", "x")]), None)
            rooms: Rooms[Connection] = Rooms()
            metrics = Metrics(rooms, OpenConnections())
            conn = Connection(request, settings, transport, rooms=rooms, metrics=metrics)
            assert not transport.opened
            assert await transport.accept(conn)
            assert transport.opened
            peer = RawClient(client_end)
            head = await peer.read_until(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
            assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
            inbox: Inbox[Inbound] = Inbox()
            if flusher is not None:
                tg.start_soon(flusher.run)
            intake = Intake(inbox, metrics, settings, "close", Unhandled())
            tg.start_soon(transport.run, intake)
            yield Pair(transport, conn, peer, inbox)
            tg.cancel_scope.cancel()


async def test_pushed_and_sent_messages_arrive_whole_and_in_the_order_given(flushed: bool) -> None:
    async with accepted(flushed) as pair:
        shared = PreparedMessage.of("to everyone")
        assert pair.transport.push(shared, 1 << 20)
        await pair.transport.send("to you")
        assert pair.transport.push(PreparedMessage.of(b"\x00" * 70000), 1 << 20)
        await pair.transport.send(b"bytes to you")
        assert await pair.peer.read_frame() == (True, OP_TEXT, b"to everyone")
        assert await pair.peer.read_frame() == (True, OP_TEXT, b"to you")
        assert await pair.peer.read_frame() == (True, OP_BINARY, b"\x00" * 70000)
        assert await pair.peer.read_frame() == (True, OP_BINARY, b"bytes to you")


async def test_a_burst_of_one_tick_is_queued_whole_and_a_message_larger_than_the_limit_never(
    flushed: bool,
) -> None:
    async with accepted(flushed) as pair:
        message = PreparedMessage.of("x" * 100)  # a 102-byte frame
        # Nothing can be written between pushes (push never waits): the peer has had no
        # chance to read, so what one tick pushes past the limit is not a slow peer's backlog.
        assert [pair.transport.push(message, 500) for _ in range(8)] == [True] * 8
        assert not pair.transport.push(PreparedMessage.of("y" * 600), 500)
        await pair.transport.send("after")
        for _ in range(8):
            assert await pair.peer.read_frame() == (True, OP_TEXT, b"x" * 100)
        assert await pair.peer.read_frame() == (True, OP_TEXT, b"after")


async def test_push_refuses_beyond_the_limit_once_the_peer_had_its_chance_queueing_nothing(
    flushed: bool,
) -> None:
    async with accepted(flushed) as pair:
        chunk = PreparedMessage.of(b"\x01" * (256 * 1024))
        for _ in range(40):  # more than loopback's socket buffers hold
            assert pair.transport.push(chunk, 1 << 30)
        # Once the flusher or the writer task wrote, the peer had its chance to read: it
        # read one message, and the rest still waiting is a slow peer's backlog.
        assert await pair.peer.read_frame() == (True, OP_BINARY, chunk.payload)
        assert pair.transport.unsent > 500
        assert not pair.transport.push(PreparedMessage.of("x" * 100), 500)
        for _ in range(39):
            assert await pair.peer.read_frame() == (True, OP_BINARY, chunk.payload)
        await pair.transport.send("after")  # next on the wire: the refused message is not
        assert await pair.peer.read_frame() == (True, OP_TEXT, b"after")


async def test_push_is_refused_once_the_connection_is_closing(flushed: bool) -> None:
    async with accepted(flushed) as pair:
        await pair.transport.close(1000, "bye")
        with pytest.raises(wsapp.ConnectionClosed):
            pair.transport.push(PreparedMessage.of("late"), 1 << 20)
        assert await pair.peer.read_close() == (1000, "bye")
        await pair.peer.send(close_frame(1000))
        await pair.peer.read_eof()
    outcome = pair.transport.outcome()
    assert (outcome.code, outcome.reason, outcome.was_clean) == (1000, "bye", True)


async def test_frames_the_socket_does_not_take_at_once_follow_in_order(flushed: bool) -> None:
    # More than loopback's socket buffers hold: the flusher writes what fits, the writer task
    # the rest, and nothing pushed or sent meanwhile overtakes it.
    async with accepted(flushed) as pair:
        chunk = 256 * 1024
        for index in range(40):
            assert pair.transport.push(PreparedMessage.of(bytes([index]) * chunk), 1 << 30)
        await anyio.lowlevel.checkpoint()  # the flusher's turn
        assert pair.transport.push(PreparedMessage.of("pushed last"), 1 << 30)
        sending = anyio.Event()

        async def send_last() -> None:
            sending.set()
            await pair.transport.send("sent last")

        async with anyio.create_task_group() as tg:
            tg.start_soon(send_last)
            await sending.wait()
            for index in range(40):
                assert await pair.peer.read_frame() == (True, OP_BINARY, bytes([index]) * chunk)
            assert await pair.peer.read_frame() == (True, OP_TEXT, b"pushed last")
            assert await pair.peer.read_frame() == (True, OP_TEXT, b"sent last")


def writer_tasks() -> int:
    return sum("_write_loop" in str(task.name) for task in anyio.get_running_tasks())


async def test_the_writer_task_ends_with_its_connection(flushed: bool) -> None:
    # The writer runs among the server's shared tasks (here, the group `accepted` runs the
    # transport in), and once it has written everything it waits for more: nothing but the
    # end of its connection may end it.
    async with accepted(flushed) as pair:
        chunk = PreparedMessage.of(b"\x01" * (256 * 1024))
        for _ in range(40):  # more than loopback's socket buffers hold: a writer is needed
            assert pair.transport.push(chunk, 1 << 30)
        for _ in range(40):
            assert await pair.peer.read_frame() == (True, OP_BINARY, chunk.payload)
        assert writer_tasks() == 1
        await pair.transport.close(1000, "bye")
        assert await pair.peer.read_close() == (1000, "bye")
        await pair.peer.send(close_frame(1000))
        await pair.peer.read_eof()  # the transport's run is over
        with anyio.fail_after(5):
            while writer_tasks():  # polled: a task's end is not announced
                await anyio.lowlevel.checkpoint()


class FailingAfterHandshake(anyio.abc.ByteStream):
    """A stream with a bug: it raises an unexpected error on every send after the first."""

    def __init__(self, inner: anyio.abc.ByteStream) -> None:
        self.inner = inner
        self.sends = 0

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        self.sends += 1
        if self.sends > 1:
            raise ValueError("a bug in the stream")
        await self.inner.send(item)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_an_unexpected_error_while_writing_drops_that_connection_only(
    flushed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # The writer runs among the server's shared tasks (here, the group `accepted` runs the
    # transport in): the group must survive, and the connection end as lost.
    with caplog.at_level(logging.ERROR, logger="wsapp"):
        async with accepted(flushed, wrap=FailingAfterHandshake) as pair:
            await pair.transport.send("never sent")
            await pair.peer.read_eof()
    outcome = pair.transport.outcome()
    assert (outcome.code, outcome.was_clean) == (1006, False)
    assert "writer of a connection failed" in caplog.text
