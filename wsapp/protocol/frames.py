"""Server frames built once for many connections, without wsproto's per-connection state.

A server's frames are not masked (RFC 6455 section 5.1), so the bytes of a data frame depend
only on its opcode and payload: a message sent to many uncompressed connections can be
framed once and the same ``bytes`` written to each of them. Equivalence with wsproto's own
serializer is checked by a differential property test (tests/test_frames.py).
"""

from __future__ import annotations

import struct

__all__ = ["OPCODE_BINARY", "OPCODE_TEXT", "PreparedMessage", "encode_frame"]

OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2

_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def encode_frame(opcode: int, payload: bytes, *, rsv1: bool = False) -> bytes:
    """One final, unmasked frame carrying ``payload`` (``rsv1`` marks compressed data)."""
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    length = len(payload)
    if length < 126:
        header = _SHORT.pack(first, length)
    elif length < 0x10000:
        header = _MEDIUM.pack(first, 126, length)
    else:
        header = _LONG.pack(first, 127, length)
    return header + payload


class PreparedMessage:
    """One message to be sent to many connections, encoded at most once per wire form.

    Attributes:
        message: The message as given (`str` for text, `bytes` for binary): what a host that
            frames its own sends (ASGI) is handed.
        opcode: The opcode of its data frame.
        payload: Its payload bytes (UTF-8 for text), encoded once.
    """

    __slots__ = ("_frame", "message", "opcode", "payload")

    def __init__(self, message: str | bytes) -> None:
        self.message = message
        if isinstance(message, str):
            self.opcode = OPCODE_TEXT
            self.payload = message.encode()
        else:
            self.opcode = OPCODE_BINARY
            self.payload = bytes(message)
        self._frame: bytes | None = None

    def __len__(self) -> int:
        return len(self.payload)

    @property
    def frame(self) -> bytes:
        """The uncompressed frame, built on first use and shared from then on."""
        if self._frame is None:
            self._frame = encode_frame(self.opcode, self.payload)
        return self._frame
