"""Before the upgrade: routing, refusals, origins, subprotocols, headers, limits."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

import wsapp
from tests.helpers import Trace, client, echo_app, port, running, traced_app, url

pytestmark = pytest.mark.anyio


async def refusal(address: str, **options: Any) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a refused handshake, as the websockets client saw them."""
    try:
        async with connect(address, **options):
            pass
    except InvalidStatus as exc:
        response = exc.response
        return response.status_code, dict(response.headers.raw_items()), bytes(response.body or b"")
    raise AssertionError("the handshake was accepted")


async def http_exchange(server_port: int, request: bytes) -> bytes:
    """Send raw bytes, return everything the server sends until it closes."""
    async with await anyio.connect_tcp("127.0.0.1", server_port) as stream:
        await stream.send(request)
        response = b""
        try:
            while True:
                response += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return response


async def test_reject_sends_exactly_that_response() -> None:
    app = wsapp.App()

    @app.on_connect
    async def auth(conn: wsapp.Connection, request: wsapp.Request) -> None:
        if request.headers.get("authorization") != "Bearer good":
            raise wsapp.Reject(401, "token required", {"WWW-Authenticate": "Bearer"})

    async with running(app) as server:
        status, headers, body = await client(refusal, url(server))
        assert (status, body) == (401, b"token required")
        assert headers["WWW-Authenticate"] == "Bearer"

        async def accepted(address: str) -> str | None:
            async with connect(address, additional_headers={"Authorization": "Bearer good"}) as ws:
                assert ws.response is not None
                return ws.response.reason_phrase

        assert await client(accepted, url(server)) == "Switching Protocols"


@pytest.mark.parametrize("debug", [False, True])
async def test_on_connect_exception_refuses_with_500(
    debug: bool, caplog: pytest.LogCaptureFixture
) -> None:
    app = wsapp.App(debug=debug)

    @app.on_connect
    async def broken(conn: wsapp.Connection, request: wsapp.Request) -> None:
        raise KeyError("secret detail")

    async with running(app) as server:
        status, _, body = await client(refusal, url(server))
    assert status == 500
    assert (b"secret detail" in body) is debug
    assert any("on_connect failed" in r.message and r.exc_info for r in caplog.records)


async def test_connector_whose_constructor_raises_refuses_with_500_and_server_lives_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = traced_app(Trace())

    @app.route("/broken")
    class Broken(wsapp.Connector):
        def __init__(self) -> None:
            raise RuntimeError("cannot construct")

    async with running(app) as server:
        status, _, body = await client(refusal, url(server, "/broken"))
        assert (status, body) == (500, b"Internal Server Error")

        async def echo(address: str) -> object:
            async with connect(address) as ws:
                await ws.send("alive")
                return await ws.recv()

        assert await client(echo, url(server)) == "alive"
    assert "RuntimeError: cannot construct" in caplog.text


async def test_unknown_path_is_404_and_plain_http_is_426() -> None:
    app = wsapp.App()

    @app.route("/only/{name}")
    class Only(wsapp.Connector):
        pass

    async with running(app) as server:
        status, _, body = await client(refusal, url(server, "/elsewhere"))
        assert status == 404 and b"/elsewhere" in body
        plain = await http_exchange(
            port(server), b"GET /only/x HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        assert plain.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
        assert b"\r\nUpgrade: websocket\r\n" in plain
        assert plain.endswith(b"this is a WebSocket endpoint; send a WebSocket handshake\n")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"garbage\r\n\r\n", 400),
        (b"GET / HTTP/1.0\r\nHost: x\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", 405),
        (b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 400),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            426,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
    ],
)
async def test_malformed_handshakes_get_a_4xx_and_a_closed_socket(
    request_bytes: bytes, status: int
) -> None:
    trace = Trace()
    async with running(traced_app(trace)) as server:
        response = await http_exchange(port(server), request_bytes)
    assert response.startswith(f"HTTP/1.1 {status} ".encode()), response[:80]
    assert trace.events == []


async def test_cross_origin_refused_unless_listed() -> None:
    trace = Trace()
    app = traced_app(trace, allowed_origins=["https://friend.example"])
    async with running(app) as server:
        host = server.urls[0].removeprefix("ws://")
        status, _, _ = await client(refusal, url(server), origin="https://evil.example")
        assert status == 403

        async def opens(address: str, origin: str) -> bool:
            async with connect(address, origin=Origin(origin)) as ws:
                await ws.send("hi")
                return await ws.recv() == "hi"

        assert await client(opens, url(server), "https://friend.example")
        assert await client(opens, url(server), f"http://{host}")  # same origin
    assert trace.names().count("open") == 2


async def test_allow_any_origin_accepts_all_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    trace = Trace()
    app = traced_app(trace)
    app.allow_any_origin()

    async def opens(address: str) -> bool:
        async with connect(address, origin=Origin("https://anywhere.example")):
            return True

    async with running(app) as server:
        assert await client(opens, url(server))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("any origin may connect" in r.message for r in warnings)


async def test_subprotocol_is_the_first_the_client_offers_that_the_server_speaks() -> None:
    app = wsapp.App(subprotocols=["v2", "v1"])

    @app.on_open
    async def report(conn: wsapp.Connection) -> None:
        await conn.send(str(conn.subprotocol))

    async def negotiate(address: str, offered: list[str]) -> tuple[str | None, str]:
        async with connect(address, subprotocols=offered) as ws:  # type: ignore[arg-type]
            return ws.subprotocol, str(await ws.recv())

    async with running(app) as server:
        assert await client(negotiate, url(server), ["v1", "v2"]) == ("v1", "v1")
        assert await client(negotiate, url(server), ["v3", "v2"]) == ("v2", "v2")
        assert await client(negotiate, url(server), []) == (None, "None")


