"""RFC 7692 (permessage-deflate): negotiation, compressed frames and their RSV1 bit, on the wire."""

from __future__ import annotations

import os
import zlib
from typing import Any

import pytest

from tests.conformance.wire import close_cleanly, fails_with, peer, split
from tests.helpers import Trace
from tests.rawclient import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawClient
from tests.rawclient import frame as raw_frame

pytestmark = pytest.mark.anyio

TAIL = b"\x00\x00\xff\xff"
RSV1 = 0b100
COMPRESS = {"compression": True}


def offer(*params: str) -> str:
    return "Sec-WebSocket-Extensions: " + "; ".join(["permessage-deflate", *params]) + "\r\n"


def agreed(raw: RawClient) -> dict[str, str | None] | None:
    """The parameters of the permessage-deflate the 101 response accepted, or None."""
    lines = raw.response_head.decode("latin-1").split("\r\n")
    values = [
        line.split(":", 1)[1].strip()
        for line in lines
        if line.split(":", 1)[0].strip().lower() == "sec-websocket-extensions"
    ]
    if not values:
        return None
    assert len(values) == 1, values
    name, *params = (part.strip() for part in values[0].split(";"))
    assert name == "permessage-deflate"
    parsed: dict[str, str | None] = {}
    for param in params:
        key, eq, value = param.partition("=")
        assert key not in parsed, f"duplicate {key} in {values[0]!r}"  # RFC 7692 section 7
        parsed[key] = value.strip('"') if eq else None
    return parsed


class Deflater:
    """The client side of a compressed message stream (RFC 7692 section 7.2.1)."""

    def __init__(self, bits: int = 15, no_context_takeover: bool = False) -> None:
        self.bits = bits
        self.no_context_takeover = no_context_takeover
        self.compressor = zlib.compressobj(wbits=-bits)

    def compress(self, data: bytes) -> bytes:
        out = self.compressor.compress(data) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(TAIL)
        if self.no_context_takeover:
            self.compressor = zlib.compressobj(wbits=-self.bits)
        return out[:-4]


class Inflater:
    """Inflates the server's messages with the window it agreed to (RFC 7692 section 7.2.2)."""

    def __init__(self, bits: int = 15) -> None:
        self.decompressor = zlib.decompressobj(wbits=-bits)

    def inflate(self, payload: bytes) -> bytes:
        # Output is drained in slices smaller than any window, so that zlib checks every
        # back-reference against the agreed window ("invalid distance too far back").
        chunks, data = [], payload + TAIL
        while True:
            chunks.append(self.decompressor.decompress(data, 64))
            data = self.decompressor.unconsumed_tail
            if not data and len(chunks[-1]) < 64:
                return b"".join(chunks)


async def read_message(raw: RawClient, inflater: Inflater) -> tuple[int, bytes, bool]:
    """(opcode, data, was_compressed) of the next message, reassembling fragments."""
    fin, opcode, payload = await raw.read_frame()
    compressed = bool(raw.last_rsv & RSV1)
    assert raw.last_rsv & 0b011 == 0
    chunks = [payload]
    while not fin:
        fin, continuation, payload = await raw.read_frame()
        assert continuation == OP_CONT and raw.last_rsv == 0  # RSV1 on the first frame only
        chunks.append(payload)
    data = b"".join(chunks)
    return opcode, inflater.inflate(data) if compressed else data, compressed


async def round_trip(
    raw: RawClient, deflater: Deflater | None, inflater: Inflater, opcode: int, data: bytes
) -> bool:
    """Send ``data`` (compressed unless ``deflater`` is None) and assert the echo.

    Returns whether the echo was compressed.
    """
    if deflater is None:
        await raw.send(raw_frame(opcode, data))
    else:
        await raw.send(raw_frame(opcode, deflater.compress(data), rsv=RSV1))
    reply_opcode, reply, compressed = await read_message(raw, inflater)
    assert (reply_opcode, reply) == (opcode, data)
    return compressed


def far_repeats(distance: int) -> bytes:
    """Data whose only redundancy lies ``distance`` bytes back: a larger window would use it."""
    block = os.urandom(distance)
    return block * 4


# -- negotiation (RFC 7692 section 7.1) ------------------------------------------------------


async def test_7_plain_offer_is_accepted_and_messages_round_trip_compressed() -> None:
    trace = Trace()
    async with peer(trace, extra=offer(), **COMPRESS) as raw:
        assert agreed(raw) == {}
        deflater, inflater = Deflater(), Inflater()
        for data in [b"hello", b"hello", b"", b"x" * 70_000, "κόσμε".encode()]:
            assert await round_trip(raw, deflater, inflater, OP_TEXT, data)
        await close_cleanly(raw, trace)


async def test_7_1_1_1_server_no_context_takeover_is_accepted() -> None:
    trace = Trace()
    async with peer(trace, extra=offer("server_no_context_takeover"), **COMPRESS) as raw:
        # 7.1.1.1: the server accepts the offer by including the parameter.
        assert agreed(raw) == {"server_no_context_takeover": None}
        await close_cleanly(raw, trace)


async def test_7_1_1_2_client_no_context_takeover_is_honoured_or_ignored() -> None:
    trace = Trace()
    async with peer(trace, extra=offer("client_no_context_takeover"), **COMPRESS) as raw:
        params = agreed(raw)
        # 7.1.1.2: the server MAY include it, and may not add anything else.
        assert params in ({}, {"client_no_context_takeover": None})
        deflater, inflater = Deflater(no_context_takeover=True), Inflater()
        for _ in range(2):
            assert await round_trip(raw, deflater, inflater, OP_BINARY, b"same" * 50)
        await close_cleanly(raw, trace)


@pytest.mark.parametrize("bits", range(9, 16))
async def test_7_1_2_1_server_max_window_bits_is_accepted_and_honoured(bits: int) -> None:
    trace = Trace()
    async with peer(trace, extra=offer(f"server_max_window_bits={bits}"), **COMPRESS) as raw:
        params = agreed(raw)
        # 7.1.2.1: accepted by including the parameter with "the same or smaller value".
        assert params is not None and set(params) == {"server_max_window_bits"}
        value = params["server_max_window_bits"]
        assert value is not None and value.isdigit() and 8 <= int(value) <= bits
        # Back-references farther than the agreed window would break this inflater.
        inflater = Inflater(int(value))
        for distance in [(1 << bits) - 300, (1 << bits) + 300]:
            await round_trip(raw, Deflater(), inflater, OP_BINARY, far_repeats(distance))
        await close_cleanly(raw, trace)


@pytest.mark.parametrize(
    ("param", "limit"),
    [("client_max_window_bits", 15), *((f"client_max_window_bits={n}", n) for n in range(9, 16))],
)
async def test_7_1_2_2_client_max_window_bits_is_accepted(param: str, limit: int) -> None:
    trace = Trace()
    async with peer(trace, extra=offer(param), **COMPRESS) as raw:
        params = agreed(raw)
        # 7.1.2.2: the server MAY reply with a value no larger than the offer's, or omit it.
        assert params is not None and set(params) <= {"client_max_window_bits"}
        bits = limit
        if params:
            value = params["client_max_window_bits"]
            assert value is not None and value.isdigit() and 8 <= int(value) <= limit
            bits = int(value)
        await round_trip(raw, Deflater(bits), Inflater(), OP_TEXT, b"window " * 500)
        await close_cleanly(raw, trace)


async def test_7_1_2_2_server_limits_the_client_window_when_configured_to() -> None:
    trace = Trace()
    settings: dict[str, Any] = {**COMPRESS, "compression_client_max_window_bits": 10}
    async with peer(trace, extra=offer("client_max_window_bits"), **settings) as raw:
        assert agreed(raw) == {"client_max_window_bits": "10"}
        await round_trip(raw, Deflater(10), Inflater(), OP_TEXT, b"window " * 500)
        await close_cleanly(raw, trace)


async def test_7_1_2_1_server_max_window_bits_8_is_declined_or_accepted_as_8() -> None:
    # zlib cannot compress with a 256-byte window. RFC 7692 allows either declining the offer,
    # or accepting server_max_window_bits=8 (a value >= 8 and <= 8) and then sending messages
    # the client can inflate with a 256-byte window (uncompressed ones are always allowed,
    # 7.2.2 / 6). This test accepts both; it asserts the data still round-trips either way.
    trace = Trace()
    async with peer(trace, extra=offer("server_max_window_bits=8"), **COMPRESS) as raw:
        params = agreed(raw)
        assert params in (None, {"server_max_window_bits": "8"})
        deflater = None if params is None else Deflater()
        inflater = Inflater(8)
        for data in [b"eight " * 100, far_repeats(300)]:
            compressed = await round_trip(raw, deflater, inflater, OP_BINARY, data)
            assert params is not None or not compressed
        await close_cleanly(raw, trace)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param(("unknown_param",), id="unknown-param"),
        pytest.param(("x=1",), id="unknown-param-with-value"),
        pytest.param(("server_no_context_takeover",) * 2, id="duplicate-flag"),
        pytest.param(("client_no_context_takeover",) * 2, id="duplicate-client-flag"),
        pytest.param(
            ("server_max_window_bits=10", "server_max_window_bits=10"), id="duplicate-bits"
        ),
        pytest.param(("client_max_window_bits", "client_max_window_bits=9"), id="duplicate-cmwb"),
        pytest.param(("server_no_context_takeover=1",), id="flag-with-value"),
        pytest.param(("server_max_window_bits",), id="smwb-without-value"),
        *(
            pytest.param((f"server_max_window_bits={v}",), id=f"smwb-{v}")
            for v in ["7", "16", "0", "-1", "010", "1e1", "x", ""]
        ),
        *(
            pytest.param((f"client_max_window_bits={v}",), id=f"cmwb-{v}")
            for v in ["7", "16", "0", "x", ""]
        ),
    ],
)
async def test_7_1_invalid_offer_is_declined_and_the_connection_works_uncompressed(
    params: tuple[str, ...],
) -> None:
    # 7.1: a server MUST decline an offer with an unknown or duplicated parameter or an invalid
    # value; it then answers without permessage-deflate (the connection stays usable).
    trace = Trace()
    async with peer(trace, extra=offer(*params), **COMPRESS) as raw:
        assert agreed(raw) is None
        assert not await round_trip(raw, None, Inflater(), OP_TEXT, b"plain " * 20)
        await close_cleanly(raw, trace)


async def test_7_1_declined_offer_falls_back_to_the_next_offer() -> None:
    extra = "Sec-WebSocket-Extensions: permessage-deflate; bogus, permessage-deflate\r\n"
    trace = Trace()
    async with peer(trace, extra=extra, **COMPRESS) as raw:
        assert agreed(raw) == {}
        assert await round_trip(raw, Deflater(), Inflater(), OP_TEXT, b"second " * 20)
        await close_cleanly(raw, trace)


async def test_7_offer_is_declined_when_the_server_has_compression_off() -> None:
    trace = Trace()
    async with peer(trace, extra=offer()) as raw:
        assert agreed(raw) is None
        assert not await round_trip(raw, None, Inflater(), OP_TEXT, b"plain")
        await close_cleanly(raw, trace)


# -- compressed messages (RFC 7692 sections 6 and 7.2) -----------------------------------------


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("count", [2, 3, 10])
async def test_6_1_compressed_message_in_fragments_echoes_compressed(
    opcode: int, count: int
) -> None:
    data = b"a fragmented and compressed message. " * 40
    trace = Trace()
    async with peer(trace, extra=offer(), **COMPRESS) as raw:
        payload = Deflater().compress(data)
        step = len(payload) // count
        parts = split(payload, [step * i for i in range(1, count)])
        frames = [raw_frame(OP_CONT, part, fin=i == count - 1) for i, part in enumerate(parts)]
        frames[0] = raw_frame(opcode, parts[0], fin=False, rsv=RSV1)  # 6.1: first frame only
        frames.insert(1, raw_frame(OP_PING, b"between"))  # 5.4: control frames may interleave
        await raw.send(b"".join(frames))
        assert await raw.read_frame() == (True, OP_PONG, b"between")
        assert raw.last_rsv == 0
        assert await read_message(raw, Inflater()) == (opcode, data, True)
        await close_cleanly(raw, trace)
    assert trace.names().count("message") == 1


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
async def test_6_uncompressed_message_on_a_compressed_connection_echoes(opcode: int) -> None:
    # 6: RSV1 clear means the message is not compressed, which a sender may always choose.
    trace = Trace()
    async with peer(trace, extra=offer(), **COMPRESS) as raw:
        deflater, inflater = Deflater(), Inflater()
        await round_trip(raw, None, inflater, opcode, b"not compressed")
        assert await round_trip(raw, deflater, inflater, opcode, b"compressed " * 10)
        await round_trip(raw, None, inflater, opcode, b"not compressed again")
        await close_cleanly(raw, trace)


async def test_7_1_1_1_server_no_context_takeover_makes_identical_messages_identical() -> None:
    data = b"the very same message, twice over. " * 10
    trace = Trace()
    async with peer(trace, extra=offer("server_no_context_takeover"), **COMPRESS) as raw:
        replies = []
        for _ in range(2):
            await raw.send(raw_frame(OP_TEXT, Deflater().compress(data), rsv=RSV1))
            fin, opcode, payload = await raw.read_frame()
            assert (fin, opcode, raw.last_rsv) == (True, OP_TEXT, RSV1)
            assert Inflater().inflate(payload) == data  # each inflates on its own
            replies.append(payload)
        assert replies[0] == replies[1]
        await close_cleanly(raw, trace)


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param(
            [raw_frame(OP_TEXT, b"", fin=False), raw_frame(OP_CONT, b"", rsv=RSV1)],
            id="rsv1-on-continuation",
        ),
        pytest.param(
            [raw_frame(OP_TEXT, b"", fin=False, rsv=RSV1), raw_frame(OP_CONT, b"", rsv=RSV1)],
            id="rsv1-on-first-and-continuation",
        ),
        *(
            pytest.param([raw_frame(op, b"", rsv=RSV1)], id=f"rsv1-on-control-{op:#x}")
            for op in (OP_PING, OP_PONG, OP_CLOSE)
        ),
        *(
            pytest.param([raw_frame(OP_TEXT, b"", rsv=rsv)], id=f"rsv-{rsv:03b}-on-text")
            for rsv in (0b010, 0b001, 0b110)
        ),
    ],
)
async def test_6_1_misplaced_reserved_bits_fail_with_1002(frames: list[bytes]) -> None:
    # 6.1: RSV1 marks the first frame of a compressed data message, and nothing else;
    # permessage-deflate gives RSV2 and RSV3 no meaning (RFC 6455 5.2: fail the connection).
    trace = await fails_with(b"".join(frames), 1002, extra=offer(), **COMPRESS)
    assert "message" not in trace.names()


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
async def test_rsv1_without_negotiated_compression_fails_with_1002(opcode: int) -> None:
    # The client offers, compression is off on the server: nothing is negotiated, so RSV1 has
    # no meaning and RFC 6455 5.2 requires failing the connection.
    data = raw_frame(opcode, Deflater().compress(b"sneaky"), rsv=RSV1)
    trace = await fails_with(data, 1002, extra=offer())
    assert "message" not in trace.names()
