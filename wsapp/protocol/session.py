"""One WebSocket session after the handshake, without I/O.

Bytes from the peer go in with :meth:`Session.receive_data`; complete messages and small
control events come out. Messages to the peer go in through the ``send_*`` methods; the bytes
to write come out. wsproto parses and frames; this layer adds what wsproto leaves to its
user: reassembly of fragmented messages under a size limit, the close-handshake bookkeeping,
and telling a peer's close frame apart from a protocol violation (wsproto reports both as
``CloseConnection``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TypeAlias

from wsproto.connection import SERVER, Connection, ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import Extension
from wsproto.frame_protocol import (
    LOCAL_ONLY_CLOSE_REASONS,
    MAX_CLOSE_REASON,
    MAX_PAYLOAD_NORMAL,
    MAX_PROTOCOL_CLOSE_REASON,
    MIN_CLOSE_REASON,
    CloseReason,
)

from wsapp.protocol.bytequeue import COALESCE_LIMIT, Buffer, ByteQueue
from wsapp.protocol.closecode import CloseCode
from wsapp.protocol.deflate import PerMessageDeflate
from wsapp.protocol.frames import (
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_PING,
    OPCODE_PONG,
    OPCODE_TEXT,
    PreparedMessage,
    encode_frame,
    frame_header,
)
from wsapp.protocol.limits import MessageLimits
from wsapp.protocol.masking import unmask, unmask_pieces

__all__ = [
    "CloseReceived",
    "Event",
    "PingReceived",
    "PongReceived",
    "ProtocolFailure",
    "Session",
    "message_too_big",
]


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


Event: TypeAlias = str | bytes | CloseReceived | PingReceived | PongReceived | ProtocolFailure
"""What :meth:`Session.receive_data` yields: a complete message (``str`` or ``bytes``) or a
control event."""


_CONTROL_OPCODES = (0x8, 0x9, 0xA)  # close, ping, pong
_MAX_CLOSE_REASON = MAX_PAYLOAD_NORMAL - 2  # bytes: a control frame's payload, less the code
_COPY_LIMIT = 4096  # payloads above it are unmasked from a view of the buffer, not a copy


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


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


def _close_payload(code: int, reason: str) -> bytes:
    """Our close frame's payload, as wsproto builds it: none for the `CloseReason` 1005, 1000
    for another code that may not be sent, the reason cut to fit, between characters."""
    if code is CloseReason.NO_STATUS_RCVD:
        return b""
    if code in LOCAL_ONLY_CLOSE_REASONS:
        code = CloseReason.NORMAL_CLOSURE
    encoded = reason.encode()
    if len(encoded) > _MAX_CLOSE_REASON:
        encoded = encoded[:_MAX_CLOSE_REASON].decode(errors="ignore").encode()
    return code.to_bytes(2, "big") + encoded


def message_too_big(limit: int) -> ProtocolFailure:
    """The failure (and close frame) for a message over ``limit`` bytes."""
    return ProtocolFailure(CloseCode.MESSAGE_TOO_BIG, f"message over {limit} bytes")


class Session:
    """The server side of one WebSocket connection, from the first frame to the close.

    ``limits`` is read live, so a changed ``max_message_size`` applies from the next frame.
    """

    __slots__ = (
        "_awaited_head",
        "_deflate",
        "_delegated",
        "_discarding",
        "_extensions",
        "_fast",
        "_fragmented",
        "_limits",
        "_own_frames",
        "_partial",
        "_pending",
        "_plain",
        "_size",
        "_wanted",
        "_ws",
        "close_received",
        "close_sent",
        "failed",
    )

    def __init__(
        self,
        limits: MessageLimits,
        extensions: list[Extension] | None = None,
        *,
        fast_path: bool = True,
    ) -> None:
        # wsproto is made at the first frame it must parse or build: a plain connection
        # whose frames all take the fast path never needs it (1.7 KiB less while idle).
        self._ws: Connection | None = None
        self._extensions = extensions
        self._deflate = next(
            (e for e in extensions or () if isinstance(e, PerMessageDeflate)), None
        )
        self._own_frames = bool(extensions) and self._deflate is None  # an unknown extension
        self._plain = not extensions
        # Without extensions, common frames skip wsproto (``fast_path=False``: every frame
        # goes through it, the reference tests/test_session.py holds the fast path to).
        self._fast = fast_path and self._plain
        self._pending = ByteQueue()  # the start of a frame the fast path waits the rest of
        self._wanted = 0  # bytes _pending must hold before the fast path can go on
        # Header and key length of the binary frame _pending holds the start of (0: none).
        self._awaited_head = 0
        self._delegated = 0  # bytes of the current frame still to hand to wsproto
        self._fragmented = False  # wsproto is inside a fragmented message
        self._limits = limits
        self._partial: io.StringIO | bytearray | None = None  # a fragmented message so far
        self._size = 0
        self._discarding = False
        self.close_sent = False
        self.close_received = False
        self.failed = False

    @property
    def _wsproto(self) -> Connection:
        ws = self._ws
        if ws is None:
            ws = self._ws = Connection(SERVER, self._extensions)
        return ws

    @property
    def closed(self) -> bool:
        """True once the closing handshake is complete or the session has failed."""
        return self.failed or (self.close_sent and self.close_received)

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the peer; return the events they complete, in order."""
        if self.failed or self.close_received:
            return []  # nothing counts after the peer's close (wsproto ignores it too)
        if not self._fast:
            return self._parse(data)
        return self._receive_fast(data)

    def _receive_fast(self, data: bytes) -> list[Event]:
        """Read whole, final, masked text and binary frames between messages here, and hand
        every other frame (control, fragment, over the limit, invalid, text not yet whole) to
        wsproto, from its first byte to its last: wsproto then sees whole frames from a frame
        boundary on, so its state and its answers are those it would have had alone."""
        pending = self._pending
        view: Buffer = data
        events: list[Event] = []
        if pending:
            pending.append(data)
            if len(pending) < self._wanted:
                return []
            head = self._awaited_head
            if head:  # a frame checked as its head arrived: unmasked from its pieces as they are
                self._awaited_head = 0
                mask = b"".join(pending.pop(head))[-4:]
                payload = unmask_pieces(pending.pop(self._wanted - head), mask)
                if not (self._discarding or self.close_sent):
                    events.append(payload)
            view = pending.take()
        end = len(view)
        position = 0
        wanted = 0  # where the loop stops: bytes needed from ``position`` on to go further
        while position < end:
            if self._delegated:  # the rest of a frame wsproto is parsing
                chunk = bytes(view[position : position + self._delegated])
                position += len(chunk)
                self._delegated -= len(chunk)
                events += self._parse(chunk)
                if not self._fast:  # the peer's close or a failure: nothing after it is read
                    position = end
                continue
            if end - position < 2:
                wanted = 2
                break
            first, second = view[position], view[position + 1]
            opcode, length = first & 0x0F, second & 0x7F
            if opcode > OPCODE_BINARY and not (
                opcode in _CONTROL_OPCODES and first & 0x80 and length < 126
            ):
                # wsproto fails such a frame on its first two bytes (RFC 6455 5.2, 5.5).
                self._fast = False
                events += self._parse(bytes(view[position:]))
                position = end
                break
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
            fin = first & 0x80
            if opcode == OPCODE_CLOSE and masked and first & 0x70 == 0 and self._ws is None:
                # The peer's close before wsproto is needed (final and short, checked above):
                # a connection that only ever exchanged whole messages ends without it too.
                stop = position + size
                if stop > end:
                    wanted = size
                    break
                start = stop - length
                received = _peer_close(unmask(view[start:stop], view[start - 4 : start]))
                if received is None:
                    self._delegated = size  # for wsproto to fail, with its code and reason
                    continue
                self.close_received = True
                events.append(received)
                position = end  # what follows a close is not read, as wsproto does not
                break
            if opcode >= OPCODE_PING and masked and first & 0x70 == 0 and self._ws is None:
                # A ping or a pong (final and short, checked above) before wsproto is needed:
                # keepalive alone must not make it. Without wsproto the session is open, so a
                # ping is answered, as wsproto answers it then.
                stop = position + size
                if stop > end:
                    wanted = size
                    break
                start = stop - length
                payload = unmask(view[start:stop], view[start - 4 : start])
                position = stop
                if opcode == OPCODE_PING:
                    events.append(PingReceived(payload, encode_frame(OPCODE_PONG, payload)))
                else:
                    events.append(PongReceived(payload))
                continue
            if not (
                first & 0x70 == 0  # no RSV bit: there is no extension
                and fin
                and opcode  # a text or binary frame, not a continuation
                and opcode <= OPCODE_BINARY
                and masked
                and minimal
                and not self._fragmented
                and length <= self._limits.max_message_size
            ):
                if opcode <= OPCODE_BINARY:
                    self._fragmented = not fin
                self._delegated = size
                continue
            stop = position + size
            if stop > end:
                if opcode == OPCODE_TEXT:
                    # wsproto checks UTF-8 as the bytes arrive and fails at the first bad one.
                    self._delegated = size
                    continue
                wanted = size
                self._awaited_head = size - length
                break
            start = stop - length
            key = view[start - 4 : start]
            if length > _COPY_LIMIT:
                with memoryview(view) as whole:  # no copy of a large payload before unmasking
                    payload = unmask(whole[start:stop], key)
            else:
                payload = unmask(view[start:stop], key)
            message: str | bytes = payload
            if opcode == OPCODE_TEXT:
                try:
                    message = payload.decode()
                except UnicodeDecodeError:
                    self._delegated = size  # for wsproto to fail with 1007
                    continue
            position = stop
            if not (self._discarding or self.close_sent):
                events.append(message)
        if position < end:
            pending.append(memoryview(view)[position:])
            self._wanted = wanted
        return events

    def _parse(self, data: bytes) -> list[Event]:
        """Feed ``data`` to wsproto; return the events it completes."""
        ws = self._wsproto
        ws.receive_data(data)
        events: list[Event] = []
        for event in ws.events():
            kind = type(event)
            if kind is TextMessage or kind is BytesMessage:
                message = self._assemble(event.data, event.message_finished)  # type: ignore[attr-defined]
                if message is not None:
                    events.append(message)
            elif kind is Ping:
                # The pong is built now: a close frame right behind the ping would move wsproto
                # out of OPEN, and RFC 6455 5.5.2 still wants the ping answered before our close.
                payload = event.payload  # type: ignore[attr-defined]
                pong = ws.send(Pong(payload)) if ws.state is ConnectionState.OPEN else b""
                events.append(PingReceived(payload, pong))
            elif kind is Pong:
                events.append(PongReceived(event.payload))  # type: ignore[attr-defined]
            else:
                assert isinstance(event, CloseConnection)
                self._fast = False
                if ws.state in (ConnectionState.REMOTE_CLOSING, ConnectionState.CLOSED):
                    self.close_received = True
                    events.append(CloseReceived(event.code, event.reason or ""))
                else:  # wsproto's parser failed; it will not parse anything more
                    self.failed = True
                    if event.code == CloseCode.MESSAGE_TOO_BIG:  # from inflation (see deflate.py)
                        events.append(self._too_big())
                    else:
                        events.append(ProtocolFailure(event.code, event.reason or ""))
                break
        return events

    def _assemble(self, data: str | bytes, finished: bool) -> str | bytes | ProtocolFailure | None:
        if self._discarding or self.close_sent:
            return None  # the session is closing: nobody will handle this message
        partial = self._partial
        if finished and partial is None:  # the common case: a message in one frame
            size = _utf8_size(data) if type(data) is str else len(data)
        else:
            if partial is None:
                # One growing buffer, not a list of fragments: a message sent as a million
                # one-byte frames must not cost a million Python objects.
                partial = self._partial = io.StringIO() if type(data) is str else bytearray()
            if isinstance(partial, bytearray):
                partial += data  # type: ignore[arg-type]
            else:
                partial.write(data)  # type: ignore[arg-type]
            self._size += _utf8_size(data) if type(data) is str else len(data)
            size = self._size
        if size > self._limits.max_message_size:
            self._partial = None
            self._discarding = True
            return self._too_big()
        if not finished:
            return None
        if partial is None:
            return data
        self._partial = None
        self._size = 0
        return bytes(partial) if isinstance(partial, bytearray) else partial.getvalue()

    def _too_big(self) -> ProtocolFailure:
        return message_too_big(self._limits.max_message_size)

    def frame_parts(self, message: str | bytes) -> tuple[bytes, bytes]:
        """The frame of one complete message (text for ``str``, binary for ``bytes``) in two
        parts to write one after the other: a payload over ``COALESCE_LIMIT`` bytes is the
        second, as given rather than copied into the frame; else the first is the whole frame."""
        ws = self._ws
        if self._plain and (ws is None or ws.state is ConnectionState.OPEN):
            # Without extensions, wsproto's frame is exactly this one (tests/test_frames.py
            # checks it), and building it directly skips two event objects and its framer.
            if isinstance(message, str):
                opcode, payload = OPCODE_TEXT, message.encode()
            else:  # a bytearray queued as given would be sent as it is when written
                opcode = OPCODE_BINARY
                payload = message if type(message) is bytes else bytes(message)
            if len(payload) > COALESCE_LIMIT:
                return frame_header(opcode, len(payload)), payload
            return encode_frame(opcode, payload), b""
        if type(message) is str:
            return self._wsproto.send(TextMessage(message)), b""
        return self._wsproto.send(BytesMessage(message)), b""  # type: ignore[arg-type]

    def send_message(self, message: str | bytes) -> bytes:
        """The bytes of one complete message (text for ``str``, binary for ``bytes``)."""
        head, payload = self.frame_parts(message)
        return head + payload if payload else head

    def prepared_frame(self, prepared: PreparedMessage) -> bytes:
        """The bytes of a prepared message: a frame shared with other connections where this
        connection's extensions allow it, else framed (and compressed) for it alone."""
        deflate = self._deflate
        if deflate is None:
            return self.send_message(prepared.message) if self._own_frames else prepared.frame
        shared = deflate.shared_frame(prepared)
        return shared if shared is not None else self.send_message(prepared.message)

    def send_ping(self, payload: bytes = b"") -> bytes:
        """The bytes of a ping frame."""
        if self._ws is None:  # open: the frame wsproto would build
            return encode_frame(OPCODE_PING, payload)
        return self._ws.send(Ping(payload))

    def send_close(self, code: int, reason: str = "") -> bytes:
        """The bytes of our close frame (``b""`` if one was already sent or cannot be)."""
        if self.close_sent:
            return b""
        self.close_sent = True
        if self._ws is None and self.close_received:  # the answer to a close read above
            return encode_frame(OPCODE_CLOSE, _close_payload(code, reason))
        ws = self._wsproto
        if ws.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            return b""
        return ws.send(CloseConnection(code, reason or None))
