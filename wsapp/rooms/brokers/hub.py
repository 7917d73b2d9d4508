"""The hub: rooms across the workers of one `--workers N` supervisor, without Redis.

The supervisor runs a `Hub` on a unix socket; each worker's `HubBroker` connects to it. A
worker sends the hub what it publishes, which rooms it has members in, and its presence; the
hub hands every room message to the workers subscribed to that room, the publisher included,
one message after the other, so every member of a room sees the same order. Messages travel
as length-prefixed frames: `kind (1 byte) | room length (2) | room | body`.
"""

from __future__ import annotations

import json
import struct
from collections import defaultdict
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import ByteStream, SocketListener, TaskGroup

from wsapp.log import RateLimitedLog, logger
from wsapp.rooms.brokers import Broker, Deliver, Member

__all__ = ["Hub", "HubBroker"]

PUBLISH, SUBSCRIBE, UNSUBSCRIBE, ADD, REMOVE, QUERY, ANSWER = b"PSUARQM"
_HEAD = struct.Struct("!IBH")  # frame length (after these 4 bytes), kind, room length


def frame(kind: int, room: str, body: bytes = b"") -> bytes:
    name = room.encode()
    return _HEAD.pack(1 + 2 + len(name) + len(body), kind, len(name)) + name + body


class _Reader:
    """Frames out of a byte stream."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def frames(self, handle: Callable[[int, str, bytes], Awaitable[None] | None]) -> None:
        buffer = self._buffer
        while True:
            try:
                buffer += await self._stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return
            while len(buffer) >= _HEAD.size:
                length, kind, room_length = _HEAD.unpack_from(buffer)
                end = 4 + length
                if len(buffer) < end:
                    break
                start = _HEAD.size + room_length
                room = bytes(buffer[_HEAD.size : start]).decode()
                body = bytes(buffer[start:end])
                del buffer[:end]
                result = handle(kind, room, body)
                if result is not None:
                    await result


class _Writer:
    """One peer's outgoing frames, written in order by one task; adding never waits."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self._out = bytearray()
        self._wake = anyio.Event()

    def add(self, data: bytes) -> None:
        self._out += data
        self._wake.set()

    async def run(self) -> None:
        out = self._out
        try:
            while True:
                if not out:
                    self._wake = anyio.Event()
                    await self._wake.wait()
                    continue
                data = bytes(out)
                del out[:]
                await self._stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return


class Hub:
    """The supervisor's relay between its workers (see the module docstring)."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[_Writer]] = defaultdict(set)
        self._presence: dict[str, dict[_Writer, dict[str, Member]]] = defaultdict(dict)

    async def serve(self, listener: SocketListener) -> None:
        """Serve the workers connecting to ``listener`` until cancelled."""
        async with anyio.create_task_group() as tg:
            while True:
                stream = await listener.accept()
                tg.start_soon(self._serve_worker, stream)

    async def _serve_worker(self, stream: ByteStream) -> None:
        writer = _Writer(stream)
        async with stream, anyio.create_task_group() as tg:
            tg.start_soon(writer.run)
            await _Reader(stream).frames(
                lambda kind, room, body: self._handle(writer, kind, room, body)
            )
            tg.cancel_scope.cancel()
        for room in list(self._subscribers):  # that worker is gone, with its members
            self._unsubscribe(room, writer)
        for room in list(self._presence):
            self._forget(room, writer)

    def _unsubscribe(self, room: str, writer: _Writer) -> None:
        subscribers = self._subscribers.get(room)
        if subscribers is not None:
            subscribers.discard(writer)
            if not subscribers:
                del self._subscribers[room]

    def _forget(self, room: str, writer: _Writer, member_id: str | None = None) -> None:
        """Withdraw one member of ``writer``'s worker from ``room`` (all of them: None)."""
        workers = self._presence.get(room)
        if workers is None or writer not in workers:
            return
        if member_id is not None:
            workers[writer].pop(member_id, None)
        if member_id is None or not workers[writer]:
            del workers[writer]
        if not workers:
            del self._presence[room]

    def _handle(self, writer: _Writer, kind: int, room: str, body: bytes) -> None:
        if kind == PUBLISH:
            data = frame(PUBLISH, room, body)
            for subscriber in self._subscribers.get(room, ()):
                subscriber.add(data)
        elif kind == SUBSCRIBE:
            self._subscribers[room].add(writer)
        elif kind == UNSUBSCRIBE:
            self._unsubscribe(room, writer)
        elif kind == ADD:
            member = Member(*json.loads(body))
            self._presence[room].setdefault(writer, {})[member.id] = member
        elif kind == REMOVE:
            self._forget(room, writer, body.decode())
        elif kind == QUERY:
            found = [
                [member.id, member.info]
                for members in self._presence.get(room, {}).values()
                for member in members.values()
            ]
            writer.add(frame(ANSWER, room, body[:8] + json.dumps(found).encode()))


