"""Plain HTTP is routed before it is refused: 426 on an endpoint's path, 404 on a path nothing
serves (the answer a handshake there gets too), on the built-in server and under an ASGI host
alike, over real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest

import wsapp
from tests.asgi.hosts import UPGRADE_REQUIRED, Listening, http_get, hypercorn_server
from tests.helpers import echo_app, port, running

pytestmark = pytest.mark.anyio

Serve = Callable[[wsapp.App], AbstractAsyncContextManager[Listening]]


@asynccontextmanager
async def builtin(app: wsapp.App) -> AsyncIterator[Listening]:
    async with running(app) as server:
        yield Listening(port(server))


SERVERS = [pytest.param(builtin, id="builtin"), pytest.param(hypercorn_server, id="hypercorn")]


def rooms_app() -> wsapp.App:
    """One route and no top-level callbacks: every other path is served by nothing."""
    app = wsapp.App(health_path="/healthz")

    @app.route("/rooms/{room}")
    class Room(wsapp.Connector):
        pass

    return app


@pytest.mark.parametrize("serve", SERVERS)
@pytest.mark.parametrize(
    ("path", "status", "upgrade", "body"),
    [
        pytest.param("/nope", 404, None, b"no WebSocket endpoint at /nope\n", id="unserved"),
        pytest.param("/rooms/", 404, None, b"no WebSocket endpoint at /rooms/\n", id="no-room"),
        pytest.param("/rooms/a?x=1", 426, "websocket", UPGRADE_REQUIRED, id="endpoint"),
        pytest.param("/healthz", 200, None, b"ok\n", id="health"),
    ],
)
async def test_plain_http_gets_404_where_nothing_serves_and_426_on_an_endpoints_path(
    serve: Serve, path: str, status: int, upgrade: str | None, body: bytes
) -> None:
    async with serve(rooms_app()) as listening:
        response = await http_get(listening, path)
    assert (response.status, response.headers.get("Upgrade"), response.body) == (
        status,
        upgrade,
        body,
    )


@pytest.mark.parametrize("serve", SERVERS)
async def test_an_app_with_top_level_callbacks_serves_every_path(serve: Serve) -> None:
    async with serve(echo_app()) as listening:
        response = await http_get(listening, "/anything/at/all")
    assert (response.status, response.body) == (426, UPGRADE_REQUIRED)
