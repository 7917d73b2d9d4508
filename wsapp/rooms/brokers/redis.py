"""The Redis broker: room messages over Redis pub/sub, presence in Redis keys (`wsapp[redis]`).

One pub/sub channel per room (`wsapp:room:<room>`), subscribed while this process has members
in it: a message crosses Redis once per publishing process and reaches only the processes
with members in its room. The publisher queues in order and pipelines what a tick
accumulated into one round trip.

Presence: each process keeps, per room, a hash of its members (`wsapp:presence:<room>:<node>`)
and its node id in the room's set (`wsapp:presence:<room>`), both with a TTL its heartbeat
renews; the keys of a process that died expire, and with them its members.

Outages: the subscriber connection is the process's link to the others. From the moment it
is lost (or any command fails) until it is back, this process serves its own members alone,
without waiting on Redis: its broadcasts are delivered to them here (and counted as `lost`
for the other processes: Redis pub/sub delivers at most once), presence lists them alone,
joins and leaves are kept for later. The subscriber reconnects within `RETRY_MAX` seconds of
Redis accepting connections again, subscribes exactly the rooms with members here then, and
rewrites this process's presence whole.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import uuid
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from wsapp.log import RateLimitedLog, logger
from wsapp.rooms.brokers import Broker, Deliver, Member
from wsapp.settings import ConfigError

if TYPE_CHECKING:
    import coredis
    from coredis.patterns.pipeline import Pipeline
    from coredis.patterns.pubsub import PubSub

__all__ = ["RedisBroker"]

PREFIX = "wsapp"
CHANNEL = f"{PREFIX}:room:"
#: Broadcasts waiting to be published before `publish` waits (backpressure to publishers).
QUEUE_SIZE = 10_000
#: Seconds to wait for Redis before counting it unreachable.
TIMEOUT = 2.0
#: Seconds before the first attempt to reconnect once Redis is lost; each failed attempt
#: doubles the wait, up to `RETRY_MAX` (less a random part of it, so that the processes of a
#: cluster do not all come back at the same instant).
RETRY_FIRST = 0.1
RETRY_MAX = 1.0
#: Seconds of silence after which the subscriber connection is checked with a PING: a network
#: cut closes no connection, so only an unanswered PING tells.
KEEPALIVE = 5.0


def _redis_errors() -> tuple[type[BaseException], ...]:
    from coredis.exceptions import ConnectionError, RedisError

    return (ConnectionError, RedisError, TimeoutError, OSError)


def _first(exc: BaseException) -> BaseException:
    """The first error of a group (task groups wrap coredis' errors), or ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _reason(exc: BaseException) -> str:
    """What went wrong, in a line: the error and what caused it (coredis wraps the socket's
    error in its own)."""
    exc = _first(exc)
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    return f"{text} ({str(cause) or type(cause).__name__})" if cause is not None else text


#: The password of a URL (`scheme://user:password@host...`), which logs must not show.
_PASSWORD = re.compile(r"^([^:/?#]+://[^:/?#@]*):[^/?#@]*@")


def _redacted(url: str) -> str:
    """``url`` without its password, as logs and error messages show it (even when it does
    not parse)."""
    return _PASSWORD.sub(r"\1:***@", url)


def _check_url(url: str) -> None:
    """Raise ConfigError unless ``url`` names a Redis server the way coredis reads it."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # reading it is what rejects a port that is not a number in range
    except ValueError as exc:
        problem = str(exc)
    else:
        database = parts.path.strip("/")
        if parts.scheme.lower() == "unix":
            problem = "" if parts.path else "no socket path"
        elif not parts.hostname:
            problem = "no host"
        elif database and not database.isdigit():
            problem = f"the database must be a number, not {database!r}"
        else:
            problem = ""
    if problem:
        raise ConfigError(
            f"broker {_redacted(url)!r} is not a Redis URL ({problem}): use "
            "redis://host:port/db (or rediss://..., unix:///path/redis.sock)"
        )


class RedisBroker(Broker):
    """Carries room messages and presence between processes through one Redis server.

    Args:
        url: A `redis://` (or `rediss://`, `unix://`) URL; ConfigError if it is not one.
        presence_ttl: Seconds this process's presence outlives its last heartbeat (one every
            third of it).

    Attributes:
        published: Broadcasts published to Redis.
        received: Room messages received from Redis.
        lost: Broadcasts that reached this process's members only, as Redis was
            unreachable: the other processes never received them.
        failures: Redis commands that failed (each outage begins with one).
    """

    def __init__(self, url: str, presence_ttl: float = 15.0) -> None:
        _check_url(url)
        self.url = url
        self._shown = _redacted(url)
        self._ttl = max(1, math.ceil(presence_ttl))
        self.node = uuid.uuid4().hex[:12]
        self._client: coredis.Redis[bytes] | None = None
        self._closing = anyio.Event()  # the connection pool is to close
        self._closed = anyio.Event()
        self._deliver: Deliver | None = None
        self._members: dict[str, dict[str, Member]] = {}  # this process's, by room
        self._rooms: set[str] = set()  # rooms with members here: what to subscribe to
        self._listening: set[str] = set()  # rooms Redis delivers here now (acknowledged)
        self._pubsub: PubSub[bytes] | None = None  # the subscriber, None during an outage
        self._session = anyio.CancelScope()  # the subscriber connection's
        self._ready = anyio.Event()  # the subscriber connected once
        self._listener = anyio.CancelScope()
        self._stopped = anyio.Event()  # the listener is done
        # Held by each publish and each change of subscriptions: a message is then published
        # either before a room's subscription (Redis will not bring it back: it is delivered
        # here) or after its acknowledgement (Redis brings it back), never in between.
        self._lock = anyio.Lock()
        self._presence_lock = anyio.Lock()  # one presence write at a time: none undoes another
        self._lost_since: float | None = None  # when the current outage began
        self._lost_before = 0  # `lost` then
        self._send: MemoryObjectSendStream[tuple[str, bytes]]
        self._receive: MemoryObjectReceiveStream[tuple[str, bytes]]
        self._send, self._receive = anyio.create_memory_object_stream(QUEUE_SIZE)
        self._drained = anyio.Event()  # the publisher has published all it was given
        self._log = RateLimitedLog()
        self._bad_log = RateLimitedLog()
        self.published = 0
        self.received = 0
        self.lost = 0
        self.failures = 0

    # --- connecting --------------------------------------------------------------------------

    async def start(self, deliver: Deliver, task_group: TaskGroup) -> None:
        """Connect (ConfigError, in one line, if Redis cannot be reached or coredis is not
        installed), subscribe, and receive in ``task_group`` until `stop`."""
        try:
            import coredis
            from coredis.retry import NoRetryPolicy
        except ImportError:
            raise ConfigError(
                f"the broker {self._shown} is a Redis server, and talking to Redis needs the "
                "redis extra: pip install 'wsapp[redis]'"
            ) from None
        self._deliver = deliver
        # No retries: a command that fails begins an outage, which the subscriber ends by
        # reconnecting (coredis' own retries would block callers, and log each attempt).
        client: coredis.Redis[bytes] = coredis.Redis.from_url(
            self.url,
            decode_responses=False,
            connect_timeout=TIMEOUT,
            stream_timeout=TIMEOUT,
            retry_policy=NoRetryPolicy(),
        )
        await task_group.start(self._hold_pool, client)
        self._client = client
        try:
            with anyio.fail_after(TIMEOUT * 2):
                await client.ping()
        except _redis_errors() as exc:
            await self._close_pool()
            self._send.close()
            self._receive.close()
            raise ConfigError(
                f"cannot reach the broker {self._shown}: {_reason(exc)}; start Redis there, "
                "or correct the broker URL"
            ) from None
        task_group.start_soon(self._listen)
        task_group.start_soon(self._publish_queued)
        task_group.start_soon(self._heartbeat)
        with anyio.move_on_after(TIMEOUT * 2):  # if it fails, the outage has begun already
            await self._ready.wait()

    async def stop(self) -> None:
        client = self._client
        self._send.close()
        with anyio.move_on_after(TIMEOUT):  # what was broadcast before the stop still goes
            await self._drained.wait()
        self._listener.cancel()
        with anyio.move_on_after(TIMEOUT):
            await self._stopped.wait()
        if client is not None:
            with anyio.move_on_after(TIMEOUT):
                await self._withdraw_presence(client)
        await self._close_pool()

    async def _hold_pool(
        self, client: coredis.Redis[bytes], *, task_status: TaskStatus[None]
    ) -> None:
        """Keep the client's connection pool open until `_close_pool`, in a task of its own:
        the pool's task group must be left by the task that entered it and in the cancel
        scope it was entered in, which `stop` (shielded, in the rooms' serving block) is
        not."""
        try:
            async with client:
                task_status.started()
                await self._closing.wait()
        finally:
            self._closed.set()

    async def _close_pool(self) -> None:
        self._client = None
        self._closing.set()
        with anyio.move_on_after(TIMEOUT):
            await self._closed.wait()

    async def _withdraw_presence(self, client: coredis.Redis[bytes]) -> None:
        try:
            async with client.pipeline(transaction=False) as pipe:
                for room in self._members:
                    pipe.delete([self._presence_key(room)])
                    pipe.srem(self._nodes_key(room), [self.node])
        except _redis_errors():
            pass  # its keys expire by themselves

    # --- outages ------------------------------------------------------------------------------

    def _reachable(self) -> coredis.Redis[bytes] | None:
        """The client, unless Redis is unreachable (then nothing waits for it)."""
        return self._client if self._pubsub is not None else None

    def _failed(self, what: str, exc: BaseException) -> None:
        """A command failed: the outage begins (if it had not), logged at most every 10 s."""
        self.failures += 1
        unexpected = not isinstance(_first(exc), _redis_errors())
        self._log.log(
            logging.WARNING,
            "broker %s: cannot %s (%s); until it is back, this process's members are still "
            "served (their broadcasts reach them, presence lists them alone) and messages to "
            "and from other processes are lost",
            self._shown,
            what,
            _reason(exc),
            exc_info=unexpected,
        )
        if self._lost_since is None:
            self._lost_since = anyio.current_time()
            self._lost_before = self.lost
        self._disconnect()

    def _disconnect(self) -> None:
        """Serve this process's members alone from now on, until the subscriber (told to
        reconnect) is connected again."""
        self._pubsub = None
        self._listening = set()
        self._session.cancel()

    async def _listen(self) -> None:
        """Hold the subscriber connection; once it is lost, reconnect after `RETRY_FIRST`,
        then after a wait that doubles with each failed attempt, up to `RETRY_MAX`."""
        delay = RETRY_FIRST
        with self._listener:
            try:
                while True:
                    if await self._session_until_lost():
                        delay = RETRY_FIRST
                    await anyio.sleep(random.uniform(delay / 2, delay))
                    delay = min(delay * 2, RETRY_MAX)
            finally:
                self._stopped.set()

    async def _session_until_lost(self) -> bool:
        """Connect, subscribe the rooms with members here, restore presence, and deliver
        what Redis sends until the connection fails; whether it had connected."""
        client = self._client
        assert client is not None
        from coredis.retry import NoRetryPolicy

        connected = False
        try:
            with anyio.CancelScope() as self._session:
                async with client.pubsub(
                    ignore_subscribe_messages=True,
                    retry_policy=NoRetryPolicy(),
                    subscription_timeout=TIMEOUT,
                    max_idle_seconds=KEEPALIVE,
                ) as pubsub:
                    async with self._lock:
                        await self._reconcile(pubsub)
                        self._pubsub = pubsub
                    async with self._presence_lock:  # Redis may have restarted empty
                        await self._restore_presence(list(self._members))
                    if self._pubsub is pubsub:  # else restoring failed: the outage goes on
                        connected = True
                        self._back()
                        await self._receive_messages(pubsub)
        except Exception as exc:  # whatever it was, the loop reconnects
            self._failed("receive room messages", exc)
        finally:
            self._disconnect()
        return connected

    def _back(self) -> None:
        """The subscriber is connected: the outage, if there was one, is over."""
        self._ready.set()
        since, self._lost_since = self._lost_since, None
        if since is None:
            logger.info("broker connected: %s (node %s)", self._shown, self.node)
            return
        logger.info(
            "broker %s: connected again after %.1fs, %d room(s) subscribed and presence "
            "restored; %d broadcast(s) reached this process's members only meanwhile",
            self._shown,
            anyio.current_time() - since,
            len(self._listening),
            self.lost - self._lost_before,
        )

    # --- publishing ---------------------------------------------------------------------------

    async def publish(self, room: str, envelope: bytes) -> None:
        await self._send.send((room, envelope))

    async def _publish_queued(self) -> None:
        """Publish in order; everything queued during the last round trip goes in the next."""
        with self._receive as receive:  # closed however this ends
            async for first in receive:
                batch = [first]
                while len(batch) < 1000:
                    try:
                        batch.append(receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):  # the end: `stop` was called
                        break
                async with self._lock:
                    await self._publish_batch(batch)
        self._drained.set()

    async def _publish_batch(self, batch: list[tuple[str, bytes]]) -> None:
        """Publish ``batch`` in one round trip, and deliver here at once what Redis will not
        bring back. The caller holds the lock."""
        listening = self._listening
        for room, envelope in batch:
            if room not in listening:
                self._deliver_here(room, envelope)
        client = self._reachable()
        if client is None:  # an outage: nothing was listening, all of it went here
            self.lost += len(batch)
            return
        try:
            async with client.pipeline(transaction=False) as pipe:
                for room, envelope in batch:
                    pipe.publish(self._channel(room), envelope)
            self.published += len(batch)
        except _redis_errors() as exc:
            self._failed("publish", exc)
            self.lost += len(batch)
            for room, envelope in batch:
                if room in listening:  # Redis will not bring these back either
                    self._deliver_here(room, envelope)

    def _deliver_here(self, room: str, envelope: bytes) -> None:
        if self._deliver is not None and room in self._members:
            self._deliver(room, envelope)

    # --- receiving ----------------------------------------------------------------------------

    def _channel(self, room: str) -> str:
        return CHANNEL + room

    async def _receive_messages(self, pubsub: PubSub[bytes]) -> None:
        """Deliver what Redis sends, in its order, until the connection fails."""
        deliver = self._deliver
        assert deliver is not None
        skip = len(CHANNEL)
        while True:
            message = await pubsub.get_message()
            if message is None or message["type"] != "message":
                continue  # subscription acknowledgements
            channel, data = message["channel"], message["data"]
            assert isinstance(channel, bytes)
            assert isinstance(data, bytes)
            self.received += 1
            try:
                deliver(channel[skip:].decode(), data)
            except Exception:  # whoever published it, the messages after it still go
                self._bad_log.log(
                    logging.ERROR,
                    "broker %s: dropped a message on %r that is not a wsapp room message",
                    self._shown,
                    channel,
                    exc_info=True,
                )

    async def subscribe(self, room: str) -> None:
        """Receive ``room``'s messages from now on: returns once Redis acknowledged it, or at
        once during an outage (the reconnection subscribes it)."""
        self._rooms.add(room)
        await self._sync_subscriptions()

    async def unsubscribe(self, room: str) -> None:
        self._rooms.discard(room)
        await self._sync_subscriptions()

    async def _sync_subscriptions(self) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return  # the reconnection subscribes exactly the rooms then in `_rooms`
        async with self._lock:
            if pubsub is not self._pubsub:
                return  # lost meanwhile
            try:
                await self._reconcile(pubsub)
            except _redis_errors() as exc:
                self._failed("subscribe", exc)

    async def _reconcile(self, pubsub: PubSub[bytes]) -> None:
        """Subscribe exactly the rooms with members here, and those alone; again while rooms
        are joined or emptied during the round trips."""
        while True:
            missing = self._rooms - self._listening
            extra = self._listening - self._rooms
            if not missing and not extra:
                return
            if missing:
                await pubsub.subscribe(*map(self._channel, missing))
                self._listening |= missing
            if extra:
                self._listening -= extra
                await pubsub.unsubscribe(*map(self._channel, extra))

    # --- presence -----------------------------------------------------------------------------

    def _presence_key(self, room: str) -> str:
        return f"{PREFIX}:presence:{room}:{self.node}"

    def _nodes_key(self, room: str) -> str:
        return f"{PREFIX}:presence:{room}"

    def _write_presence(self, pipe: Pipeline[bytes], room: str, members: dict[str, Member]) -> None:
        key = self._presence_key(room)
        if members:
            pipe.hset(key, {mid: json.dumps(m.info) for mid, m in members.items()})
        pipe.expire(key, self._ttl)
        pipe.sadd(self._nodes_key(room), [self.node])
        pipe.expire(self._nodes_key(room), self._ttl)

    async def add_member(self, room: str, member: Member) -> None:
        self._members.setdefault(room, {})[member.id] = member
        client = self._reachable()
        if client is None:
            return  # the reconnection writes this process's presence whole
        async with self._presence_lock:
            try:
                async with client.pipeline(transaction=False) as pipe:
                    self._write_presence(pipe, room, {member.id: member})
            except _redis_errors() as exc:
                self._failed("record presence", exc)

    async def remove_member(self, room: str, member_id: str) -> None:
        members = self._members.get(room)
        if members is None:
            return
        members.pop(member_id, None)
        if not members:
            del self._members[room]
        client = self._reachable()
        if client is None:
            return  # the reconnection writes this process's presence whole
        async with self._presence_lock:
            try:
                async with client.pipeline(transaction=False) as pipe:
                    pipe.hdel(self._presence_key(room), [member_id])
                    if not members:
                        pipe.srem(self._nodes_key(room), [self.node])
            except _redis_errors() as exc:
                self._failed("withdraw presence", exc)

    async def _restore_presence(self, rooms: list[str]) -> None:
        """Rewrite this process's presence in ``rooms`` whole (Redis lost it, or lists
        members that left while it was unreachable), in one transaction: a reader never
        sees the hash deleted and not yet written. The caller holds the presence lock."""
        client = self._reachable()
        if client is None or not rooms:
            return
        try:
            async with client.pipeline(transaction=True) as pipe:
                for room in rooms:
                    if room in self._members:
                        pipe.delete([self._presence_key(room)])
                        self._write_presence(pipe, room, self._members[room])
        except _redis_errors() as exc:
            self._failed("restore presence", exc)

    async def _renew_presence(self) -> list[str]:
        """Extend the TTL of this process's presence; the rooms whose keys were gone."""
        client = self._reachable()
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
        """The members of ``room`` in every process, from Redis; while Redis is unreachable,
        this process's alone (the outage is logged), so that a handler listing them keeps
        working."""
        client = self._reachable()
        if client is not None:
            try:
                with anyio.fail_after(TIMEOUT):
                    return await self._read_presence(client, room)
            except _redis_errors() as exc:
                self._failed("read presence", exc)
        return list(self._members.get(room, {}).values())

    async def _read_presence(self, client: coredis.Redis[bytes], room: str) -> list[Member]:
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
        """Renew this process's presence, and rewrite it where Redis lost it (a restart too
        quick to notice, an eviction). During an outage, the reconnection rewrites it."""
        while True:
            await anyio.sleep(self._ttl / 3)
            async with self._presence_lock:
                await self._restore_presence(await self._renew_presence())
