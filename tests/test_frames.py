"""Frames built once for many connections, and a session's own frames, are exactly the frames
wsproto builds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from wsproto.connection import SERVER, Connection
from wsproto.events import BytesMessage, TextMessage

from wsapp.protocol import PreparedMessage, Session
from wsapp.protocol.deflate import PerMessageDeflate
from wsapp.protocol.frames import OPCODE_BINARY, OPCODE_TEXT, encode_frame


class Limits:
    max_message_size = 1 << 20


def wsproto_frame(message: str | bytes) -> bytes:
    """The bytes wsproto's own server connection writes for ``message``."""
    event = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
    return Connection(SERVER).send(event)


#: Payload sizes around every boundary of the three length encodings (7-bit, 16-bit, 64-bit).
SIZES = st.sampled_from([0, 1, 124, 125, 126, 127, 65534, 65535, 65536, 65537]) | st.integers(
    0, 70000
)


@given(size=SIZES, fill=st.binary(min_size=1, max_size=8))
def test_binary_frames_equal_wsprotos(size: int, fill: bytes) -> None:
    payload = (fill * (size // len(fill) + 1))[:size]
    assert encode_frame(OPCODE_BINARY, payload) == wsproto_frame(payload)
    assert PreparedMessage.of(payload).frame == wsproto_frame(payload)
    assert Session(Limits()).send_message(payload) == wsproto_frame(payload)


@given(text=st.text(max_size=300), repeat=st.sampled_from([1, 2, 300]))
def test_text_frames_equal_wsprotos(text: str, repeat: int) -> None:
    message = text * repeat
    assert encode_frame(OPCODE_TEXT, message.encode()) == wsproto_frame(message)
    assert PreparedMessage.of(message).frame == wsproto_frame(message)
    assert Session(Limits()).send_message(message) == wsproto_frame(message)


def test_a_prepared_message_is_encoded_once_and_keeps_what_it_was_given() -> None:
    text = PreparedMessage.of("héllo")
    assert (text.message, text.opcode, text.payload, len(text)) == (
        "héllo",
        OPCODE_TEXT,
        "héllo".encode(),
        6,
    )
    assert text.frame is text.frame  # built on first use, then shared
    binary = PreparedMessage.of(b"\x00\x01")
    assert (binary.message, binary.opcode, binary.frame) == (
        b"\x00\x01",
        OPCODE_BINARY,
        b"\x82\x02\x00\x01",
    )


def deflate(*, no_context_takeover: bool, bits: int = 15) -> PerMessageDeflate:
    return PerMessageDeflate(
        Limits(),
        server_max_window_bits=bits,
        server_no_context_takeover=no_context_takeover,
        client_no_context_takeover=False,
    )


def test_an_uncompressed_session_shares_the_prepared_frame() -> None:
    message = PreparedMessage.of("x" * 200)
    assert Session(Limits()).prepared_frame(message) is message.frame


@given(
    messages=st.lists(st.text(max_size=200) | st.binary(max_size=200), min_size=1, max_size=5),
    bits=st.integers(9, 15),
)
def test_compressed_frames_are_shared_only_where_they_equal_the_connections_own(
    messages: list[str | bytes], bits: int
) -> None:
    fresh = Session(Limits(), [deflate(no_context_takeover=True, bits=bits)])
    fresh_reference = Session(Limits(), [deflate(no_context_takeover=True, bits=bits)])
    takeover = Session(Limits(), [deflate(no_context_takeover=False, bits=bits)])
    takeover_reference = Session(Limits(), [deflate(no_context_takeover=False, bits=bits)])
    for message in messages:
        prepared = PreparedMessage.of(message)
        shared = fresh.prepared_frame(prepared)
        assert shared is prepared.compressed_frame(bits)  # one compression for all of them
        assert shared == fresh_reference.send_message(message)
        # With context takeover the compressor remembers earlier messages: its own frames.
        assert takeover.prepared_frame(prepared) == takeover_reference.send_message(message)


def test_an_eight_bit_window_shares_the_uncompressed_frame() -> None:
    message = PreparedMessage.of("x" * 200)
    eight = Session(Limits(), [deflate(no_context_takeover=False, bits=8)])
    assert eight.prepared_frame(message) is message.frame


def test_a_prepared_message_decodes_its_text_only_when_asked() -> None:
    prepared = PreparedMessage(OPCODE_TEXT, '{"a":"é"}'.encode())
    assert prepared.frame == wsproto_frame('{"a":"é"}')
    assert prepared.message == '{"a":"é"}'
