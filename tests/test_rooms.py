"""Rooms and broadcast in one process, over real sockets: membership, exclusion, ordering,
authorization, presence, what can broadcast, slow consumers, frames, compression."""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Any, Literal

import anyio
import anyio.lowlevel
import pytest
from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection, connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

import wsapp
from tests.helpers import Trace, client, port, running, url
from tests.rawclient import OP_TEXT, RawClient, close_frame
from tests.robustness.helpers import MiB, PeakMemory
from wsapp.rooms import TOO_SLOW
from wsapp.testing import TestClient

pytestmark = pytest.mark.anyio


BIG = "y" * 200_000


class Said(BaseModel):
    type: Literal["said"] = "said"
    text: str


def chat(trace: Trace | None = None, **options: Any) -> wsapp.App:
    """Members of "lobby" (their name from the query) who broadcast what they say."""
    app = wsapp.App(**options)

    @app.on_open
    async def enter(conn: wsapp.Connection) -> None:
        await conn.join("lobby", info={"name": conn.request.query_params.get("name")})
        await conn.send("welcome")

    @app.on_message
    async def command(conn: wsapp.Connection, message: str) -> None:
        verb, _, rest = message.partition(":")
        if verb == "say":
            await app.broadcast("lobby", rest, exclude=conn)
        elif verb == "all":
            await app.broadcast("lobby", rest)
        elif verb == "join":
            await conn.join(rest)
            await conn.send(f"in {sorted(conn.rooms)}")
        elif verb == "leave":
            await conn.leave(rest)
            await conn.send(f"in {sorted(conn.rooms)}")
        elif verb == "to":
            room, _, text = rest.rpartition(":")
            await app.broadcast(room, text)
        elif verb == "who":
            members = await app.rooms.presence("lobby")
            await conn.send(json.dumps(sorted(member.info["name"] for member in members)))
        elif verb == "model":
            await app.broadcast("lobby", Said(text=rest))
        elif verb == "json":
            await app.broadcast_json("lobby", {"n": int(rest), "ok": True})
        elif verb == "bytes":
            await app.broadcast("lobby", rest.encode())
        elif verb == "ack":
            app.state.acks.send_nowait(None)
        elif verb == "big":
            for _ in range(int(rest)):
                await conn.send(BIG)

    @app.on_close
    async def gone(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
        if trace is not None:
            trace.add("in rooms at on_close", sorted(conn.rooms), app.rooms.count("lobby"))
            trace.record_close(was_clean, code, reason)
        await app.broadcast("lobby", f"{conn.request.query_params.get('name')} left")

    return app


async def member(base: str, name: str, **options: Any) -> ClientConnection:
    ws = await connect(f"{base}/?name={name}", **options)
    assert await ws.recv() == "welcome"
    return ws


async def test_a_broadcast_reaches_every_member_but_the_excluded_and_leavers_hear_nothing() -> None:
    trace = Trace()
    app = chat(trace)

    async def talk(base: str) -> list[Any]:
        ann, bob, cid = [await member(base, name) for name in ("ann", "bob", "cid")]
        await ann.send("say:hello")
        heard = [await bob.recv(), await cid.recv()]
        await bob.send("leave:lobby")
        heard.append(await bob.recv())
        await ann.send("say:again")
        heard.append(await cid.recv())
        await ann.send("all:everyone")  # no exclusion: the sender hears it too
        heard += [await ann.recv(), await cid.recv()]
        await cid.close()
        heard.append(await ann.recv())  # cid's on_close broadcast, not to cid itself
        await bob.send("who")
        heard.append(await bob.recv())
        await ann.close()
        await bob.close()
        return heard

    async with running(app) as server:
        heard = await client(talk, url(server, ""))
        await trace.wait_for("close", 3)
    assert heard == [
        "hello",
        "hello",
        "in []",
        "again",
        "everyone",
        "everyone",
        "cid left",
        '["ann"]',
    ]
    # A closing connection has left its rooms before its on_close runs.
    assert ("in rooms at on_close", [], 1) in trace.events
    assert app.rooms.count("lobby") == 0
    assert app.rooms.names() == []


async def test_every_member_receives_the_rooms_messages_in_the_same_order() -> None:
    app = chat()

    async def talk(base: str) -> list[list[str]]:
        listeners = [await member(base, f"l{i}") for i in range(3)]
        talkers = [await member(base, f"t{i}") for i in range(2)]

        async def chatter(ws: ClientConnection, name: str) -> list[str]:
            for n in range(100):
                await ws.send(f"all:{name}{n}")
            return await collect(ws)  # talkers are members too

        async def collect(ws: ClientConnection) -> list[str]:
            return [str(await ws.recv()) for _ in range(200)]

        heard = await asyncio.gather(
            *(collect(ws) for ws in listeners),
            *(chatter(ws, f"t{i}:") for i, ws in enumerate(talkers)),
        )
        for ws in listeners + talkers:
            await ws.close()
        return heard

    async with running(app) as server:
        heard = await client(talk, url(server, ""))
    assert all(received == heard[0] for received in heard)
    for talker in ("t0:", "t1:"):  # and each sender's messages in the order sent
        assert [m for m in heard[0] if m.startswith(talker)] == [f"{talker}{n}" for n in range(100)]


async def test_models_json_and_bytes_are_broadcast_as_send_would_send_them() -> None:
    app = chat()
    async with TestClient(app) as test:
        async with test.connect("/?name=a") as a, test.connect("/?name=b") as b:
            assert await a.receive() == await b.receive() == "welcome"
            await a.send("model:hi")
            assert await b.receive() == '{"type":"said","text":"hi"}'
            await a.send("json:3")
            assert await b.receive() == '{"n":3,"ok":true}'
            await a.send("bytes:raw")
            assert await b.receive() == b"raw"
            with pytest.raises(TypeError, match="broadcast_json"):
                await app.broadcast("lobby", {"not": "a str"})  # type: ignore[arg-type]


async def test_on_join_decides_who_may_join_and_a_refusal_is_a_reply() -> None:
    app = chat()

    @app.on_join("vip:{level:int}")
    async def vip_only(conn: wsapp.Connection, room: str, params: dict[str, Any]) -> bool:
        if conn.request.query_params.get("name") == "mallory":
            raise wsapp.JoinRefused("mallory is banned")
        return conn.request.query_params.get("name") == "ann" and params["level"] < 3

    async with TestClient(app) as test:
        async with test.connect("/?name=ann") as ann, test.connect("/?name=bob") as bob:
            await ann.receive()
            await bob.receive()
            await ann.send("join:vip:1")
            assert await ann.receive() == "in ['lobby', 'vip:1']"
            await bob.send("join:vip:1")
            assert json.loads(await bob.receive()) == {
                "type": "error",
                "error": "join_refused",
                "room": "vip:1",
                "detail": "refused by on_join",
            }
            await bob.send("join:open-room")  # no pattern matches: anyone may join
            assert await bob.receive() == "in ['lobby', 'open-room']"
            await bob.send("to:vip:1:secret")
            assert await ann.receive() == "secret"
        async with test.connect("/?name=mallory") as mallory:
            await mallory.receive()
            await mallory.send("join:vip:2")
            assert json.loads(await mallory.receive())["detail"] == "mallory is banned"
            await mallory.send("who")  # the connection stayed open
            assert json.loads(await mallory.receive()) == ["mallory"]


async def test_broadcasts_from_a_start_up_hook_and_a_background_task() -> None:
    app = chat()
    ticks = anyio.Event()

    @app.on_startup
    async def announce() -> None:
        await app.broadcast("lobby", "nobody is here yet")  # an empty room costs nothing

    @app.background
    async def ticker() -> None:
        while True:
            if app.rooms.count("lobby"):
                await app.broadcast("lobby", "tick")
                ticks.set()
            await anyio.sleep(0.01)

    async with TestClient(app) as test, test.connect("/?name=a") as a:
        assert await a.receive() == "welcome"
        assert await a.receive() == "tick"
    assert app.rooms.stats.broadcasts >= 2


@pytest.mark.parametrize("on_slow", ["close", "drop"])
@pytest.mark.timeout(40)
async def test_a_member_that_stops_reading_never_slows_the_others(on_slow: str) -> None:
    trace = Trace()
    budget = 256 * 1024
    app = chat(trace, outbound_budget=budget, on_slow=on_slow, close_timeout=1)
    send_ack, acks = anyio.create_memory_object_stream[None](100)
    app.state.acks = send_ack
    chunk = "x" * (64 * 1024)
    count = 400  # 25 MiB: far more than the kernel buffers of a stalled socket hold

    async def healthy(base: str) -> int:
        ws = await member(base, "healthy", max_size=None)
        await ws.send("ack")  # joined: the publisher may start
        received = 0
        while received < count:
            assert await ws.recv() == chunk
            received += 1
            await ws.send("ack")
        await ws.close()
        return received

    async def publish() -> None:
        await acks.receive()
        for sent in range(count):
            await app.broadcast("lobby", chunk)
            if sent >= 2:  # as fast as the healthy member reads, never waiting for the stalled
                await acks.receive()

    async with send_ack, acks, running(app) as server:
        async with RawClient.connect(port(server), "/?name=stalled") as stalled:
            assert await stalled.read_frame() == (True, OP_TEXT, b"welcome")  # then no more
            memory = PeakMemory()
            async with anyio.create_task_group() as tg:
                tg.start_soon(publish)
                assert await client(healthy, url(server, "")) == count
            growth = memory.growth
            slow_consumers = app.metrics.snapshot().counters["slow_consumers"]
            assert slow_consumers[on_slow] > 0  # what metrics report, by the action taken
            assert slow_consumers["drop" if on_slow == "close" else "close"] == 0
            if on_slow == "close":
                assert app.rooms.stats.slow_closes == 1
                assert app.rooms.count("lobby") == 0  # it left at once, before its on_close
            else:
                assert app.rooms.stats.dropped > 0
                assert app.rooms.count("lobby") == 1  # still a member: it only missed messages
            await stalled.reset()
        await trace.wait_for("close", 2)
    if on_slow == "close":
        assert ("close", False, 1008, TOO_SLOW) in trace.events
    # Bounded by the budget (plus a message or two in flight), not by what was published.
    assert growth < budget + 2 * len(chunk) + 8 * MiB, memory


async def test_broadcast_frames_and_a_members_own_sends_never_interleave() -> None:
    app = chat()

    async def talk(base: str) -> tuple[int, int]:
        ws = await member(base, "a", max_size=None)
        other = await member(base, "b")
        await ws.send("big:10")  # 2 MB of its own replies, written while broadcasts arrive
        for n in range(20):
            await other.send(f"say:{n}")  # to everyone but the sender
        small = large = 0
        while small + large < 30:
            message = await ws.recv()  # the client fails the connection on a broken frame
            large += message == BIG
            small += message != BIG
        await ws.close()
        await other.close()
        return small, large

    async with running(app) as server:
        assert await client(talk, url(server, "")) == (20, 10)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_members_compressed_without_context_takeover_share_one_compressed_frame(
    anyio_backend: str,
) -> None:
    app = chat(compression=True)
    offer = "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
    text = "compress me " * 50
    async with running(app) as server:
        async with (
            RawClient.connect(port(server), "/?name=a", extra=offer) as a,
            RawClient.connect(port(server), "/?name=b", extra=offer) as b,
            RawClient.connect(port(server), "/?name=c") as plain,
        ):
            for raw in (a, b, plain):
                await raw.read_frame()  # welcome
            assert b"server_no_context_takeover" in a.response_head

            async def takeover(base: str) -> str:
                factory = ClientPerMessageDeflateFactory()  # context takeover: its own frames
                async with connect(f"{base}/?name=d", extensions=[factory]) as ws:
                    assert await ws.recv() == "welcome"
                    await ws.send(f"all:{text}")
                    return str(await ws.recv())

            assert await client(takeover, url(server, "")) == text
            frames = [await raw.read_frame() for raw in (a, b, plain)]
            assert frames[0] == frames[1]  # the same compressed bytes for both
            assert a.last_rsv == 0b100
            inflated = zlib.decompressobj(-15).decompress(frames[0][2] + b"\x00\x00\xff\xff")
            assert inflated.decode() == text
            assert frames[2] == (True, OP_TEXT, text.encode())
            for raw in (a, b, plain):
                await raw.send(close_frame(1000))
                assert await raw.read_close() == (1000, "")  # after "d left", when d closed
