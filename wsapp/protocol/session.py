"""One WebSocket session after the handshake, without I/O.

Bytes from the peer go in with :meth:`Session.receive_data`; complete messages and small
control events come out. Messages to the peer go in through the ``send_*`` methods; the bytes
to write come out. wsproto parses and frames; this layer adds what wsproto leaves to its
user: reassembly of fragmented messages under a size limit, the close-handshake bookkeeping,
and telling a peer's close frame apart from a protocol violation (wsproto reports both as
``CloseConnection``).

Without extensions (or with permessage-deflate alone), the common frames are read by a
`FrameReader` (see ``reader.py``), and
wsproto reads the frames it hands over. The session composes the two: it gives wsproto each
frame handed over, as its bytes arrive, and the reader what follows; neither looks at the
other's state. What a closing session drops (messages nobody will handle) and leaves
unanswered (pings after our close) is decided here, for the frames of both.
"""

from __future__ import annotations

import io

from wsproto.connection import SERVER, Connection, ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import Extension
from wsproto.frame_protocol import LOCAL_ONLY_CLOSE_REASONS, MAX_PAYLOAD_NORMAL, CloseReason

from wsapp.protocol.bytequeue import COALESCE_LIMIT
from wsapp.protocol.closecode import CloseCode
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
    OPCODE_TEXT,
    PreparedMessage,
    encode_frame,
    frame_header,
    payload_size,
)
from wsapp.protocol.limits import MessageLimits
from wsapp.protocol.reader import FrameReader, Handover

__all__ = ["Session"]


#: The reader's events after which it reads nothing more.
_LAST_EVENTS = (CloseReceived, ProtocolFailure)
_MAX_CLOSE_REASON = MAX_PAYLOAD_NORMAL - 2  # bytes: a control frame's payload, less the code


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


class Session:
    """The server side of one WebSocket connection, from the first frame to the close.

    ``limits`` is read live, so a changed ``max_message_size`` applies from the next frame.
    """

    __slots__ = (
        "_deflate",
        "_discarding",
        "_extensions",
        "_framing",
        "_limits",
        "_owed",
        "_own_frames",
        "_partial",
        "_reader",
        "_size",
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
        plain = not extensions
        # Without extensions or with deflate alone, common frames skip wsproto
        # (``fast_path=False``: every frame goes through it, the reference
        # tests/test_session.py holds the fast path to).
        readable = plain or (self._deflate is not None and len(extensions or ()) == 1)
        self._reader = FrameReader(limits, self._deflate) if fast_path and readable else None
        # Whether messages are framed here rather than by wsproto (its frames exactly: tests
        # test_frames.py and test_session.py check it): without extensions, or with deflate.
        self._framing = plain or (fast_path and readable)
        self._owed = 0  # bytes of the frame handed to wsproto that it has yet to get
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
        reader = self._reader
        if reader is None:
            return self._parse(data)
        if self._owed:  # the rest of a frame wsproto is reading
            return self._compose(reader, [], Handover(memoryview(data), self._owed))
        events, handover = reader.read(data)
        if handover is None and not (
            self._discarding or self.close_sent or (events and type(events[-1]) in _LAST_EVENTS)
        ):
            return events  # the common case: all read by the reader, the session open
        return self._compose(reader, events, handover)

    def _compose(
        self, reader: FrameReader, read: list[Event], handover: Handover | None
    ) -> list[Event]:
        """The reader's events ``read``, then from each hand-over on the events of wsproto
        reading the frame handed over and of the reader reading what follows it."""
        events: list[Event] = []
        while True:
            events += self._heard(read)
            if handover is None:
                return events
            data, size = handover.data, handover.size
            if size is None:  # wsproto takes everything from here on
                self._reader = None
                return events + self._parse(bytes(data))
            events += self._parse(bytes(data[:size]))
            self._owed = max(size - len(data), 0)
            if len(data) <= size or self.failed or self.close_received:
                return events
            read, handover = reader.read(data[size:])

    def _heard(self, events: list[Event]) -> list[Event]:
        """The reader's events as this session reports them."""
        last = type(events[-1]) if events else None
        if last is CloseReceived:
            self.close_received = True
        elif last is ProtocolFailure:
            self.failed = True
        if not (self._discarding or self.close_sent):
            return events
        # Closing: nobody will handle a message, and after our close a ping is not answered
        # (wsproto would not answer it then either).
        unanswered = self.close_sent
        return [
            PingReceived(event.payload, b"")
            if unanswered and type(event) is PingReceived
            else event
            for event in events
            if type(event) is not str and type(event) is not bytes
        ]

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
            size = payload_size(data)
        else:
            if partial is None:
                # One growing buffer, not a list of fragments: a message sent as a million
                # one-byte frames must not cost a million Python objects.
                partial = self._partial = io.StringIO() if type(data) is str else bytearray()
            if isinstance(partial, bytearray):
                partial += data  # type: ignore[arg-type]
            else:
                partial.write(data)  # type: ignore[arg-type]
            self._size += payload_size(data)
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
        if self._framing and (ws is None or ws.state is ConnectionState.OPEN):
            # wsproto's frame is exactly this one, and building it directly skips two event
            # objects and its framer.
            if isinstance(message, str):
                opcode, payload = OPCODE_TEXT, message.encode()
            else:  # a bytearray queued as given would be sent as it is when written
                opcode = OPCODE_BINARY
                payload = message if type(message) is bytes else bytes(message)
            if self._deflate is not None:
                return self._deflate.message_frame(opcode, payload), b""
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
