"""A wsapp app mounted in a Starlette site, served by real hosts: Starlette keeps its own HTTP
routes, wsapp serves the WebSockets under the mount, and the site runs wsapp's hooks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import wsapp
from examples import starlette_mount
from tests.asgi.hosts import UPGRADE_REQUIRED, Host, http_get
from tests.helpers import Trace, client

pytestmark = pytest.mark.anyio


def site(trace: Trace) -> Starlette:
    ws = wsapp.App()

    @ws.on_startup
    async def open_rooms() -> None:
        ws.state.topic = "set at start-up"
        trace.add("startup")

    @ws.on_shutdown
    async def close_rooms() -> None:
        trace.add("shutdown")

    @ws.route("/rooms/{name}")
    class Room(wsapp.Connector):
        async def on_open(self) -> None:
            request = self.conn.request
            trace.add("open", request.path)
            seen = {"path": request.path, "params": request.path_params, "topic": ws.state.topic}
            await self.conn.send(json.dumps(seen))

        async def on_message(self, message: str | bytes) -> None:
            await self.conn.send(message)

        async def on_close(self, was_clean: bool, code: int, reason: str) -> None:
            trace.record_close(was_clean, code, reason)

    async def homepage(request: Request) -> PlainTextResponse:
        return PlainTextResponse("the Starlette home page")

    # Starlette does not pass the lifespan scope on to mounted apps: the site runs the hooks.
    return Starlette(routes=[Mount("/ws", app=ws), Route("/", homepage)], lifespan=ws.lifespan)


async def test_mounted_app_serves_websockets_next_to_starlette_routes(host: Host) -> None:
    async def talk(address: str) -> tuple[dict[str, Any], str]:
        async with connect(address) as ws:
            seen = json.loads(await ws.recv())
            await ws.send("echo")
            return seen, str(await ws.recv())

    trace = Trace()
    async with host.serve(site(trace)) as served:
        home = await http_get(served, "/")
        assert (home.status, home.body) == (200, b"the Starlette home page")

        seen, echoed = await client(talk, served.url("/ws/rooms/a"))
        # Routes match the path relative to the mount, and the hooks' state is there.
        assert seen == {"path": "/rooms/a", "params": {"name": "a"}, "topic": "set at start-up"}
        assert echoed == "echo"
        await trace.closed.wait()
        assert "shutdown" not in trace.names()
    assert trace.names() == ["startup", "open", "close", "shutdown"]


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        # Under the mount, wsapp answers plain HTTP itself, by the path relative to the mount.
        ("/ws/rooms/a", 426, UPGRADE_REQUIRED),
        ("/ws/nope", 404, b"no WebSocket endpoint at /nope\n"),
        # Outside it, Starlette does.
        ("/nope", 404, b"Not Found"),
    ],
)
async def test_plain_http_under_and_outside_the_mount(
    host: Host, path: str, status: int, body: bytes
) -> None:
    async with host.serve(site(Trace())) as served:
        response = await http_get(served, path)
    assert (response.status, response.body) == (status, body)


async def test_websocket_to_an_unknown_path_under_the_mount_is_refused_with_404(
    host: Host,
) -> None:
    async def refused(address: str) -> tuple[int, bytes]:
        try:
            async with connect(address):
                pass
        except InvalidStatus as exc:
            return exc.response.status_code, bytes(exc.response.body or b"")
        raise AssertionError("the handshake was accepted")

    trace = Trace()
    async with host.serve(site(trace)) as served:
        assert await client(refused, served.url("/ws/nope")) == (
            404,
            b"no WebSocket endpoint at /nope\n",
        )
    assert "open" not in trace.names()


async def test_the_starlette_mount_example(host: Host) -> None:
    async def visit(address: str) -> str:
        async with connect(address) as ws:
            return str(await ws.recv())

    async with host.serve(starlette_mount.site) as served:
        home = await http_get(served, "/")
        assert (home.status, home.body) == (
            200,
            b"an HTTP page next to the WebSocket endpoints",
        )
        # The count starts at 0 in its start-up hook: each serve begins with visit 1.
        assert await client(visit, served.url("/ws/rooms/a")) == "/rooms/a visit 1"
        assert await client(visit, served.url("/ws/rooms/b")) == "/rooms/b visit 2"


async def test_a_mount_without_lifespan_is_served_with_one_warning(
    host: Host, wsapp_logs: pytest.LogCaptureFixture
) -> None:
    ws = wsapp.App()
    ws.on_startup(lambda: None)

    @ws.on_message
    async def echo_back(conn: wsapp.Connection, message: wsapp.Message) -> wsapp.Message:
        return message

    async def echo(address: str) -> str:
        async with connect(address) as conn:
            await conn.send("hi")
            return str(await conn.recv())

    forgot = Starlette(routes=[Mount("/ws", app=ws)])  # no lifespan=ws.lifespan
    async with host.serve(forgot) as served:
        assert await client(echo, served.url("/ws/")) == "hi"
        assert await client(echo, served.url("/ws/")) == "hi"
    warnings = [r.getMessage() for r in wsapp_logs.records if "have not run" in r.getMessage()]
    assert len(warnings) == 1
    assert "Pass lifespan=app.lifespan to the host app." in warnings[0]
