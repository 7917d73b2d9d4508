"""One accept sequence, one behaviour: every transport answers each handshake the same way.

Route → Request → admission (origin, capacity) → `on_connect` under `handshake_timeout` →
accept or refuse is written once (`wsapp.lifecycle.handle`). This runs the same handshakes
against the built-in server, the test client and real ASGI hosts, and expects the same
answers from all of them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import anyio
import pytest

import wsapp
from tests.asgi.hosts import Listening, hypercorn_server, uvicorn_server
from tests.helpers import port, running
from tests.rawclient import handshake
from wsapp.testing import HandshakeRefused, TestClient

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Answer:
    """What a client learns from its handshake."""

    status: int
    body: bytes = b""
    header: tuple[str, str] | None = None  # the one response header the case checks
    subprotocol: str | None = None


@dataclass(frozen=True)
class Knock:
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    subprotocols: tuple[str, ...] = ()


class Door:
    """Knocks on an app served by one transport; several knocks may be open at once."""

    async def knock(self, knock: Knock, checked: str | None) -> Answer:
        raise NotImplementedError


def _head_value(head: list[str], name: str) -> str | None:
    for line in head[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


class SocketDoor(Door):
    """A raw HTTP/1.1 client on a TCP port: the built-in server and the ASGI hosts."""

    def __init__(self, port: int, held: list[anyio.abc.SocketStream]) -> None:
        self.port = port
        self.held = held  # accepted connections stay open until the case ends

    async def knock(self, knock: Knock, checked: str | None) -> Answer:
        extra = "".join(f"{name}: {value}\r\n" for name, value in knock.headers)
        if knock.subprotocols:
            extra += f"Sec-WebSocket-Protocol: {', '.join(knock.subprotocols)}\r\n"
        stream = await anyio.connect_tcp("127.0.0.1", self.port)
        await stream.send(handshake(knock.path, extra=extra))
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive()
        raw_head, _, rest = data.partition(b"\r\n\r\n")
        head = raw_head.decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        header = None
        if checked is not None and (value := _head_value(head, checked)) is not None:
            header = (checked.lower(), value)
        if status == 101:
            self.held.append(stream)
            return Answer(
                101, header=header, subprotocol=_head_value(head, "sec-websocket-protocol")
            )
        body = await self._body(stream, head, rest)
        await stream.aclose()
        return Answer(status, body, header)

    @staticmethod
    async def _body(stream: anyio.abc.SocketStream, head: list[str], data: bytes) -> bytes:
        if (length := _head_value(head, "content-length")) is not None:
            while len(data) < int(length):
                data += await stream.receive()
            return data[: int(length)]
        assert (_head_value(head, "transfer-encoding") or "").lower() == "chunked", head
        body = b""
        while True:
            while b"\r\n" not in data:
                data += await stream.receive()
            size_line, _, data = data.partition(b"\r\n")
            size = int(size_line, 16)
            while len(data) < size + 2:
                data += await stream.receive()
            body, data = body + data[:size], data[size + 2 :]
            if size == 0:
                return body


class InProcessDoor(Door):
    """wsapp's own test client (in-process, through the built-in server's handshake code)."""

    def __init__(
        self, client: TestClient, stack: list[AbstractAsyncContextManager[object]]
    ) -> None:
        self.client = client
        self.stack = stack

    async def knock(self, knock: Knock, checked: str | None) -> Answer:
        connecting = self.client.connect(
            knock.path, headers=list(knock.headers), subprotocols=knock.subprotocols
        )
        try:
            ws = await connecting.__aenter__()
        except HandshakeRefused as refused:
            header = None
            if checked is not None and checked in refused.headers:
                header = (checked.lower(), refused.headers[checked])
            return Answer(refused.status, refused.body, header)
        self.stack.append(connecting)
        header = None
        if checked is not None and checked in ws.response_headers:
            header = (checked.lower(), ws.response_headers[checked])
        return Answer(101, header=header, subprotocol=ws.subprotocol)


Serve = Callable[[wsapp.App], AbstractAsyncContextManager[Door]]


@asynccontextmanager
async def builtin(app: wsapp.App) -> AsyncIterator[SocketDoor]:
    held: list[anyio.abc.SocketStream] = []
    async with running(app) as server:
        try:
            yield SocketDoor(port(server), held)
        finally:
            for stream in held:
                await stream.aclose()


@asynccontextmanager
async def in_process(app: wsapp.App) -> AsyncIterator[Door]:
    stack: list[AbstractAsyncContextManager[object]] = []
    async with TestClient(app) as client:
        try:
            yield InProcessDoor(client, stack)
        finally:
            for connecting in reversed(stack):
                await connecting.__aexit__(None, None, None)


def asgi(host: Callable[..., AbstractAsyncContextManager[Listening]], **options: str) -> Serve:
    @asynccontextmanager
    async def serve(app: wsapp.App) -> AsyncIterator[Door]:
        held: list[anyio.abc.SocketStream] = []
        async with host(app, **options) as listening:
            try:
                yield SocketDoor(listening.port, held)
            finally:
                for stream in held:
                    await stream.aclose()

    return serve


@dataclass(frozen=True)
class Transport:
    serve: Serve
    trio: bool = True  # uvicorn runs on asyncio only

    def on(self, backend: str) -> Serve:
        if backend == "trio" and not self.trio:
            pytest.skip("uvicorn has no Trio support")
        return self.serve


TRANSPORTS = [
    pytest.param(Transport(builtin), id="builtin"),
    pytest.param(Transport(in_process), id="testclient"),
    pytest.param(
        Transport(asgi(uvicorn_server, ws="websockets-sansio"), trio=False), id="uvicorn-sansio"
    ),
    pytest.param(Transport(asgi(uvicorn_server, ws="wsproto"), trio=False), id="uvicorn-wsproto"),
    pytest.param(Transport(asgi(hypercorn_server)), id="hypercorn"),
]


def accept_app() -> wsapp.App:
    """Every branch of the accept sequence, chosen by the request path."""
    app = wsapp.App(
        subprotocols=["chat.v2", "chat.v1"],
        allowed_origins=["https://friend.example"],
        max_connections=1,
        handshake_timeout=0.5,
    )
    routes = app.route("/{case}")

    @routes.on_connect
    async def decide(conn: wsapp.Connection, request: wsapp.Request) -> None:
        case = request.path_params["case"]
        if case == "reject":
            raise wsapp.Reject(401, "a token is required", {"WWW-Authenticate": "Bearer"})
        if case == "raise":
            raise RuntimeError("a bug in on_connect")
        if case == "hang":
            await anyio.sleep_forever()
        if case == "shape":
            conn.response_headers["X-Session"] = "s-1"
            conn.subprotocol = "chat.v1"  # overrides the server's preference

    @routes.on_message
    async def echo(conn: wsapp.Connection, message: wsapp.Message) -> None:
        await conn.send(message)  # (an accepted connection stays open until the client leaves)

    return app


#: (what the client sends, the header to check, the answer every transport must give)
CASES = [
    pytest.param(Knock("/a/b"), None, Answer(404, b"no WebSocket endpoint at /a/b\n"), id="404"),
    pytest.param(
        Knock("/open", (("Origin", "https://evil.example"),)),
        None,
        Answer(403, b"cross-origin request refused\n"),
        id="cross-origin",
    ),
    pytest.param(
        Knock("/open", (("Origin", "https://friend.example"),), ("chat.v1", "chat.v2")),
        None,
        Answer(101, subprotocol="chat.v1"),  # the first offered that the server speaks
        id="allowed-origin-and-subprotocol",
    ),
    pytest.param(
        Knock("/reject"),
        "www-authenticate",
        Answer(401, b"a token is required", ("www-authenticate", "Bearer")),
        id="reject",
    ),
    pytest.param(
        Knock("/raise"), None, Answer(500, b"Internal Server Error"), id="on_connect-raises"
    ),
    pytest.param(
        Knock("/hang"), None, Answer(503, b"on_connect timed out\n"), id="on_connect-timeout"
    ),
    pytest.param(
        Knock("/shape", subprotocols=("chat.v2", "chat.v1")),
        "x-session",
        Answer(101, header=("x-session", "s-1"), subprotocol="chat.v1"),
        id="on_connect-shapes-the-accept",
    ),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("knock", "checked", "expected"), CASES)
async def test_every_transport_answers_a_handshake_the_same_way(
    transport: Transport, knock: Knock, checked: str | None, expected: Answer, anyio_backend: str
) -> None:
    async with transport.on(anyio_backend)(accept_app()) as door:
        assert await door.knock(knock, checked) == expected


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_open_connections_count_against_max_connections(
    transport: Transport, anyio_backend: str
) -> None:
    async with transport.on(anyio_backend)(accept_app()) as door:
        assert (await door.knock(Knock("/open"), None)).status == 101
        answer = await door.knock(Knock("/open"), "retry-after")
        assert answer == Answer(503, b"too many connections\n", ("retry-after", "1"))


async def test_a_handshake_in_progress_holds_its_place_on_the_builtin_server() -> None:
    # A socket that has not finished its request head already counts: a burst of clients
    # that never finish cannot push the open connections past max_connections.
    async with (
        builtin(accept_app()) as door,
        await anyio.connect_tcp("127.0.0.1", door.port) as silent,
    ):
        await silent.send(b"GET /open HTTP/1.1\r\n")
        answer = await door.knock(Knock("/open"), None)
        assert answer == Answer(503, b"too many connections\n")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_every_refusal_is_one_log_line_naming_path_client_and_reason(
    transport: Transport, anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wsapp")
    async with transport.on(anyio_backend)(accept_app()) as door:
        await door.knock(Knock("/open", (("Origin", "http://localhost:5173"),)), None)
        await door.knock(Knock("/reject"), None)
        await door.knock(Knock("/a/b"), None)
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused")]
    client = r"client=127\.0\.0\.1:\d+"
    assert len(refusals) == 3
    assert re.fullmatch(
        rf"refused 403 /open {client}: cross-origin request refused: Origin "
        r"'http://localhost:5173' is not allowed for host '[^']+'; to allow it, add it to "
        r"allowed_origins \(--allowed-origins, WSAPP_ALLOWED_ORIGINS\)",
        refusals[0],
    ), refusals[0]
    assert re.fullmatch(rf"refused 401 /reject {client}: by on_connect \(Reject\)", refusals[1])
    assert re.fullmatch(rf"refused 404 /a/b {client}: no WebSocket endpoint at /a/b", refusals[2])
