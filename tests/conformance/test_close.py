"""RFC 6455 sections 5.5.1 (close frames), 7.1.5-7.1.6 and 7.4 (status codes), on the wire."""

from __future__ import annotations

import pytest

from tests.conformance.wire import close_payload, fails_with, peer, read_frames_until_eof
from tests.helpers import Trace
from tests.rawclient import OP_BINARY, OP_CLOSE, OP_PING, OP_TEXT, close_frame, frame

pytestmark = pytest.mark.anyio

#: 7.4.1 defined codes a peer may send, the IANA-registered 1012-1014, and the 3000-4999 ranges.
VALID_CODES = [
    *(1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013),
    pytest.param(
        1014,  # "Bad Gateway", IANA WebSocket Close Code Number Registry (RFC 6455 11.7)
        marks=pytest.mark.xfail(
            strict=True,
            reason="wsapp (wsproto): fails the connection with 1002 on a registered close code "
            "1014 instead of echoing it",
        ),
    ),
    *(3000, 3999, 4000, 4999),
]

#: 7.4.1/7.4.2: below 1000 unused; 1004 reserved; 1005, 1006, 1015 never sent on the wire;
#: 1016-2999 unassigned protocol codes; 5000 and up undefined.
INVALID_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


async def test_5_5_1_empty_close_is_answered_with_an_empty_close() -> None:
    trace = Trace()
    async with peer(trace) as raw:
        await raw.send(frame(OP_CLOSE, b""))
        assert await read_frames_until_eof(raw) == [(True, OP_CLOSE, b"")]
        await trace.closed.wait()
    assert trace.close_args == (True, 1005, "")  # 7.1.5: no status code received


@pytest.mark.parametrize("code", VALID_CODES)
async def test_5_5_1_close_code_is_echoed_and_tcp_closed(code: int) -> None:
    trace = Trace()
    async with peer(trace) as raw:
        await raw.send(close_frame(code, "a reason"))
        frames = await read_frames_until_eof(raw)
        await trace.closed.wait()
    assert [(fin, op, payload[:2]) for fin, op, payload in frames] == [
        (True, OP_CLOSE, close_payload(code))
    ]
    assert trace.close_args == (True, code, "a reason")


async def test_5_5_1_close_reason_of_123_bytes_is_accepted() -> None:
    reason = "r" * 123  # with the code: 125 bytes, the largest control frame payload
    trace = Trace()
    async with peer(trace) as raw:
        await raw.send(close_frame(1000, reason))
        assert (await raw.read_close())[0] == 1000
        await raw.read_eof()
        await trace.closed.wait()
    assert trace.close_args == (True, 1000, reason)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        pytest.param(b"\x03", 1002, id="1-byte-payload"),
        pytest.param(close_payload(1000, b"r" * 124), 1002, id="126-byte-payload"),
        pytest.param(close_payload(1000, b"bad \xff utf-8"), 1007, id="invalid-utf8-reason"),
        pytest.param(close_payload(1000, b"\xed\xa0\x80"), 1007, id="surrogate-reason"),
        pytest.param(close_payload(1000, b"cut \xe2\x82"), 1007, id="truncated-reason"),
        *(pytest.param(close_payload(code), 1002, id=f"code-{code}") for code in INVALID_CODES),
    ],
)
async def test_7_4_invalid_close_frame_fails_the_connection(payload: bytes, code: int) -> None:
    await fails_with(frame(OP_CLOSE, payload), code)


@pytest.mark.parametrize(
    "after",
    [
        pytest.param(frame(OP_TEXT, b"too late"), id="text"),
        pytest.param(frame(OP_BINARY, b"too late"), id="binary"),
        pytest.param(frame(OP_PING, b"too late"), id="ping"),
        pytest.param(frame(OP_TEXT, b"too", fin=False) + frame(0, b" late"), id="fragmented"),
        pytest.param(frame(OP_PING, b"x") + frame(OP_TEXT, b"y") + close_frame(1000), id="many"),
    ],
)
async def test_5_5_1_frames_after_the_client_close_are_ignored(after: bytes) -> None:
    # 5.5.1: after sending a close frame, the endpoint MUST NOT send more data frames; the
    # server must neither echo nor answer pings once it has received our close.
    trace = Trace()
    async with peer(trace) as raw:
        await raw.send(close_frame(1000, "bye") + after)
        frames = await read_frames_until_eof(raw)
        await trace.closed.wait()
    assert frames == [(True, OP_CLOSE, close_payload(1000, b"bye"))]
    assert "message" not in trace.names()
    assert trace.close_args == (True, 1000, "bye")
