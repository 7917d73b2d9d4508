"""RFC 6455 section 5.4 (fragmentation) and 5.5 (control frames), on the wire."""

from __future__ import annotations

import pytest

from tests.conformance.wire import close_cleanly, echoes, fails_with, fragmented, peer, split
from tests.helpers import Trace
from tests.rawclient import OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT, frame

pytestmark = pytest.mark.anyio

PAYLOAD = b"fragmented message payload, " * 8  # 224 bytes


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("count", [2, 3, 224])
async def test_5_4_fragmented_message_echoes_as_one_message(opcode: int, count: int) -> None:
    step = len(PAYLOAD) // count
    parts = split(PAYLOAD, [step * i for i in range(1, count)])
    assert len(parts) == count
    trace = await echoes(fragmented(opcode, parts), [(True, opcode, PAYLOAD)])
    assert trace.names().count("message") == 1


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize(
    "parts",
    [
        pytest.param([b"", b"data"], id="empty-first"),
        pytest.param([b"da", b"", b"ta"], id="empty-middle"),
        pytest.param([b"data", b""], id="empty-last"),
        pytest.param([b"", b"", b""], id="all-empty"),
    ],
)
async def test_5_4_empty_fragments_are_fine(opcode: int, parts: list[bytes]) -> None:
    await echoes(fragmented(opcode, parts), [(True, opcode, b"".join(parts))])


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
async def test_5_4_pings_between_fragments_are_answered_at_once(opcode: int) -> None:
    # 5.4: control frames MAY be injected in the middle of a fragmented message.
    trace = Trace()
    async with peer(trace) as raw:
        await raw.send(frame(opcode, b"one ", fin=False) + frame(OP_PING, b"p1"))
        assert await raw.read_frame() == (True, OP_PONG, b"p1")  # before the message ends
        await raw.send(frame(OP_CONT, b"two ", fin=False) + frame(OP_PONG, b"unsolicited"))
        await raw.send(frame(OP_PING, b"p2") + frame(OP_PING, b""))
        assert await raw.read_frame() == (True, OP_PONG, b"p2")
        assert await raw.read_frame() == (True, OP_PONG, b"")
        await raw.send(frame(OP_CONT, b"three"))
        assert await raw.read_frame() == (True, opcode, b"one two three")
        await close_cleanly(raw, trace)
    assert trace.names().count("message") == 1


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(frame(OP_TEXT, b"a", fin=False) + frame(OP_TEXT, b"b"), id="text-in-text"),
        pytest.param(frame(OP_TEXT, b"a", fin=False) + frame(OP_BINARY, b"b"), id="binary-in-text"),
        pytest.param(
            frame(OP_BINARY, b"a", fin=False) + frame(OP_BINARY, b"b", fin=False),
            id="binary-in-binary-unfinished",
        ),
        pytest.param(
            frame(OP_BINARY, b"a", fin=False) + frame(OP_PING, b"") + frame(OP_TEXT, b"b"),
            id="text-in-binary-after-ping",
        ),
    ],
)
async def test_5_4_new_data_frame_inside_a_fragmented_message_fails_with_1002(
    data: bytes,
) -> None:
    trace = await fails_with(data, 1002)
    assert "message" not in trace.names()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(frame(OP_CONT, b"orphan"), id="first-frame"),
        pytest.param(frame(OP_CONT, b"orphan", fin=False), id="first-frame-unfinished"),
        pytest.param(frame(OP_TEXT, b"done") + frame(OP_CONT, b"orphan"), id="after-a-message"),
        pytest.param(
            fragmented(OP_TEXT, [b"do", b"ne"]) + frame(OP_CONT, b"orphan"),
            id="after-a-fragmented-message",
        ),
    ],
)
async def test_5_4_continuation_without_an_open_message_fails_with_1002(data: bytes) -> None:
    await fails_with(data, 1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, 0x8])
async def test_5_5_fragmented_control_frame_fails_with_1002(opcode: int) -> None:
    # 5.5: "All control frames ... MUST NOT be fragmented."
    data = frame(opcode, b"\x03\xe8part", fin=False) + frame(OP_CONT, b"rest")
    await fails_with(data, 1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, 0x8])
@pytest.mark.parametrize("length", [126, 65536])
async def test_5_5_control_frame_over_125_bytes_fails_with_1002(opcode: int, length: int) -> None:
    # 5.5: "All control frames MUST have a payload length of 125 bytes or less."
    payload = b"\x03\xe8" + b"x" * (length - 2)
    trace = await fails_with(frame(opcode, payload), 1002)
    assert "message" not in trace.names()
