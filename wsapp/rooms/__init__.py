"""Rooms: named groups of connections, and broadcasts to them, encoded once.

A broadcast serializes its message once and builds its frame once: every member without
compression (and every member whose compression starts afresh per message with the same
window) is handed the same bytes, queued on its connection without awaiting. Nobody waits
for a slow member: one whose unsent bytes would pass its `outbound_budget` is closed (or
skipped), by the endpoint's `on_slow` policy, and counted.

With a broker, a broadcast goes to the broker first and is delivered when it comes back, to
this process's members as to every other's, so every member of a room sees the room's
messages in the same order.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

import anyio
from anyio.abc import TaskGroup
from pydantic import BaseModel

from wsapp.exceptions import ConnectionClosed, JoinRefused
from wsapp.log import RateLimitedLog
from wsapp.operations.metrics import RoomStats
from wsapp.protocol import CloseCode, PreparedMessage
from wsapp.protocol.frames import OPCODE_TEXT
from wsapp.rooms.brokers import Broker, Member, pack, unpack
from wsapp.routing import Route
from wsapp.settings import ConfigError, Settings
from wsapp.tasks import tasks_for_block
from wsapp.transport import Transport

__all__ = ["RoomMember", "Rooms", "SlowPolicy", "prepare"]

SlowPolicy = Literal["close", "drop"]
Authorizer = Callable[..., Awaitable[Any]]
#: The close reason of a member closed for being too slow.
TOO_SLOW = "too slow: more than outbound_budget bytes waiting"


class RoomMember(Protocol):
    """What the rooms read of a member ([Connection][wsapp.Connection] is one)."""

    @property
    def id(self) -> str: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def close_code(self) -> int | None: ...

    @property
    def close_reason(self) -> str: ...


C = TypeVar("C", bound=RoomMember)


@dataclass(eq=False, slots=True)
class _Member(Generic[C]):
    conn: C
    transport: Transport
    on_slow: SlowPolicy
    rooms: dict[str, Member] = field(default_factory=dict)  # room → how presence shows it


def broker_for(url: str | None, presence_ttl: float = 15.0) -> Broker:
    """The broker a `broker` setting names: None for one process, `redis://…` (or
    `rediss://…`) for Redis, `hub+unix://…` for a supervisor's workers. ``presence_ttl``:
    how long a broker keeps the presence of a process that stopped renewing it."""
    if url is None:
        from wsapp.rooms.brokers.memory import MemoryBroker

        return MemoryBroker()
    scheme = url.partition("://")[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        from wsapp.rooms.brokers.redis import RedisBroker

        return RedisBroker(url, presence_ttl)
    if scheme == "hub+unix":
        from wsapp.rooms.brokers.hub import HubBroker

        return HubBroker(url.partition("://")[2])
    raise ConfigError(
        f"unknown broker {url!r}: use redis://host:port/db (pip install 'wsapp[redis]') or "
        "leave it unset for one process"
    )


def prepare(message: str | bytes | BaseModel) -> PreparedMessage:
    """A message as a broadcast sends it: `str` text, `bytes` binary, a model its JSON."""
    if isinstance(message, BaseModel):
        return PreparedMessage(OPCODE_TEXT, message.__pydantic_serializer__.to_json(message))
    if isinstance(message, str | bytes):
        return PreparedMessage.of(message)
    raise TypeError(
        f"broadcast() takes str (text), bytes (binary) or a pydantic model, not "
        f"{type(message).__name__}; use broadcast_json() for other data"
    )


class Rooms(Generic[C]):
    """The rooms of one app, in this process: membership, presence and broadcasts; their
    members are ``C`` (an app's are its [Connection][wsapp.Connection]s).

    Reach it as `app.rooms`; connections join and leave with `conn.join(room)` and
    `conn.leave(room)`, and `app.broadcast(room, message)` sends to every member.

    Attributes:
        stats: What the rooms of this process have done (broadcasts, deliveries, drops...).
    """

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, _Member[C]]] = {}  # room → conn id → member, in join order
        self._members: dict[str, _Member[C]] = {}  # conn id → member, while in any room
        self._authorizers: list[Route[Authorizer]] = []
        self._broker: Broker = broker_for(None)
        self._task_groups: list[TaskGroup] = []  # of the runs serving the rooms
        self._slow_log = RateLimitedLog()
        self.stats: RoomStats = RoomStats()

    # --- declaring -------------------------------------------------------------------------

    def authorize(self, pattern: str, callback: Authorizer) -> None:
        """Have ``callback(conn, room, params)`` decide who may join rooms matching
        ``pattern`` (route syntax: `game:{id:int}`); the first matching pattern decides."""
        self._authorizers.append(Route.compile(pattern, callback))

    # --- what is in them -------------------------------------------------------------------

    def members(self, room: str) -> list[C]:
        """The connections in ``room`` in this process, in the order they joined."""
        return [member.conn for member in self._rooms.get(room, {}).values()]

    def count(self, room: str) -> int:
        """How many connections of this process are in ``room``."""
        return len(self._rooms.get(room, ()))

    def names(self) -> list[str]:
        """The rooms with members in this process."""
        return list(self._rooms)

    def rooms_of(self, conn: C) -> frozenset[str]:
        """The rooms ``conn`` is in."""
        member = self._members.get(conn.id)
        return frozenset(member.rooms) if member is not None else frozenset()

    async def presence(self, room: str) -> list[Member]:
        """The members of ``room`` in every process the broker reaches (this one alone
        without a broker), with the `info` each joined with.

        It does not raise when the broker is unreachable (Redis restarting, say): it then
        answers with this process's members alone, and the broker logs the outage, so that
        a handler listing them (an `on_open` greeting with who is there) keeps serving."""
        return await self._broker.presence(room)

    # --- joining and leaving ---------------------------------------------------------------

    async def join(
        self,
        conn: C,
        transport: Transport,
        on_slow: SlowPolicy,
        room: str,
        info: Any = None,
    ) -> None:
        """Add ``conn`` to ``room`` (see `Connection.join`)."""
        if not isinstance(room, str) or not room:
            raise ValueError(f"a room is a non-empty str, not {room!r}")
        if not transport.opened:
            raise RuntimeError("a connection joins rooms once it is open (in on_open or later)")
        if conn.close_code is not None:
            raise ConnectionClosed(conn.close_code, conn.close_reason)
        await self._authorize(conn, room)
        member = self._members.get(conn.id) or _Member(conn, transport, on_slow)
        if room in member.rooms:
            return
        presence = Member(conn.id, info)
        first = room not in self._rooms
        if first:
            self._rooms[room] = {}
            await self._broker.subscribe(room)
        await self._broker.add_member(room, presence)
        if conn.close_code is not None:  # it closed while the broker answered
            await self._withdraw(room, conn.id)
            raise ConnectionClosed(conn.close_code, conn.close_reason)
        self._members[conn.id] = member
        member.rooms[room] = presence
        self._rooms.setdefault(room, {})[conn.id] = member

    async def _authorize(self, conn: C, room: str) -> None:
        for pattern in self._authorizers:
            params = pattern.match(room)
            if params is None:
                continue
            try:
                allowed = await pattern.target(conn, room, params)
            except JoinRefused as refused:
                refused.room = room
                raise
            if allowed is False:
                raise JoinRefused(room=room)
            return

    async def leave(self, conn: C, room: str) -> None:
        """Remove ``conn`` from ``room`` (nothing if it is not in it)."""
        member = self._members.get(conn.id)
        if member is None or room not in member.rooms:
            return
        self._forget(member, room)
        await self._withdraw(room, conn.id)

    async def leave_all(self, conn: C) -> None:
        """Remove ``conn`` from every room (when it closes, before `on_close`)."""
        member = self._members.get(conn.id)
        if member is None:
            return
        for room in list(member.rooms):
            self._forget(member, room)
            await self._withdraw(room, conn.id)

    def _forget(self, member: _Member[C], room: str) -> None:
        """Take ``member`` out of ``room`` here, at once (no await: a broadcast in between
        must not reach it)."""
        del member.rooms[room]
        members = self._rooms[room]
        del members[member.conn.id]
        if not member.rooms:
            del self._members[member.conn.id]

    async def _withdraw(self, room: str, member_id: str) -> None:
        """Tell the broker that a member left; unsubscribe when it was the last one."""
        with anyio.CancelScope(shield=True):  # presence must not keep a member that left
            await self._broker.remove_member(room, member_id)
            if not self._rooms.get(room):
                self._rooms.pop(room, None)
                await self._broker.unsubscribe(room)

    # --- broadcasting ----------------------------------------------------------------------

    async def send_prepared(
        self, room: str, prepared: PreparedMessage, exclude: str | None
    ) -> None:
        """Broadcast a prepared message (see `App.broadcast`); ``exclude`` is a connection
        id."""
        self.stats.broadcasts += 1
        broker = self._broker
        if broker.local:
            self.stats.received += 1
            self._fan_out(room, prepared, exclude)
        else:  # delivered here too when it comes back, in the broker's order
            await broker.publish(room, pack(prepared, exclude))

    def deliver(self, room: str, envelope: bytes) -> None:
        """A room message from the broker: hand it to this process's members."""
        stats = self.stats
        stats.received += 1
        unpacked = unpack(envelope)
        stats.broker_lag.observe(max(0.0, time.time() - unpacked.published))
        self._fan_out(room, unpacked.message, unpacked.exclude)

    def _fan_out(self, room: str, prepared: PreparedMessage, exclude: str | None) -> None:
        members = self._rooms.get(room)
        if not members:
            return
        slow: list[_Member[C]] = []
        queued = 0
        # The per-recipient path: one dict lookup, one push, no await, no task.
        for member_id, member in members.items():
            if member_id == exclude:
                continue
            try:
                if member.transport.push(prepared, member.conn.settings.outbound_budget):
                    queued += 1
                else:
                    slow.append(member)
            except ConnectionClosed:
                pass  # it is closing: it leaves its rooms before its on_close
        self.stats.deliveries += queued
        self.stats.delivered_bytes += queued * len(prepared.payload)
        for member in slow:
            self._too_slow(member, room)

    def _too_slow(self, member: _Member[C], room: str) -> None:
        conn = member.conn
        budget = conn.settings.outbound_budget
        if member.on_slow == "drop":
            self.stats.dropped += 1
            self._slow_log.warning(
                "dropped a broadcast to %s in %s: more than %d bytes waiting (outbound_budget)",
                conn.id,
                room,
                budget,
            )
            return
        self.stats.slow_closes += 1
        self._slow_log.warning(
            "closing %s (in %s) with 1008: more than %d bytes waiting (outbound_budget)",
            conn.id,
            room,
            budget,
        )
        joined = list(member.rooms)
        for name in joined:
            self._forget(member, name)
        if not self._task_groups:  # not serving (an ASGI host without lifespan)
            return
        task_group = self._task_groups[-1]
        task_group.start_soon(member.transport.close, CloseCode.POLICY_VIOLATION, TOO_SLOW)
        for name in joined:
            task_group.start_soon(self._withdraw, name, conn.id)

    # --- serving ---------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self, settings: Settings) -> AsyncIterator[Rooms[C]]:
        """Serve the rooms for the duration of the block (a server, an ASGI host's lifespan,
        a test client), with the broker the settings name connected.

        Runs may overlap (several test clients of one app at once) without a broker: they
        then share the rooms, as the connections of one process do.
        """
        async with tasks_for_block() as tg:
            broker = self._broker
            owner = not self._task_groups
            if owner:
                broker = broker_for(settings.broker, settings.presence_ttl)
                await broker.start(self.deliver, tg)
            elif settings.broker is not None or not broker.local:
                raise RuntimeError(
                    "this app is already being served with a broker; serve it once per process"
                )
            self._broker = broker
            self._task_groups.append(tg)
            try:
                yield self
            finally:
                self._task_groups.remove(tg)
                if owner:
                    with anyio.CancelScope(shield=True):
                        await broker.stop()
                    self._broker = broker_for(None)
