"""The Connection object: sending, the reading form, per-connection settings, handler forms."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect

import wsapp
import wsapp.testing
from tests.helpers import Trace, client, port, running, url
from tests.rawclient import OP_BINARY, OP_TEXT, RawClient, close_frame, frame

pytestmark = pytest.mark.anyio


async def test_fifty_concurrent_senders_never_interleave_frames() -> None:
    app = wsapp.App()

    @app.on_open
    async def burst(conn: wsapp.Connection) -> None:
        async def sender(task: int) -> None:
            for seq in range(20):
                await conn.send(f"{task}:{seq}:" + "x" * (task * 97))  # sizes differ per task

        async with anyio.create_task_group() as tg:
            for task in range(50):
                tg.start_soon(sender, task)
        await conn.send("done")

    async def collect(address: str) -> list[str]:
        async with connect(address, max_size=None) as ws:
            received = []
            while (message := await ws.recv()) != "done":
                received.append(str(message))
            return received

    async with running(app) as server:
        received = await client(collect, url(server))
    assert len(received) == 50 * 20
    per_task: dict[int, list[int]] = {}
    for message in received:
        task, seq, body = message.split(":")
        assert body == "x" * (int(task) * 97)  # whole: never cut or mixed with another
        per_task.setdefault(int(task), []).append(int(seq))
    assert all(seqs == list(range(20)) for seqs in per_task.values())


async def test_send_takes_text_or_bytes_only() -> None:
    errors: list[str] = []
    app = wsapp.App()

    @app.on_open
    async def send_things(conn: wsapp.Connection) -> None:
        # Accepted at run time although send()'s annotation says str | bytes | BaseModel.
        await conn.send(bytearray(b"ba"))  # type: ignore[arg-type]
        await conn.send(memoryview(b"mv"))  # type: ignore[arg-type]
        try:
            await conn.send({"not": "allowed"})  # type: ignore[arg-type]
        except TypeError as exc:
            errors.append(str(exc))
        await conn.send("text")

    async def collect(address: str) -> list[Any]:
        async with connect(address) as ws:
            return [await ws.recv() for _ in range(3)]

    async with running(app) as server:
        assert await client(collect, url(server)) == [b"ba", b"mv", "text"]
    assert errors == [
        "send() takes str (text), bytes (binary) or a pydantic model, not dict; "
        "use send_json() for other data"
    ]


async def test_reading_form_reads_in_order_and_closes_when_the_handler_returns() -> None:
    trace = Trace()
    app = wsapp.App()

    @app.on_open
    async def reader(conn: wsapp.Connection) -> None:
        first = await conn.receive()
        await conn.send(f"first={first!r}")
        async for message in conn:
            if message == "stop":
                return
            await conn.send(message)

    @app.on_close
    async def closed(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
        trace.record_close(was_clean, code, reason)

    async def talk(address: str) -> tuple[list[Any], int | None]:
        async with connect(address) as ws:
            messages: list[str | bytes] = ["a", b"b", "c", "stop", "ignored"]
            for message in messages:
                await ws.send(message)
            replies = [await ws.recv() for _ in range(3)]
            await ws.wait_closed()
            return replies, ws.close_code

    async with running(app) as server:
        assert await client(talk, url(server)) == (["first='a'", b"b", "c"], 1000)
        await trace.closed.wait()
    assert trace.close_args == (True, 1000, "")


async def test_reading_form_iteration_ends_when_the_peer_closes() -> None:
    got: list[Any] = []
    done = anyio.Event()
    app = wsapp.App()

    @app.on_open
    async def reader(conn: wsapp.Connection) -> None:
        async for message in conn:
            got.append(message)
        done.set()

    async def talk(address: str) -> None:
        async with connect(address) as ws:
            await ws.send("1")
            await ws.send("2")

    async with running(app) as server:
        await client(talk, url(server))
        await done.wait()
    assert got == ["1", "2"]


@pytest.mark.parametrize(
    ("read_buffer_size", "max_message_size", "held"),
    [(2, 4 << 20, 2), (100, 3 << 20, 3)],  # bound by count; bound by bytes (3 MiB: 3 messages)
)
async def test_full_inbox_stops_reading_from_the_socket_and_loses_nothing(
    tmp_path: Path, read_buffer_size: int, max_message_size: int, held: int
) -> None:
    release = anyio.Event()
    received: list[bytes] = []
    app = wsapp.App(
        read_buffer_size=read_buffer_size, max_message_size=max_message_size, ping_interval=None
    )

    @app.on_open
    async def slow_reader(conn: wsapp.Connection) -> None:
        await release.wait()
        async for message in conn:
            assert isinstance(message, bytes)
            received.append(message[:8])
            if len(received) == 64:
                return

    mib = 1 << 20
    frames = [frame(OP_BINARY, f"{i:08d}".encode() + b"x" * (mib - 8)) for i in range(64)]
    sent = 0
    progress = anyio.Event()

    async def sent_reaches(count: int) -> None:
        while sent < count:
            await progress.wait()

    socket_path = str(tmp_path / "ws.sock")
    # A unix socket with a small send buffer: what the peer manages to send is then what the
    # server read, give or take far less than one 1 MiB message.
    async with running(app, uds=socket_path):
        async with RawClient.connect_unix(socket_path, send_buffer=64 << 10) as raw:

            async def send_all() -> None:
                nonlocal sent, progress
                for data in frames:  # 64 MiB
                    await raw.send(data)
                    sent += 1
                    progress.set()
                    progress = anyio.Event()

            async with anyio.create_task_group() as tg:
                tg.start_soon(send_all)
                # The server takes `held` messages into the inbox and one more into the reader
                # waiting for room, then stops reading.
                await sent_reaches(held + 1)
                with anyio.move_on_after(0.3):  # a server still reading takes the next in ms
                    await sent_reaches(held + 2)
                assert sent == held + 1
                release.set()
            assert await raw.read_close() == (1000, "")
    assert received == [f"{i:08d}".encode() for i in range(64)]


async def test_receive_is_refused_when_on_message_is_declared() -> None:
    errors: list[str] = []
    app = wsapp.App()

    @app.on_open
    async def confused(conn: wsapp.Connection) -> None:
        try:
            await conn.receive()
        except RuntimeError as exc:
            errors.append(str(exc))
            await conn.close()

    @app.on_message
    async def handle(conn: wsapp.Connection, message: wsapp.Message) -> None:
        pass

    async def talk(address: str) -> None:
        async with connect(address) as ws:
            await ws.wait_closed()

    async with running(app) as server:
        await client(talk, url(server))
    assert errors and "declares on_message" in errors[0]


async def test_per_connection_settings_are_validated_and_apply_to_the_next_message() -> None:
    trace = Trace()
    errors: list[str] = []
    app = wsapp.App(max_message_size=100)

    @app.on_open
    async def tighten(conn: wsapp.Connection) -> None:
        try:
            conn.settings.max_message_size = -5
        except wsapp.ConfigError as exc:
            errors.append(str(exc))

    @app.on_message
    async def adjust(conn: wsapp.Connection, message: wsapp.Message) -> None:
        conn.settings.max_message_size = 10  # from the next message on
        await conn.send(message)

    @app.on_close
    async def closed(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
        trace.record_close(was_clean, code, reason)

    async def talk(address: str) -> tuple[Any, int | None, Any]:
        async with connect(address) as first, connect(address) as other:
            await first.send("y" * 50)  # within the old limit
            echoed = await first.recv()
            await first.send("y" * 50)  # over the new limit of this connection only
            await first.wait_closed()
            await other.send("z" * 60)  # the other connection kept the app's limit
            return echoed, first.close_code, await other.recv()

    async with running(app) as server:
        assert await client(talk, url(server)) == ("y" * 50, 1009, "z" * 60)
    assert errors == ["invalid setting max_message_size: Input should be greater than 0"] * 2
    assert app.settings.max_message_size == 100


async def test_class_form_route_with_state_and_path_parameter() -> None:
    closes: list[tuple[str, int]] = []
    both_closed = anyio.Event()
    app = wsapp.App()

    @app.route("/rooms/{room}")
    class Room(wsapp.Connector):
        async def on_open(self) -> None:
            self.count = 0

        async def on_message(self, message: wsapp.Message) -> None:
            self.count += 1  # instance state is per connection
            await self.conn.send(f"{self.conn.request.path_params['room']}#{self.count}")

        async def on_close(self, was_clean: bool, code: int, reason: str) -> None:
            closes.append((self.conn.request.path_params["room"], self.count))
            if len(closes) == 2:
                both_closed.set()

    async def talk(address: str) -> list[Any]:
        async with connect(address + "/rooms/a") as a, connect(address + "/rooms/b") as b:
            replies = []
            for ws in (a, b, a):
                await ws.send("hi")
                replies.append(await ws.recv())
            return replies

    async with running(app) as server:
        assert await client(talk, server.urls[0]) == ["a#1", "b#1", "a#2"]
        await both_closed.wait()
    assert sorted(closes) == [("a", 2), ("b", 1)]


async def test_plain_def_callbacks_run_in_a_worker_thread() -> None:
    threads: dict[str, int] = {}
    app = wsapp.App()

    @app.on_connect
    def check(conn: wsapp.Connection, request: wsapp.Request) -> None:
        threads["connect"] = threading.get_ident()
        if request.query_params.get("deny"):
            raise wsapp.Reject(403, "denied")

    @app.on_message
    async def echo(conn: wsapp.Connection, message: wsapp.Message) -> None:
        threads["message"] = threading.get_ident()
        await conn.send(message)

    async def talk(address: str) -> Any:
        async with connect(address) as ws:
            await ws.send("sync ok")
            return await ws.recv()

    async with running(app) as server:
        assert await client(talk, url(server)) == "sync ok"
    assert threads["connect"] != threads["message"]


def test_declaration_errors_are_immediate_and_clear() -> None:
    app = wsapp.App()
    with pytest.raises(TypeError, match=r"must accept \(conn, message\)"):
        app.on_message(lambda conn: None)

    @app.on_open
    async def first(conn: wsapp.Connection) -> None: ...

    with pytest.raises(ValueError, match="on_open is already declared"):
        app.on_open(first)
    with pytest.raises(TypeError, match="unknown setting"):
        wsapp.App(max_msg_size=3)
    with pytest.raises(TypeError, match="Connector subclass"):
        app.route("/x")(object)  # type: ignore[type-var]
    with pytest.raises(ValueError, match="unknown type 'number'"):
        app.route("/x/{n:number}")
        app.route("/x/{n:number}")(wsapp.Connector)


def test_an_unsendable_close_code_is_a_clear_error() -> None:
    app = wsapp.App()

    @app.on_open
    async def opened(conn: wsapp.Connection) -> None:
        for code in (999, 1005, 1006, 1015, 5000):
            try:
                await conn.close(code)
            except ValueError as exc:
                await conn.send(str(exc))

    with wsapp.testing.connect(app) as ws:
        for code in (999, 1005, 1006, 1015, 5000):
            assert ws.receive() == (
                f"close code {code} cannot be sent; use 1000-1003, 1007-1009, 1011-1014 or an "
                "application code (3000-4999)"
            )


async def test_close_codes_and_text_frames_reach_a_raw_peer_exactly() -> None:
    app = wsapp.App()

    @app.on_message
    async def shout(conn: wsapp.Connection, message: wsapp.Message) -> None:
        await conn.send(str(message).upper())
        await conn.close(4321, "done")

    async with running(app) as server, RawClient.connect(port(server)) as raw:
        await raw.send(frame(OP_TEXT, b"quiet"))
        assert await raw.read_frame() == (True, OP_TEXT, b"QUIET")
        assert await raw.read_close() == (4321, "done")
        await raw.send(close_frame(4321))
        await raw.read_eof()
