"""The common client frames read without wsproto, and where wsproto takes over.

Parsing with wsproto costs about half of a small message's server time (a buffer object, a
generator step, a frame object and a message event per frame, and pure-Python masking). Most
client frames have one shape: final, masked, text or binary, between messages, without
extensions, within the size limit. `FrameReader` reads those itself: the header, the payload
unmasked in one call (in C where it was compiled, from a view of the bytes when it is large),
text decoded in one go. It also reads the peer's valid pings, pongs and close, so that
keepalive never makes wsproto's connection object (1.7 KiB per idle connection) and a
connection that only exchanged whole messages ends without it too.

At the first frame it does not take, `FrameReader.read` stops and returns a `Handover`: the
bytes from that frame's first byte on, and the frame's size. The session gives wsproto that
frame, as its bytes arrive, then gives the reader what follows it. So wsproto always reads
whole frames from a frame boundary on, and the frames it does not see are ones that leave its
state as it was (whole messages between messages, pings, pongs; the peer's close is the last
frame read), so its state, its failures and its answers are those it would have had alone:
``tests/test_session.py`` holds the two to the same events for any bytes in any chunking.

Why the hand-over is per frame and not for good (wsproto reading everything from the first
frame it must read): the frames the reader leaves to wsproto are not only errors, after which
nothing is read. A fragmented message, a message over the limit (the session reports it and
keeps reading until the close) and a text frame that has not all arrived (any message larger
than a read, or cut by TCP) are ordinary traffic; handed over for good, one of them would
make the connection pay wsproto's costs per frame for the rest of its life. Per frame, it pays
them for that frame. The hand-over is for good only for a frame wsproto fails on its first two
bytes (a reserved opcode, a fragmented or long control frame): there is no frame end to
resume at (its length may not have arrived), and wsproto reads nothing after a failure.

A text frame that has not all arrived goes to wsproto because wsproto checks UTF-8 as the
bytes arrive and fails at the first invalid one; a binary frame is waited for here and
unmasked from its pieces. The reader sees the header of every frame, those it hands over
too, so it knows itself when a fragmented message is open (its frames are wsproto's) and
never asks wsproto. It answers as an open session does (a ping gets its pong); what a
closing session drops or leaves unanswered is the session's business.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsproto.frame_protocol import (
    LOCAL_ONLY_CLOSE_REASONS,
    MAX_CLOSE_REASON,
    MAX_PROTOCOL_CLOSE_REASON,
    MIN_CLOSE_REASON,
    CloseReason,
)

from wsapp.protocol.bytequeue import Buffer, ByteQueue
from wsapp.protocol.deflate import PerMessageDeflate
from wsapp.protocol.events import (
    CloseReceived,
    Event,
    PingReceived,
    PongReceived,
    ProtocolFailure,
    message_too_big,
)
from wsapp.protocol.frames import (
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_PING,
    OPCODE_PONG,
    OPCODE_TEXT,
    encode_frame,
)
from wsapp.protocol.limits import MessageLimits
from wsapp.protocol.masking import unmask, unmask_pieces

__all__ = ["FrameReader", "Handover"]

_CONTROL_OPCODES = (OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG)
_COPY_LIMIT = 4096  # payloads above it are unmasked from a view of the bytes, not a copy


@dataclass(frozen=True, slots=True)
class Handover:
    """Where wsproto takes over: ``data`` holds the bytes from the first byte of a frame the
    reader does not take to the end of what it was given. The first ``size`` bytes (more than
    ``len(data)`` when the frame has not all arrived) are that frame, after which the reader
    reads again; ``size`` is None when wsproto takes everything from there on."""

    data: memoryview
    size: int | None


def _peer_close(payload: bytes) -> CloseReceived | None:
    """The close a valid close frame's payload reports, as wsproto reports it (its code a
    `CloseReason` where one is named); None for a payload wsproto fails the session on."""
    if not payload:
        return CloseReceived(CloseReason.NO_STATUS_RCVD, "")
    number = int.from_bytes(payload[:2], "big")
    if len(payload) == 1 or not MIN_CLOSE_REASON <= number <= MAX_CLOSE_REASON:
        return None
    try:
        code: int = CloseReason(number)
    except ValueError:
        if number <= MAX_PROTOCOL_CLOSE_REASON:  # reserved for the protocol, not assigned
            return None
        code = number
    if code in LOCAL_ONLY_CLOSE_REASONS:
        return None
    try:
        return CloseReceived(code, payload[2:].decode())
    except UnicodeDecodeError:
        return None


class FrameReader:
    """Reads the common frames of a session without extensions, or with permessage-deflate
    (see the module docstring).

    ``limits`` is read live: a frame over ``max_message_size`` when its header is read is
    handed over, for wsproto and the session to report. With ``deflate`` (the session's
    negotiated extension, which wsproto uses too), a compressed message of one frame that
    has all arrived is inflated by it here.
    """

    __slots__ = ("_deflate", "_fragmented", "_head", "_limits", "_pending", "_wanted")

    def __init__(self, limits: MessageLimits, deflate: PerMessageDeflate | None = None) -> None:
        self._limits = limits
        self._deflate = deflate
        # The start of a frame that has not all arrived (made only then: an idle connection
        # holds none), and the bytes it must hold before reading can go on.
        self._pending: ByteQueue | None = None
        self._wanted = 0
        # For a binary frame checked as its header arrived: the header's size with the key.
        self._head = 0
        self._fragmented = False  # a fragmented message is open: its frames are wsproto's

    def read(self, data: Buffer) -> tuple[list[Event], Handover | None]:
        """Read the frames ``data`` completes, after what earlier calls left; return their
        events, in order, and where wsproto takes over (None: the reader took all of it).

        A `CloseReceived` or a `ProtocolFailure` (a compressed message that does not inflate
        within the limit, or not into UTF-8 text) is the last event: nothing after it is
        read, and the reader is not to be called again.
        """
        events: list[Event] = []
        view: Buffer = data
        pending = self._pending
        if pending is not None:
            pending.append(data)
            if len(pending) < self._wanted:
                return events, None
            self._pending = None
            head = self._head
            if head:  # a binary frame checked as its header arrived: unmasked from its pieces
                self._head = 0
                mask = b"".join(pending.pop(head))[-4:]
                events.append(unmask_pieces(pending.pop(self._wanted - head), mask))
            view = pending.take()
        end = len(view)
        position = 0
        wanted = 0  # where the loop stops: bytes needed from ``position`` on to go further
        while position < end:
            if end - position < 2:
                wanted = 2
                break
            first, second = view[position], view[position + 1]
            opcode, length = first & 0x0F, second & 0x7F
            if opcode > OPCODE_BINARY and not (
                opcode in _CONTROL_OPCODES and first & 0x80 and length < 126
            ):
                # wsproto fails such a frame on its first two bytes (RFC 6455 5.2, 5.5).
                return events, Handover(memoryview(view)[position:], None)
            header = 2 if length < 126 else 4 if length == 126 else 10
            if end - position < header:
                wanted = header
                break
            minimal = True
            if header > 2:
                length = int.from_bytes(view[position + 2 : position + header])
                minimal = length > 125 if header == 4 else 0xFFFF < length < 1 << 63
            masked = second & 0x80
            size = header + (4 if masked else 0) + length
            stop = position + size
            if opcode > OPCODE_BINARY:  # a close, ping or pong, final and short (checked above)
                if first & 0x70 or not masked:
                    return events, Handover(memoryview(view)[position:], size)  # wsproto fails it
                if stop > end:
                    wanted = size
                    break
                start = stop - length
                payload = unmask(view[start:stop], view[start - 4 : start])
                if opcode == OPCODE_CLOSE:
                    received = _peer_close(payload)
                    if received is None:  # for wsproto to fail, with its code and reason
                        return events, Handover(memoryview(view)[position:], size)
                    events.append(received)
                    return events, None  # what follows a close is not read, as by wsproto
                position = stop
                if opcode == OPCODE_PING:
                    events.append(PingReceived(payload, encode_frame(OPCODE_PONG, payload)))
                else:
                    events.append(PongReceived(payload))
                continue
            fin = first & 0x80
            compressed = first & 0x70  # RSV bits: RSV1 alone, with deflate, or wsproto's to fail
            if not (
                (not compressed or (compressed == 0x40 and self._deflate is not None))
                and fin
                and opcode  # a text or binary frame, not a continuation
                and masked
                and minimal
                and not self._fragmented
                and length <= self._limits.max_message_size
            ):
                self._fragmented = not fin
                return events, Handover(memoryview(view)[position:], size)
            if stop > end:
                if opcode == OPCODE_TEXT or compressed:
                    # wsproto checks UTF-8 as the bytes arrive and fails at the first bad one;
                    # it inflates as they arrive too.
                    return events, Handover(memoryview(view)[position:], size)
                wanted = size
                self._head = size - length
                break
            start = stop - length
            key = view[start - 4 : start]
            if length > _COPY_LIMIT:
                with memoryview(view) as whole:  # no copy of a large payload before unmasking
                    payload = unmask(whole[start:stop], key)
            else:
                payload = unmask(view[start:stop], key)
            if compressed:
                assert self._deflate is not None
                inflated = self._deflate.inflate_message(payload)
                if isinstance(inflated, CloseReason):  # as wsproto fails it, the session maps
                    events.append(
                        message_too_big(self._limits.max_message_size)
                        if inflated is CloseReason.MESSAGE_TOO_BIG
                        else ProtocolFailure(inflated, "error in extension")
                    )
                    return events, None
                payload = inflated
            if opcode == OPCODE_TEXT:
                try:
                    events.append(payload.decode())
                except UnicodeDecodeError as exc:
                    if compressed:  # inflated already: failed here, with wsproto's reason
                        events.append(
                            ProtocolFailure(CloseReason.INVALID_FRAME_PAYLOAD_DATA, str(exc))
                        )
                        return events, None
                    return events, Handover(memoryview(view)[position:], size)  # wsproto's 1007
            else:
                events.append(payload)
            position = stop
        if position < end:
            pending = self._pending = ByteQueue()
            pending.append(memoryview(view)[position:])
            self._wanted = wanted
        return events, None
