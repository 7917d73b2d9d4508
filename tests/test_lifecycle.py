"""The lifecycle guarantees: callback order, and on_close once with the right arguments for
every way a connection can end."""

from __future__ import annotations

import contextlib
import logging

import anyio
import pytest
from websockets.asyncio.client import connect

import wsapp
from tests.helpers import Trace, client, port, raw_peer, running, traced_app, url
from tests.rawclient import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    RawClient,
    close_frame,
    frame,
)

pytestmark = pytest.mark.anyio


async def test_callbacks_run_in_order_and_on_close_once_on_client_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wsapp")
    trace = Trace()
    async with running(traced_app(trace)) as server:

        async def talk(address: str) -> list[str | bytes]:
            async with connect(address) as ws:
                replies = []
                messages: list[str | bytes] = ["one", b"two", "three"]
                for message in messages:
                    await ws.send(message)
                    replies.append(await ws.recv())
                await ws.close(1000, "bye")
                return replies

        assert await client(talk, url(server, "/chat")) == ["one", b"two", "three"]
        await trace.closed.wait()
    assert trace.names() == ["connect", "open", "message", "message", "message", "close"]
    assert trace.events[0] == ("connect", "/chat")
    assert trace.close_args == (True, 1000, "bye")
    conn_id = trace.events[1][1].id
    logged = [r.getMessage() for r in caplog.records if conn_id in r.getMessage()]
    assert logged[0].startswith(f"open {conn_id} /chat client=127.0.0.1:")
    assert logged[1].startswith(f"close {conn_id} /chat code=1000 clean=True duration=")


async def test_server_close_reports_its_code_and_the_client_sees_it() -> None:
    trace = Trace()
    async with running(traced_app(trace)) as server:

        async def talk(address: str) -> tuple[int | None, str | None]:
            async with connect(address) as ws:
                await ws.send("close-me")
                await ws.wait_closed()
                return ws.close_code, ws.close_reason

        assert await client(talk, url(server)) == (4000, "as you wish")
        await trace.closed.wait()
    assert trace.close_args == (True, 4000, "as you wish")


async def test_callback_exception_closes_with_1011_and_spares_other_connections(
    caplog: pytest.LogCaptureFixture,
) -> None:
    trace = Trace()
    caplog.set_level(logging.ERROR, logger="wsapp")
    async with running(traced_app(trace)) as server:

        async def talk(address: str) -> tuple[int | None, str]:
            async with connect(address) as bystander, connect(address) as victim:
                await victim.send("fail")
                await victim.wait_closed()
                await bystander.send("still here")
                return victim.close_code, str(await bystander.recv())

        assert await client(talk, url(server)) == (1011, "still here")
        await trace.wait_for("close", 2)
    assert ("close", True, 1011, "internal error") in trace.events
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "RuntimeError: boom" in (errors[0].exc_text or "")


async def test_oversized_message_closes_with_1009() -> None:
    trace = Trace()
    async with running(traced_app(trace, max_message_size=1000)) as server:

        async def talk(address: str) -> int | None:
            async with connect(address) as ws:
                await ws.send("x" * 1000)
                assert await ws.recv() == "x" * 1000  # exactly the limit is fine
                await ws.send("x" * 1001)
                await ws.wait_closed()
                return ws.close_code

        assert await client(talk, url(server)) == 1009
        await trace.closed.wait()
    assert trace.close_args is not None and trace.close_args[:2] == (True, 1009)


async def test_fragmented_oversized_message_closes_with_1009_without_buffering_it() -> None:
    trace = Trace()
    async with raw_peer(traced_app(trace, max_message_size=1000)) as raw:
        await raw.send(frame(OP_BINARY, b"a" * 600, fin=False))
        await raw.send(frame(0, b"a" * 600, fin=False))
        assert (await raw.read_close())[0] == 1009
        await raw.send(close_frame(1009))
        await raw.read_eof()
        await trace.closed.wait()
    assert "message" not in trace.names()
    assert trace.close_args is not None and trace.close_args[:2] == (True, 1009)


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([frame(OP_TEXT, b"ok \xff\xfe")], 1007),  # invalid UTF-8
        ([frame(OP_TEXT, b"\xe2\x82", fin=False), frame(0, b"(")], 1007),  # split across frames
        ([frame(OP_TEXT, b"reserved bit", rsv=0b010)], 1002),
        ([frame(0x3, b"unknown opcode")], 1002),
        ([frame(0, b"continuation of nothing")], 1002),
        ([frame(OP_PING, b"x" * 126)], 1002),  # control frame over 125 bytes
        ([frame(OP_TEXT, b"unmasked", mask=False)], 1002),
    ],
)
async def test_protocol_violations_fail_the_connection(frames: list[bytes], code: int) -> None:
    trace = Trace()
    async with raw_peer(traced_app(trace)) as raw:
        await raw.send(b"".join(frames))
        assert (await raw.read_close())[0] == code
        await raw.read_eof()  # failed at once, without waiting for our close frame
        await trace.closed.wait()
    assert trace.close_args is not None and trace.close_args[:2] == (False, code)
    assert "message" not in trace.names()


