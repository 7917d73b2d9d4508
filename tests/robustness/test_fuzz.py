"""Fuzzing the wire: random and mutated frames after a handshake, and mutated handshakes.

Properties: the server never crashes, every connection ends (close frame or closed socket)
within a bound, on_close runs once per opened connection, and nothing leaks. One server
serves every example of a test. ``FUZZ_EXAMPLES=5000`` runs a long campaign (not named
``WSAPP_*``: wsapp claims that prefix for its settings).
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import wsapp
from tests.helpers import port, running
from tests.rawclient import OP_CLOSE, OP_PING, OP_PONG, RawClient, close_frame, frame, handshake
from tests.robustness.helpers import (
    Tally,
    eventually,
    open_fds,
    read_until_closed,
    send_until_refused,
    status_of,
    tally_app,
    task_count,
)
from wsapp.protocol import is_sendable

pytestmark = pytest.mark.anyio

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "50"))
ENDS_WITHIN = 5.0  # seconds for a connection to end once the client has said all it will
CLOSE_TIMEOUT = 0.5

# Hypothesis runs all the examples of a test inside one plain call, which the conftest deadline
# does not bound: each example's body carries its own (2 * ENDS_WITHIN + 5 seconds).
fuzz_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # write nothing into the repository
    # One server for all the examples of a test is the point, hence the shared fixture.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def task_names() -> list[str]:
    return sorted(str(task.name) for task in anyio.get_running_tasks())


class ErrorLog(logging.Handler):
    """Collects wsapp's ERROR records: a peer's bytes must never cause an internal error."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@dataclass
class Target:
    server: wsapp.Server
    tally: Tally
    errors: ErrorLog

    @property
    def port(self) -> int:
        return port(self.server)

    @asynccontextmanager
    async def leaves_no_trace(self) -> AsyncIterator[None]:
        """The block leaves no connection open, no fd or task behind, and on_close ran once
        per connection it opened."""
        fds, tasks, opened = open_fds(), task_names(), self.tally.opened
        errors = len(self.errors.messages)
        yield
        with anyio.fail_after(ENDS_WITHIN):
            await self.tally.wait_for_closes(self.tally.opened)
        # Handler tasks end a few scheduler turns after on_close.
        await eventually(lambda: (open_fds(), task_count()) == (fds, len(tasks)), 2)
        assert (open_fds(), task_names()) == (fds, tasks)
        assert self.tally.opened - opened <= 1
        assert self.tally.closed == self.tally.opened
        assert self.server.active_connections == 0
        assert self.errors.messages[errors:] == []


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    """A server shared by all the examples of one test; a crash fails the test's teardown."""
    tally = Tally()
    app = tally_app(tally, close_timeout=CLOSE_TIMEOUT, max_message_size=4096, ping_interval=None)
    errors = ErrorLog()
    logger = logging.getLogger("wsapp")
    logger.addHandler(errors)
    try:
        async with running(app) as server:
            yield Target(server, tally, errors)
            # The server still serves after everything it was fed:
            async with RawClient.connect(port(server)) as raw:
                await raw.send(close_frame(1000))
                assert await raw.read_close() == (1000, "")
    finally:
        logger.removeHandler(errors)


# Frames close to valid ones: any opcode, flags and length, masked or not.
frames = st.builds(
    frame,
    opcode=st.sampled_from([0, 1, 2, 8, 9, 10, 3, 11, 15]),
    payload=st.binary(max_size=300),
    fin=st.booleans(),
    rsv=st.integers(0, 7) | st.just(0),
    mask=st.booleans() | st.just(True),
)
close_frames = st.builds(
    lambda code, reason: frame(OP_CLOSE, struct.pack("!H", code) + reason),
    st.integers(0, 65535),
    st.binary(max_size=130),
)


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with a few bytes flipped, cut out or inserted."""
    data = bytearray(original)
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


# Found by these tests (both were wsapp bugs, now fixed); each is also a plain regression
# test below or in test_malformed_handshakes.py, and the fuzz tests replay them first.
PING_THEN_CLOSE = frame(OP_PING, b"are you there") + close_frame(1000)  # arriving in one read
NON_ASCII_KEY = handshake().replace(b"Sec-WebSocket-Key: ", b"Sec-WebSocket-Key:\xa0")

wire_after_handshake = st.one_of(
    st.binary(max_size=2000),  # noise
    st.lists(frames | close_frames, max_size=8).map(b"".join).flatmap(mutated),
)


@fuzz_settings
@given(after_handshake=wire_after_handshake)
@example(after_handshake=PING_THEN_CLOSE)
async def test_fuzzed_frames_never_crash_hang_or_leak(
    target: Target, after_handshake: bytes
) -> None:
    with anyio.fail_after(2 * ENDS_WITHIN + 5):
        async with target.leaves_no_trace(), RawClient.connect(target.port) as raw:
            with anyio.fail_after(ENDS_WITHIN):
                await send_until_refused(raw.stream, [after_handshake])
                await raw.stream.send_eof()  # all said: a server waiting for more must stop
                await raw.read_eof()  # reading all it sends, so none of its writes block


@fuzz_settings
@given(whole_frames=st.lists(frames | close_frames, max_size=8))
@example(whole_frames=[frame(OP_PING, b"")])
async def test_whole_frames_then_a_close_always_get_a_valid_close_back(
    target: Target, whole_frames: list[bytes]
) -> None:
    with anyio.fail_after(2 * ENDS_WITHIN + 5):
        async with target.leaves_no_trace(), RawClient.connect(target.port) as raw:
            with anyio.fail_after(ENDS_WITHIN):  # no half-close: the close frames must do
                await send_until_refused(raw.stream, [b"".join(whole_frames) + close_frame(1000)])
                code, reason = await raw.read_close()
                await raw.read_eof()
    assert is_sendable(code) or code == 1005, code
    assert len(reason.encode()) <= 123


handshakes = st.one_of(
    st.binary(max_size=600),
    st.builds(handshake).flatmap(mutated),
    st.builds(handshake, extra=st.text(max_size=200).map(lambda text: text + "\r\n")),
)


@fuzz_settings
@given(request=handshakes)
@example(request=NON_ASCII_KEY)
async def test_fuzzed_handshakes_get_101_or_4xx_and_never_crash_hang_or_leak(
    target: Target, request: bytes
) -> None:
    with anyio.fail_after(2 * ENDS_WITHIN + 5):
        async with (
            target.leaves_no_trace(),
            await anyio.connect_tcp("127.0.0.1", target.port) as stream,
        ):
            with anyio.fail_after(ENDS_WITHIN):
                await send_until_refused(stream, [request])
                await stream.send_eof()
                response = await read_until_closed(stream)
    status = status_of(response)
    if b"\r\n\r\n" in request:  # a whole request head deserves an answer
        assert status == 101 or (status is not None and 400 <= status < 500), response[:200]
    else:  # the head never ended: nothing to answer, the socket just closes
        assert response == b"", response[:200]


async def test_ping_then_close_in_one_read_get_a_pong_then_the_close(target: Target) -> None:
    with anyio.fail_after(ENDS_WITHIN):
        async with target.leaves_no_trace(), RawClient.connect(target.port) as raw:
            await raw.send(PING_THEN_CLOSE)
            # RFC 6455 5.5.2: a ping received before the close frame must be answered.
            assert await raw.read_frame() == (True, OP_PONG, b"are you there")
            assert await raw.read_close() == (1000, "")
            await raw.read_eof()
    assert target.tally.closes == {(True, 1000): 1}
