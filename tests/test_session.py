"""The protocol session without sockets: client bytes in, events and server bytes out.

The chunking property at the end is a harness for any implementation of the session: a
faster protocol path is checked against it by adding its factory to `FACTORIES`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.events import Event as WsprotoEvent
from wsproto.extensions import PerMessageDeflate as WsprotoDeflate

from tests.conformance.wire import split
from tests.rawclient import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    close_frame,
    frame,
)
from wsapp.protocol import (
    CloseReceived,
    PingReceived,
    PongReceived,
    ProtocolFailure,
    Session,
)
from wsapp.protocol.bytequeue import COALESCE_LIMIT
from wsapp.protocol.deflate import PerMessageDeflate
from wsapp.protocol.events import Event
from wsapp.protocol.limits import MessageLimits


@dataclass
class Limits:
    """What a session reads its limit from: changed in place, as per-connection settings are."""

    max_message_size: int = 1 << 20


class Receiver(Protocol):
    """The receiving half of a session, which is all the chunking property needs."""

    def receive_data(self, data: bytes) -> list[Event]: ...


#: Makes a fresh server session (past the handshake, no extension) enforcing ``limits``.
SessionFactory = Callable[[MessageLimits], Receiver]

#: Every implementation the properties below hold for.
FACTORIES = [
    pytest.param(Session, id="fast-path"),
    pytest.param(partial(Session, fast_path=False), id="wsproto"),
]


def client() -> Connection:
    """A wsproto client past the handshake: it masks what it sends, as browsers do."""
    return Connection(ConnectionType.CLIENT)


def client_bytes(*events: WsprotoEvent) -> bytes:
    peer = client()
    return b"".join(peer.send(event) for event in events)


def as_client_sees(data: bytes) -> list[WsprotoEvent]:
    """What a wsproto client makes of the server's bytes (it refuses masked frames)."""
    peer = client()
    peer.receive_data(data)
    return list(peer.events())


def feed(session: Receiver, chunks: Iterable[bytes]) -> list[Event]:
    return [event for chunk in chunks for event in session.receive_data(chunk)]


def assert_chunking_is_invisible(
    make: SessionFactory, limits: MessageLimits, data: bytes, cuts: Sequence[int]
) -> list[Event]:
    """The events of ``data`` fed at once equal those of ``data`` cut at ``cuts`` (ascending
    offsets); returns them."""
    whole = make(limits).receive_data(data)
    assert feed(make(limits), split(data, cuts)) == whole
    return whole


def pong_frame(payload: bytes) -> bytes:
    """The pong a server sends: unmasked (RFC 6455 section 5.1), FIN set, opcode 0xA."""
    return bytes([0x8A, len(payload)]) + payload


# Messages


def test_text_and_binary_messages_come_out_whole_and_in_order() -> None:
    session = Session(Limits())
    data = client_bytes(TextMessage("héllo"), BytesMessage(b"\x00\xff"), TextMessage(""))
    assert session.receive_data(data) == ["héllo", b"\x00\xff", ""]


def test_fragments_are_reassembled_with_pings_between_them_answered_first() -> None:
    session = Session(Limits())
    text = "naïve ☃".encode()
    data = (
        frame(OP_TEXT, text[:3], fin=False)  # cut inside the two-byte "ï"
        + frame(OP_PING, b"now")
        + frame(OP_CONT, text[3:-1], fin=False)  # and inside the three-byte snowman
        + frame(OP_CONT, text[-1:])
        + frame(OP_BINARY, b"ab", fin=False)
        + frame(OP_CONT, b"", fin=False)
        + frame(OP_CONT, b"cd")
    )
    assert session.receive_data(data) == [
        PingReceived(b"now", pong_frame(b"now")),
        "naïve ☃",
        b"abcd",
    ]