BAD_FRAMES = [
    pytest.param(frame(0x5, b"reserved opcode"), 1002, id="reserved-opcode"),
    pytest.param(frame(OP_TEXT, b"unmasked", mask=False), 1002, id="unmasked"),
    pytest.param(frame(OP_TEXT, b"reserved bit", rsv=0b010), 1002, id="reserved-bit"),
    pytest.param(frame(OP_TEXT, b"ok \xff\xfe"), 1007, id="invalid-utf8"),
]


async def read_close_code(raw: RawClient) -> int:
    """The code of the next frame, which must be a close frame (not a data frame)."""
    _, opcode, payload = await raw.read_frame()
    assert opcode == OP_CLOSE, (opcode, payload)
    return int.from_bytes(payload[:2], "big")


@pytest.mark.parametrize(("bad", "code"), BAD_FRAMES)
async def test_messages_read_before_a_protocol_error_are_answered_before_the_failing_close(
    bad: bytes, code: int
) -> None:
    trace = Trace()
    async with raw_peer(traced_app(trace)) as raw:
        # One chunk: the server reads the messages and the bad frame together.
        await raw.send(frame(OP_TEXT, b"first") + frame(OP_BINARY, b"second") + bad)
        assert await raw.read_frame() == (True, OP_TEXT, b"first")
        assert await raw.read_frame() == (True, OP_BINARY, b"second")
        assert await read_close_code(raw) == code
        await raw.read_eof()  # failed, without waiting for our close frame
        await trace.closed.wait()
    assert trace.close_args is not None and trace.close_args[:2] == (False, code)


async def test_messages_read_before_a_message_over_the_limit_are_answered_before_the_1009() -> None:
    trace = Trace()
    async with raw_peer(traced_app(trace, max_message_size=100)) as raw:
        await raw.send(frame(OP_TEXT, b"first") + frame(OP_TEXT, b"x" * 101))
        assert await raw.read_frame() == (True, OP_TEXT, b"first")
        assert await read_close_code(raw) == 1009
        await raw.send(close_frame(1009))  # a closing handshake: the server waits for ours
        await raw.read_eof()
        await trace.closed.wait()
    assert trace.close_args is not None and trace.close_args[:2] == (True, 1009)


async def test_a_close_asked_for_meanwhile_gives_way_to_the_failing_close() -> None:
    trace = Trace()
    async with raw_peer(traced_app(trace)) as raw:
        await raw.send(frame(OP_TEXT, b"first") + frame(OP_TEXT, b"close-me") + frame(0x5))
        assert await raw.read_frame() == (True, OP_TEXT, b"first")
        assert await read_close_code(raw) == 1002  # not the 4000 the handler asked for
        await raw.read_eof()
        await trace.closed.wait()
    assert trace.close_args is not None and trace.close_args[:2] == (False, 1002)


async def test_in_the_reading_form_the_replies_come_before_the_failing_close_too() -> None:
    app = wsapp.App()
    ended = anyio.Event()

    @app.on_open
    async def echo_all(conn: wsapp.Connection) -> None:
        async for message in conn:
            await conn.send(message)
        await conn.send("after the last one")  # the loop ended: still before the close
        ended.set()

    async with raw_peer(app) as raw:
        await raw.send(frame(OP_TEXT, b"first") + frame(0x5))
        assert await raw.read_frame() == (True, OP_TEXT, b"first")
        assert await raw.read_frame() == (True, OP_TEXT, b"after the last one")
        assert await read_close_code(raw) == 1002  # not the 1000 of on_open returning
        await raw.read_eof()
        await ended.wait()