async def test_on_connect_chooses_subprotocol_and_headers() -> None:
    app = wsapp.App(subprotocols=["json"])

    @app.on_connect
    async def choose(conn: wsapp.Connection, request: wsapp.Request) -> None:
        conn.subprotocol = "xml" if "xml" in request.subprotocols else None
        conn.response_headers["X-Server"] = "wsapp"
        conn.response_headers.append("Set-Cookie", "a=1")
        conn.response_headers.append("Set-Cookie", "b=2")

    async def negotiate(address: str) -> tuple[str | None, str, list[str]]:
        async with connect(address, subprotocols=["json", "xml"]) as ws:  # type: ignore[list-item]
            assert ws.response is not None
            headers = ws.response.headers
            return ws.subprotocol, headers["X-Server"], headers.get_all("Set-Cookie")

    async with running(app) as server:
        assert await client(negotiate, url(server)) == ("xml", "wsapp", ["a=1", "b=2"])


async def test_choosing_a_subprotocol_the_client_did_not_offer_is_a_clear_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = wsapp.App()

    @app.on_connect
    async def choose(conn: wsapp.Connection, request: wsapp.Request) -> None:
        conn.subprotocol = "mqtt"

    async with running(app) as server:
        status, _, _ = await client(refusal, url(server), subprotocols=["chat"])
    assert status == 500
    assert "cannot choose subprotocol 'mqtt': the client offered ['chat']" in caplog.text


def test_protocol_headers_cannot_be_set_by_hand() -> None:
    headers = wsapp.MutableHeaders()
    with pytest.raises(ValueError, match=r"set conn\.subprotocol instead"):
        headers["Sec-WebSocket-Protocol"] = "chat"
    with pytest.raises(ValueError, match="invalid response header"):
        headers["X-Evil"] = "a\r\nInjected: yes"


async def test_request_exposes_the_handshake() -> None:
    seen: list[wsapp.Request] = []
    app = wsapp.App()

    @app.route("/users/{user_id:int}/files/{rest:path}")
    class Files(wsapp.Connector):
        async def on_connect(self, request: wsapp.Request) -> None:
            seen.append(request)

    async def open_with(address: str) -> None:
        async with connect(
            address,
            additional_headers=[("X-Tag", "a"), ("x-tag", "b")],
            subprotocols=["chat"],  # type: ignore[list-item]
            origin=None,
        ):
            pass

    async with running(app) as server:
        await client(open_with, url(server, "/users/42/files/a%20b/c.txt?q=1&q=2&empty="))
    (request,) = seen
    assert request.method == "GET" and request.http_version == "1.1" and request.scheme == "ws"
    assert request.path == "/users/42/files/a b/c.txt"
    assert request.raw_path == "/users/42/files/a%20b/c.txt"
    assert request.path_params == {"user_id": 42, "rest": "a b/c.txt"}
    assert request.query_string == "q=1&q=2&empty="
    assert request.query_params.getlist("q") == ["1", "2"] and request.query_params["empty"] == ""
    assert request.headers.getlist("X-TAG") == ["a", "b"]
    assert request.subprotocols == ("chat",)
    assert request.origin is None
    assert request.client is not None and request.client.host == "127.0.0.1"


#: The headers' forms and the chains are tests/test_request.py's; this is the setting's wiring.
@pytest.mark.parametrize(
    ("trusted", "header", "expected"),
    [
        ([], ("X-Forwarded-For", "203.0.113.9"), "127.0.0.1"),  # untrusted peer: ignored
        (
            ["127.0.0.0/8", "10.0.0.0/8"],
            ("X-Forwarded-For", "6.6.6.6, 203.0.113.9, 10.1.1.1"),
            "203.0.113.9",
        ),  # the rightmost untrusted hop; the forged first entry is ignored
    ],
)
async def test_trusted_proxies_set_the_client_address(
    trusted: list[str], header: tuple[str, str], expected: str
) -> None:
    seen: list[wsapp.Address | None] = []
    app = wsapp.App(trusted_proxies=trusted)

    @app.on_connect
    async def record(conn: wsapp.Connection, request: wsapp.Request) -> None:
        seen.append(request.client)

    async def open_with(address: str) -> None:
        async with connect(address, additional_headers=[header]):
            pass

    async with running(app) as server:
        await client(open_with, url(server))
    assert seen[0] is not None and seen[0].host == expected


async def test_max_connections_refuses_the_next_with_503() -> None:
    trace = Trace()
    async with running(traced_app(trace, max_connections=2)) as server:

        async def crowd(address: str) -> tuple[int, str | bytes]:
            async with connect(address), connect(address) as second:
                status = (await refusal(address))[0]
                await second.send("still fine")
                return status, await second.recv()

        assert await client(crowd, url(server)) == (503, "still fine")

        async def after(address: str) -> bool:  # slots are freed on close
            async with connect(address):
                return True

        await trace.wait_for("close", 2)
        assert await client(after, url(server))


async def test_a_head_of_exactly_the_limit_passes_though_its_blank_line_comes_apart() -> None:
    async with running(echo_app(max_header_size=1024)) as server:
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        head = (
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nX-Pad: "
        ).encode()
        head += b"a" * (1024 - len(head))  # the head is 1024 bytes, without its CRLFCRLF
        async with await anyio.connect_tcp("127.0.0.1", port(server)) as stream:
            await stream.send(head + b"\r\n\r")
            await anyio.sleep(0.05)  # so that the last byte arrives in a read of its own
            await stream.send(b"\n")
            assert (await stream.receive()).startswith(b"HTTP/1.1 101 ")