class HubBroker(Broker):
    """A worker's side of the hub.

    Args:
        path: The hub's unix socket.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._writer: _Writer | None = None
        self._stream: ByteStream | None = None
        self._answers: dict[bytes, tuple[anyio.Event, list[Member]]] = {}
        self._queries = 0
        self._lost = False
        self._stopping = False
        self._log = RateLimitedLog()
        self._deliver: Deliver | None = None
        self._rooms: set[str] = set()

    async def start(self, deliver: Deliver, task_group: TaskGroup) -> None:
        self._deliver = deliver
        try:
            self._stream = await anyio.connect_unix(self.path)
        except OSError as exc:
            raise ConnectionError(f"cannot reach the workers' hub at {self.path}: {exc}") from None
        self._writer = _Writer(self._stream)
        task_group.start_soon(self._writer.run)
        task_group.start_soon(self._receive)

    async def stop(self) -> None:
        self._stopping = True  # the end of the stream is ours, not a loss
        if self._stream is not None:
            await self._stream.aclose()

    async def _receive(self) -> None:
        assert self._stream is not None
        await _Reader(self._stream).frames(self._handle)
        self._lost = True
        for event, _ in self._answers.values():
            event.set()
        if self._stopping:
            return
        logger.error(
            "lost the workers' hub (%s): broadcasts now reach this worker's members only",
            self.path,
        )

    def _handle(self, kind: int, room: str, body: bytes) -> None:
        if kind == PUBLISH:
            assert self._deliver is not None
            self._deliver(room, body)
        elif kind == ANSWER:
            waiting = self._answers.get(body[:8])
            if waiting is not None:
                waiting[1].extend(Member(id_, info) for id_, info in json.loads(body[8:]))
                waiting[0].set()

    def _send(self, data: bytes) -> bool:
        if self._lost or self._writer is None:
            return False
        self._writer.add(data)
        return True

    async def publish(self, room: str, envelope: bytes) -> None:
        if not self._send(frame(PUBLISH, room, envelope)) and self._deliver is not None:
            self._log.warning("no workers' hub: a broadcast reached this worker's members only")
            if room in self._rooms:
                self._deliver(room, envelope)

    async def subscribe(self, room: str) -> None:
        self._rooms.add(room)
        self._send(frame(SUBSCRIBE, room))

    async def unsubscribe(self, room: str) -> None:
        self._rooms.discard(room)
        self._send(frame(UNSUBSCRIBE, room))

    async def add_member(self, room: str, member: Member) -> None:
        self._send(frame(ADD, room, json.dumps([member.id, member.info]).encode()))

    async def remove_member(self, room: str, member_id: str) -> None:
        self._send(frame(REMOVE, room, member_id.encode()))

    async def presence(self, room: str) -> list[Member]:
        self._queries += 1
        key = self._queries.to_bytes(8, "big")
        event, found = anyio.Event(), list[Member]()
        self._answers[key] = (event, found)
        try:
            if self._send(frame(QUERY, room, key)):
                with anyio.fail_after(5):
                    await event.wait()
        finally:
            del self._answers[key]
        return found
