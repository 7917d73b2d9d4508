"""wsapp under daphne: a host without the `websocket.http.response` extension, on Autobahn.

Daphne runs as a subprocess (Twisted's reactor owns its process); the test's event loop only
drives the `websockets` client thread and reads what the app prints.
"""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.asgi.hosts import daphne_server, http_get
from tests.helpers import client

pytestmark = pytest.mark.anyio


async def test_refusal_falls_back_to_a_bare_403() -> None:
    async def refused(address: str) -> tuple[int, str | None, bytes]:
        try:
            async with connect(address):
                pass
        except InvalidStatus as exc:
            response = exc.response
            return (
                response.status_code,
                response.headers.get("WWW-Authenticate"),
                bytes(response.body or b""),
            )
        raise AssertionError("the handshake was accepted")

    async def greeting(address: str) -> str:
        async with connect(address) as ws:
            return str(await ws.recv())

    async with daphne_server("examples.auth:app") as daphne:
        # Without the extension the app can only close before accepting, which daphne
        # turns into its own 403: the app's 401, WWW-Authenticate and body are lost.
        assert await client(refused, daphne.listening.url()) == (403, None, b"")
        # The refusal was the app's decision, not daphne failing: a token gets in.
        assert await client(greeting, daphne.listening.url("/?token=s3cret")) == "hello alice"


async def test_plain_http_gets_426_on_a_route_and_404_elsewhere() -> None:
    async with daphne_server("examples.room:app") as daphne:
        routed = await http_get(daphne.listening, "/rooms/a")
        unknown = await http_get(daphne.listening, "/nope")
    assert (routed.status, routed.headers.get("Upgrade")) == (426, "websocket")
    assert (unknown.status, unknown.body) == (404, b"no WebSocket endpoint at /nope\n")


async def test_accept_keeps_the_subprotocol_but_drops_response_headers() -> None:
    async def talk(address: str) -> tuple[str | None, str | None]:
        async with connect(address, subprotocols=["chat"]) as ws:  # type: ignore[list-item]
            assert ws.response is not None
            return ws.subprotocol, ws.response.headers.get("X-Session")

    async with daphne_server("tests.asgi.daphne_app:app") as daphne:
        # daphne's websocket.accept handling reads "subprotocol" and ignores "headers".
        assert await client(talk, daphne.listening.url()) == ("chat", None)


async def close_after(address: str, trigger: str) -> tuple[str, int | None, str | None]:
    """Echo a message at the size limit, then ``trigger`` a close: what the client saw."""
    async with connect(address) as ws:
        await ws.send("x" * 1000)
        echoed = str(await ws.recv())
        if trigger == "client-close":
            await ws.close(4001, "bye")
        else:
            await ws.send(trigger)
            await ws.wait_closed()
        return echoed, ws.close_code, ws.close_reason


@pytest.mark.parametrize(
    ("trigger", "seen_by_client", "seen_by_on_close"),
    [
        # Daphne sends the code without the reason; on_close reports what the app asked for.
        pytest.param("close-me", (4000, ""), [True, 4000, "as you wish"], id="conn.close"),
        # Autobahn's sendClose takes only 1000 and 3000-4999 from an application: daphne
        # treats wsapp's close with 1011 or 1009 as an application crash, fails the
        # connection with 1011 itself and reports it lost (no clean closing handshake).
        pytest.param("fail", (1011, ""), [False, 1011, "internal error"], id="callback-raises"),
        pytest.param(
            "x" * 1001, (1011, ""), [False, 1009, "message over 1000 bytes"], id="max_message_size"
        ),
        # Daphne passes the client's code on but not its reason, and Autobahn answers any
        # close with 1000.
        pytest.param("client-close", (1000, ""), [True, 4001, ""], id="client-close"),
    ],
)
async def test_close_codes(
    trigger: str, seen_by_client: tuple[int, str], seen_by_on_close: list[object]
) -> None:
    async with daphne_server("tests.asgi.daphne_app:app") as daphne:
        echoed, *closed = await client(close_after, daphne.listening.url(), trigger)
        on_close = await daphne.output.wait_for("on_close ")
    assert echoed == "x" * 1000
    assert tuple(closed) == seen_by_client
    assert json.loads(on_close.removeprefix("on_close ")) == seen_by_on_close
    # All daphne printed until it exited: on_close ran once.
    assert sum(line.startswith("on_close ") for line in daphne.output.lines) == 1
