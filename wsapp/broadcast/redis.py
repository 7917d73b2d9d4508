"""The Redis broker: room messages over Redis pub/sub, presence in Redis keys (`wsapp[redis]`).

One pub/sub channel per room (`wsapp:room:<room>`), subscribed while this process has members
in it: a message crosses Redis once per publishing process and reaches only the processes
with members in its room. The publisher queues in order and pipelines what a tick
accumulated into one round trip.

Presence: each process keeps, per room, a hash of its members (`wsapp:presence:<room>:<node>`)
and its node id in the room's set (`wsapp:presence:<room>`), both with a TTL its heartbeat
renews; the keys of a process that died expire, and with them its members.

When Redis is unreachable, what this process publishes is delivered to its own members
only (and counted); messages from other processes published meanwhile are lost (Redis
pub/sub delivers at most once). The client reconnects and resubscribes with backoff; the
heartbeat restores this process's presence.
"""

from __future__ import annotations

import json
import math
import uuid
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from wsapp.broadcast import Broker, Deliver, Member
from wsapp.log import RateLimitedLog, logger

if TYPE_CHECKING:
    import coredis
    from coredis.patterns.pubsub import PubSub

__all__ = ["RedisBroker"]

PREFIX = "wsapp"
CHANNEL = f"{PREFIX}:room:"
#: Broadcasts waiting to be published before `publish` waits (backpressure to publishers).
QUEUE_SIZE = 10_000
#: Seconds to wait for Redis before counting it unreachable.
TIMEOUT = 2.0


def _redis_errors() -> tuple[type[BaseException], ...]:
    from coredis.exceptions import ConnectionError, RedisError

    return (ConnectionError, RedisError, TimeoutError, OSError)


