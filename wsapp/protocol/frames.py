"""Server frames built once for many connections, without wsproto's per-connection state.

A server's frames are not masked (RFC 6455 section 5.1), so the bytes of a data frame depend
only on its opcode and payload: a message sent to many uncompressed connections can be
framed once and the same ``bytes`` written to each of them. Compressed, the same holds for
connections whose compressor starts afresh for every message (``server_no_context_takeover``)
with the same window. Equivalence with wsproto's own
serializer is checked by a differential property test (tests/test_frames.py).
"""

from __future__ import annotations

import struct
import zlib

__all__ = [
    "OPCODE_BINARY",
    "OPCODE_CLOSE",
    "OPCODE_PING",
    "OPCODE_PONG",
    "OPCODE_TEXT",
    "PreparedMessage",
    "encode_frame",
    "frame_header",
    "payload_size",
]

OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA


def payload_size(message: str | bytes) -> int:
    """The payload bytes of a message's frame: UTF-8 for text (ASCII text is not encoded to
    know; callers on a per-message path test `isascii` first, to save the call)."""
    if type(message) is str and not message.isascii():
        return len(message.encode("utf-8", "surrogatepass"))
    return len(message)


_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def frame_header(opcode: int, length: int, *, rsv1: bool = False) -> bytes:
    """The header of a final, unmasked frame of ``length`` payload bytes (``rsv1`` marks
    compressed data)."""
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    if length < 126:
        return _SHORT.pack(first, length)
    if length < 0x10000:
        return _MEDIUM.pack(first, 126, length)
    return _LONG.pack(first, 127, length)


def encode_frame(opcode: int, payload: bytes, *, rsv1: bool = False) -> bytes:
    """One final, unmasked frame carrying ``payload`` (``rsv1`` marks compressed data)."""
    return frame_header(opcode, len(payload), rsv1=rsv1) + payload


class PreparedMessage:
    """One message to be sent to many connections, encoded at most once per wire form.

    Build it with [of][wsapp.protocol.frames.PreparedMessage.of] from a `str` or `bytes`, or
    directly from an opcode and payload bytes that are already encoded (a JSON document
    serialized to UTF-8, a payload received from a broker), which are then never decoded
    unless a host that frames its own sends (ASGI) asks for `message`.

    Attributes:
        opcode: The opcode of its data frame.
        payload: Its payload bytes (UTF-8 for text).
    """

    __slots__ = ("_compressed", "_frame", "_message", "opcode", "payload")

    def __init__(self, opcode: int, payload: bytes, message: str | bytes | None = None) -> None:
        self.opcode = opcode
        self.payload = payload
        self._message = message
        self._frame: bytes | None = None
        self._compressed: dict[int, bytes] | None = None

    @classmethod
    def of(cls, message: str | bytes) -> PreparedMessage:
        """A text message for `str`, a binary one for `bytes`."""
        if isinstance(message, str):
            return cls(OPCODE_TEXT, message.encode(), message)
        payload = bytes(message)
        return cls(OPCODE_BINARY, payload, payload)

    def __len__(self) -> int:
        return len(self.payload)

    @property
    def message(self) -> str | bytes:
        """The message itself: `str` for text (decoded on first use), `bytes` for binary."""
        if self._message is None:
            payload = self.payload
            self._message = payload.decode() if self.opcode == OPCODE_TEXT else payload
        return self._message

    @property
    def frame(self) -> bytes:
        """The uncompressed frame, built on first use and shared from then on."""
        if self._frame is None:
            self._frame = encode_frame(self.opcode, self.payload)
        return self._frame

    def compressed_frame(self, window_bits: int) -> bytes:
        """The frame compressed on its own (permessage-deflate without context takeover, as
        RFC 7692 section 7.2.1 describes), built once per window size and shared by every
        connection that negotiated ``server_no_context_takeover`` with that window."""
        cache = self._compressed
        if cache is None:
            cache = self._compressed = {}
        frame = cache.get(window_bits)
        if frame is None:
            compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits)
            data = compressor.compress(self.payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
            frame = cache[window_bits] = encode_frame(self.opcode, data[:-4], rsv1=True)
        return frame
