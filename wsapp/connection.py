"""The connection object handed to callbacks, and the inbox that feeds it."""

from __future__ import annotations

import uuid
from collections import deque
from types import SimpleNamespace
from typing import Any, Protocol

import anyio
from anyio.abc import ObjectStream
from pydantic import BaseModel
from pydantic_core import to_json

from wsapp.datastructures import MutableHeaders
from wsapp.request import Request
from wsapp.settings import Settings

__all__ = ["Connection", "ConnectionClosed", "Message", "Transport", "WriteTimeout"]

Message = str | bytes

#: Codes RFC 6455 (section 7.4) and the IANA registry let a server put in a close frame.
SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012, 1013, 1014})


class ConnectionClosed(anyio.BrokenResourceError):
    """Raised by `send` once the connection is closing or closed.

    Escaping a callback, it is not an error: the connection simply ended first.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"the WebSocket connection is closed (code {code}, {reason!r})")
        self.code = code
        self.reason = reason


class WriteTimeout(ConnectionClosed, TimeoutError):
    """`send` waited `write_timeout` seconds for the peer to drain; the connection is dropped."""


class Transport(Protocol):
    """What a connection needs from the wire below it (built-in server or ASGI host)."""

    async def send_message(self, message: Message) -> None:
        """Send one whole message, waiting while the peer is slow."""

    async def close(self, code: int, reason: str) -> None:
        """Start the closing handshake with ``code`` (no-op if already closing)."""


class Inbox:
    """A FIFO of received messages, bounded in count and in size, with live limits.

    The reader waits in `put` while the inbox is full; since it then stops reading the
    socket, a slow handler slows the peer down through TCP instead of growing memory.
    Full means `count` messages, or (beyond the first message) `size` bytes, so the worst
    case is one message plus `size` bytes, not `count` times the largest message.
    """

    __slots__ = ("_closed", "_items", "_readable", "_size", "_writable")

    def __init__(self) -> None:
        self._items: deque[Message] = deque()
        self._size = 0  # len() of the queued messages (characters for text)
        self._closed = False
        self._readable: anyio.Event | None = None
        self._writable: anyio.Event | None = None

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, message: Message, count: int, size: int) -> None:
        length = len(message)
        while (
            len(self._items) >= count or (self._items and self._size + length > size)
        ) and not self._closed:
            if self._writable is None:
                self._writable = anyio.Event()
            await self._writable.wait()
        if self._closed:
            return
        self._items.append(message)
        self._size += length
        if self._readable is not None:
            self._readable.set()
            self._readable = None

    async def get(self) -> Message:
        while not self._items:
            if self._closed:
                raise anyio.EndOfStream
            if self._readable is None:
                self._readable = anyio.Event()
            await self._readable.wait()
        message = self._items.popleft()
        self._size -= len(message)
        if self._writable is not None:
            self._writable.set()
            self._writable = None
        return message

    def close(self) -> None:
        """No more messages will arrive; readers drain what is queued, then get EndOfStream."""
        self._closed = True
        for event in (self._readable, self._writable):
            if event is not None:
                event.set()
        self._readable = self._writable = None


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
        settings: This connection's own copy of the settings; assignments are validated and
            take effect from their next use.
        state: A namespace for your per-connection data (`conn.state.user = ...`).
        response_headers: Headers to send with the 101 response (set them in `on_connect`).
        close_code: Set once closed: the code of the close (see the lifecycle docs).
        close_reason: Set once closed: the reason that came with `close_code`.
        was_clean: Set once closed: whether the closing handshake completed.
    """

    def __init__(self, request: Request, settings: Settings) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.request = request
        self.settings = settings
        self.state = SimpleNamespace()
        self.response_headers = MutableHeaders()
        self.close_code: int | None = None
        self.close_reason = ""
        self.was_clean = False
        self._subprotocol: str | None = None
        self._transport: Transport | None = None
        self._inbox = Inbox()
        self._reads_allowed = True

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.request.path}>"

    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol. `on_connect` may set it to one the client offered."""
        return self._subprotocol

    @subprotocol.setter
    def subprotocol(self, value: str | None) -> None:
        if self._transport is not None:
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
        if self._transport is None:
            raise RuntimeError("cannot send before the handshake completes (after on_connect)")
        await self._transport.send_message(item)

    async def send_json(self, data: Any) -> None:
        """Send ``data`` (dicts, lists, models, dataclasses, datetimes...) as JSON text."""
        await self.send(to_json(data).decode())

    async def receive(self) -> Message:
        """The next message; raises `anyio.EndOfStream` once the connection has closed."""
        if not self._reads_allowed:
            raise RuntimeError(
                "this endpoint declares on_message, which receives every message; "
                "remove on_message to read with receive() or `async for`"
            )
        return await self._inbox.get()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; returns once the close frame is on its way.

        `on_close` runs when the peer has answered (or after `close_timeout`).
        """
        if code not in SENDABLE_CLOSE_CODES and not 3000 <= code <= 4999:
            raise ValueError(
                f"close code {code} cannot be sent; use 1000-1003, 1007-1009, 1011-1014 "
                "or an application code (3000-4999)"
            )
        if len(reason.encode()) > 123:
            raise ValueError("a close reason must fit in 123 bytes of UTF-8")
        if self._transport is not None:
            await self._transport.close(code, reason)

    async def send_eof(self) -> None:
        """A WebSocket has no half-close: this starts the closing handshake with 1000.

        Messages the peer sent before its own close frame can still be received.
        """
        await self.close()

    async def aclose(self) -> None:
        """Close with 1000 (the `anyio.abc.AsyncResource` interface)."""
        await self.close()