def test_a_message_arriving_a_byte_at_a_time_comes_out_once() -> None:
    session = Session(Limits())
    data = frame(OP_TEXT, "é".encode() * 100, fin=False) + frame(OP_CONT, b"!")
    assert feed(session, (data[i : i + 1] for i in range(len(data)))) == ["é" * 100 + "!"]


# Control frames


def test_a_ping_yields_the_pong_to_send_and_a_pong_is_reported() -> None:
    session = Session(Limits())
    (ping, pong) = session.receive_data(client_bytes(Ping(b"are you there"), Pong(b"yes")))
    assert isinstance(ping, PingReceived)
    assert ping == PingReceived(b"are you there", pong_frame(b"are you there"))
    assert as_client_sees(ping.pong) == [Pong(b"are you there")]
    assert pong == PongReceived(b"yes")


def test_a_peers_close_is_received_answered_once_and_ends_the_session() -> None:
    session = Session(Limits())
    assert session.receive_data(close_frame(4000, "bye ✓")) == [CloseReceived(4000, "bye ✓")]
    assert session.close_received and not session.closed
    assert session.receive_data(frame(OP_TEXT, b"too late")) == []
    echo = session.send_close(4000, "bye ✓")
    assert as_client_sees(echo) == [CloseConnection(4000, "bye ✓")]
    assert session.send_close(1000) == b""  # one close frame per session
    assert session.closed


def test_a_close_without_a_code_is_reported_as_1005() -> None:
    assert Session(Limits()).receive_data(close_frame(None)) == [CloseReceived(1005, "")]


def test_messages_after_our_close_are_dropped_until_the_peers_close() -> None:
    session = Session(Limits())
    assert as_client_sees(session.send_close(1001, "going away")) == [
        CloseConnection(1001, "going away")
    ]
    data = frame(OP_TEXT, b"in flight") + frame(OP_PING, b"p") + close_frame(1001)
    # RFC 6455 5.5.1: our close said we are done; the peer's close completes the handshake,
    # and what the peer sends after it in the same read is not read.
    after = frame(OP_TEXT, b"after the close")
    assert session.receive_data(data + after) == [
        PingReceived(b"p", b""),
        CloseReceived(1001, ""),
    ]
    assert session.closed


# Failures


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(frame(3, b"x"), 1002, id="reserved-opcode"),
        pytest.param(frame(OP_TEXT, b"x", mask=False), 1002, id="unmasked"),
        pytest.param(frame(OP_TEXT, b"x", rsv=4), 1002, id="rsv1-without-extension"),
        pytest.param(frame(OP_PING, bytes(126)), 1002, id="control-over-125-bytes"),
        pytest.param(frame(OP_PING, b"x", fin=False), 1002, id="fragmented-control"),
        pytest.param(frame(OP_CONT, b"x"), 1002, id="continuation-without-start"),
        pytest.param(
            frame(OP_TEXT, b"a", fin=False) + frame(OP_TEXT, b"b"), 1002, id="new-message-inside"
        ),
        pytest.param(frame(8, b"\x03"), 1002, id="close-with-one-byte"),
        pytest.param(frame(8, (999).to_bytes(2, "big")), 1002, id="close-code-999"),
        pytest.param(frame(OP_TEXT, b"\xff"), 1007, id="invalid-utf8"),
        pytest.param(frame(OP_TEXT, "é".encode()[:1]), 1007, id="text-ending-mid-character"),
        pytest.param(frame(8, (1000).to_bytes(2, "big") + b"\xff"), 1007, id="bad-close-reason"),
    ],
)
def test_a_protocol_violation_fails_the_session_with_its_code(data: bytes, code: int) -> None:
    session = Session(Limits())
    (failure,) = session.receive_data(frame(OP_TEXT, b"fine") + data)[1:]
    assert isinstance(failure, ProtocolFailure)
    assert failure.code == code
    assert session.failed and session.closed
    assert session.receive_data(frame(OP_TEXT, b"more")) == []  # the parser is gone
    assert as_client_sees(session.send_close(failure.code, failure.reason))[0] == (
        CloseConnection(code, failure.reason)
    )


