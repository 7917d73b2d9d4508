"""The frame reader alone: the frames it reads, and where it hands over to wsproto.

What wsproto then makes of a frame handed over is the session's test (tests/test_session.py
holds the two together to a wsproto-only session); here it is the reader's side of the
contract: events out for the frames it takes, and a hand-over at the first byte of the
first frame it does not take, with that frame's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
from wsapp.protocol import CloseReceived, PingReceived, PongReceived
from wsapp.protocol.bytequeue import COALESCE_LIMIT
from wsapp.protocol.events import Event
from wsapp.protocol.reader import FrameReader, Handover


@dataclass
class Limits:
    max_message_size: int = 1 << 20


def read_all(reader: FrameReader, chunks: list[bytes]) -> list[Event]:
    """The events of ``chunks`` fed one after the other, none of them handed over."""
    events: list[Event] = []
    for chunk in chunks:
        read, handover = reader.read(chunk)
        assert handover is None
        events += read
    return events


def pong(payload: bytes) -> bytes:
    return bytes([0x8A, len(payload)]) + payload


# The frames it reads


def test_whole_messages_and_control_frames_come_out_in_order() -> None:
    data = (
        frame(OP_TEXT, "héllo".encode())
        + frame(OP_PING, b"are you there")
        + frame(OP_BINARY, b"\x00\xff")
        + frame(OP_PONG, b"yes")
        + frame(OP_TEXT, b"")
    )
    events = ["héllo", PingReceived(b"are you there", pong(b"are you there")), b"\x00\xff"]
    assert FrameReader(Limits()).read(data) == ([*events, PongReceived(b"yes"), ""], None)


def test_the_peers_close_is_the_last_event_and_nothing_after_it_is_read() -> None:
    data = frame(OP_TEXT, b"before") + close_frame(4000, "bye ✓") + frame(OP_TEXT, b"after")
    assert FrameReader(Limits()).read(data) == (["before", CloseReceived(4000, "bye ✓")], None)
    assert FrameReader(Limits()).read(close_frame(None)) == ([CloseReceived(1005, "")], None)


def test_a_binary_frame_arriving_a_byte_at_a_time_comes_out_once_whole() -> None:
    data = frame(OP_BINARY, bytes(range(200))) + frame(OP_PING, b"p") + frame(OP_BINARY, b"ok")
    events = read_all(FrameReader(Limits()), [data[i : i + 1] for i in range(len(data))])
    assert events == [bytes(range(200)), PingReceived(b"p", pong(b"p")), b"ok"]


def test_a_large_binary_frame_in_pieces_is_unmasked_from_them() -> None:
    payload = bytes(range(256)) * (3 * COALESCE_LIMIT // 256)
    data = frame(OP_BINARY, payload) + frame(OP_TEXT, b"next")
    chunks = split(data, [1, 5, 9, COALESCE_LIMIT, 2 * COALESCE_LIMIT + 3])
    assert read_all(FrameReader(Limits()), chunks) == [payload, "next"]


# Where it hands over


def test_a_fragmented_message_is_handed_over_frame_by_frame_and_reading_resumes_after_it() -> None:
    reader = FrameReader(Limits())
    first, ping, last = (
        frame(OP_TEXT, b"frag", fin=False),
        frame(OP_PING, b"p"),
        frame(OP_CONT, b"ment"),
    )
    after = frame(OP_BINARY, b"whole")
    data = frame(OP_TEXT, b"before") + first + ping + last + after
    events, handover = reader.read(data)
    assert events == ["before"]
    assert handover == Handover(memoryview(data)[len(frame(OP_TEXT, b"before")) :], len(first))
    # The session gives wsproto the fragment and the reader what follows it: a ping between
    # fragments is read here, the next fragment is wsproto's, and then reading resumes.
    events, handover = reader.read(ping + last + after)
    assert events == [PingReceived(b"p", pong(b"p"))]
    assert handover is not None
    assert (bytes(handover.data), handover.size) == (last + after, len(last))
    assert reader.read(after) == ([b"whole"], None)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(frame(OP_CONT, b"x"), id="continuation-without-start"),
        pytest.param(frame(OP_TEXT, b"x", mask=False), id="unmasked"),
        pytest.param(frame(OP_PING, b"x", mask=False), id="unmasked-ping"),
        pytest.param(frame(OP_TEXT, b"x", rsv=4), id="rsv1"),
        pytest.param(frame(OP_PONG, b"x", rsv=2), id="rsv2-pong"),
        pytest.param(frame(OP_TEXT, b"\xff"), id="invalid-utf8"),
        pytest.param(frame(OP_BINARY, bytes(11)), id="over-the-limit"),
        pytest.param(frame(OP_CLOSE, b"\x03"), id="close-with-one-byte"),
        pytest.param(frame(OP_CLOSE, (1000).to_bytes(2, "big") + b"\xff"), id="bad-close-reason"),
        pytest.param(bytes([0x82, 0xFE, 0, 5]) + bytes(9), id="length-not-minimal"),
    ],
)
def test_a_frame_it_does_not_take_is_handed_over_whole_with_what_follows(data: bytes) -> None:
    whole = frame(OP_BINARY, b"first")
    after = frame(OP_TEXT, b"after")
    events, handover = FrameReader(Limits(max_message_size=10)).read(whole + data + after)
    assert events == [b"first"]
    assert handover is not None
    assert (bytes(handover.data), handover.size) == (data + after, len(data))


def test_a_text_frame_not_yet_whole_is_handed_over_with_its_size() -> None:
    # wsproto checks UTF-8 as the bytes arrive, so it reads the frame as it comes.
    data = frame(OP_TEXT, b"x" * 300)
    events, handover = FrameReader(Limits()).read(data[:100])
    assert events == []
    assert handover is not None
    assert (bytes(handover.data), handover.size) == (data[:100], len(data))


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(bytes([0x83, 0x81]), id="reserved-opcode"),
        pytest.param(bytes([0x09, 0x81]), id="fragmented-ping"),
        pytest.param(bytes([0x89, 0xFE]), id="ping-over-125-bytes"),
    ],
)
def test_a_frame_wsproto_fails_on_its_first_two_bytes_hands_over_everything(head: bytes) -> None:
    events, handover = FrameReader(Limits()).read(frame(OP_TEXT, b"ok") + head)
    assert events == ["ok"]
    assert handover is not None
    assert (bytes(handover.data), handover.size) == (head, None)


def test_the_limit_is_read_live_at_each_frames_header() -> None:
    limits = Limits(max_message_size=4)
    reader = FrameReader(limits)
    assert reader.read(frame(OP_BINARY, bytes(4))) == ([bytes(4)], None)
    limits.max_message_size = 3
    events, handover = reader.read(frame(OP_BINARY, bytes(4)))
    assert events == [] and handover is not None


# Any chunking


@st.composite
def common_traffic(draw: st.DrawFn) -> tuple[list[bytes], list[Event]]:
    """Frames the reader takes (whole, final, masked messages, pings, pongs, perhaps a close
    at the end) and their events. A text frame is taken only if it arrives whole."""
    key = draw(st.binary(min_size=4, max_size=4))
    frames: list[bytes] = []
    events: list[Event] = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["text", "binary", "large", "ping", "pong"]))
        if kind == "text":
            text = draw(st.text(max_size=200))
            frames.append(frame(OP_TEXT, text.encode(), key=key))
            events.append(text)
        elif kind in ("binary", "large"):
            size = 2 * COALESCE_LIMIT if kind == "large" else 300
            payload = draw(st.binary(max_size=size))
            frames.append(frame(OP_BINARY, payload, key=key))
            events.append(payload)
        else:
            payload = draw(st.binary(max_size=125))
            opcode = OP_PING if kind == "ping" else OP_PONG
            frames.append(frame(opcode, payload, key=key))
            events.append(
                PingReceived(payload, pong(payload)) if kind == "ping" else PongReceived(payload)
            )
    if draw(st.booleans()):
        frames.append(close_frame(1000, "done"))
        events.append(CloseReceived(1000, "done"))
    return frames, events


def cuts_outside_text(data: st.DataObject, frames: list[bytes], tail: bytes = b"") -> list[int]:
    """Cut points in ``frames`` and ``tail`` after them, anywhere but inside a text frame of
    ``frames`` (which is handed over unless it arrives whole)."""
    wire = b"".join(frames) + tail
    inside_text: set[int] = set()
    start = 0
    for one in frames:
        if one[0] & 0x0F == OP_TEXT:
            inside_text.update(range(start + 1, start + len(one)))
        start += len(one)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=12))
    return sorted(cut for cut in cuts if cut not in inside_text)


@given(sent=common_traffic(), data=st.data())
def test_common_frames_in_any_chunking_are_all_read_here(
    sent: tuple[list[bytes], list[Event]], data: st.DataObject
) -> None:
    frames, events = sent
    chunks = split(b"".join(frames), cuts_outside_text(data, frames))
    assert read_all(FrameReader(Limits()), chunks) == events


@given(
    before=common_traffic(),
    other=st.sampled_from(
        [
            frame(OP_TEXT, b"frag", fin=False),
            frame(OP_CONT, b"x"),
            frame(OP_BINARY, b"x", rsv=4),
            frame(OP_TEXT, b"\xc3"),
            frame(OP_BINARY, bytes(70000)),
            frame(OP_PING, b"x", mask=False),
        ]
    ),
    data=st.data(),
)
def test_in_any_chunking_the_hand_over_is_at_the_first_byte_of_the_frame_not_taken(
    before: tuple[list[bytes], list[Event]], other: bytes, data: st.DataObject
) -> None:
    frames, events = before
    if events and isinstance(events[-1], CloseReceived):
        frames, events = frames[:-1], events[:-1]  # nothing is read after a close
    wire = b"".join(frames) + other
    cuts = cuts_outside_text(data, frames, other)
    reader = FrameReader(Limits(max_message_size=1 << 16))
    read: list[Event] = []
    fed = 0
    for chunk in split(wire, cuts):
        fed += len(chunk)
        chunk_events, handover = reader.read(chunk)
        read += chunk_events
        if handover is not None:
            offset = fed - len(handover.data)
            assert offset == len(wire) - len(other)
            assert bytes(handover.data) == wire[offset:fed]
            assert handover.size == len(other)
            break
    else:
        pytest.fail("no hand-over")
    assert read == events
