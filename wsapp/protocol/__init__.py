"""The WebSocket protocol without I/O: bytes in, events and bytes out.

Nothing in this package knows about sockets, tasks, callbacks or the settings model, so all
of it is tested with bytes alone:

- `handshake`: parse and validate the HTTP upgrade, build the responses, negotiate
  permessage-deflate;
- `session`: one connection after the handshake, over wsproto: reassembly under the size
  limit, close bookkeeping, protocol failures told apart from close frames, and the
  reader below composed with wsproto;
- `reader`: the common client frames read without wsproto, and the hand-over to wsproto of
  every other frame, held to wsproto's answers by a differential test;
- `events`: what a session reports of the peer's bytes;
- `masking`: unmasking client payloads, in C where it was compiled, else in Python;
- `deflate`: wsapp's permessage-deflate extension for wsproto;
- `frames`: server frames built once for many connections;
- `closecode`: the close codes; `limits`: what the session reads from the settings.
"""

from wsapp.protocol.closecode import CloseCode, is_sendable
from wsapp.protocol.events import (
    CloseReceived,
    Message,
    PingReceived,
    PongReceived,
    ProtocolFailure,
    message_too_big,
)
from wsapp.protocol.frames import PreparedMessage
from wsapp.protocol.handshake import Refusal
from wsapp.protocol.session import Session

__all__ = [
    "CloseCode",
    "CloseReceived",
    "Message",
    "PingReceived",
    "PongReceived",
    "PreparedMessage",
    "ProtocolFailure",
    "Refusal",
    "Session",
    "is_sendable",
    "message_too_big",
]