# The size limit


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(frame(OP_BINARY, bytes(11)), id="one-frame"),
        pytest.param(
            frame(OP_BINARY, bytes(6), fin=False) + frame(OP_CONT, bytes(5)), id="fragments"
        ),
        pytest.param(frame(OP_TEXT, "é".encode() * 6), id="text-counted-in-utf8-bytes"),
    ],
)
def test_a_message_over_the_limit_is_1009_and_the_rest_of_it_is_dropped(data: bytes) -> None:
    session = Session(Limits(max_message_size=10))
    assert session.receive_data(frame(OP_BINARY, bytes(10)) + data + frame(OP_TEXT, b"next")) == [
        bytes(10),  # exactly the limit is fine
        ProtocolFailure(1009, "message over 10 bytes"),
    ]


def test_a_message_is_stopped_once_it_is_over_not_once_it_is_complete() -> None:
    session = Session(Limits(max_message_size=1000))
    head = bytes([0x82, 0xFF]) + (1 << 40).to_bytes(8, "big") + bytes(4)  # 1 TiB announced
    assert session.receive_data(head + bytes(1000)) == []
    assert session.receive_data(bytes(1)) == [ProtocolFailure(1009, "message over 1000 bytes")]


def test_the_limit_is_read_live_from_the_next_frame_on() -> None:
    limits = Limits(max_message_size=10)
    session = Session(limits)
    assert session.receive_data(frame(OP_BINARY, bytes(8), fin=False)) == []
    limits.max_message_size = 4  # lowered mid-message: the next fragment is over
    assert session.receive_data(frame(OP_CONT, b"")) == [
        ProtocolFailure(1009, "message over 4 bytes")
    ]
    raised = Session(limits)
    limits.max_message_size = 100
    assert raised.receive_data(frame(OP_BINARY, bytes(100))) == [bytes(100)]


# What the server sends


def test_sent_messages_pings_and_close_decode_as_a_client_expects() -> None:
    session = Session(Limits())
    data = (
        session.send_message("héllo")
        + session.send_message(b"\x00" * 70000)  # a 64-bit length
        + session.send_ping(b"p")
        + session.send_close(1000, "done")
    )
    assert as_client_sees(data) == [
        TextMessage("héllo"),
        BytesMessage(b"\x00" * 70000),
        Ping(b"p"),
        CloseConnection(1000, "done"),
    ]


# Any chunking


@dataclass(frozen=True)
class Traffic:
    """Client bytes (the ``frames`` joined), the events they must yield, and cut points to
    feed them in pieces."""

    frames: list[bytes]
    events: list[Event]
    cuts: list[int]

    @property
    def data(self) -> bytes:
        return b"".join(self.frames)


@st.composite
def control(draw: st.DrawFn, key: bytes) -> tuple[bytes, Event]:
    payload = draw(st.binary(max_size=125))
    if draw(st.booleans()):
        return frame(OP_PING, payload, key=key), PingReceived(payload, pong_frame(payload))
    return frame(OP_PONG, payload, key=key), PongReceived(payload)


