"""The built-in server: TLS, unix sockets, compression, timeouts, graceful shutdown."""

from __future__ import annotations

import asyncio
import ssl
import zlib
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
from websockets.asyncio.client import connect, unix_connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

import wsapp
from tests.helpers import Trace, client, echo_app, port, running, traced_app, url
from tests.rawclient import OP_TEXT, RawClient, frame, handshake

pytestmark = pytest.mark.anyio


async def echo_once(address: str, message: Any = "ping", **options: Any) -> Any:
    async with connect(address, **options) as ws:
        await ws.send(message)
        return await ws.recv()


async def test_tls() -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    seen: list[str] = []
    app = traced_app(Trace())

    @app.route("/secure")
    class Secure(wsapp.Connector):
        async def on_message(self, message: wsapp.Message) -> None:
            seen.append(self.conn.request.scheme)
            await self.conn.send(message)

    async with running(app, ssl_context=server_context) as server:
        assert server.urls[0].startswith("wss://127.0.0.1:")
        assert await client(echo_once, url(server, "/secure"), ssl=client_context) == "ping"
        # A plain-text client does not get through, and does not hurt the server.
        stream = await anyio.connect_tcp("127.0.0.1", port(server))
        async with stream:
            await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                while await stream.receive():
                    pass
        assert await client(echo_once, url(server, "/secure"), ssl=client_context) == "ping"
    assert seen == ["wss", "wss"]


async def test_certfile_and_keyfile(tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.cert_chain_pems[0].write_to_path(certfile)
    certificate.private_key_pem.write_to_path(keyfile)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    app = traced_app(Trace())
    async with running(app, certfile=str(certfile), keyfile=str(keyfile)) as server:
        assert await client(echo_once, url(server), ssl=client_context) == "ping"


async def test_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "ws.sock")
    trace = Trace()
    app = traced_app(trace)

    async def over_unix() -> Any:
        async with unix_connect(path, "ws://localhost/") as ws:
            await ws.send("via unix")
            return await ws.recv()

    async with anyio.create_task_group() as tg:
        server = await tg.start(lambda task_status: app.serve(uds=path, task_status=task_status))
        assert server.urls == [f"ws+unix://{path}"]
        assert await client(over_unix) == "via unix"
        server.shutdown()
    opened = [event[1] for event in trace.events if event[0] == "open"]
    assert opened[0].request.client is None


async def test_unix_socket_path_that_is_a_file_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "precious.txt"
    path.write_text("keep me")
    with pytest.raises(OSError, match="exists and is not a socket"):
        await wsapp.App().create_server(uds=str(path))
    assert path.read_text() == "keep me"


async def test_compression_negotiated_when_enabled_with_parameters() -> None:
    app = traced_app(Trace(), compression=True, compression_server_max_window_bits=10)

    async def deflated(address: str) -> tuple[str, Any]:
        async with connect(address) as ws:  # websockets offers permessage-deflate by default
            await ws.send("abc" * 10000)
            assert ws.response is not None
            return ws.response.headers["Sec-WebSocket-Extensions"], await ws.recv()

    async with running(app) as server:
        header, echoed = await client(deflated, url(server))
    assert header.startswith("permessage-deflate")
    assert "server_max_window_bits=10" in header
    assert echoed == "abc" * 10000


async def test_compressed_frames_on_the_wire_are_smaller() -> None:
    app = traced_app(Trace(), compression=True)
    offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    async with running(app) as server, RawClient.connect(port(server), extra=offer) as raw:
        assert b"sec-websocket-extensions: permessage-deflate" in raw.response_head.lower()
        compressor = zlib.compressobj(wbits=-15)
        body = compressor.compress(b"hello " * 1000) + compressor.flush(zlib.Z_SYNC_FLUSH)
        await raw.send(frame(OP_TEXT, body[:-4], rsv=0b100))
        fin, opcode, payload = await raw.read_frame()
        assert len(payload) < 100  # 6000 bytes of text, compressed by the server
        inflated = zlib.decompressobj(wbits=-15).decompress(payload + b"\x00\x00\xff\xff")
        assert (fin, opcode, inflated) == (True, OP_TEXT, b"hello " * 1000)


@pytest.mark.parametrize("where", ["default", "on_connect"])
async def test_compression_off_sends_no_extension(where: str) -> None:
    app = wsapp.App(compression=where == "on_connect")

    @app.on_connect
    async def decide(conn: wsapp.Connection, request: wsapp.Request) -> None:
        conn.settings.compression = False

    @app.on_message
    async def echo(conn: wsapp.Connection, message: wsapp.Message) -> None:
        await conn.send(message)

    async def negotiated(address: str) -> tuple[Any, Any]:
        async with connect(address, extensions=[ClientPerMessageDeflateFactory()]) as ws:
            await ws.send("plain")
            assert ws.response is not None
            return ws.response.headers.get("Sec-WebSocket-Extensions"), await ws.recv()

    async with running(app) as server:
        assert await client(negotiated, url(server)) == (None, "plain")


async def test_incomplete_handshake_is_dropped_after_handshake_timeout() -> None:
    trace = Trace()
    async with running(traced_app(trace, handshake_timeout=0.3)) as server:
        async with await anyio.connect_tcp("127.0.0.1", port(server)) as slow:
            await slow.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # ...and never the rest
            with anyio.fail_after(2):
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await slow.receive()
        # A normal client is unaffected.
        assert await client(echo_once, url(server)) == "ping"
    assert trace.names().count("open") == 1


async def test_on_connect_that_hangs_is_bounded_by_handshake_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = wsapp.App(handshake_timeout=0.3)

    @app.on_connect
    async def stuck(conn: wsapp.Connection, request: wsapp.Request) -> None:
        await anyio.sleep_forever()

    async with running(app) as server:
        async with await anyio.connect_tcp("127.0.0.1", port(server)) as stream:
            await stream.send(handshake())
            response = await stream.receive()
            assert response.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            assert response.endswith(b"\r\n\r\non_connect timed out\n")
        assert server.active_connections == 0
    assert "did not finish within handshake_timeout (0.3s); refused with 503" in caplog.text


async def test_graceful_shutdown_with_100_connections() -> None:
    trace = Trace()
    codes: list[int | None] = []

    async def hundred(address: str) -> list[int | None]:
        sockets = [await connect(address) for _ in range(100)]
        for ws in sockets:
            await ws.send("hi")
        await asyncio.gather(*(ws.recv() for ws in sockets))
        await asyncio.gather(*(ws.wait_closed() for ws in sockets))
        return [ws.close_code for ws in sockets]

    async with running(traced_app(trace)) as server, anyio.create_task_group() as tg:

        async def run_clients() -> None:
            codes.extend(await client(hundred, url(server)))

        tg.start_soon(run_clients)
        await trace.wait_for("message", 100)
        assert server.active_connections == 100
        server.shutdown()
    assert codes == [1001] * 100
    closes = [event for event in trace.events if event[0] == "close"]
    assert len(closes) == 100 and {event[2] for event in closes} == {1001}
    assert server.active_connections == 0


async def test_settings_can_be_given_by_name_to_serve_and_run() -> None:
    app = echo_app()
    # What the CLI's flags give: a setting by name wins over the App's and the environment's.
    async with running(app, max_connections=7, broker=None) as server:
        assert server.settings.max_connections == 7
    with pytest.raises(TypeError, match="unknown setting 'brokr'; did you mean broker"):
        await app.create_server("127.0.0.1", 0, brokr="redis://localhost")
