"""A minimal WebSocket client that sends hand-built frames, for wire-level tests."""

from __future__ import annotations

import base64
import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import SocketStream

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    key: bytes | None = None,
) -> bytes:
    """One frame as a client sends it (masked, with a random ``key`` unless given, unless
    told otherwise)."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if not mask:
        return head + payload
    key = os.urandom(4) if key is None else key
    repeated = (key * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        length, "big"
    )
    return head + key + masked


def close_frame(code: int | None = 1000, reason: str = "") -> bytes:
    payload = b"" if code is None else struct.pack("!H", code) + reason.encode()
    return frame(OP_CLOSE, payload)


def handshake(path: str = "/", host: str = "127.0.0.1", extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


class RawClient:
    """Speaks bytes to the server and parses what comes back."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.response_head = b""
        self.last_rsv = 0  # the RSV bits of the last frame read

    @classmethod
    @asynccontextmanager
    async def connect(cls, port: int, path: str = "/", extra: str = "") -> AsyncIterator[RawClient]:
        """A client past a successful handshake; the socket is closed after the block."""
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            yield await cls._opened(stream, path, extra)

    @classmethod
    @asynccontextmanager
    async def connect_unix(
        cls, socket_path: str, path: str = "/", *, send_buffer: int | None = None
    ) -> AsyncIterator[RawClient]:
        """`connect` over a unix socket. With ``send_buffer``, at most about that many bytes
        the server has not read yet wait in the kernel (a unix socket's buffer is the
        sender's, and not tuned by the kernel as TCP's are): what the peer could send then
        tells how much the server read."""
        async with await anyio.connect_unix(socket_path) as stream:
            if send_buffer is not None:
                sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
            yield await cls._opened(stream, path, "")

    @classmethod
    async def _opened(cls, stream: SocketStream, path: str, extra: str) -> RawClient:
        raw = cls(stream)
        await raw.stream.send(handshake(path, extra=extra))
        raw.response_head = await raw.read_until(b"\r\n\r\n")
        assert raw.response_head.startswith(b"HTTP/1.1 101"), raw.response_head
        return raw

    async def _fill(self) -> None:
        self.buffer += await self.stream.receive()

    async def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            await self._fill()
        end = self.buffer.index(marker) + len(marker)
        return self._take(end)

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            await self._fill()
        return self._take(n)

    def _take(self, n: int) -> bytes:
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    async def read_frame(self) -> tuple[bool, int, bytes]:
        """(fin, opcode, payload) of the next frame from the server."""
        first, second = await self.read_exactly(2)
        self.last_rsv = (first >> 4) & 0b111
        assert not second & 0x80, "server frames must not be masked"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.read_exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.read_exactly(8))
        return bool(first & 0x80), first & 0x0F, await self.read_exactly(length)

    async def read_close(self) -> tuple[int, str]:
        """Skip data frames until a close frame; its (code, reason)."""
        while True:
            _, opcode, payload = await self.read_frame()
            if opcode == OP_CLOSE:
                if not payload:
                    return 1005, ""
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    async def read_eof(self) -> None:
        """Wait until the server closes the TCP connection (discarding anything before)."""
        try:
            while True:
                await self._fill()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def reset(self) -> None:
        """Drop the TCP connection with an RST instead of a FIN."""
        sock = self.stream.extra(anyio.abc.SocketAttribute.raw_socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.stream.aclose()