@st.composite
def traffic(draw: st.DrawFn) -> Traffic:
    """Text (cut anywhere, inside characters too) and binary messages, whole or fragmented
    with pings and pongs between fragments, pings and pongs, and perhaps a close at the end."""
    key = draw(st.binary(min_size=4, max_size=4))
    wire: list[bytes] = []
    events: list[Event] = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 3)) == 0:
            control_frame, event = draw(control(key))
            wire.append(control_frame)
            events.append(event)
            continue
        message: str | bytes = draw(st.text(max_size=100) | st.binary(max_size=300))
        payload = message.encode() if isinstance(message, str) else message
        parts = split(payload, sorted(draw(st.lists(st.integers(0, len(payload)), max_size=4))))
        opcode = OP_TEXT if isinstance(message, str) else OP_BINARY
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            wire.append(frame(OP_CONT if i else opcode, part, fin=last, key=key))
            if not last and draw(st.integers(0, 2)) == 0:
                control_frame, event = draw(control(key))
                wire.append(control_frame)
                events.append(event)
        events.append(message)
    if draw(st.booleans()):
        code = draw(st.none() | st.sampled_from([1000, 1001, 1011, 3000, 4999]))
        reason = "" if code is None else draw(st.text(max_size=30))
        payload = b"" if code is None else code.to_bytes(2, "big") + reason.encode()
        wire.append(frame(OP_CLOSE, payload, key=key))
        events.append(CloseReceived(1005 if code is None else code, reason))
    size = sum(map(len, wire))
    cuts = sorted(draw(st.lists(st.integers(0, size), max_size=12)))
    return Traffic(wire, events, cuts)


@pytest.mark.parametrize("make", FACTORIES)
@given(sent=traffic())
def test_any_chunking_yields_the_events_of_the_frames(make: SessionFactory, sent: Traffic) -> None:
    assert assert_chunking_is_invisible(make, Limits(), sent.data, sent.cuts) == sent.events


@pytest.mark.parametrize("make", FACTORIES)
@given(sent=traffic(), limit=st.integers(0, 400))
def test_any_chunking_yields_the_same_events_under_a_size_limit(
    make: SessionFactory, sent: Traffic, limit: int
) -> None:
    events = assert_chunking_is_invisible(make, Limits(limit), sent.data, sent.cuts)
    if any(isinstance(event, str | bytes) and len(event) > limit for event in sent.events):
        assert ProtocolFailure(1009, f"message over {limit} bytes") in events


# The fast path against wsproto


@st.composite
def any_frame(draw: st.DrawFn) -> bytes:
    """A frame as a client might send it, valid or not: any opcode, FIN and RSV bits, masked
    or not, its length in the shortest encoding or a longer one, text that may not be UTF-8,
    perhaps cut short."""
    opcode = draw(
        st.sampled_from([OP_TEXT, OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_CLOSE])
        | st.integers(0, 15)
    )
    if draw(st.booleans()):
        payload = draw(st.text(max_size=150)).encode()
    else:
        payload = draw(st.binary(max_size=300))
    if opcode == OP_CLOSE and draw(st.booleans()):
        payload = draw(st.sampled_from([1000, 1001, 999, 4000])).to_bytes(2, "big") + payload[:100]
    fin = draw(st.integers(0, 5)) > 0
    rsv = draw(st.sampled_from([0, 0, 0, 0, 1, 2, 4]))
    masked = draw(st.integers(0, 9)) > 0
    wide = draw(st.sampled_from([0, 0, 0, 126, 127]))  # 0: the shortest length encoding
    size = len(payload)
    if wide == 126 or (not wide and 126 <= size < 1 << 16):
        length = bytes([126]) + size.to_bytes(2, "big")
    elif wide == 127:
        length = bytes([127]) + size.to_bytes(8, "big")
    else:
        length = bytes([size])
    key = draw(st.binary(min_size=4, max_size=4)) if masked else b""
    body = bytes(byte ^ key[i % 4] for i, byte in enumerate(payload)) if masked else payload
    wire = bytes([fin << 7 | rsv << 4 | opcode, masked << 7 | length[0]]) + length[1:] + key + body
    if draw(st.integers(0, 9)) == 0:
        wire = wire[: draw(st.integers(0, len(wire)))]
    return wire


@st.composite
def client_traffic(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """Well-formed traffic mixed with frames of any shape, and where to cut it."""
    parts = draw(
        st.lists(st.one_of(traffic().map(lambda sent: sent.data), any_frame()), max_size=6)
    )
    data = b"".join(parts)
    return data, sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))


