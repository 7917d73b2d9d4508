"""Accepting connections as byte streams, and reading them, as cheaply as each loop allows.

On Trio, anyio's socket streams are thin: a read is one `recv`, and their raw socket is the
kernel socket itself; reading that socket directly once it is readable (`receiver`) saves
an idle connection the frames of the calls it would otherwise wait in. On asyncio, anyio's
stream resumes and pauses the transport's reading around every `receive`, and its raw
socket is a wrapper that cannot send; the built-in server needs both to be cheap: it reads
continuously, and writes the frames of a whole tick straight to the socket (see
[wsapp.server.flusher][]). So on asyncio it accepts the sockets itself and serves them over
`ProtocolStream`, an anyio `SocketStream` over the loop's own transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, cast

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketListener, SocketStream

from wsapp.concurrency import running_asyncio

__all__ = ["STREAM_ERRORS", "ProtocolStream", "acceptor", "receiver"]

#: The most bytes one read of a socket takes (anyio's own default).
RECEIVE_SIZE = 65536
#: Bytes received and not yet read above which the stream stops reading from the socket, so
#: that a peer faster than its handler fills the kernel's buffers, then its own TCP window.
READ_LIMIT = 256 * 1024
#: What reading or writing a stream raises once its connection is gone.
STREAM_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class _StreamProtocol(asyncio.Protocol):
    """The loop's side of a `ProtocolStream`: what arrived, and whether writing may go on."""

    __slots__ = (
        "buffered",
        "eof",
        "error",
        "first",
        "lost",
        "paused_reading",
        "readable",
        "rest",
        "transport",
        "writable",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        # What arrived and is not read yet, oldest first: nearly always one chunk at most, so
        # it has a slot of its own, and the queue behind it (an empty deque costs 600 bytes on
        # every idle connection) is made only while more than one chunk waits.
        self.first: bytes | None = None
        self.rest: deque[bytes] | None = None
        self.buffered = 0
        self.paused_reading = False
        self.eof = False
        self.error: Exception | None = None
        self.lost = False
        self.readable: asyncio.Future[None] | None = None
        self.writable: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without deriving from it.
        self.transport = cast(asyncio.Transport, transport)
        # Writing waits until the loop's buffer is empty: the caller keeps the backlog.
        self.transport.set_write_buffer_limits(0)

    def data_received(self, data: bytes) -> None:
        if self.first is None:  # then nothing waits behind it either
            self.first = data
        else:
            if self.rest is None:
                self.rest = deque()
            self.rest.append(data)
        self.buffered += len(data)
        if self.buffered > READ_LIMIT and self.transport is not None:
            self.transport.pause_reading()
            self.paused_reading = True
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return True  # keep the socket open for writing: the stream's owner closes it

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = exc
        self._wake_reader()
        self.resume_writing()

    def pause_writing(self) -> None:
        if self.writable is None:
            self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        writable, self.writable = self.writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    def _wake_reader(self) -> None:
        readable, self.readable = self.readable, None
        if readable is not None and not readable.done():
            readable.set_result(None)


class ProtocolStream(SocketStream):
    """A connected socket served by an asyncio transport, as an anyio socket stream.

    Reading runs continuously (up to ``READ_LIMIT`` bytes ahead of the reader), and the
    ``raw_socket`` attribute is the socket itself: whoever sends on it directly must do so only
    while no `send` is in progress, since a `send` returns once the loop has written it all.
    """

    def __init__(self, sock: socket.socket, transport: asyncio.Transport, protocol: Any) -> None:
        self._socket = sock
        self._transport = transport
        self._protocol: _StreamProtocol = protocol
        self._closed = False

    @classmethod
    async def from_accepted(cls, sock: socket.socket) -> ProtocolStream:
        """Serve an accepted socket."""
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport, protocol = await asyncio.get_running_loop().connect_accepted_socket(
            _StreamProtocol, sock
        )
        return cls(sock, transport, protocol)

    @property
    def _raw_socket(self) -> socket.socket:  # what anyio's socket attributes are read from
        return self._socket

    async def receive(self, max_bytes: int = READ_LIMIT) -> bytes:
        # By default a whole chunk as the loop read it: splitting a large read into 64 KiB
        # pieces would copy the rest of it once per piece.
        protocol = self._protocol
        while protocol.first is None:
            if self._closed:
                raise anyio.ClosedResourceError
            if protocol.lost:
                if protocol.error is not None:
                    raise anyio.BrokenResourceError from protocol.error
                raise anyio.EndOfStream
            if protocol.eof:
                raise anyio.EndOfStream
            protocol.readable = asyncio.get_running_loop().create_future()
            await protocol.readable
        chunk = protocol.first
        rest = protocol.rest
        if len(chunk) > max_bytes:
            chunk, protocol.first = chunk[:max_bytes], chunk[max_bytes:]
        elif rest:
            protocol.first = rest.popleft()
            if not rest:
                protocol.rest = None
        else:
            protocol.first = None
        protocol.buffered -= len(chunk)
        if protocol.paused_reading and protocol.buffered <= READ_LIMIT // 2:
            protocol.paused_reading = False
            self._transport.resume_reading()
        return chunk

    async def send(self, item: bytes) -> None:
        protocol = self._protocol
        if self._closed:
            raise anyio.ClosedResourceError
        if protocol.lost or self._transport.is_closing():
            raise anyio.BrokenResourceError from protocol.error
        self._transport.write(item)
        if protocol.writable is not None:
            # Shielded: a send cancelled here (a write timeout) must not cancel the future the
            # next send waits on, which the loop resolves only when its buffer drains.
            await asyncio.shield(protocol.writable)
            if self._closed:
                raise anyio.ClosedResourceError
            if protocol.lost:
                raise anyio.BrokenResourceError from protocol.error
        else:
            await anyio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        with contextlib.suppress(OSError):
            self._transport.write_eof()

    async def aclose(self) -> None:
        self._closed = True
        self._transport.abort()
        self._protocol.resume_writing()
        await anyio.lowlevel.checkpoint()


def acceptor(listener: SocketListener) -> Callable[[], Awaitable[SocketStream]]:
    """The function that accepts the next connection of ``listener`` as a stream: anyio's own
    on Trio, a `ProtocolStream` on asyncio (and uvloop). Call it in the loop that serves."""
    if not running_asyncio():
        return listener.accept
    raw = listener.extra(SocketAttribute.raw_socket)
    loop = asyncio.get_running_loop()

    async def accept() -> SocketStream:
        try:
            sock, _ = await loop.sock_accept(raw)
        except asyncio.CancelledError:
            # A cancelled sock_accept leaves its reader registered on some versions
            # (python/cpython#85489): the next accept on this socket would then fail.
            with contextlib.suppress(ValueError, NotImplementedError, OSError):
                loop.remove_reader(raw)
            raise
        except OSError as exc:
            if raw.fileno() < 0:
                raise anyio.ClosedResourceError from exc
            raise
        try:
            return await ProtocolStream.from_accepted(sock)
        except BaseException:
            sock.close()
            raise

    return accept


def receiver(
    stream: ByteStream, raw_socket: socket.socket | None
) -> Callable[[], Awaitable[bytes]]:
    """The function that reads the next bytes of ``stream``, as its ``receive`` does: on
    Trio, given the ``raw_socket`` of a plain socket stream, one that waits for that socket
    to be readable and reads it; otherwise the stream's own. Call it in the loop that
    serves."""
    if raw_socket is None or running_asyncio():
        return stream.receive
    return partial(_receive_when_readable, raw_socket)


async def _receive_when_readable(sock: socket.socket) -> bytes:
    while True:
        try:
            data = sock.recv(RECEIVE_SIZE)
        except BlockingIOError:
            data = None  # wait below: awaiting in here would keep the exception meanwhile
        except OSError as exc:
            raise anyio.BrokenResourceError from exc
        if data is None:
            await anyio.wait_readable(sock)
            continue
        if not data:
            raise anyio.EndOfStream
        # As every read of a stream does: a peer that always has more to send must not
        # keep the other connections waiting.
        await anyio.lowlevel.checkpoint()
        return data
