"""Shared helpers for the conformance tests: hand-built frames and assertions on the wire."""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio

from tests.helpers import Trace, port, running, traced_app
from tests.rawclient import OP_CONT, RawClient, close_frame, frame

Frame = tuple[bool, int, bytes]


def masked(payload: bytes, key: bytes) -> bytes:
    return bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))


def frame_with_length(opcode: int, payload: bytes, length_code: int, length_field: bytes) -> bytes:
    """A masked frame whose length is encoded exactly as given (RFC 6455 section 5.2),
    minimal or not: ``length_code`` is the 7-bit field, ``length_field`` the extended one."""
    key = os.urandom(4)
    return bytes([0x80 | opcode, 0x80 | length_code]) + length_field + key + masked(payload, key)


def split(payload: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``payload`` cut at the given offsets (ascending)."""
    bounds = [0, *cuts, len(payload)]
    return [payload[start:end] for start, end in itertools.pairwise(bounds)]


def fragmented(opcode: int, parts: Sequence[bytes], *, rsv: int = 0) -> bytes:
    """One message sent as ``parts``: ``opcode`` (and ``rsv``) on the first frame only."""
    last = len(parts) - 1
    return b"".join(
        frame(opcode if i == 0 else OP_CONT, part, fin=i == last, rsv=rsv if i == 0 else 0)
        for i, part in enumerate(parts)
    )


async def read_frames_until_eof(raw: RawClient) -> list[Frame]:
    """Every frame the server sends until it closes TCP."""
    frames: list[Frame] = []
    try:
        while True:
            frames.append(await raw.read_frame())
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        assert not raw.buffer, f"TCP closed in the middle of a frame: {bytes(raw.buffer)!r}"
        return frames


@asynccontextmanager
async def peer(trace: Trace, extra: str = "", **settings: Any) -> AsyncIterator[RawClient]:
    """Serve the echo app with ``settings`` and connect a raw client sending ``extra`` headers."""
    async with running(traced_app(trace, **settings)) as server:
        async with RawClient.connect(port(server), extra=extra) as raw:
            yield raw


async def close_cleanly(raw: RawClient, trace: Trace) -> None:
    """Close 1000 from our side: the server echoes it and closes TCP (RFC 6455 section 5.5.1)."""
    await raw.send(close_frame(1000))
    assert await raw.read_close() == (1000, "")
    await raw.read_eof()
    await trace.closed.wait()
    assert trace.close_args == (True, 1000, "")


async def expect_failure(raw: RawClient, trace: Trace, code: int) -> None:
    """The server fails the connection: close ``code``, then TCP closes without our reply."""
    assert (await raw.read_close())[0] == code
    await raw.read_eof()
    await trace.closed.wait()
    assert trace.close_args is not None and trace.close_args[:2] == (False, code)


async def fails_with(data: bytes, code: int, **settings: Any) -> Trace:
    """Send ``data`` to a fresh echo server and expect it to fail the connection with ``code``."""
    trace = Trace()
    async with peer(trace, **settings) as raw:
        await raw.send(data)
        await expect_failure(raw, trace, code)
    return trace


async def echoes(data: bytes, replies: Sequence[Frame], **settings: Any) -> Trace:
    """Send ``data`` to a fresh echo server, expect exactly ``replies``, then close cleanly."""
    trace = Trace()
    async with peer(trace, **settings) as raw:
        await raw.send(data)
        for reply in replies:
            assert await raw.read_frame() == reply
        await close_cleanly(raw, trace)
    return trace


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason
