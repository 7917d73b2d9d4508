"""RFC 6455 section 5.2 (base framing) and 5.3 (masking), on the wire."""

from __future__ import annotations

import struct

import pytest

from tests.conformance.wire import echoes, expect_failure, fails_with, frame_with_length, peer
from tests.helpers import Trace
from tests.rawclient import OP_BINARY, OP_TEXT, frame

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize(
    "length",
    [
        0,
        1,
        125,  # largest 7-bit length
        126,  # smallest 16-bit (126) length
        65535,  # largest 16-bit length
        65536,  # smallest 64-bit (127) length
        300_000,
    ],
)
async def test_5_2_payload_length_encodings_echo(opcode: int, length: int) -> None:
    payload = bytes(ord("a") + i % 26 for i in range(length))
    trace = await echoes(frame(opcode, payload), [(True, opcode, payload)])
    expected = payload.decode() if opcode == OP_TEXT else payload
    assert ("message", expected) in trace.events


async def test_5_3_masked_frames_echo_unmasked() -> None:
    # rawclient asserts that every frame read from the server has the mask bit clear.
    data = frame(OP_TEXT, b"masked") + frame(OP_BINARY, b"\x00\xff" * 10)
    await echoes(data, [(True, OP_TEXT, b"masked"), (True, OP_BINARY, b"\x00\xff" * 10)])


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, 0x9])
async def test_5_1_unmasked_client_frame_fails_with_1002(opcode: int) -> None:
    await fails_with(frame(opcode, b"unmasked", mask=False), 1002)


@pytest.mark.parametrize(
    ("length", "code", "field"),
    [
        pytest.param(0, 126, struct.pack("!H", 0), id="16bit-for-0"),
        pytest.param(125, 126, struct.pack("!H", 125), id="16bit-for-125"),
        pytest.param(5, 127, struct.pack("!Q", 5), id="64bit-for-5"),
        pytest.param(65535, 127, struct.pack("!Q", 65535), id="64bit-for-65535"),
    ],
)
async def test_5_2_non_minimal_length_encoding_fails_with_1002(
    length: int, code: int, field: bytes
) -> None:
    # 5.2: "the minimal number of bytes MUST be used to encode the length".
    await fails_with(frame_with_length(OP_BINARY, b"x" * length, code, field), 1002)


async def test_5_2_64bit_length_with_most_significant_bit_set_fails_with_1002() -> None:
    # 5.2: "the most significant bit MUST be 0".
    field = struct.pack("!Q", (1 << 63) | 5)
    await fails_with(frame_with_length(OP_BINARY, b"hello", 127, field), 1002)


@pytest.mark.parametrize("rsv", [0b100, 0b010, 0b001, 0b111])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, 0x9])
async def test_5_2_reserved_bits_without_extension_fail_with_1002(rsv: int, opcode: int) -> None:
    trace = await fails_with(frame(opcode, b"reserved", rsv=rsv), 1002)
    assert "message" not in trace.names()


@pytest.mark.parametrize("opcode", [*range(0x3, 0x8), *range(0xB, 0x10)])
async def test_5_2_reserved_opcodes_fail_with_1002(opcode: int) -> None:
    # 5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail_".
    await fails_with(frame(opcode, b"reserved opcode"), 1002)


async def test_5_2_reserved_opcode_after_a_valid_message_fails_with_1002_after_its_echo() -> None:
    # The message before the bad frame is answered first: the peer broke the protocol after it.
    trace = Trace()
    async with peer(trace) as raw:
        await raw.send(frame(OP_TEXT, b"first") + frame(0x5, b"then junk"))
        assert await raw.read_frame() == (True, OP_TEXT, b"first")
        await expect_failure(raw, trace, 1002)
    assert ("message", "first") in trace.events