class RedisBroker(Broker):
    """Carries room messages and presence between processes through one Redis server.

    Args:
        url: A `redis://` (or `rediss://`, `unix://`) URL.
        presence_ttl: Seconds this process's presence outlives its last heartbeat (one every
            third of it).
    """

    def __init__(self, url: str, presence_ttl: float = 15.0) -> None:
        self.url = url
        self._ttl = max(1, math.ceil(presence_ttl))
        self.node = uuid.uuid4().hex[:12]
        self._client: coredis.Redis[bytes] | None = None
        self._pubsub: PubSub[bytes] | None = None
        self._exit = AsyncExitStack()
        self._deliver: Deliver | None = None
        self._members: dict[str, dict[str, Member]] = {}  # this process's, by room
        self._unsubscribed: set[str] = set()  # rooms whose subscription must be retried
        self._stale = False  # presence in Redis may be missing (after a failure)
        self._send: MemoryObjectSendStream[tuple[str, bytes]]
        self._receive: MemoryObjectReceiveStream[tuple[str, bytes]]
        self._send, self._receive = anyio.create_memory_object_stream(QUEUE_SIZE)
        self._drained = anyio.Event()  # the publisher has published all it was given
        self._log = RateLimitedLog()
        self.published = 0
        self.received = 0
        self.failures = 0

    # --- connecting --------------------------------------------------------------------------

    async def start(self, deliver: Deliver, task_group: TaskGroup) -> None:
        try:
            import coredis
        except ImportError:
            raise RuntimeError(
                "the Redis broker needs coredis: pip install 'wsapp[redis]'"
            ) from None
        self._deliver = deliver
        client: coredis.Redis[bytes] = coredis.Redis.from_url(
            self.url, decode_responses=False, connect_timeout=TIMEOUT, stream_timeout=TIMEOUT
        )
        self._client = await self._exit.enter_async_context(client)
        try:
            with anyio.fail_after(TIMEOUT * 2):
                await client.ping()
        except _redis_errors() as exc:
            await self._exit.aclose()
            raise ConnectionError(f"cannot reach the broker {self.url}: {exc}") from None
        self._pubsub = await self._exit.enter_async_context(
            client.pubsub(ignore_subscribe_messages=False)
        )
        task_group.start_soon(self._receive_messages)
        task_group.start_soon(self._publish_queued)
        task_group.start_soon(self._heartbeat)
        logger.info("broker connected: %s (node %s)", self.url, self.node)

    async def stop(self) -> None:
        client = self._client
        self._send.close()
        with anyio.move_on_after(TIMEOUT):  # what was broadcast before the stop still goes
            await self._drained.wait()
        self._receive.close()
        if client is not None:
            with anyio.move_on_after(TIMEOUT):
                await self._withdraw_presence(client)
        await self._exit.aclose()
        self._client = self._pubsub = None

    async def _withdraw_presence(self, client: coredis.Redis[bytes]) -> None:
        try:
            async with client.pipeline(transaction=False) as pipe:
                for room in self._members:
                    pipe.delete([self._presence_key(room)])
                    pipe.srem(self._nodes_key(room), [self.node])
        except _redis_errors():
            pass  # its keys expire by themselves

    # --- publishing ---------------------------------------------------------------------------

    async def publish(self, room: str, envelope: bytes) -> None:
        await self._send.send((room, envelope))

    async def _publish_queued(self) -> None:
        """Publish in order; everything queued during the last round trip goes in the next."""
        client = self._client
        assert client is not None
        receive = self._receive
        async for first in receive:
            batch = [first]
            while len(batch) < 1000:
                try:
                    batch.append(receive.receive_nowait())
                except anyio.WouldBlock:
                    break
            try:
                async with client.pipeline(transaction=False) as pipe:
                    for room, envelope in batch:
                        pipe.publish(self._channel(room), envelope)
                self.published += len(batch)
            except _redis_errors() as exc:
                self._failed("publish", exc)
                for room, envelope in batch:  # at least this process's members get them
                    self._deliver_here(room, envelope)
        self._drained.set()

    def _deliver_here(self, room: str, envelope: bytes) -> None:
        if self._deliver is not None and room in self._members:
            self._deliver(room, envelope)

    def _failed(self, what: str, exc: BaseException) -> None:
        self.failures += 1
        self._stale = True
        self._log.warning(
            "broker %s: cannot %s (%s: %s); this process's members are still served, "
            "messages to other processes are lost until it is back",
            self.url,
            what,
            type(exc).__name__,
            exc,
        )

    # --- receiving ----------------------------------------------------------------------------

    def _channel(self, room: str) -> str:
        return CHANNEL + room

    async def _receive_messages(self) -> None:
        """Deliver what Redis sends, in its order. Read here rather than through coredis'
        per-channel handlers, which it forgets when it resubscribes after a reconnect."""
        pubsub, deliver = self._pubsub, self._deliver
        assert pubsub is not None
        assert deliver is not None
        skip = len(CHANNEL)
        while True:
            try:
                message = await pubsub.get_message()
            except (anyio.ClosedResourceError, anyio.EndOfStream):
                return  # stopped
            if message is None or message["type"] != "message":
                continue  # subscription acknowledgements
            channel, data = message["channel"], message["data"]
            assert isinstance(channel, bytes)
            assert isinstance(data, bytes)
            self.received += 1
            deliver(channel[skip:].decode(), data)

    async def subscribe(self, room: str) -> None:
        pubsub = self._pubsub
        assert pubsub is not None
        try:
            await pubsub.subscribe(self._channel(room))
            self._unsubscribed.discard(room)
        except _redis_errors() as exc:
            self._failed(f"subscribe to room {room!r}", exc)
            self._unsubscribed.add(room)  # the heartbeat retries

    async def unsubscribe(self, room: str) -> None:
        self._unsubscribed.discard(room)
        pubsub = self._pubsub
        if pubsub is None:
            return
        try:
            await pubsub.unsubscribe(self._channel(room))
        except _redis_errors() as exc:
            self._failed(f"unsubscribe from room {room!r}", exc)

    # --- presence -----------------------------------------------------------------------------

    def _presence_key(self, room: str) -> str:
        return f"{PREFIX}:presence:{room}:{self.node}"

    def _nodes_key(self, room: str) -> str:
        return f"{PREFIX}:presence:{room}"

    async def add_member(self, room: str, member: Member) -> None:
        self._members.setdefault(room, {})[member.id] = member
        await self._write_presence({room: {member.id: member}}, "record presence")

    async def remove_member(self, room: str, member_id: str) -> None:
        members = self._members.get(room)
        if members is None:
            return
        members.pop(member_id, None)
        if not members:
            del self._members[room]
        client = self._client
        if client is None:
            return
        try:
            async with client.pipeline(transaction=False) as pipe:
                pipe.hdel(self._presence_key(room), [member_id])
                if not members:
                    pipe.srem(self._nodes_key(room), [self.node])
        except _redis_errors() as exc:
            self._failed("withdraw presence", exc)

    async def _write_presence(self, rooms: dict[str, dict[str, Member]], what: str) -> None:
        client = self._client
        if client is None:
            return
        try:
            async with client.pipeline(transaction=False) as pipe:
                for room, members in rooms.items():
                    key = self._presence_key(room)
                    if members:
                        fields = {mid: json.dumps(m.info) for mid, m in members.items()}
                        pipe.hset(key, fields)
                    pipe.expire(key, self._ttl)
                    pipe.sadd(self._nodes_key(room), [self.node])
                    pipe.expire(self._nodes_key(room), self._ttl)
        except _redis_errors() as exc:
            self._failed(what, exc)

    async def _renew_presence(self) -> list[str]:
        """Extend the TTL of this process's presence; the rooms whose keys were gone."""
        client = self._client
        rooms = list(self._members)
        if client is None or not rooms:
            return []
        try:
            async with client.pipeline(transaction=False) as pipe:
                renewed = [pipe.expire(self._presence_key(room), self._ttl) for room in rooms]
                for room in rooms:
                    pipe.sadd(self._nodes_key(room), [self.node])
                    pipe.expire(self._nodes_key(room), self._ttl)
            return [room for room, request in zip(rooms, renewed, strict=True) if not await request]
        except _redis_errors() as exc:
            self._failed("renew presence", exc)
            return []

    async def presence(self, room: str) -> list[Member]:
        client = self._client
        if client is None:
            return list(self._members.get(room, {}).values())
        nodes = sorted(await client.smembers(self._nodes_key(room)))
        async with client.pipeline(transaction=False) as pipe:
            requests = [pipe.hgetall(f"{PREFIX}:presence:{room}:{node.decode()}") for node in nodes]
        found: list[Member] = []
        gone = []
        for node, request in zip(nodes, requests, strict=True):
            fields = await request
            if not fields:
                gone.append(node)  # that process died: its hash expired before the set
            for member_id, info in sorted(fields.items()):
                found.append(Member(member_id.decode(), json.loads(info)))
        if gone:
            await client.srem(self._nodes_key(room), gone)
        return found

    async def _heartbeat(self) -> None:
        """Renew this process's presence; rewrite it whole where Redis lost it (after a
        failure, or a restart too quick to notice: its keys are then gone), and retry
        subscriptions that failed."""
        while True:
            await anyio.sleep(self._ttl / 3)
            if self._stale:
                self._stale = False
                await self._write_presence(self._members, "restore presence")
            else:
                lost = await self._renew_presence()
                if lost:
                    await self._write_presence(
                        {room: self._members[room] for room in lost if room in self._members},
                        "restore presence",
                    )
            for room in list(self._unsubscribed):
                if room in self._members:
                    await self.subscribe(room)
                else:
                    self._unsubscribed.discard(room)
