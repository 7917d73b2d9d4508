"""The health path: 200 while serving, 503 once a shutdown has begun, for load balancers."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect

import wsapp
from tests import helpers
from tests.helpers import client, port, url
from tests.test_handshake import http_exchange
from wsapp.operations.metrics import Metrics
from wsapp.operations.plainhttp import plain_answer
from wsapp.rooms import Rooms
from wsapp.transport import OpenConnections

pytestmark = pytest.mark.anyio


# The answer, without sockets


@pytest.mark.parametrize(
    ("method", "serving", "status", "body"),
    [
        ("GET", True, 200, b"ok\n"),
        ("GET", False, 503, b"shutting down\n"),
        ("HEAD", True, 200, b""),
        ("HEAD", False, 503, b""),
        ("POST", True, 405, b"this path answers GET and HEAD\n"),
    ],
)
def test_the_answer_is_200_while_serving_and_503_once_stopping(
    method: str, serving: bool, status: int, body: bytes
) -> None:
    settings = wsapp.Settings(health_path="/healthz")
    answer = plain_answer(
        settings, Metrics(Rooms(), OpenConnections()), "/healthz", method, serving=serving
    )
    assert answer is not None
    answer_status, headers, answer_body = answer
    assert (answer_status, answer_body) == (status, body)
    assert ("Cache-Control", "no-store") in headers  # a cached 200 would hide the drain


def test_other_paths_are_not_answered_as_plain_http() -> None:
    settings = wsapp.Settings(health_path="/healthz")
    assert (
        plain_answer(settings, Metrics(Rooms(), OpenConnections()), "/chat", "GET", serving=True)
        is None
    )


@pytest.mark.parametrize("path", ["healthz", ""])
def test_a_health_path_must_be_a_path(path: str) -> None:
    with pytest.raises(wsapp.ConfigError, match="must start with '/'"):
        wsapp.Settings(health_path=path)


def test_a_drain_delay_cannot_be_negative() -> None:
    with pytest.raises(wsapp.ConfigError, match="drain_delay"):
        wsapp.Settings(drain_delay=-1)


# The built-in server


def echo_app(**settings: Any) -> wsapp.App:
    return helpers.echo_app(health_path="/healthz", **settings)


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()


async def echo_once(address: str) -> object:
    async with connect(address) as ws:
        await ws.send("still serving")
        return await ws.recv()


async def test_the_health_path_answers_plain_http_and_nothing_else_changes() -> None:
    async with anyio.create_task_group() as tg:
        server = await tg.start(echo_app().serve, "127.0.0.1", 0)
        ok = await http_exchange(port(server), get("/healthz"))
        assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and ok.endswith(b"\r\n\r\nok\n")
        head = await http_exchange(port(server), get("/healthz", "HEAD"))
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
        plain = await http_exchange(port(server), get("/elsewhere"))
        assert plain.startswith(b"HTTP/1.1 426 ")  # every other plain request, as before
        assert await client(echo_once, url(server)) == "still serving"
        server.shutdown()


async def test_a_shutdown_answers_503_and_keeps_serving_for_drain_delay_then_closes_with_1001() -> (
    None
):
    codes: list[int | None] = []
    app = echo_app(drain_delay=2)
    opened = anyio.Event()

    @app.on_open
    async def first_client(conn: wsapp.Connection) -> None:
        opened.set()

    async def stay_open(address: str) -> None:
        async with connect(address) as ws:
            await ws.wait_closed()
            codes.append(ws.close_code)

    async with anyio.create_task_group() as tg:
        server = await tg.start(app.serve, "127.0.0.1", 0)
        tg.start_soon(client, stay_open, url(server))
        await opened.wait()
        server.shutdown()
        drained = await http_exchange(port(server), get("/healthz"))
        assert drained.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert drained.endswith(b"shutting down\n")
        # The balancer has not noticed yet: new clients are still served meanwhile.
        assert await client(echo_once, url(server)) == "still serving"
    assert codes == [1001]  # then the drain ended and the shutdown went on as always


async def test_a_forced_shutdown_cuts_the_drain_short() -> None:
    async with anyio.create_task_group() as tg:
        # A drain far longer than the test's timeout: only the forced shutdown ends it.
        server = await tg.start(echo_app(drain_delay=3600).serve, "127.0.0.1", 0)
        server.shutdown()
        assert (await http_exchange(port(server), get("/healthz"))).startswith(b"HTTP/1.1 503")
        server.force_shutdown()
    assert server.forced