@st.composite
def traffic_cut_at_hand_overs(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """Traffic as `client_traffic` draws it, cut where the fast path hands a frame to wsproto
    and takes over again after it: at frame boundaries, and a few bytes into a frame (inside
    the two bytes that decide, inside the header, just before the payload)."""
    groups = draw(
        st.lists(
            st.one_of(traffic().map(lambda sent: sent.frames), any_frame().map(lambda f: [f])),
            max_size=6,
        )
    )
    frames = [one for group in groups for one in group]
    data = b"".join(frames)
    cuts: set[int] = set()
    start = 0
    for one in frames:
        offset = draw(st.sampled_from([None, 0, 0, 1, 2, 4, 6]))
        if offset is not None:
            cuts.add(min(start + offset, len(data)))
        start += len(one)
    return data, sorted(cuts)


def session_state(session: Session) -> tuple[bool, bool, bool, bytes]:
    return session.closed, session.failed, session.close_received, session.send_close(1000)


def assert_answers_as_wsproto(make: Callable[[bool], Session], chunks: Sequence[bytes]) -> None:
    """A fast session and a wsproto-only one (``make(fast_path)``) fed ``chunks``: the same
    events, then the same state and close frame."""
    fast, reference = make(True), make(False)
    assert feed(fast, chunks) == feed(reference, chunks)
    assert session_state(fast) == session_state(reference)


def plain_session(limit: int) -> Callable[[bool], Session]:
    return lambda fast_path: Session(Limits(limit), fast_path=fast_path)


@given(sent=traffic_cut_at_hand_overs(), limit=st.integers(0, 400))
def test_the_fast_path_answers_as_wsproto_does_when_cut_at_its_hand_overs(
    sent: tuple[bytes, list[int]], limit: int
) -> None:
    data, cuts = sent
    assert_answers_as_wsproto(plain_session(limit), split(data, cuts))


@given(sent=client_traffic(), limit=st.integers(0, 400))
def test_the_fast_path_answers_any_bytes_in_any_chunking_as_wsproto_does(
    sent: tuple[bytes, list[int]], limit: int
) -> None:
    # Cut alike: where a frame is both over the limit and invalid, which failure comes first
    # depends on the cuts, for wsproto too.
    data, cuts = sent
    for chunks in ([data], split(data, cuts)):
        assert_answers_as_wsproto(plain_session(limit), chunks)


@given(sent=client_traffic(), limit=st.integers(0, 400), at=st.integers(0, 13))
def test_the_fast_path_answers_as_wsproto_does_after_our_close_sent_between_reads(
    sent: tuple[bytes, list[int]], limit: int, at: int
) -> None:
    # Our close changes what counts: messages are dropped, pings no longer answered, and the
    # peer's close completes the handshake.
    data, cuts = sent
    chunks = split(data, cuts)
    reference = Session(Limits(limit), fast_path=False)
    fast = Session(Limits(limit))
    assert feed(fast, chunks[:at]) == feed(reference, chunks[:at])
    assert fast.send_close(1001, "bye") == reference.send_close(1001, "bye")
    assert feed(fast, chunks[at:]) == feed(reference, chunks[at:])
    assert session_state(fast) == session_state(reference)


@pytest.mark.parametrize(
    "reason",
    [b"", "bye ✓".encode(), b"\xff", "é".encode()[:1], "✓".encode() * 41, b"x" * 123],
    ids=["none", "utf8", "invalid", "cut-character", "at-most-125-bytes", "longest"],
)
def test_the_fast_path_reads_and_answers_every_close_code_as_wsproto_does(reason: bytes) -> None:
    # Every code a frame can carry, then the close frame the transport answers with: its
    # own code echoed back (RFC 6455 5.5.1), as SocketTransport does.
    payloads = [b"", b"\x03"] + [code.to_bytes(2, "big") + reason for code in range(5200)]
    for payload in payloads:
        data = frame(OP_CLOSE, payload[:125]) + frame(OP_TEXT, b"after the close")
        answers: list[tuple[Event, bytes, tuple[bool, bool, bool, bytes]]] = []
        for session in (Session(Limits()), Session(Limits(), fast_path=False)):
            (event,) = session.receive_data(data)
            assert isinstance(event, CloseReceived | ProtocolFailure)
            echo = session.send_close(event.code, event.reason)
            answers.append((event, echo, session_state(session)))
        fast, reference = answers
        assert fast == reference, payload


@st.composite
def large_traffic(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """Messages larger than the pieces the fast path copies together, among other traffic."""
    key = draw(st.binary(min_size=4, max_size=4))
    parts: list[bytes] = []
    for _ in range(draw(st.integers(1, 3))):
        size = draw(st.integers(COALESCE_LIMIT - 16, 3 * COALESCE_LIMIT))
        fill = draw(st.binary(min_size=1, max_size=7))
        payload = (fill * (size // len(fill) + 1))[:size]
        opcode = draw(st.sampled_from([OP_BINARY, OP_BINARY, OP_TEXT]))
        if opcode == OP_TEXT:
            payload = payload.hex().encode()[:size]
        parts.append(frame(opcode, payload, key=key))
        parts.append(draw(traffic()).data)
    data = b"".join(parts)
    return data, sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))


@given(sent=large_traffic(), limit=st.sampled_from([1 << 20, 2 * COALESCE_LIMIT]))
def test_large_messages_in_any_chunking_come_out_as_wsprotos(
    sent: tuple[bytes, list[int]], limit: int
) -> None:
    data, cuts = sent
    assert_answers_as_wsproto(plain_session(limit), split(data, cuts))


def test_a_binary_message_sent_from_a_bytearray_is_framed_as_it_was_given() -> None:
    session = Session(Limits())
    data = bytearray(2 * COALESCE_LIMIT)
    head, payload = session.frame_parts(data)  # type: ignore[arg-type]
    data[0] = 1  # changed after it was sent, before it was written
    assert head + payload == Session(Limits()).send_message(bytes(2 * COALESCE_LIMIT))


def test_a_frame_handed_to_wsproto_in_pieces_is_its_to_the_last_byte() -> None:
    # The text arrives in two reads, so wsproto reads it; it ends in 0x8A, and the ping behind
    # it is 14 bytes long: were the last byte of the text read as the start of a frame, it
    # and the ping would make one 9-byte pong.
    text = frame(OP_TEXT, "aÊ".encode(), key=bytes(4))
    ping = frame(OP_PING, b"12345678")
    data = text + ping
    assert feed(Session(Limits()), [data[:5], data[5:]]) == [
        "aÊ",
        PingReceived(b"12345678", pong_frame(b"12345678")),
    ]


def test_a_text_frame_still_arriving_fails_at_its_first_invalid_byte() -> None:
    whole = frame(OP_TEXT, b"ok \xff" + bytes(1000))
    assert Session(Limits()).receive_data(whole[:20]) == [
        ProtocolFailure(
            1007, "'utf-8' codec can't decode byte 0xff in position 3: invalid start byte"
        )
    ]


# The fast path against wsproto, with permessage-deflate


def deflate_session(limit: int, client_no_context_takeover: bool, fast_path: bool) -> Session:
    limits = Limits(limit)
    extension = PerMessageDeflate(
        limits,
        server_max_window_bits=15,
        server_no_context_takeover=False,
        client_no_context_takeover=client_no_context_takeover,
    )
    return Session(limits, [extension], fast_path=fast_path)


@st.composite
def compressed_traffic(draw: st.DrawFn, client_no_context_takeover: bool) -> list[bytes]:
    """Frames as a compressing client sends them: messages compressed with one compressor
    (its window carried over, unless without context takeover), some sent uncompressed, some
    fragmented, pings between, perhaps a corrupt one or one over the limit, any frame."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    frames: list[bytes] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["compressed"] * 4 + ["plain", "fragmented", "ping", "any"]))
        if kind == "ping":
            frames.append(frame(OP_PING, draw(st.binary(max_size=20))))
            continue
        if kind == "any":
            frames.append(draw(any_frame()))
            continue
        message: str | bytes = draw(st.text(max_size=60) | st.binary(max_size=200))
        payload = message.encode() if isinstance(message, str) else message
        if draw(st.integers(0, 9)) == 0:
            payload += b"\xff"  # invalid UTF-8 once inflated, in a text message
        opcode = OP_TEXT if isinstance(message, str) else OP_BINARY
        if kind == "plain":
            frames.append(frame(opcode, payload))
            continue
        if client_no_context_takeover:
            compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        data = (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
        if draw(st.integers(0, 9)) == 0:
            data = b"\x07" + data  # not deflate data
        if kind == "fragmented" and data:
            cut = draw(st.integers(0, len(data)))
            frames.append(frame(opcode, data[:cut], fin=False, rsv=4))
            frames.append(frame(OP_CONT, data[cut:]))
        else:
            frames.append(frame(opcode, data, rsv=4))
    return frames


@given(
    data=st.data(),
    limit=st.sampled_from([1 << 20, 100, 0]),
    client_no_context_takeover=st.booleans(),
)
def test_the_fast_path_inflates_any_traffic_in_any_chunking_as_wsproto_does(
    data: st.DataObject, limit: int, client_no_context_takeover: bool
) -> None:
    wire = b"".join(data.draw(compressed_traffic(client_no_context_takeover)))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    for chunks in ([wire], split(wire, cuts)):
        assert_answers_as_wsproto(
            partial(deflate_session, limit, client_no_context_takeover), chunks
        )


def test_compressed_messages_read_without_wsproto_share_its_window() -> None:
    # Each message refers back to the one before (context takeover): the first and the last
    # are read by the fast path, the middle one (fragmented) by wsproto, one window for all.
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    messages = [
        (compressor.compress(b"hello hello") + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
        for _ in range(3)
    ]
    assert len(messages[2]) < len(b"hello hello")  # a back-reference, not the text again
    wire = [
        frame(OP_TEXT, messages[0], rsv=4),
        frame(OP_TEXT, messages[1][:2], fin=False, rsv=4) + frame(OP_CONT, messages[1][2:]),
        frame(OP_TEXT, messages[2], rsv=4),
    ]
    for fast_path in (True, False):
        session = deflate_session(1 << 20, False, fast_path=fast_path)
        assert feed(session, wire) == ["hello hello"] * 3


@given(
    messages=st.lists(st.text(max_size=300) | st.binary(max_size=300), max_size=6),
    bits=st.sampled_from([8, 9, 12, 15]),
    no_context_takeover=st.booleans(),
)
def test_messages_are_compressed_as_wsproto_frames_them(
    messages: list[str | bytes], bits: int, no_context_takeover: bool
) -> None:
    def sender(fast_path: bool) -> Session:
        limits = Limits()
        extension = PerMessageDeflate(
            limits,
            server_max_window_bits=bits,
            server_no_context_takeover=no_context_takeover,
            client_no_context_takeover=False,
        )
        return Session(limits, [extension], fast_path=fast_path)

    fast, reference = sender(True), sender(False)
    sent = [fast.send_message(message) for message in messages]
    assert sent == [reference.send_message(message) for message in messages]
    client_deflate = WsprotoDeflate()
    client_deflate.finalize("permessage-deflate")  # the server's answer, as a client reads it
    peer = Connection(ConnectionType.CLIENT, [client_deflate])
    peer.receive_data(b"".join(sent))
    received = [event for event in peer.events() if isinstance(event, TextMessage | BytesMessage)]
    assert [event.data for event in received] == messages
