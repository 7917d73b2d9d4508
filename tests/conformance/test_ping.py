"""RFC 6455 sections 5.5.2 (ping) and 5.5.3 (pong), on the wire."""

from __future__ import annotations

import os

import pytest

from tests.conformance.wire import echoes
from tests.rawclient import OP_BINARY, OP_PING, OP_PONG, OP_TEXT, frame

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"", id="0-bytes"),
        pytest.param(b"ping", id="4-bytes"),
        pytest.param(os.urandom(125), id="125-random-bytes"),
        pytest.param(bytes(range(125)), id="125-binary-bytes"),
    ],
)
async def test_5_5_2_ping_is_answered_with_a_pong_carrying_the_same_payload(
    payload: bytes,
) -> None:
    await echoes(frame(OP_PING, payload), [(True, OP_PONG, payload)])


async def test_5_5_2_each_of_several_pings_gets_its_pong_in_order() -> None:
    pings = [str(i).encode() for i in range(10)]
    data = b"".join(frame(OP_PING, payload) for payload in pings)
    await echoes(data, [(True, OP_PONG, payload) for payload in pings])


@pytest.mark.parametrize("payload", [b"", b"unsolicited", b"u" * 125])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
async def test_5_5_3_unsolicited_pong_is_ignored(payload: bytes, opcode: int) -> None:
    # 5.5.3: "A response to an unsolicited Pong frame is not expected."
    data = frame(OP_PONG, payload) + frame(opcode, b"still open")
    trace = await echoes(data, [(True, opcode, b"still open")])
    assert trace.names().count("message") == 1
