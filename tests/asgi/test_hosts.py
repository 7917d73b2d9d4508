"""wsapp apps served by real ASGI hosts (uvicorn's three WebSocket implementations, hypercorn on
asyncio and Trio), driven by the `websockets` client the way a user's client would."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus

import wsapp
from examples import auth, echo, room, subprotocols
from tests.asgi.hosts import UPGRADE_REQUIRED, Host, http_get
from tests.helpers import Trace, client, echo_app, traced_app
from tests.rawclient import RawClient

pytestmark = pytest.mark.anyio

T = TypeVar("T")
#: What a refused client sees: the status, headers and body of the response.
Refused = tuple[int, Headers, bytes]


async def refused_or(
    talk: Callable[[ClientConnection], Awaitable[T]], address: str, **options: Any
) -> T | Refused:
    """Run ``talk(ws)`` on a connection, or return the response that refused it."""
    try:
        async with connect(address, **options) as ws:
            return await talk(ws)
    except InvalidStatus as exc:
        response = exc.response
        return response.status_code, response.headers, bytes(response.body or b"")


async def test_echo_example(host: Host) -> None:
    async def talk(address: str) -> list[str | bytes]:
        async with connect(address) as ws:
            await ws.send("text")
            await ws.send(b"\x00bytes")
            return [await ws.recv(), await ws.recv()]

    async with host.serve(echo.app) as served:
        assert await client(talk, served.url()) == ["text", b"\x00bytes"]


async def test_auth_example_refuses_with_its_own_status_headers_and_body(host: Host) -> None:
    async def greeting(ws: ClientConnection) -> tuple[str, str]:
        hello = str(await ws.recv())
        await ws.send("hi")
        return hello, str(await ws.recv())

    async with host.serve(auth.app) as served:
        # These hosts offer the websocket.http.response extension: the client gets
        # exactly the response the app's Reject describes, not a generic 403.
        status, headers, body = await client(refused_or, greeting, served.url())
        assert (status, body) == (401, b"a valid token is required")
        assert headers["WWW-Authenticate"] == "Bearer"

        bearer = {"Authorization": "Bearer s3cret"}
        assert await client(refused_or, greeting, served.url(), additional_headers=bearer) == (
            "hello alice",
            "hi",
        )
        assert await client(refused_or, greeting, served.url("/?token=s3cret")) == (
            "hello alice",
            "hi",
        )


async def test_subprotocols_example(host: Host) -> None:
    async def reply(ws: ClientConnection) -> tuple[str | None, Any]:
        await ws.send('{"n": 1}')
        return ws.subprotocol, json.loads(await ws.recv())

    async with host.serve(subprotocols.app) as served:
        address = served.url()
        offered = ["json.v2", "json.v1"]  # the first one offered that the app supports wins
        assert await client(refused_or, reply, address, subprotocols=offered) == (
            "json.v2",
            {"version": 2, "echo": {"n": 1}},
        )
        assert await client(refused_or, reply, address, subprotocols=["json.v1"]) == (
            "json.v1",
            {"n": 1},  # v1 echoes as is
        )
        status, _, body = await client(refused_or, reply, address, subprotocols=["xml"])
        assert (status, body) == (400, b"supported subprotocols: json.v2, json.v1")


async def test_room_example_routes_by_path_with_path_params(host: Host) -> None:
    async def talk(base: str) -> tuple[list[str], str]:
        async with connect(base + "/rooms/blue") as alice:
            first = str(await alice.recv())
            async with connect(base + "/rooms/blue") as bob, connect(base + "/rooms/red") as eve:
                joined = [first, str(await bob.recv()), str(await eve.recv())]
                await bob.send("hello blue")
                return joined, str(await alice.recv()).split(": ", 1)[1]

    async with host.serve(room.app) as served:
        joined, heard = await client(talk, served.url(""))
    assert joined == ["joined blue (1 here)", "joined blue (2 here)", "joined red (1 here)"]
    assert heard == "hello blue"


async def close_after(address: str, trigger: str) -> tuple[str, int | None, str | None]:
    """Echo a message at the size limit, send ``trigger``, and wait for the server's close."""
    async with connect(address) as ws:
        await ws.send("x" * 1000)
        echoed = str(await ws.recv())
        await ws.send(trigger)
        await ws.wait_closed()
        return echoed, ws.close_code, ws.close_reason


