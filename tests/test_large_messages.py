"""Large messages, size limits and permessage-deflate edge cases, on the wire."""

from __future__ import annotations

import os
import struct
import tracemalloc
import zlib

import anyio
import pytest

from tests.helpers import Trace, port, raw_peer, running, traced_app
from tests.rawclient import OP_BINARY, OP_CONT, OP_PING, OP_TEXT, RawClient, close_frame, frame

pytestmark = pytest.mark.anyio

SIXTEEN_MIB = 16 * 1024 * 1024
CLOSE_TIMEOUT = 0.5


def deflate(data: bytes, wbits: int = 15) -> bytes:
    compressor = zlib.compressobj(wbits=-wbits)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def inflate(data: bytes) -> bytes:
    return zlib.decompressobj(wbits=-15).decompress(data + b"\x00\x00\xff\xff")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("fragment_size", [None, 4096], ids=["one-frame", "4096-fragments"])
async def test_16_mib_messages_echo(opcode: int, fragment_size: int | None) -> None:
    payload = (b"0123456789abcdef" * (SIXTEEN_MIB // 16))[:SIXTEEN_MIB]
    payload = payload[:-3] + "é!".encode()  # a multi-byte character at the very end
    if fragment_size is None:
        frames = [frame(opcode, payload)]
    else:
        chunks = [payload[i : i + fragment_size] for i in range(0, len(payload), fragment_size)]
        frames = [
            frame(opcode if i == 0 else OP_CONT, chunk, fin=i == len(chunks) - 1)
            for i, chunk in enumerate(chunks)
        ]
    app = traced_app(Trace(), max_message_size=SIXTEEN_MIB)
    async with raw_peer(app) as raw:
        async with anyio.create_task_group() as tg:  # send and receive at the same time
            tg.start_soon(raw.send, b"".join(frames))
            assert await raw.read_frame() == (True, opcode, payload)
        await raw.send(close_frame(1000))
        assert await raw.read_close() == (1000, "")


async def test_over_the_limit_closes_with_1009_before_the_message_is_complete() -> None:
    trace = Trace()
    declared = 1 << 40  # a terabyte is announced; only a little more than the limit is sent
    header = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", declared) + b"\x00\x00\x00\x00"
    app = traced_app(trace, max_message_size=1 << 20, close_timeout=CLOSE_TIMEOUT)
    async with raw_peer(app) as raw:
        await raw.send(header + b"z" * ((1 << 20) + 1))
        assert await raw.read_close() == (1009, f"message over {1 << 20} bytes")
        # Our close frame would only be more of the terabyte's payload: the server cannot
        # see it, and drops the connection after close_timeout.
        start = anyio.current_time()
        await raw.read_eof()
        await trace.closed.wait()
    assert anyio.current_time() - start >= CLOSE_TIMEOUT - 0.1
    assert trace.close_args == (False, 1009, f"message over {1 << 20} bytes")
    assert "message" not in trace.names()


async def test_decompression_bomb_is_stopped_at_the_limit() -> None:
    trace = Trace()
    bomb = deflate(bytes(256 << 20))  # 256 MiB of zeros in about 256 KiB
    assert len(bomb) < 512 << 10
    offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    app = traced_app(trace, compression=True, max_message_size=1 << 20)
    async with running(app) as server:
        async with RawClient.connect(port(server), extra=offer) as raw:
            tracemalloc.start()
            try:
                await raw.send(frame(OP_BINARY, bomb, rsv=0b100))
                assert (await raw.read_close())[0] == 1009
                await raw.read_eof()
                await trace.closed.wait()
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert peak < 16 << 20, f"peak allocation {peak >> 20} MiB: the bomb was expanded"
    assert "message" not in trace.names()


async def test_compressed_fragmented_message_with_a_ping_between_fragments() -> None:
    text = ("ping in the middle " * 500).encode()
    compressed = deflate(text)
    third = len(compressed) // 3
    offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    async with running(traced_app(Trace(), compression=True)) as server:
        async with RawClient.connect(port(server), extra=offer) as raw:
            await raw.send(
                frame(OP_TEXT, compressed[:third], fin=False, rsv=0b100)
                + frame(OP_PING, b"mid")
                + frame(OP_CONT, compressed[third : 2 * third], fin=False)
                + frame(OP_CONT, compressed[2 * third :])
            )
            assert await raw.read_frame() == (True, 0xA, b"mid")
            fin, opcode, payload = await raw.read_frame()
            assert (fin, opcode, inflate(payload)) == (True, OP_TEXT, text)


async def test_eight_bit_server_window_is_accepted_and_replies_are_uncompressed() -> None:
    offer = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8\r\n"
    async with running(traced_app(Trace(), compression=True)) as server:
        async with RawClient.connect(port(server), extra=offer) as raw:
            assert b"server_max_window_bits=8" in raw.response_head
            text = os.urandom(8).hex().encode() * 100
            await raw.send(frame(OP_TEXT, deflate(text, wbits=9), rsv=0b100))
            assert await raw.read_frame() == (True, OP_TEXT, text)
            assert raw.last_rsv == 0  # sent uncompressed: we cannot honour an 8-bit window
