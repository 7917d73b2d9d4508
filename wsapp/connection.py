"""The connection object handed to callbacks."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

from anyio.abc import ObjectStream
from pydantic import BaseModel
from pydantic_core import to_json

from wsapp.datastructures import MutableHeaders
from wsapp.inbox import Inbox
from wsapp.intake import Inbound
from wsapp.operations.metrics import Metrics
from wsapp.protocol import Message, is_sendable
from wsapp.protocol.frames import payload_size
from wsapp.ratelimit import RateLimited, enforce
from wsapp.request import Request
from wsapp.rooms import Rooms, SlowPolicy
from wsapp.settings import Settings
from wsapp.transport import Transport

__all__ = ["Connection"]


class Connection(ObjectStream[Message]):
    """One WebSocket connection, as an `anyio.abc.ObjectStream` of messages.

    `await conn.send("text")` sends a text message and `await conn.send(b"bytes")` a binary
    one. Sends from many tasks at once are safe: each message goes out whole. A `send` waits
    while the peer reads slowly and raises [WriteTimeout][wsapp.WriteTimeout] after
    `settings.write_timeout`.

    In the reading form (no `on_message` declared), `await conn.receive()` and
    `async for message in conn` read the messages in order; iteration ends when the
    connection closes.

    Attributes:
        id: A short unique id, used in the log lines of this connection.
        request: The handshake request.
        settings: This connection's own settings; assignments are validated, change this
            connection only and take effect from their next use (list values cannot be
            changed in place: assign a new list).
        state: A namespace for your per-connection data (`conn.state.user = ...`).
        response_headers: Headers to send with the 101 response (set them in `on_connect`).
        close_code: Set once closed: the code of the close (see the lifecycle docs).
        close_reason: Set once closed: the reason that came with `close_code`.
        was_clean: Set once closed: whether the closing handshake completed.
        query: The query parameters, validated into the model the endpoint declares
            (`route.query(Model)`, a Connector's `query`); None if it declares none.
    """

    #: Set per connection only where the endpoint declares a query model.
    query: BaseModel | None = None

    def __init__(
        self,
        request: Request,
        settings: Settings,
        transport: Transport,
        inbox: Inbox[Inbound] | None = None,
        *,
        rooms: Rooms[Connection],
        metrics: Metrics,
        on_slow: SlowPolicy = "close",
    ) -> None:
        # Made by the lifecycle, not by users: ``inbox`` is given in the reading form only.
        self.id: str = uuid.uuid4().hex[:12]
        self.request: Request = request
        self.settings: Settings = settings
        self.state: SimpleNamespace = SimpleNamespace()
        self.response_headers: MutableHeaders = MutableHeaders()
        self.close_code: int | None = None
        self.close_reason: str = ""
        self.was_clean: bool = False
        self._subprotocol: str | None = None
        self._transport = transport
        self._inbox = inbox
        self._rooms = rooms
        self._metrics = metrics
        self._on_slow: SlowPolicy = on_slow

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.request.path}>"

    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol. `on_connect` may set it to one the client offered."""
        return self._subprotocol

    @subprotocol.setter
    def subprotocol(self, value: str | None) -> None:
        if self._transport.opened:
            raise RuntimeError("the subprotocol can only be chosen in on_connect")
        if value is not None and value not in self.request.subprotocols:
            raise ValueError(
                f"cannot choose subprotocol {value!r}: the client offered "
                f"{list(self.request.subprotocols)!r}"
            )
        self._subprotocol = value

    async def send(self, item: Message | BaseModel) -> None:
        """Send one message: `str` as a text frame, `bytes` as a binary frame, a pydantic
        model as its JSON in a text frame."""
        if type(item) is not str and type(item) is not bytes:
            if isinstance(item, BaseModel):
                item = item.model_dump_json()
            elif isinstance(item, bytearray | memoryview):
                item = bytes(item)
            elif not isinstance(item, str | bytes):
                raise TypeError(
                    f"send() takes str (text), bytes (binary) or a pydantic model, not "
                    f"{type(item).__name__}; use send_json() for other data"
                )
        await self._transport.send(item)  # which refuses to send before the handshake
        metrics = self._metrics
        metrics.messages_sent += 1
        # As in Intake.offer: a call only for text that is not ASCII.
        metrics.bytes_sent += (
            len(item) if type(item) is bytes or item.isascii() else payload_size(item)
        )

    async def join(self, room: str, info: Any = None) -> None:
        """Join ``room``: from now on, its broadcasts reach this connection.

        ``info`` (JSON data, such as a user name) is what presence reports for this
        connection in that room. The app's `on_join` callback for the room, if any, decides
        first: a refusal raises [JoinRefused][wsapp.JoinRefused]. A connection leaves every
        room by itself when it closes, before `on_close`. Joining a room twice is harmless.
        """
        await self._rooms.join(self, self._transport, self._on_slow, room, info)

    async def leave(self, room: str) -> None:
        """Leave ``room`` (nothing if this connection is not in it)."""
        await self._rooms.leave(self, room)

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this connection is in."""
        return self._rooms.rooms_of(self)

    async def send_json(self, data: Any) -> None:
        """Send ``data`` (dicts, lists, models, dataclasses, datetimes...) as JSON text."""
        await self.send(to_json(data).decode())

    async def receive(self) -> Message:
        """The next message; raises `anyio.EndOfStream` once the connection has closed."""
        if self._inbox is None:
            raise RuntimeError(
                "this endpoint declares on_message, which receives every message; "
                "remove on_message to read with receive() or `async for`"
            )
        while True:
            message = await self._inbox.get()
            if not isinstance(message, RateLimited):
                return message
            await enforce(self, message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; returns once the close frame is on its way.

        `on_close` runs when the peer has answered (or after `close_timeout`).
        """
        if not is_sendable(code):
            raise ValueError(
                f"close code {code} cannot be sent; use 1000-1003, 1007-1009, 1011-1014 "
                "or an application code (3000-4999)"
            )
        if len(reason.encode()) > 123:
            raise ValueError("a close reason must fit in 123 bytes of UTF-8")
        if self._transport.opened:
            await self._transport.close(code, reason)

    async def send_eof(self) -> None:
        """A WebSocket has no half-close: this starts the closing handshake with 1000.

        Messages the peer sent before its own close frame can still be received.
        """
        await self.close()

    async def aclose(self) -> None:
        """Close with 1000 (the `anyio.abc.AsyncResource` interface)."""
        await self.close()
