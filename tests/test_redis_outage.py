"""The Redis broker through an outage, against a real redis-server stopped (by its PID) and
started again on the same port: the tutorial's app keeps serving, a process's broadcasts
keep reaching its own members, rooms resume within a second of Redis coming back, with
exactly the rooms that have members then; and the broker's start-up failures, which the CLI
reports in one line."""

from __future__ import annotations

import gc
import itertools
import logging
import os
import re
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import coredis
import pytest
from anyio.abc import SocketStream

import wsapp
from examples import chat_rooms
from tests.helpers import RedisServer, poll_until, port, run_cli, running, serving
from tests.rawclient import OP_TEXT, RawClient, close_frame
from tests.test_redis import Chatter, chatter

pytestmark = [
    pytest.mark.timeout(40),
    # coredis leaves the buffers of a connection that failed to connect unclosed (each
    # attempt during an outage), for the garbage collector: see `collect_garbage`.
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function MemoryObject"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]

#: The longest wait between two reconnection attempts (`RETRY_MAX`), with slack for a busy
#: machine.
MAX_GAP = 1.5
#: What the broker logs of an outage when it is over.
LOST = re.compile(r"(\d+) broadcast\(s\) reached this process's members only meanwhile")


@pytest.fixture(autouse=True)
def collect_garbage() -> Iterator[None]:
    """Collect what coredis left unclosed before the test ends, while the filter above
    applies, instead of in whichever test runs when the collector does."""
    yield
    for _ in range(5):  # one pass does not always collect everything
        gc.collect()


@asynccontextmanager
async def member(server: wsapp.Server, name: str, room: str = "lobby") -> AsyncIterator[Chatter]:
    """A member of examples/chat_rooms.py served in this process (on the test's backend)."""
    async with RawClient.connect(port(server), f"/rooms/{room}?name={name}") as raw:
        yield Chatter(raw)
        await raw.send(close_frame(1000))


def serve_chat(redis: RedisServer, **settings: Any) -> Any:
    """examples/chat_rooms.py served in this process through ``redis``."""
    return running(chat_rooms.app, overrides={"broker": redis.url, **settings})


class StandIn:
    """Listens on Redis' port while Redis is down, as a host whose Redis is restarting
    does: every connection is closed at once, and the time it came is recorded."""

    def __init__(self) -> None:
        self.attempts: list[float] = []
        self._changed = anyio.Event()

    async def refuse(self, stream: SocketStream) -> None:
        self.attempts.append(anyio.current_time())
        self._changed.set()
        self._changed = anyio.Event()
        await stream.aclose()

    async def wait_for(self, count: int) -> None:
        while len(self.attempts) < count:
            await self._changed.wait()

    def gaps(self) -> list[float]:
        return [later - earlier for earlier, later in itertools.pairwise(self.attempts)]


@asynccontextmanager
async def outage(redis: RedisServer, attempts: int) -> AsyncIterator[StandIn]:
    """Stop Redis and stand in for it for the block, and then until ``attempts`` connections
    came (the broker's attempts to reconnect: an idle app makes no other); then start Redis
    again, empty."""
    await redis.stop()
    stand_in = StandIn()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=redis.port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, stand_in.refuse)
        yield stand_in
        await stand_in.wait_for(attempts)
        tg.cancel_scope.cancel()
    await redis.start()


async def names(conn: Chatter) -> list[str]:
    """Who is in the lobby, as the app's `who` answers (from `app.rooms.presence`)."""
    await conn.send(type="who")
    return list((await conn.next_of("here"))["names"])


def warnings(logs: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in logs.records if (r.name, r.levelno) == ("wsapp", logging.WARNING)
    ]


@pytest.mark.anyio
async def test_the_tutorial_app_welcomes_new_members_while_redis_is_down(
    anyio_backend: str, wsapp_logs: pytest.LogCaptureFixture
) -> None:
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(RedisServer())
        server = await stack.enter_async_context(serve_chat(redis, presence_ttl=1))
        common = ("--broker", redis.url, "--presence-ttl", "1", "--backend", anyio_backend)
        other = await stack.enter_async_context(
            serving("examples.chat_rooms:app", *common, stop=True)
        )
        ann = await stack.enter_async_context(member(server, "ann"))
        assert (await ann.next_of("here"))["names"] == ["ann"]
        bob = await stack.enter_async_context(chatter(other, "bob"))
        assert (await bob.next_of("here"))["names"] == ["ann", "bob"]

        await redis.stop()
        # on_open lists who is there (app.rooms.presence): during the outage that is this
        # process's members, and cat is welcomed instead of closed with 1011.
        cat = await stack.enter_async_context(member(server, "cat"))
        assert await cat.next() == {"type": "here", "room": "lobby", "names": ["ann", "cat"]}
        assert await names(ann) == ["ann", "cat"]
        (warning,) = warnings(wsapp_logs)  # said once, not once per call
        assert "presence lists them alone" in warning

        await redis.start()  # empty: each process rewrites its presence when it reconnects

        async def everyone() -> bool:
            return await names(ann) == ["ann", "bob", "cat"]

        await poll_until(everyone, within=5)


