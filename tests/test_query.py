"""Declared query parameters: validated at the handshake, read as `conn.query`, documented."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import wsapp
from tests.helpers import client, running, url
from tests.test_asyncapi import check, resolve
from wsapp.asyncapi import asyncapi_document
from wsapp.datastructures import QueryParams
from wsapp.protocol import Refusal
from wsapp.query import validated_query

pytestmark = pytest.mark.anyio


class Who(BaseModel):
    name: str = Field(min_length=1)
    tags: list[str] = []
    limit: int = 10


def test_a_list_field_takes_every_value_of_its_key_and_others_the_last() -> None:
    query = validated_query(Who, QueryParams([("name", "a"), ("name", "b"), ("tags", "x")]))
    assert query == Who(name="b", tags=["x"])


def test_a_query_that_does_not_fit_is_a_400_saying_what_is_wrong() -> None:
    refusal = validated_query(Who, QueryParams([("limit", "many")]))
    assert isinstance(refusal, Refusal)
    assert refusal.status == 400
    assert refusal.body == (
        b"invalid query: name: Field required; "
        b"limit: Input should be a valid integer, unable to parse string as an integer\n"
    )


def test_a_query_is_declared_once_and_as_a_model() -> None:
    app = wsapp.App()
    route = app.route("/r")
    route.query(Who)
    with pytest.raises(ValueError, match="the query is already declared"):
        route.query(Who)
    with pytest.raises(TypeError, match="query\\(\\) takes a pydantic model class"):
        app.query(dict)  # type: ignore[arg-type]


def query_app() -> wsapp.App:
    """`/f` (functions) and `/c` (a Connector) declare `Who`; the App's own callbacks do not.
    Each tells what `conn.query` was in `on_connect` and in `on_message`."""
    app = wsapp.App()
    seen: dict[str, Any] = {}

    functions = app.route("/f")
    functions.query(Who)

    @functions.on_connect
    async def connected(conn: wsapp.Connection, request: wsapp.Request) -> None:
        seen[conn.id] = conn.query

    @functions.on_message
    async def tell(conn: wsapp.Connection, message: str) -> str:
        return f"{seen[conn.id]!r} {conn.query!r}"

    @app.route("/c")
    class Described(wsapp.Connector):
        query = Who

        async def on_message(self, message: str) -> str:
            return repr(self.conn.query)

    @app.on_message
    async def fallback(conn: wsapp.Connection, message: str) -> str:
        return repr(conn.query)

    return app


async def ask(address: str) -> str | bytes:
    async with connect(address) as ws:
        await ws.send("?")
        return await ws.recv()


async def refused(address: str) -> tuple[int, bytes]:
    try:
        await ask(address)
    except InvalidStatus as status:
        return status.response.status_code, bytes(status.response.body or b"")
    raise AssertionError("the handshake was accepted")


async def test_the_validated_query_is_what_callbacks_read() -> None:
    async with running(query_app()) as server:
        expected = "Who(name='ada', tags=['a', 'b'], limit=3)"
        answer = await client(ask, url(server, "/f?name=ada&tags=a&tags=b&limit=3"))
        assert answer == f"{expected} {expected}"  # already in on_connect
        assert await client(ask, url(server, "/c?name=ada&tags=a&tags=b&limit=3")) == expected
        assert await client(ask, url(server, "/other?name=ada")) == "None"  # declares none


@pytest.mark.parametrize("path", ["/f", "/c"])
async def test_a_query_that_does_not_fit_is_refused_before_on_connect(path: str) -> None:
    app = query_app()
    async with running(app) as server:
        status, body = await client(refused, url(server, f"{path}?name="))
    assert (status, body) == (
        400,
        b"invalid query: name: String should have at least 1 character\n",
    )
    assert app.metrics.snapshot().counters["handshakes_refused"] == {"400": 1}


def test_the_asyncapi_document_lists_the_query_of_the_channels_that_declare_one() -> None:
    document = check(asyncapi_document(query_app()))
    channels = document["channels"]
    for key in ("f", "c"):
        query = channels[key]["bindings"]["ws"]["query"]
        schema = resolve(document, query["$ref"]) if "$ref" in query else query
        assert schema["type"] == "object"
        assert list(schema["properties"]) == ["name", "tags", "limit"]
        assert schema["required"] == ["name"]
        assert "refused with 400" in channels[key]["description"]
    assert "bindings" not in channels["default"]
