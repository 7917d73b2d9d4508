"""Tests for examples/room.py and examples/auth.py, written the way you would test your app.

Run with `python -m pytest examples/test_room.py`: no server, no ports, both event loops.
"""

from __future__ import annotations

import anyio
import pytest

import wsapp
from examples import auth, room
from wsapp.testing import HandshakeRefused, TestClient, connect

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)  # every async test below runs on asyncio and on Trio


@pytest.fixture
def app() -> wsapp.App:
    return room.app  # the wsapp_client fixture tests this app


async def test_a_message_reaches_the_other_member(wsapp_client: TestClient) -> None:
    with anyio.fail_after(10):  # a bound for the whole test, on top of each wait's own
        # Entered, the client is one run of the app that both connections share.
        async with wsapp_client, wsapp_client.connect("/rooms/blue") as alice:
            assert await alice.receive() == "joined blue (1 here)"
            async with wsapp_client.connect("/rooms/blue") as bob:
                assert await bob.receive() == "joined blue (2 here)"
                await alice.send("hi bob")
                message = await bob.receive()
                assert isinstance(message, str)
                assert message.endswith(": hi bob")
                with pytest.raises(TimeoutError):
                    await alice.receive(timeout=0.1)  # the sender gets no copy


async def test_a_missing_token_is_refused_with_401() -> None:
    with anyio.fail_after(10), pytest.raises(HandshakeRefused) as refused:
        async with connect(auth.app, "/"):
            pass
    assert refused.value.status == 401
    assert refused.value.headers["WWW-Authenticate"] == "Bearer"
    assert refused.value.body == b"a valid token is required"


async def test_a_valid_token_is_greeted() -> None:
    with anyio.fail_after(10):
        async with connect(auth.app, "/?token=s3cret") as ws:
            assert await ws.receive() == "hello alice"


def test_without_async(wsapp_client: TestClient) -> None:
    with wsapp_client.connect("/rooms/red") as ws:
        assert ws.receive() == "joined red (1 here)"