@pytest.mark.anyio
async def test_rooms_resume_within_a_second_of_redis_coming_back(
    wsapp_logs: pytest.LogCaptureFixture,
) -> None:
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(RedisServer())
        server = await stack.enter_async_context(serve_chat(redis, presence_ttl=60))
        ann = await stack.enter_async_context(member(server, "ann"))
        await ann.next_of("here")

        # A long outage does not make the broker wait longer and longer between attempts.
        async with outage(redis, attempts=9) as stand_in:
            pass
        assert max(stand_in.gaps()) <= MAX_GAP, stand_in.gaps()

        publisher = await stack.enter_async_context(wsapp.Publisher(redis.url))
        said = {"type": "said", "room": "lobby", "name": "cron", "text": "back?"}
        with anyio.fail_after(MAX_GAP + 1):  # the next attempt, and its round trips
            while True:
                await publisher.broadcast_json("lobby", said)
                with anyio.move_on_after(0.1):
                    assert await ann.next_of("said") == said
                    break
        # (An earlier line, if any, is from a reconnection to Redis as it was shutting down.)
        back = [r.getMessage() for r in wsapp_logs.records if "connected again" in r.getMessage()]
        assert "1 room(s) subscribed and presence restored" in back[-1]


@pytest.mark.anyio
async def test_a_process_s_broadcasts_reach_its_own_members_until_it_is_resubscribed(
    wsapp_logs: pytest.LogCaptureFixture,
) -> None:
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(RedisServer())
        server = await stack.enter_async_context(serve_chat(redis, presence_ttl=60))
        ann = await stack.enter_async_context(member(server, "ann"))
        await ann.next_of("here")

        async with outage(redis, attempts=9):
            await ann.send(type="say", text="while redis is down")
            assert (await ann.next_of("said"))["text"] == "while redis is down"
        # Redis is back, and this process is not subscribed again yet (it waits up to a
        # second between attempts): what it broadcasts still reaches its own members.
        await ann.send(type="say", text="anyone?")
        with anyio.fail_after(0.5):
            assert (await ann.next_of("said"))["text"] == "anyone?"

        def reported() -> list[str]:
            return [
                m for m in map(logging.LogRecord.getMessage, wsapp_logs.records) if LOST.search(m)
            ]

        async def reconnected() -> bool:
            return bool(reported())

        await poll_until(reconnected, within=5)
        # What reached ann's process alone is counted: lost for the others.
        match = LOST.search(reported()[-1])
        assert match is not None and int(match[1]) >= 1


@pytest.mark.anyio
async def test_after_an_outage_exactly_the_rooms_with_members_are_subscribed() -> None:
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(RedisServer())
        server = await stack.enter_async_context(serve_chat(redis))
        ann = await stack.enter_async_context(member(server, "ann", "lobby"))
        await ann.next_of("here")
        async with member(server, "cat", "kitchen") as cat:
            await cat.next_of("here")
            await redis.stop()
        # cat left: the kitchen is empty, and dan joins the garden, both during the outage.

        async def kitchen_empty() -> bool:
            return "kitchen" not in chat_rooms.app.rooms.names()

        await poll_until(kitchen_empty, within=5)
        dan = await stack.enter_async_context(member(server, "dan", "garden"))
        await dan.next_of("here")

        await redis.start()
        client = await stack.enter_async_context(coredis.Redis.from_url(redis.url))

        async def subscribed() -> set[bytes]:
            return set(await client.pubsub_channels(pattern="wsapp:room:*"))

        async def resubscribed() -> bool:
            return bool(await subscribed())

        await poll_until(resubscribed, within=5)  # how soon is another test's matter
        assert await subscribed() == {b"wsapp:room:lobby", b"wsapp:room:garden"}
        publisher = await stack.enter_async_context(wsapp.Publisher(redis.url))
        await publisher.broadcast("garden", "rain tonight")
        assert await dan.raw.read_frame() == (True, OP_TEXT, b"rain tonight")


@pytest.mark.anyio
async def test_a_server_stops_promptly_during_an_outage() -> None:
    async with RedisServer() as redis:
        async with serve_chat(redis) as server:
            async with member(server, "ann") as ann:
                await ann.next_of("here")
                await redis.stop()
            stopping = anyio.current_time()
        # Nothing waits on Redis: not the subscriber, nor the withdrawal of presence.
        assert anyio.current_time() - stopping < 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def one_line_error(*args: str, env: dict[str, str] | None = None) -> str:
    """The one line the CLI prints when serving examples/chat_rooms.py with ``args`` cannot
    start, checking it is one line, after `wsapp: error: `, and exit status 2."""
    result = run_cli("examples.chat_rooms:app", "--port", "0", *args, env=env)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("wsapp: error: ")
    return line.removeprefix("wsapp: error: ")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_unreachable_broker_is_one_line_and_exit_2(backend: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    message = one_line_error("--broker", url, "--backend", backend)
    assert message.startswith(f"cannot reach the broker {url}: Unable to establish a connection")
    assert message.endswith("; start Redis there, or correct the broker URL")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://127.0.0.1:six/0", "Port could not be cast to integer value as 'six'"),
        ("redis://127.0.0.1:70000/0", "Port out of range 0-65535"),
        ("redis://127.0.0.1:6379/zero", "the database must be a number, not 'zero'"),
        ("redis:///0", "no host"),
        ("redis://:hunter2@127.0.0.1:six/0", "Port could not be cast to integer value as 'six'"),
    ],
)
def test_a_malformed_broker_url_is_one_line_and_exit_2(url: str, problem: str) -> None:
    message = one_line_error("--broker", url)
    shown = url.replace("hunter2", "***")
    assert message == (
        f"broker {shown!r} is not a Redis URL ({problem}): use redis://host:port/db "
        "(or rediss://..., unix:///path/redis.sock)"
    )


def test_redis_without_the_extra_installed_says_what_to_install(tmp_path: Path) -> None:
    shadow = tmp_path / "coredis"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'coredis'\")\n")
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    url = f"redis://127.0.0.1:{free_port()}/0"
    message = one_line_error("--broker", url, env={"PYTHONPATH": path})
    assert message == (
        f"the broker {url} is a Redis server, and talking to Redis needs the redis extra: "
        "pip install 'wsapp[redis]'"
    )
