"""Every example in examples/ does what its docstring says."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from examples import auth, chat_rooms, chat_typed, echo, reader, room, subprotocols
from tests.helpers import client, running, url
from wsapp.testing import HandshakeRefused, TestClient

pytestmark = pytest.mark.anyio


async def test_echo() -> None:
    async def talk(address: str) -> list[Any]:
        async with connect(address) as ws:
            await ws.send("text")
            await ws.send(b"\x00bytes")
            return [await ws.recv(), await ws.recv()]

    async with running(echo.app) as server:
        assert await client(talk, url(server)) == ["text", b"\x00bytes"]


async def test_auth() -> None:
    async def talk(address: str, **options: Any) -> Any:
        try:
            async with connect(address, **options) as ws:
                greeting = await ws.recv()
                await ws.send("hi")
                return greeting, await ws.recv()
        except InvalidStatus as exc:
            return exc.response.status_code, exc.response.body

    async with running(auth.app) as server:
        assert await client(talk, url(server)) == (401, b"a valid token is required")
        bearer = {"Authorization": "Bearer s3cret"}
        assert await client(talk, url(server), additional_headers=bearer) == (
            "hello alice",
            "hi",
        )
        assert await client(talk, url(server, "/?token=s3cret")) == ("hello alice", "hi")


async def test_subprotocols() -> None:
    async def talk(address: str, offered: list[str]) -> Any:
        try:
            async with connect(address, subprotocols=offered) as ws:  # type: ignore[arg-type]
                await ws.send('{"n": 1}')
                return ws.subprotocol, await ws.recv()
        except InvalidStatus as exc:
            return exc.response.status_code

    async with running(subprotocols.app) as server:
        protocol, reply = await client(talk, url(server), ["json.v2", "json.v1"])
        assert (protocol, json.loads(reply)) == ("json.v2", {"version": 2, "echo": {"n": 1}})
        assert await client(talk, url(server), ["json.v1"]) == ("json.v1", '{"n": 1}')
        assert await client(talk, url(server), ["xml"]) == 400


async def test_reader() -> None:
    async def talk(address: str) -> Any:
        async with connect(address) as ws:
            for message in ["1", "2", "39", "end"]:
                await ws.send(message)
            total = await ws.recv()
            await ws.wait_closed()
            return total, ws.close_code

    async with running(reader.app) as server:
        assert await client(talk, url(server)) == ("total 42", 1000)


async def test_room() -> None:
    async def talk(base: str) -> Any:
        async with connect(base + "/rooms/blue") as alice:
            joined_alice = await alice.recv()
            async with connect(base + "/rooms/blue") as bob, connect(base + "/rooms/red") as eve:
                joined = [joined_alice, await bob.recv(), await eve.recv()]
                await bob.send("hello blue")
                heard = str(await alice.recv())
                return joined, heard.split(": ", 1)[1]

    async with running(room.app) as server:
        joined, heard = await client(talk, server.urls[0])
    assert joined == ["joined blue (1 here)", "joined blue (2 here)", "joined red (1 here)"]
    assert heard == "hello blue"


async def test_chat_typed() -> None:
    async def chat(address: str) -> dict[str, list[Any]]:
        seen: dict[str, list[Any]] = {"ann": [], "bob": []}
        async with connect(address) as ann, connect(address) as bob:

            async def expect(who: str, ws: Any, count: int) -> None:
                seen[who].extend([json.loads(await ws.recv()) for _ in range(count)])

            await ann.send('{"type": "join", "name": "ann"}')
            await expect("ann", ann, 2)
            await bob.send('{"type": "join", "name": "bob"}')
            await expect("bob", bob, 2)
            await expect("ann", ann, 1)
            await ann.send('{"type": "say", "text": "hi"}')
            await expect("ann", ann, 1)
            await expect("bob", bob, 1)
            await bob.send('{"type": "dance"}')
            await expect("bob", bob, 1)
            await bob.send('{"type": "leave"}')
            await bob.wait_closed()
            seen["bob"].append([bob.close_code, bob.close_reason])
            await expect("ann", ann, 1)
        return seen

    async with running(chat_typed.app) as server:
        seen = await client(chat, url(server))
    said = {"type": "said", "name": "server"}
    assert seen["ann"] == [
        {**said, "text": "ann joined"},
        {"type": "welcome", "members": ["ann"]},
        {**said, "text": "bob joined"},
        {"type": "said", "name": "ann", "text": "hi"},
        {**said, "text": "bob left"},
    ]
    assert seen["bob"][:3] == [
        {**said, "text": "bob joined"},
        {"type": "welcome", "members": ["ann", "bob"]},
        {"type": "said", "name": "ann", "text": "hi"},
    ]
    invalid = seen["bob"][3]
    assert (invalid["type"], invalid["error"]) == ("error", "invalid_message")
    assert invalid["detail"][0]["type"] == "union_tag_invalid"
    assert seen["bob"][4] == [1000, "bye"]


async def test_chat_rooms() -> None:
    async with TestClient(chat_rooms.app) as test:
        with pytest.raises(HandshakeRefused) as refused:
            async with test.connect("/rooms/lobby?name=no%20spaces"):
                pass
        assert refused.value.status == 400
        async with test.connect("/rooms/lobby?name=ann") as ann:
            assert await ann.receive_json() == {"type": "here", "room": "lobby", "names": ["ann"]}
            async with test.connect("/rooms/kitchen?name=bob") as bob:
                await bob.receive_json()
                await bob.send_json({"type": "join", "room": "lobby"})
                assert await ann.receive_json() == {
                    "type": "arrived",
                    "room": "lobby",
                    "name": "bob",
                }
                assert (await bob.receive_json())["names"] == ["ann", "bob"]
                await bob.send_json({"type": "say", "text": "hi all", "room": "lobby"})
                said = {"type": "said", "room": "lobby", "name": "bob", "text": "hi all"}
                assert await ann.receive_json() == said
                assert await bob.receive_json() == said
                await ann.send_json({"type": "say", "text": "?", "room": "kitchen"})
                assert await ann.receive_json() == {
                    "type": "error",
                    "error": "not_in_room",
                    "room": "kitchen",
                }
                await ann.send_json({"type": "who", "room": "kitchen"})
                assert await ann.receive_json() == {
                    "type": "here",
                    "room": "kitchen",
                    "names": ["bob"],
                }
            # bob left both rooms; ann hears it in the one she shares
            assert await ann.receive_json() == {"type": "left", "room": "lobby", "name": "bob"}
