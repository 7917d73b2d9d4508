"""Rooms across processes through a real redis-server: two `python -m wsapp` processes (one on
asyncio, one on Trio) serving examples/chat_rooms.py, an external Publisher, presence that
expires with a dead process, and Redis going away in the middle."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest

import wsapp
from tests.helpers import RedisServer, Served, poll_until, serving
from tests.rawclient import OP_TEXT, RawClient, close_frame, frame

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(40)]


def port_of(served: Served) -> int:
    return int(served.url.rsplit(":", 1)[1])


class Chatter:
    """A member of examples/chat_rooms.py over raw frames (works on asyncio and Trio)."""

    def __init__(self, raw: RawClient) -> None:
        self.raw = raw

    async def send(self, **message: Any) -> None:
        await self.raw.send(frame(OP_TEXT, json.dumps(message).encode()))

    async def next(self) -> dict[str, Any]:
        fin, opcode, payload = await self.raw.read_frame()
        assert (fin, opcode) == (True, OP_TEXT)
        return dict(json.loads(payload))

    async def next_of(self, kind: str) -> dict[str, Any]:
        while (message := await self.next())["type"] != kind:
            pass
        return message


@asynccontextmanager
async def chatter(served: Served, name: str, room: str = "lobby") -> AsyncIterator[Chatter]:
    async with RawClient.connect(port_of(served), f"/rooms/{room}?name={name}") as raw:
        yield Chatter(raw)
        await raw.send(close_frame(1000))


def cluster(redis: RedisServer) -> list[tuple[str, ...]]:
    """The command lines of two processes sharing the rooms through ``redis``."""
    common = ("examples.chat_rooms:app", "--broker", redis.url, "--presence-ttl", "1")
    return [(*common, "--backend", "asyncio"), (*common, "--backend", "trio")]


async def names(publisher: wsapp.Publisher, room: str = "lobby") -> list[str]:
    return sorted(member.info["name"] for member in await publisher.presence(room))


async def ann_and_bob(
    stack: AsyncExitStack,
) -> tuple[RedisServer, tuple[Served, Served], Chatter, Chatter]:
    """Redis, the two processes of `cluster`, and ann on the first and bob on the second in
    the lobby, each past the greetings of their joining."""
    redis = await stack.enter_async_context(RedisServer())
    one, two = [await stack.enter_async_context(serving(*cmd, stop=True)) for cmd in cluster(redis)]
    ann = await stack.enter_async_context(chatter(one, "ann"))
    await ann.next_of("here")
    bob = await stack.enter_async_context(chatter(two, "bob"))
    await bob.next_of("here")
    await ann.next_of("arrived")
    return redis, (one, two), ann, bob


async def test_rooms_presence_and_an_external_publisher_span_processes() -> None:
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(RedisServer())
        one, two = [
            await stack.enter_async_context(serving(*cmd, stop=True)) for cmd in cluster(redis)
        ]
        ann = await stack.enter_async_context(chatter(one, "ann"))
        assert await ann.next() == {"type": "here", "room": "lobby", "names": ["ann"]}
        async with chatter(two, "bob") as bob:
            # Presence across processes: bob, served by the other one, sees ann.
            assert await bob.next() == {"type": "here", "room": "lobby", "names": ["ann", "bob"]}
            assert await ann.next() == {"type": "arrived", "room": "lobby", "name": "bob"}
            await bob.send(type="say", text="hello from two")
            said = {"type": "said", "room": "lobby", "name": "bob", "text": "hello from two"}
            assert await ann.next() == said
            assert await bob.next() == said
            async with wsapp.Publisher(redis.url) as publisher:
                assert await names(publisher) == ["ann", "bob"]
                await publisher.broadcast_json(
                    "lobby", {"type": "said", "room": "lobby", "name": "cron", "text": "tick"}
                )
                assert (await ann.next())["name"] == (await bob.next())["name"] == "cron"
        assert await ann.next() == {"type": "left", "room": "lobby", "name": "bob"}
        async with wsapp.Publisher(redis.url) as publisher:
            assert await names(publisher) == ["ann"]


async def test_the_presence_of_a_process_that_died_expires() -> None:
    async with AsyncExitStack() as stack:
        redis, (_, two), _, _ = await ann_and_bob(stack)
        publisher = await stack.enter_async_context(wsapp.Publisher(redis.url))
        assert await names(publisher) == ["ann", "bob"]
        two.process.send_signal(signal.SIGKILL)  # no chance to withdraw its presence

        async def only_ann() -> bool:
            return await names(publisher) == ["ann"]

        await poll_until(only_ann, within=5)  # presence_ttl is 1 s


async def test_members_are_served_through_a_redis_restart() -> None:
    async with AsyncExitStack() as stack:
        redis, (one, _), ann, bob = await ann_and_bob(stack)

        await redis.stop()
        # While Redis is gone, a broadcast reaches the publishing process's own members (and
        # only them: Redis pub/sub keeps nothing for later).
        await ann.send(type="say", text="while redis is down")
        assert (await ann.next())["text"] == "while redis is down"
        await one.wait_for(one.stderr, "this process's members are still served")

        await redis.start()  # empty: it remembers no subscription and no presence
        with anyio.fail_after(20):  # the clients reconnect and resubscribe with backoff
            n = 0
            while True:
                n += 1
                await ann.send(type="say", text=f"after {n}")
                with anyio.move_on_after(0.5):
                    heard = await bob.next_of("said")
                    break
        assert heard["text"].startswith("after ")  # nothing sent during the outage arrives
        async with wsapp.Publisher(redis.url) as publisher:

            async def both() -> bool:
                return await names(publisher) == ["ann", "bob"]

            await poll_until(both, within=5)  # the heartbeat (every presence_ttl / 3) restores it
