"""The transport contract: what the lifecycle needs from whatever carries a connection.

Two transports implement it: the built-in server's socket transport
([wsapp.server.transport][]) and the ASGI adapter's ([wsapp.asgi][]). The lifecycle drives
either through these few methods only, and neither transport touches the
[Connection][wsapp.Connection]'s internals: what the transport reports, it returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from wsapp.datastructures import MutableHeaders
from wsapp.exceptions import ConnectionClosed
from wsapp.intake import Intake
from wsapp.protocol import CloseCode, Message, PreparedMessage, Refusal
from wsapp.request import Request
from wsapp.settings import Settings

__all__ = ["Accepting", "CloseRecord", "Closed", "OpenConnections", "Transport"]


class Accepting(Protocol):
    """What a transport's `accept` reads of the connection it answers the handshake for
    (a [Connection][wsapp.Connection] is one)."""

    @property
    def request(self) -> Request: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def subprotocol(self) -> str | None: ...

    @property
    def response_headers(self) -> MutableHeaders: ...


@dataclass(frozen=True, slots=True)
class Closed:
    """How a connection ended, as `on_close` is told.

    Attributes:
        code: The first close frame exchanged (the peer's if it closed first, ours if we
            did), or 1006 when none was.
        reason: The reason that came with `code` (or why the connection was lost).
        was_clean: Both close frames were exchanged, ours actually written.
    """

    code: int
    reason: str
    was_clean: bool


class CloseRecord:
    """The close bookkeeping every transport keeps: who closed first, or why it was lost."""

    __slots__ = ("initiator", "lost")

    def __init__(self) -> None:
        self.initiator: tuple[int, str] | None = None  # (code, reason) of the first close
        self.lost: str | None = None  # why the closing handshake could not complete

    def first(self, code: int, reason: str) -> None:
        """Record a close frame (sent or received); only the first one counts."""
        if self.initiator is None:
            self.initiator = (code, reason)

    def lose(self, why: str) -> None:
        """Record that the connection broke; only the first cause counts."""
        if self.lost is None:
            self.lost = why

    def error(self) -> ConnectionClosed:
        """What a `send` on this closing or closed connection raises."""
        code, reason = self.initiator or (CloseCode.ABNORMAL_CLOSURE, self.lost or "")
        return ConnectionClosed(code, reason)

    def outcome(self, completed: bool) -> Closed:
        """How it ended; ``completed``: the transport saw the closing handshake finish."""
        if self.initiator is None:
            return Closed(CloseCode.ABNORMAL_CLOSURE, self.lost or "connection lost", False)
        code, reason = self.initiator
        return Closed(code, reason, completed and self.lost is None)


class Transport(Protocol):
    """Carries one connection: its handshake answer, its messages both ways, its close.

    Created when the handshake request has been read; the lifecycle then calls `refuse`, or
    `accept` followed by `run` beside the callbacks.
    """

    @property
    def opened(self) -> bool:
        """True once `accept` has answered the handshake."""
        ...

    @property
    def unsent(self) -> int:
        """Bytes queued for the peer and not yet handed to the network (or to the host)."""
        ...

    async def refuse(self, refusal: Refusal) -> None:
        """Answer the handshake with ``refusal``'s HTTP response (or the host's nearest form)."""
        ...

    async def accept(self, conn: Accepting) -> bool:
        """Answer the handshake with the connection's subprotocol, response headers and
        negotiated extensions; False if the client left before it could be answered."""
        ...

    async def send(self, message: Message) -> None:
        """Send one whole message; wait while the peer is slow (backpressure), up to
        `write_timeout`, then raise [WriteTimeout][wsapp.WriteTimeout].

        Raises [ConnectionClosed][wsapp.ConnectionClosed] once the connection is closing,
        and RuntimeError before `accept` (saying to send after `on_connect`).
        """
        ...

    def push(self, message: PreparedMessage, limit: int) -> bool:
        """Queue an already-encoded message without waiting, unless the unsent bytes would
        then exceed ``limit``: False means refused, and nothing was queued. Raises
        [ConnectionClosed][wsapp.ConnectionClosed] once the connection is closing.

        Frames pushed and frames sent never interleave, and go out in the order given.
        """
        ...

    async def close(self, code: int, reason: str) -> None:
        """Start the closing handshake with ``code`` (nothing if already closing)."""
        ...

    def abort(self, why: str) -> None:
        """Drop the connection now, without a closing handshake: `run` returns, and ``why``
        is recorded as the cause of the loss."""
        ...

    async def run(self, intake: Intake) -> None:
        """Hand the messages read to ``intake`` until the connection is closed: `close` it
        when closing, or, for a close because of what the peer sent (a protocol error, a
        message over `max_message_size`), `drain` it first, reading nothing meanwhile, so
        that the replies to the messages before come before the close."""
        ...

    def outcome(self) -> Closed:
        """How the connection ended (asked once `run` has returned, or was cancelled)."""
        ...


class OpenConnections:
    """The transports of an app's open connections in this process, from the handshake's
    answer until the connection has closed (before `on_close`): the one registry that the
    metrics' gauges read and that a stopping server closes.

    The lifecycle adds and discards; everyone else reads.
    """

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: set[Transport] = set()

    def add(self, transport: Transport) -> None:
        self._open.add(transport)

    def discard(self, transport: Transport) -> None:
        self._open.discard(transport)

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[Transport]:
        """A copy: closing them while iterating is safe."""
        return iter(list(self._open))

    def unsent(self) -> int:
        """Bytes queued for their peers and not yet written, summed."""
        return sum(transport.unsent for transport in self._open)