def stuck_app(trace: Trace) -> wsapp.App:
    """An app (close_timeout 0.2 s) whose `on_message` never returns, even when its
    connection ends; ``trace`` records "message", "cancelled" and the close."""
    app = wsapp.App(close_timeout=0.2)

    @app.on_message
    async def stuck(conn: wsapp.Connection, message: wsapp.Message) -> None:
        trace.add("message")
        try:
            await anyio.sleep_forever()
        finally:
            trace.add("cancelled")

    @app.on_close
    async def closed(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
        trace.record_close(was_clean, code, reason)

    return app


async def test_a_callback_that_never_returns_holds_the_failing_close_up_to_close_timeout() -> None:
    trace = Trace()
    app = stuck_app(trace)
    async with raw_peer(app) as raw:
        await raw.send(frame(OP_TEXT, b"hang") + frame(0x5))
        assert await read_close_code(raw) == 1002
        await raw.read_eof()
        await trace.closed.wait()
    assert trace.names() == ["message", "cancelled", "close"]
    assert trace.close_args is not None and trace.close_args[:2] == (False, 1002)


async def test_a_message_in_hand_when_the_bad_frame_arrives_is_answered_before_the_close() -> None:
    started, release = anyio.Event(), anyio.Event()
    app = wsapp.App()

    @app.on_message
    async def slow(conn: wsapp.Connection, message: str) -> None:
        started.set()
        await release.wait()
        await conn.send(f"done: {message}")

    async with raw_peer(app) as raw:
        await raw.send(frame(OP_TEXT, b"first"))
        await started.wait()  # taken from the inbox: the bad frame comes in a later read
        await raw.send(frame(0x5))
        await anyio.wait_all_tasks_blocked()  # the server has read it, and holds its close
        release.set()
        assert await raw.read_frame() == (True, OP_TEXT, b"done: first")
        assert await read_close_code(raw) == 1002
        await raw.read_eof()


async def test_an_on_open_with_nothing_queued_does_not_hold_the_failing_close() -> None:
    # A push stream in on_open reads nothing: there is nothing to answer first, so the close
    # does not wait for it (its close_timeout would outlast this test), and the stream ends as
    # at any close, its next send raising ConnectionClosed.
    trace = Trace()
    app = wsapp.App(close_timeout=60)

    @app.on_open
    async def push(conn: wsapp.Connection) -> None:
        trace.add("open")
        try:
            while True:
                await conn.send("tick")
                await anyio.sleep(0.01)
        except wsapp.ConnectionClosed:
            trace.add("ended")
            raise

    @app.on_close
    async def closed(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
        trace.record_close(was_clean, code, reason)

    async with raw_peer(app) as raw:
        await trace.wait_for("open")
        await raw.send(frame(0x5))
        assert (await raw.read_close())[0] == 1002  # after some ticks
        await raw.read_eof()
        await trace.closed.wait()
    assert trace.names() == ["open", "ended", "close"]
    assert trace.close_args is not None and trace.close_args[:2] == (False, 1002)


async def test_messages_before_the_peers_close_are_handled_and_the_close_answered_at_once() -> None:
    # The peer said it is done: its close is answered as soon as read (RFC 6455 5.5.1), and
    # the messages before it are still handled, but their replies can no longer be sent.
    trace = Trace()
    async with raw_peer(traced_app(trace)) as raw:
        await raw.send(frame(OP_TEXT, b"first") + close_frame(1000))
        assert await read_close_code(raw) == 1000  # no echo before it
        await raw.read_eof()
        await trace.closed.wait()
    assert ("message", "first") in trace.events
    assert trace.close_args == (True, 1000, "")


async def test_tcp_reset_reports_1006() -> None:
    trace = Trace()
    async with raw_peer(traced_app(trace)) as raw:
        await raw.send(frame(OP_TEXT, b"hi"))
        assert await raw.read_frame() == (True, OP_TEXT, b"hi")
        await raw.reset()
        await trace.closed.wait()
    assert trace.close_args is not None and trace.close_args[:2] == (False, 1006)


async def test_pong_timeout_closes_with_1011() -> None:
    trace = Trace()
    app = traced_app(trace, ping_interval=0.05, pong_timeout=0.2, close_timeout=0.5)
    async with raw_peer(app) as raw:
        _, opcode, _ = await raw.read_frame()
        assert opcode == OP_PING  # and we never answer it
        assert await raw.read_close() == (1011, "no pong within 0.2s")
        await raw.read_eof()  # dropped after close_timeout: we never answered the close
        await trace.closed.wait()
    assert trace.close_args == (False, 1011, "no pong within 0.2s")


async def test_keepalive_answered_keeps_the_connection_open() -> None:
    trace = Trace()
    app = traced_app(trace, ping_interval=0.05, pong_timeout=0.5)
    async with raw_peer(app) as raw:
        for _ in range(3):
            _, opcode, payload = await raw.read_frame()
            assert opcode == OP_PING
            await raw.send(frame(0xA, payload))
        await raw.send(frame(OP_TEXT, b"alive"))
        while (frame_ := await raw.read_frame())[1] == OP_PING:
            await raw.send(frame(0xA, frame_[2]))
        assert frame_ == (True, OP_TEXT, b"alive")
        await raw.send(close_frame(1000))
        assert await raw.read_close() == (1000, "")
        await trace.closed.wait()
    assert trace.close_args == (True, 1000, "")


async def test_server_answers_pings_with_the_same_payload() -> None:
    trace = Trace()
    async with raw_peer(traced_app(trace)) as raw:
        await raw.send(frame(OP_PING, b"are you there"))
        assert await raw.read_frame() == (True, 0xA, b"are you there")
        await raw.send(close_frame(1001, "leaving"))
        assert await raw.read_close() == (1001, "leaving")
        await raw.read_eof()
        await trace.closed.wait()
    assert trace.close_args == (True, 1001, "leaving")


async def test_write_timeout_raises_and_drops_the_connection() -> None:
    trace = Trace()
    failures: list[BaseException] = []
    app = wsapp.App(write_timeout=0.3, ping_interval=None)

    @app.on_open
    async def flood(conn: wsapp.Connection) -> None:
        try:
            while True:  # the peer never reads: socket buffers fill, then send must give up
                await conn.send(b"x" * 65536)
        except wsapp.WriteTimeout as exc:
            failures.append(exc)
            raise

    @app.on_close
    async def closed(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
        trace.record_close(was_clean, code, reason)

    async with raw_peer(app) as raw:
        await trace.closed.wait()
        await raw.stream.aclose()
    assert len(failures) == 1 and "write timed out after 0.3s" in str(failures[0])
    assert trace.close_args == (False, 1006, "write timed out after 0.3s")


async def test_close_reply_that_cannot_be_delivered_is_not_clean() -> None:
    trace = Trace()
    app = wsapp.App(write_timeout=0.3, ping_interval=None)

    @app.on_open
    async def flood(conn: wsapp.Connection) -> None:
        with contextlib.suppress(wsapp.ConnectionClosed):
            await conn.send(b"x" * (32 << 20))  # far more than socket buffers hold

    @app.on_close
    async def closed(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
        trace.record_close(was_clean, code, reason)

    async with raw_peer(app) as raw:
        await raw.read_exactly(10)  # the big message is on its way
        await raw.send(close_frame(1000, "bye"))  # ...and we never read the reply
        await trace.closed.wait()
    assert trace.close_args == (False, 1000, "bye")


async def test_close_timeout_drops_a_peer_that_never_answers_the_close() -> None:
    trace = Trace()
    async with running(traced_app(trace, close_timeout=0.2)) as server:
        async with RawClient.connect(port(server)) as raw:
            await raw.send(frame(OP_TEXT, b"close-me"))
            assert await raw.read_close() == (4000, "as you wish")
            await raw.read_eof()  # we never answered: the server gave up and closed TCP
            await trace.closed.wait()
    assert trace.close_args == (False, 4000, "as you wish")


async def test_a_callback_outliving_its_connection_is_cancelled_after_close_timeout(
    wsapp_logs: pytest.LogCaptureFixture,
) -> None:
    trace = Trace()
    app = stuck_app(trace)
    async with raw_peer(app) as raw:
        await raw.send(frame(OP_TEXT, b"hang"))
        await trace.wait_for("message")
        await raw.send(close_frame(1000, "bye"))
        assert await raw.read_close() == (1000, "bye")
        await trace.closed.wait()
    assert trace.names() == ["message", "cancelled", "close"]
    assert trace.close_args == (True, 1000, "bye")
    assert "still ran after close; cancelled" in wsapp_logs.text
    assert [r.getMessage() for r in wsapp_logs.records if r.levelno >= logging.ERROR] == []


async def test_data_after_the_peer_closed_is_ignored() -> None:
    trace = Trace()
    async with raw_peer(traced_app(trace)) as raw:
        await raw.send(close_frame(1000) + frame(OP_TEXT, b"too late"))
        assert await raw.read_close() == (1000, "")
        await raw.read_eof()
        await trace.closed.wait()
    assert "message" not in trace.names()


async def test_messages_sent_before_the_close_frame_are_all_handled() -> None:
    trace = Trace()
    async with raw_peer(traced_app(trace)) as raw:
        burst = b"".join(frame(OP_TEXT, str(i).encode()) for i in range(20))
        await raw.send(burst + close_frame(1000))
        assert (await raw.read_close()) == (1000, "")
        await trace.closed.wait()
    assert [e[1] for e in trace.events if e[0] == "message"] == [str(i) for i in range(20)]
