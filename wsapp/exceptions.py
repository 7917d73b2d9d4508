"""The exceptions users raise and catch."""

from __future__ import annotations

import anyio
from pydantic_core import to_json

__all__ = ["ConnectionClosed", "JoinRefused", "Reject", "WriteTimeout"]


class ConnectionClosed(anyio.BrokenResourceError):
    """Raised by `send` once the connection is closing or closed.

    Escaping a callback, it is not an error: the connection simply ended first.

    Attributes:
        code: The close code (see [CloseCode][wsapp.CloseCode]).
        reason: The close reason.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"the WebSocket connection is closed (code {code}, {reason!r})")
        self.code: int = code
        self.reason: str = reason


class WriteTimeout(ConnectionClosed, TimeoutError):
    """`send` waited `write_timeout` seconds for the peer to drain; the connection is dropped."""


class Reject(Exception):
    """Raise in `on_connect` to refuse the handshake with exactly this HTTP response.

    Args:
        status: An HTTP status code from 300 to 599 (e.g. 401, 403, 429, 302).
        body: The response body; `str` is sent as UTF-8 text.
        headers: Extra response headers (e.g. `{"WWW-Authenticate": "Bearer"}`).
    """

    def __init__(
        self, status: int, body: str | bytes = "", headers: dict[str, str] | None = None
    ) -> None:
        if not 300 <= status <= 599:
            raise ValueError(f"Reject status must be 300-599, not {status}")
        super().__init__(status, body)
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.headers = dict(headers or {})


class JoinRefused(Exception):
    """`conn.join(room)` was refused by the app's `on_join` callback for that room.

    Escaping `on_message`, it is answered with an error reply,
    `{"type": "error", "error": "join_refused", "room": ..., "detail": ...}`, and the
    connection stays open.

    Attributes:
        room: The room that was refused.
        reason: Why (what the callback raised it with, or `refused by on_join`).
    """

    def __init__(self, reason: str = "refused by on_join", room: str = "") -> None:
        super().__init__(reason)
        self.reason: str = reason
        self.room: str = room

    def reply(self) -> str:
        """The error reply sent when this escapes `on_message`."""
        return to_json(
            {"type": "error", "error": "join_refused", "room": self.room, "detail": self.reason}
        ).decode()
