"""The tutorial's tests for examples/chat_rooms.py: `python -m pytest examples/test_chat_rooms.py`.

In-process (no server, no port), on asyncio and on Trio, every wait bounded. A test of several
connections opens them from one running app (`TestClient`), as a server would hold them: each
`connect(app, ...)` on its own is a whole run of the app, start-up hooks and background tasks
included.
"""

from __future__ import annotations

import anyio
import pytest

from examples.chat_rooms import app
from wsapp.testing import HandshakeRefused, TestClient, connect

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_everyone_in_the_room_hears_what_is_said() -> None:
    with anyio.fail_after(10):
        async with TestClient(app) as client, client.connect("/rooms/lobby?name=ada") as ada:
            assert await ada.receive_json() == {"type": "here", "room": "lobby", "names": ["ada"]}
            async with client.connect("/rooms/lobby?name=bob") as bob:
                assert (await bob.receive_json())["names"] == ["ada", "bob"]
                assert await ada.receive_json() == {
                    "type": "arrived", "room": "lobby", "name": "bob"
                }  # fmt: skip
                await ada.send_json({"type": "say", "text": "hello"})
                said = {"type": "said", "room": "lobby", "name": "ada", "text": "hello"}
                assert await bob.receive_json() == said
                assert await ada.receive_json() == said  # the speaker hears it too
            assert await ada.receive_json() == {"type": "left", "room": "lobby", "name": "bob"}


async def test_a_message_that_is_not_in_the_protocol_gets_an_error_reply() -> None:
    with anyio.fail_after(10):
        async with connect(app, "/rooms/lobby?name=ada") as ada:
            await ada.receive_json()
            await ada.send_json({"type": "shout", "text": "HELLO"})
            assert (await ada.receive_json())["error"] == "invalid_message"


async def test_a_name_is_required() -> None:
    with anyio.fail_after(10), pytest.raises(HandshakeRefused) as refused:
        async with connect(app, "/rooms/lobby"):
            pass
    assert refused.value.status == 400