@pytest.mark.parametrize(
    ("trigger", "delivered", "code", "reason"),
    [
        pytest.param("close-me", True, 4000, "as you wish", id="conn.close"),
        pytest.param("fail", True, 1011, "internal error", id="callback-raises"),
        # Refused before on_message: an oversized message is never handed to the app.
        pytest.param("x" * 1001, False, 1009, "message over 1000 bytes", id="max_message_size"),
    ],
)
async def test_server_side_close_reaches_the_client_and_on_close_once(
    host: Host, trigger: str, delivered: bool, code: int, reason: str
) -> None:
    trace = Trace()
    async with host.serve(traced_app(trace, max_message_size=1000)) as served:
        echoed, seen_code, seen_reason = await client(close_after, served.url("/c"), trigger)
        await trace.closed.wait()
    # Checked after the host has stopped, so no connection task is left to run on_close again.
    assert echoed == "x" * 1000  # exactly max_message_size is allowed
    assert (seen_code, seen_reason) == (code, reason)
    assert trace.close_args == (True, code, reason)
    messages = [("message", "x" * 1000)] + ([("message", trigger)] if delivered else [])
    assert [event for event in trace.events if event[0] == "message"] == messages
    assert trace.names() == ["connect", "open"] + ["message"] * len(messages) + ["close"]
    assert trace.events[0] == ("connect", "/c")


async def test_a_message_before_one_over_the_limit_is_answered_before_the_1009(host: Host) -> None:
    # Protocol errors are the host's to find (it parses the frames); a message over
    # max_message_size is wsapp's, and its close comes after the replies to what came before.
    async def talk(address: str) -> tuple[str, int | None]:
        async with connect(address) as ws:
            await ws.send("first")
            await ws.send("x" * 1001)  # without waiting for the echo
            echoed = str(await ws.recv())
            await ws.wait_closed()
            return echoed, ws.close_code

    trace = Trace()
    async with host.serve(traced_app(trace, max_message_size=1000)) as served:
        assert await client(talk, served.url()) == ("first", 1009)
        await trace.closed.wait()
    assert trace.close_args == (True, 1009, "message over 1000 bytes")


async def test_client_close_code_and_reason_reach_on_close_once(host: Host) -> None:
    async def talk(address: str) -> tuple[str, int | None, str | None]:
        async with connect(address) as ws:
            await ws.send("hi")
            echoed = str(await ws.recv())
            await ws.close(4001, "bye")
            return echoed, ws.close_code, ws.close_reason

    trace = Trace()
    async with host.serve(traced_app(trace)) as served:
        # Every host completes the closing handshake: the client gets its close echoed.
        assert await client(talk, served.url()) == ("hi", 4001, "bye")
        await trace.closed.wait()
    if host.reports_client_close_code:
        assert trace.close_args == (True, 4001, "bye")
    else:
        # Hypercorn tells the app "websocket.disconnect" with 1006 for any close the client
        # starts; wsapp can only report what the host gives it.
        assert trace.close_args == (False, 1006, "connection lost")
    assert trace.names() == ["connect", "open", "message", "close"]


async def test_accept_carries_the_subprotocol_and_response_headers(host: Host) -> None:
    app = wsapp.App(subprotocols=["chat"])

    @app.on_connect
    async def shape(conn: wsapp.Connection, request: wsapp.Request) -> None:
        conn.response_headers["X-Session"] = f"session-{request.query_params['user']}"

    @app.on_open
    async def report(conn: wsapp.Connection) -> None:
        await conn.send(str(conn.subprotocol))

    async def talk(address: str) -> tuple[str | None, str | None, str]:
        async with connect(address, subprotocols=["other", "chat"]) as ws:  # type: ignore[list-item]
            assert ws.response is not None
            return ws.subprotocol, ws.response.headers.get("X-Session"), str(await ws.recv())

    async with host.serve(app) as served:
        assert await client(talk, served.url("/?user=ann")) == ("chat", "session-ann", "chat")


