"""Idle connections: the reader alone, the callbacks' task started when there is work.

What a user sees is the server's footprint (one task per idle connection, not three) and
callbacks that behave as if they ran in one task for the connection's whole life.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from contextlib import AsyncExitStack
from functools import partial

import anyio
import pytest

import wsapp
import wsapp.dispatcher
from tests.helpers import port, running
from tests.rawclient import OP_TEXT, RawClient, close_frame, frame

pytestmark = pytest.mark.anyio

LINGER = 0.05  # seconds; the default (5 s) would make these tests wait for nothing

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


@pytest.fixture(autouse=True)
def short_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wsapp.dispatcher, "LINGER", LINGER)


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait until ``condition`` holds. Polled: a callbacks' task ends on a timer, by design
    without telling anyone, so there is no event to await."""
    while not condition():  # noqa: ASYNC110
        await anyio.sleep(LINGER / 10)


def tasks() -> int:
    return len(anyio.get_running_tasks())


async def text(raw: RawClient) -> str:
    fin, opcode, payload = await raw.read_frame()
    assert (fin, opcode) == (True, OP_TEXT)
    return payload.decode()


async def test_an_idle_connection_is_one_task_and_a_message_brings_its_callbacks_back() -> None:
    app = wsapp.App()

    @app.on_open
    async def greet(conn: wsapp.Connection) -> None:
        await conn.send("hello")

    @app.on_message
    async def echo(conn: wsapp.Connection, message: str) -> None:
        await conn.send(message)

    async with running(app) as server, AsyncExitStack() as stack:
        before = tasks()
        clients = [
            await stack.enter_async_context(RawClient.connect(port(server))) for _ in range(10)
        ]
        for raw in clients:
            assert await text(raw) == "hello"
        await eventually(lambda: tasks() == before + 10)  # on_open done: one task each
        first = clients[0]
        await first.send(frame(OP_TEXT, b"ping"))
        assert await text(first) == "ping"
        assert tasks() == before + 11  # its callbacks' task waits for the next message...
        await eventually(lambda: tasks() == before + 10)  # ...for a while, then ends
        for raw in clients:  # and every connection is served on as before
            await raw.send(frame(OP_TEXT, b"again"))
            assert await text(raw) == "again"


async def test_messages_keep_their_order_across_the_callbacks_coming_and_going() -> None:
    app = wsapp.App()

    @app.on_message
    async def echo(conn: wsapp.Connection, message: str) -> None:
        await conn.send(message)

    async with running(app) as server:
        before = tasks()
        async with RawClient.connect(port(server)) as raw:
            for burst in range(3):
                await eventually(lambda: tasks() == before + 1)  # no callbacks' task
                words = [f"{burst}-{i}" for i in range(20)]
                await raw.send(b"".join(frame(OP_TEXT, word.encode()) for word in words))
                assert [await text(raw) for _ in words] == words


async def test_context_variables_flow_from_callback_to_callback_as_in_one_task() -> None:
    app = wsapp.App()
    closed = anyio.Event()
    seen_by_on_close: list[str] = []

    @app.on_connect
    async def admit(conn: wsapp.Connection, request: wsapp.Request) -> None:
        request_id.set("set in on_connect")

    @app.on_open
    async def opened(conn: wsapp.Connection) -> None:
        await conn.send(request_id.get("unset"))
        request_id.set("set in on_open")

    @app.on_message
    async def message(conn: wsapp.Connection, data: str) -> None:
        await conn.send(request_id.get("unset"))
        request_id.set(f"set by {data}")

    @app.on_close
    async def gone(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
        seen_by_on_close.append(request_id.get("unset"))
        closed.set()

    async with running(app) as server:
        before = tasks()
        async with RawClient.connect(port(server)) as raw:
            assert await text(raw) == "set in on_connect"
            replies = []
            for data in (b"first", b"second"):
                await eventually(lambda: tasks() == before + 1)  # each message: a new task
                await raw.send(frame(OP_TEXT, data))
                replies.append(await text(raw))
            assert replies == ["set in on_open", "set by first"]
            await raw.send(close_frame(1000))
            await raw.read_close()
            await closed.wait()
    assert seen_by_on_close == ["set by second"]


async def test_a_forced_shutdown_cancels_a_callback_that_never_returns_and_on_close_runs() -> None:
    app = wsapp.App(close_timeout=60)  # far beyond the test's own timeout
    handling = anyio.Event()
    closed: list[int] = []

    @app.on_message
    async def stuck(conn: wsapp.Connection, message: str) -> None:
        handling.set()
        await anyio.sleep_forever()

    @app.on_close
    async def gone(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
        closed.append(code)

    async with anyio.create_task_group() as tg:
        server: wsapp.Server = await tg.start(partial(app.serve, "127.0.0.1", 0))
        async with RawClient.connect(port(server)) as raw:
            await raw.send(frame(OP_TEXT, b"hang"))
            await handling.wait()
            server.force_shutdown()  # the serve task, and so this group, ends at once
    assert closed == [1006]  # the callbacks' task was cancelled, then on_close ran
