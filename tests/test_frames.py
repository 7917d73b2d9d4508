"""Frames built once for many connections are exactly the frames wsproto builds for one."""

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
    assert PreparedMessage(payload).frame == wsproto_frame(payload)


@given(text=st.text(max_size=300), repeat=st.sampled_from([1, 2, 300]))
def test_text_frames_equal_wsprotos(text: str, repeat: int) -> None:
    message = text * repeat
    assert encode_frame(OPCODE_TEXT, message.encode()) == wsproto_frame(message)
    assert PreparedMessage(message).frame == wsproto_frame(message)


def test_a_prepared_message_is_encoded_once_and_keeps_what_it_was_given() -> None:
    text = PreparedMessage("héllo")
    assert (text.message, text.opcode, text.payload, len(text)) == (
        "héllo",
        OPCODE_TEXT,
        "héllo".encode(),
        6,
    )
    assert text.frame is text.frame  # built on first use, then shared
    binary = PreparedMessage(b"\x00\x01")
    assert (binary.message, binary.opcode, binary.frame) == (
        b"\x00\x01",
        OPCODE_BINARY,
        b"\x82\x02\x00\x01",
    )


def test_a_session_shares_the_prepared_frame_unless_an_extension_transforms_it() -> None:
    message = PreparedMessage("x" * 200)
    plain = Session(Limits())
    assert plain.prepared_frame(message) is message.frame
    deflate = PerMessageDeflate(
        Limits(),
        server_max_window_bits=15,
        server_no_context_takeover=False,
        client_no_context_takeover=False,
    )
    compressed = Session(Limits(), [deflate]).prepared_frame(message)
    assert compressed[0] == 0xC1  # FIN, RSV1 (compressed), text
    assert len(compressed) < len(message.frame)
