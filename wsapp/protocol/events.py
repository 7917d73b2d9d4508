"""What a session reports of the peer's bytes: complete messages and control events.

Its own module because both readers of a session's bytes produce them: the frame reader for
common frames (`reader`) and the session over wsproto for everything else (`session`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from wsapp.protocol.closecode import CloseCode

__all__ = [
    "CloseReceived",
    "Event",
    "Message",
    "PingReceived",
    "PongReceived",
    "ProtocolFailure",
    "message_too_big",
]

Message: TypeAlias = str | bytes
"""A WebSocket message: `str` for a text message, `bytes` for a binary one."""


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """The peer sent a close frame (code 1005 when it carried no code)."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class PingReceived:
    """The peer sent a ping; ``pong`` holds the answering frame to send (``b""`` if the
    session is already closing and must not answer)."""

    payload: bytes
    pong: bytes


@dataclass(frozen=True, slots=True)
class PongReceived:
    """The peer sent a pong."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class ProtocolFailure:
    """The peer broke the protocol or a limit; the session must close with ``code``."""

    code: int
    reason: str


def message_too_big(limit: int) -> ProtocolFailure:
    """The failure (and close frame) for a message over ``limit`` bytes."""
    return ProtocolFailure(CloseCode.MESSAGE_TOO_BIG, f"message over {limit} bytes")


Event: TypeAlias = Message | CloseReceived | PingReceived | PongReceived | ProtocolFailure
"""What `Session.receive_data` yields: a complete message (``str`` or ``bytes``) or a control
event."""
