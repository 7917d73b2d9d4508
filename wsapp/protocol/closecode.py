"""Close codes (RFC 6455 section 7.4 and the IANA registry), in one enum used everywhere."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CloseCode", "is_sendable"]


class CloseCode(IntEnum):
    """The registered close codes. Members compare equal to their `int` value.

    Application codes (3000-4999) are plain ints: they are the app's to define.
    """

    NORMAL_CLOSURE = 1000
    """The purpose of the connection was fulfilled."""
    GOING_AWAY = 1001
    """The server is shutting down (or the browser page is going away)."""
    PROTOCOL_ERROR = 1002
    """The peer broke the WebSocket protocol."""
    UNSUPPORTED_DATA = 1003
    """The peer sent a kind of data (text or binary) the endpoint cannot accept."""
    NO_STATUS_RCVD = 1005
    """Never sent: reported when a close frame carried no code."""
    ABNORMAL_CLOSURE = 1006
    """Never sent: reported when the connection ended without a close frame."""
    INVALID_DATA = 1007
    """A message was not what it claimed to be (bad UTF-8, an invalid typed message)."""
    POLICY_VIOLATION = 1008
    """The peer broke a rule of the app (too many invalid messages, a rate limit)."""
    MESSAGE_TOO_BIG = 1009
    """A message was larger than `max_message_size`."""
    MANDATORY_EXTENSION = 1010
    """Sent by clients only: the server did not negotiate an extension the client needs."""
    INTERNAL_ERROR = 1011
    """A callback raised, or keepalive found the peer unresponsive."""
    SERVICE_RESTART = 1012
    """The server is restarting; reconnect after a short pause."""
    TRY_AGAIN_LATER = 1013
    """The server is overloaded; reconnect later."""
    BAD_GATEWAY = 1014
    """A gateway or proxy got an invalid response from the server behind it."""
    TLS_HANDSHAKE = 1015
    """Never sent: reported when the TLS handshake failed."""


#: Registered codes a server may send: not those that only report (1005, 1006, 1015), nor
#: 1010, which only a client sends.
_SENDABLE = frozenset(CloseCode) - {
    CloseCode.NO_STATUS_RCVD,
    CloseCode.ABNORMAL_CLOSURE,
    CloseCode.MANDATORY_EXTENSION,
    CloseCode.TLS_HANDSHAKE,
}


def is_sendable(code: int) -> bool:
    """Whether a server may put ``code`` in a close frame: a registered code meant to be
    sent, or an application code (3000-4999)."""
    return 3000 <= code <= 4999 or code in _SENDABLE
