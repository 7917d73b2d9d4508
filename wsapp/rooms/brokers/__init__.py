"""Brokers: how room messages and presence cross process boundaries.

A broker is one of a family of interchangeable implementations behind the [Broker][] interface:

- `memory`: one process, the default: a broadcast is delivered at once, nothing crosses a
  process boundary;
- `hub`: the workers of one `python -m wsapp --workers N` supervisor, which relays between them
  over a unix socket when no other broker is configured;
- `redis`: any number of processes on any number of hosts, through Redis pub/sub (one channel
  per room) and Redis keys for presence.

A room message crosses the broker as an *envelope*: the already-encoded payload and a small
header (opcode, the excluded connection, the publish time), so a receiving process hands the
same bytes to its members without decoding or re-encoding them, and knows how long the
message spent in the broker.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anyio.abc import TaskGroup

from wsapp.protocol import PreparedMessage

__all__ = ["Broker", "Deliver", "Envelope", "Member", "pack", "unpack"]

#: What a broker calls for each room message it receives: ``deliver(room, envelope)``.
Deliver = Callable[[str, bytes], None]


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a room as presence reports it, in this process or another.

    Attributes:
        id: The connection's id (`conn.id`).
        info: What the connection joined with (`conn.join(room, info=...)`), as JSON data.
    """

    id: str
    info: Any = None


#: Opcode, length of the excluded id, publish time (seconds since the epoch).
_HEAD = struct.Struct("!BBd")


@dataclass(frozen=True, slots=True)
class Envelope:
    """A room message as it comes out of the broker.

    Attributes:
        message: The message, encoded once for every member.
        exclude: The id of the connection it must not reach, if any.
        published: When it was published (`time.time()` of the publishing process: a lag
            measured across hosts is only as good as their clocks' agreement).
    """

    message: PreparedMessage
    exclude: str | None
    published: float


def pack(prepared: PreparedMessage, exclude: str | None) -> bytes:
    """The envelope of a room message: opcode, the excluded connection's id, the publish
    time, the payload."""
    skipped = (exclude or "").encode("ascii")
    return _HEAD.pack(prepared.opcode, len(skipped), time.time()) + skipped + prepared.payload


def unpack(envelope: bytes) -> Envelope:
    """What an envelope carries."""
    opcode, length, published = _HEAD.unpack_from(envelope)
    start = _HEAD.size + length
    exclude = envelope[_HEAD.size : start].decode("ascii") or None
    return Envelope(PreparedMessage(opcode, envelope[start:]), exclude, published)


class Broker:
    """Carries one process's room messages and presence to the other processes.

    `start` connects and begins receiving (in the task group it is given); from then on the
    broker calls ``deliver`` for every message published to a room this process subscribed
    to, its own included and in the order the broker received them, which is what gives
    every member of a room the same order.

    Once started, no method raises because the other processes cannot be reached: this
    process's members are then served here (its broadcasts delivered to them, presence
    listing them alone), and the broker logs the outage and reconnects.
    """

    #: Whether messages stay in this process (then they are delivered without a round trip).
    local = False

    async def start(self, deliver: Deliver, task_group: TaskGroup) -> None:
        """Connect, and receive in ``task_group`` until `stop`; ConfigError, saying what to
        do, if the broker cannot be used at all (unreachable, or its client not installed)."""

    async def stop(self) -> None:
        """Disconnect; this process's presence is withdrawn."""

    async def publish(self, room: str, envelope: bytes) -> None:
        """Send a room message to every process subscribed to ``room``. It may return before
        the message is on its way, never before it is queued in order. It does not raise: a
        broker that cannot carry the message logs it, counts it, and delivers it to this
        process's members itself."""
        raise NotImplementedError

    async def subscribe(self, room: str) -> None:
        """Receive ``room``'s messages from now on (its first local member joined)."""

    async def unsubscribe(self, room: str) -> None:
        """Stop receiving ``room``'s messages (its last local member left)."""

    async def add_member(self, room: str, member: Member) -> None:
        """Record a local member of ``room`` for presence."""

    async def remove_member(self, room: str, member_id: str) -> None:
        """Withdraw a local member of ``room`` from presence."""

    async def presence(self, room: str) -> list[Member]:
        """The members of ``room`` in every process this broker reaches: this process's
        alone while it reaches no other."""
        raise NotImplementedError