@pytest.mark.parametrize(
    ("path", "status", "upgrade", "body"),
    [
        ("/rooms/a", 426, "websocket", UPGRADE_REQUIRED),
        ("/nope", 404, None, b"no WebSocket endpoint at /nope\n"),
    ],
)
async def test_plain_http_gets_426_on_a_route_and_404_elsewhere(
    host: Host, path: str, status: int, upgrade: str | None, body: bytes
) -> None:
    # examples.room has only /rooms/{room}: no fallback endpoint to claim /nope.
    async with host.serve(room.app) as served:
        response = await http_get(served, path)
    assert (response.status, response.headers.get("Upgrade"), response.body) == (
        status,
        upgrade,
        body,
    )


async def test_the_health_path_answers_200_ok_on_the_http_scope(host: Host) -> None:
    app = wsapp.App(health_path="/healthz")

    @app.on_message
    async def echo(conn: wsapp.Connection, message: str | bytes) -> None:
        await conn.send(message)

    async with host.serve(app) as served:
        health = await http_get(served, "/healthz")
        other = await http_get(served, "/elsewhere")
    assert (health.status, health.headers.get("Cache-Control"), health.body) == (
        200,
        "no-store",
        b"ok\n",
    )
    assert other.status == 426  # the app's fallback endpoint serves every other path


async def test_the_metrics_path_counts_the_traffic_under_the_host(host: Host) -> None:
    app = echo_app(metrics_path="/metrics")

    async def talk(address: str) -> None:
        async with connect(address) as ws:
            for text in ("one", "two", "three"):
                await ws.send(text)
                await ws.recv()

    async with host.serve(app) as served:
        await client(talk, served.url())
        scraped = await http_get(served, "/metrics")
    assert scraped.status == 200
    assert scraped.headers.get("Content-Type", "").startswith("text/plain; version=0.0.4")
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(scraped.body.decode())
        for sample in family.samples
        if not sample.labels
    }
    assert samples["wsapp_connections_opened_total"] == 1
    assert samples["wsapp_messages_received_total"] == 3
    assert samples["wsapp_messages_sent_total"] == 3
    assert samples["wsapp_received_bytes_total"] == len("onetwothree")
    assert samples["wsapp_handler_duration_seconds_count"] == 1  # its first message


async def test_a_connection_over_its_message_rate_is_closed_with_1008(host: Host) -> None:
    app = echo_app(rate_limit_messages=1e-6, rate_limit_message_burst=2)

    async def flood(address: str) -> tuple[list[str | bytes], int | None, str | None]:
        async with connect(address) as ws:
            for n in range(4):
                await ws.send(f"m{n}")
            echoed = [await ws.recv() for _ in range(2)]
            await ws.wait_closed()
            return echoed, ws.close_code, ws.close_reason

    async with host.serve(app) as served:
        echoed, code, reason = await client(flood, served.url())
    assert echoed == ["m0", "m1"]
    assert (code, reason) == (1008, "rate limit: more than 1e-06 messages per second")


async def test_the_host_stops_listening_when_its_block_ends(host: Host) -> None:
    async with host.serve(echo.app) as served:
        assert (await http_get(served, "/")).status == 426  # it served
    with pytest.raises(OSError, match="All connection attempts failed") as failed:
        await anyio.connect_tcp("127.0.0.1", served.port)
    assert isinstance(failed.value.__cause__, ConnectionRefusedError)  # nothing listens there


async def test_a_send_stalled_by_a_client_that_does_not_read_hits_write_timeout(
    host: Host, anyio_backend: str
) -> None:
    if host.name == "hypercorn" and anyio_backend == "trio":
        pytest.skip(
            "hypercorn's Trio worker shields its socket writes (TCPServer.protocol_send): "
            "no app can abandon a send stalled there (documented in docs/asgi.md)"
        )
    trace = Trace()
    app = wsapp.App(write_timeout=0.5, close_timeout=0.5)

    @app.on_open
    async def flood(conn: wsapp.Connection) -> None:
        while True:  # each host applies backpressure: a send waits once its buffer is full
            await conn.send(b"x" * 65536)

    @app.on_close
    async def closed(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
        trace.record_close(was_clean, code, reason)

    async with host.serve(app) as served, RawClient.connect(served.port):
        await trace.closed.wait()  # never reading: the send stalls until write_timeout
    assert trace.close_args == (False, 1006, "write timed out after 0.5s")
