"""Routed endpoints in both forms: a Connector class, or functions declared on the route."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from pydantic import BaseModel
from websockets.asyncio.client import connect

import wsapp
from examples import counters
from tests.helpers import client, running, url
from wsapp.asyncapi import asyncapi_document
from wsapp.testing import HandshakeRefused, TestClient

pytestmark = pytest.mark.anyio


async def test_the_counters_example_routes_by_path_with_one_typed_handler_per_type() -> None:
    counters.counters.clear()

    async def talk(base: str) -> list[str]:
        replies = []
        async with connect(base + "/counters/apples") as apples:
            replies.append(await apples.recv())
            await apples.send('{"type": "add", "amount": 3}')
            replies.append(await apples.recv())
            async with connect(base + "/counters/pears") as pears:
                replies.append(await pears.recv())
                await pears.send('{"type": "add"}')
                replies.append(await pears.recv())
            await apples.send('{"type": "reset"}')
            replies.append(await apples.recv())
            await apples.send('{"type": "jump"}')
            replies.append(await apples.recv())
        return [str(reply) for reply in replies]

    async with running(counters.app) as server:
        replies = await client(talk, url(server, ""))
    assert replies[:5] == [
        '{"type":"count","name":"apples","value":0}',
        '{"type":"count","name":"apples","value":3}',
        '{"type":"count","name":"pears","value":0}',
        '{"type":"count","name":"pears","value":1}',
        '{"type":"count","name":"apples","value":0}',
    ]
    assert json.loads(replies[5])["error"] == "invalid_message"
    with pytest.raises(HandshakeRefused) as refused:
        async with TestClient(counters.app).connect("/counters"):
            pass
    assert refused.value.status == 404  # no App-level callbacks: only the route is served


class Ping(BaseModel):
    type: Literal["ping"]


class Echo(BaseModel):
    type: Literal["echo"]
    text: str


def two_endpoints() -> wsapp.App:
    """A routed function endpoint beside the App's own callbacks: neither sees the other's."""
    app = wsapp.App()
    room = app.route("/rooms/{room}")

    @room.on_connect
    async def connect_room(conn: wsapp.Connection, request: wsapp.Request) -> None:
        if request.path_params["room"] == "closed":
            raise wsapp.Reject(403, "this room is closed")

    @room.on_open
    async def greet(conn: wsapp.Connection) -> None:
        await conn.send(f"welcome to {conn.request.path_params['room']}")

    @room.on_message
    async def pong(conn: wsapp.Connection, message: Ping) -> str:
        return "pong"

    @room.on_message
    async def echo(conn: wsapp.Connection, message: Echo) -> str:
        return message.text

    @app.on_message
    async def elsewhere(conn: wsapp.Connection, message: str) -> str:
        return f"fallback got {message}"

    return app


async def test_a_routed_function_endpoint_has_its_own_callbacks_and_typed_dispatch() -> None:
    app = two_endpoints()
    async with TestClient(app) as test:
        async with test.connect("/rooms/blue") as ws:
            assert await ws.receive() == "welcome to blue"
            await ws.send_json({"type": "echo", "text": "hi"})
            assert await ws.receive() == "hi"
            await ws.send_json({"type": "ping"})
            assert await ws.receive() == "pong"
        async with test.connect("/lobby") as ws:
            await ws.send("hello")
            assert await ws.receive() == "fallback got hello"  # no greeting: not the route's
        with pytest.raises(HandshakeRefused) as refused:
            async with test.connect("/rooms/closed"):
                pass
        assert (refused.value.status, refused.value.body) == (403, b"this room is closed")


def test_a_routed_function_endpoint_is_a_channel_of_the_asyncapi_document() -> None:
    document = asyncapi_document(two_endpoints(), title="rooms")
    channel = document["channels"]["rooms_room"]
    assert channel["address"] == "/rooms/{room}"
    assert channel["title"] == "/rooms/{room}"
    assert {"Ping", "Echo"} <= set(channel["messages"])
    assert {"rooms_room.pong", "rooms_room.echo"} <= set(document["operations"])


def test_a_route_is_served_by_a_class_or_by_functions_never_both() -> None:
    app = wsapp.App()
    by_functions = app.route("/f")

    @by_functions.on_open
    async def opened(conn: wsapp.Connection) -> None: ...

    with pytest.raises(TypeError, match="served by one Connector class or by functions"):
        by_functions(wsapp.Connector)

    @app.route("/c")
    class Served(wsapp.Connector):
        pass

    by_class = app.route("/d")
    by_class(Served)
    with pytest.raises(TypeError, match=r"served by the class .*Served; declare on_open as its"):
        by_class.on_open(opened)
    with pytest.raises(ValueError, match="route '/f' is already declared"):
        app.route("/f")
    with pytest.raises(ValueError, match="on_open is already declared"):
        by_functions.on_open(opened)
