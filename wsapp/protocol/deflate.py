"""permessage-deflate (RFC 7692), server side, as a wsproto extension.

wsapp uses its own extension instead of wsproto's ``PerMessageDeflate`` because that one:

- inflates each received chunk whole, so a few KiB of crafted input can expand to hundreds of
  MiB before any size limit is checked (a decompression bomb); here inflation stops as soon
  as the message would exceed ``max_message_size``, and the connection closes with 1009;
- forgets that a fragmented message is compressed when a control frame (a ping) arrives
  between its fragments, and then inflates nothing or garbage;
- cannot honour a client's ``server_max_window_bits=8``: zlib cannot compress with a
  256-byte window. RFC 7692 lets a sender leave any message uncompressed, so wsapp accepts
  such an offer and sends its messages uncompressed.

The parameters come from :func:`wsapp.protocol.handshake.negotiate_deflate`; this class only applies
them.
"""

from __future__ import annotations

import zlib

from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

from wsapp.protocol.frames import PreparedMessage, encode_frame
from wsapp.protocol.limits import MessageLimits

__all__ = ["PerMessageDeflate"]

_TAIL = b"\x00\x00\xff\xff"
_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION)


class PerMessageDeflate(Extension):
    """Negotiated permessage-deflate for one server connection."""

    name = "permessage-deflate"

    def __init__(
        self,
        limits: MessageLimits,
        *,
        server_max_window_bits: int,
        server_no_context_takeover: bool,
        client_no_context_takeover: bool,
    ) -> None:
        self._limits = limits
        self._server_bits = server_max_window_bits
        self._compress_outbound = server_max_window_bits >= 9
        self._server_no_context_takeover = server_no_context_takeover
        self._client_no_context_takeover = client_no_context_takeover
        self._compressor: zlib._Compress | None = None
        # Made for the first compressed message, not before: zlib's inflate state is 7 KiB,
        # which a connection that has received nothing compressed would hold for nothing.
        self._decompressor: zlib._Decompress | None = None
        self._message_compressed = False  # the data message being received is compressed
        self._frame_compressed = False  # the frame being received carries compressed data
        self._inflated = 0  # bytes inflated so far for the current message

    def shared_frame(self, prepared: PreparedMessage) -> bytes | None:
        """The frame of ``prepared`` that other connections can share, if this connection's
        compression allows it: without context takeover every message is compressed on its
        own, so the bytes depend only on the window. None: compress it for this connection."""
        if not self._compress_outbound:
            return prepared.frame  # an 8-bit window: sent uncompressed
        if self._server_no_context_takeover:
            return prepared.compressed_frame(self._server_bits)
        return None

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool:
        return False  # a server never offers; it answers offers (see handshake.negotiate_deflate)

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        if rsv.rsv1 and opcode not in (Opcode.TEXT, Opcode.BINARY):
            return CloseReason.PROTOCOL_ERROR  # RSV1 only marks the first frame of a message
        if opcode in (Opcode.TEXT, Opcode.BINARY):
            self._message_compressed = rsv.rsv1
            self._inflated = 0
        self._frame_compressed = self._message_compressed and opcode in _DATA
        return RsvBits(True, False, False)

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        allowed = self._limits.max_message_size - self._inflated
        decompressor = self._decompressor
        if decompressor is None:
            # Inflating with the largest window decodes whatever window the client used.
            decompressor = self._decompressor = zlib.decompressobj(-15)
        try:
            output = decompressor.decompress(data, allowed + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        if len(output) > allowed or decompressor.unconsumed_tail:
            return CloseReason.MESSAGE_TOO_BIG  # stopped here: the rest is never inflated
        self._inflated += len(output)
        return output

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        return self._inflate(data) if self._frame_compressed else data

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not (fin and self._frame_compressed):
            return None
        self._message_compressed = self._frame_compressed = False
        result = self._inflate(_TAIL)
        if self._client_no_context_takeover:
            self._decompressor = None  # the next message starts afresh, its window freed
        return result

    def inflate_message(self, data: bytes) -> bytes | CloseReason:
        """Inflate a whole compressed message of one frame that the frame reader read without
        wsproto, exactly as the hooks above inflate it for wsproto (the same limit, the same
        failures, the same decompressor: the window carries over from message to message
        whoever read the previous one)."""
        self._inflated = 0
        output = self._inflate(data)
        if isinstance(output, CloseReason):
            return output
        tail = self._inflate(_TAIL)
        if self._client_no_context_takeover:
            self._decompressor = None
        return tail if isinstance(tail, CloseReason) else output + tail

    def frame_outbound(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        data: bytes,
        fin: bool,
    ) -> tuple[RsvBits, bytes]:
        if not self._compress_outbound or opcode not in _DATA:
            return rsv, data
        compressed = self._compress(data, fin)
        if opcode is not Opcode.CONTINUATION:
            rsv = RsvBits(True, rsv.rsv2, rsv.rsv3)
        return rsv, compressed

    def message_frame(self, opcode: int, payload: bytes) -> bytes:
        """The frame of a whole message for a session that frames without wsproto: what
        wsproto builds with this extension (compressed, unless the window is 8 bits), from
        the same compressor."""
        if not self._compress_outbound:
            return encode_frame(opcode, payload)
        return encode_frame(opcode, self._compress(payload, True), rsv1=True)

    def _compress(self, data: bytes, fin: bool) -> bytes:
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self._server_bits
            )
        compressed = compressor.compress(data)
        if fin:
            compressed = (compressed + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
            if self._server_no_context_takeover:
                self._compressor = None
        return compressed
