"""RFC 6455 section 8.1 (text must be valid UTF-8, RFC 3629), on the wire."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.conformance.wire import echoes, fails_with, fragmented, split
from tests.rawclient import OP_CONT, OP_TEXT, frame

pytestmark = pytest.mark.anyio

VALID = {
    "2-byte": "é".encode(),  # C3 A9
    "3-byte": "€".encode(),  # E2 82 AC
    "4-byte": "𝄞".encode(),  # F0 9D 84 9E
    "mixed": "κόσμε €𝄞 ascii".encode(),
    "edges": "\u0080\u07ff\u0800\ufffd\uffff\U00010000\U0010ffff".encode(),
}

INVALID = {
    "lone-continuation": b"\x80",
    "invalid-byte-ff": b"\xff",
    "invalid-byte-c1": b"\xc1\xbf",
    "overlong-2": b"\xc0\xaf",  # "/" in two bytes
    "overlong-3": b"\xe0\x80\xaf",
    "overlong-4": b"\xf0\x80\x80\xaf",
    "overlong-nul": b"\xc0\x80",
    "surrogate-high": b"\xed\xa0\x80",  # U+D800
    "surrogate-low": b"\xed\xbf\xbf",  # U+DFFF
    "surrogate-pair": b"\xed\xa0\x80\xed\xb0\x80",
    "above-10ffff": b"\xf4\x90\x80\x80",  # U+110000
    "f5-lead": b"\xf5\x80\x80\x80",
    "5-byte-form": b"\xf8\x88\x80\x80\x80",
    "truncated-then-ascii": b"\xe2\x82(",
}


def partitions(data: bytes) -> Iterator[list[bytes]]:
    """Every way to cut ``data`` into two or more non-empty fragments."""
    positions = range(1, len(data))
    for count in range(1, len(data)):
        for cuts in itertools.combinations(positions, count):
            yield split(data, cuts)


def cases(samples: dict[str, bytes], context: bytes) -> Iterator[object]:
    """Each sample surrounded by ``context``, cut at every position inside the sample."""
    for name, sample in samples.items():
        payload = context + sample + context
        for cut in range(len(context) + 1, len(context) + len(sample)):
            yield pytest.param(split(payload, [cut]), id=f"{name}-cut{cut - len(context)}")


@pytest.mark.parametrize("name", list(VALID))
async def test_8_1_valid_multibyte_text_echoes(name: str) -> None:
    trace = await echoes(frame(OP_TEXT, VALID[name]), [(True, OP_TEXT, VALID[name])])
    assert ("message", VALID[name].decode()) in trace.events


@pytest.mark.parametrize("parts", list(cases(VALID, b"ab")))
async def test_8_1_valid_text_split_inside_a_character_echoes(parts: list[bytes]) -> None:
    payload = b"".join(parts)
    await echoes(fragmented(OP_TEXT, parts), [(True, OP_TEXT, payload)])


@pytest.mark.parametrize(
    "parts",
    [pytest.param(p, id="|".join(b.hex() for b in p)) for p in partitions(VALID["4-byte"])],
)
async def test_8_1_four_byte_character_in_any_fragmentation_echoes(parts: list[bytes]) -> None:
    await echoes(fragmented(OP_TEXT, parts), [(True, OP_TEXT, VALID["4-byte"])])


@pytest.mark.parametrize("name", list(INVALID))
async def test_8_1_invalid_utf8_fails_with_1007(name: str) -> None:
    trace = await fails_with(frame(OP_TEXT, b"ok " + INVALID[name] + b" ok"), 1007)
    assert "message" not in trace.names()


@pytest.mark.parametrize("parts", list(cases(INVALID, b"ok")))
async def test_8_1_invalid_utf8_split_across_fragments_fails_with_1007(
    parts: list[bytes],
) -> None:
    trace = await fails_with(fragmented(OP_TEXT, parts), 1007)
    assert "message" not in trace.names()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(frame(OP_TEXT, b"ab\xf0\x9d\x84"), id="single-frame"),
        pytest.param(fragmented(OP_TEXT, [b"ab", b"\xe2\x82"]), id="last-fragment"),
        pytest.param(fragmented(OP_TEXT, [b"ab\xf0", b"\x9d", b""]), id="then-empty-fragment"),
        pytest.param(frame(OP_TEXT, b"\xc3"), id="lone-lead-byte"),
    ],
)
async def test_8_1_message_ending_inside_a_character_fails_with_1007(data: bytes) -> None:
    trace = await fails_with(data, 1007)
    assert "message" not in trace.names()


async def test_8_1_invalid_utf8_fails_before_the_message_is_finished() -> None:
    # 8.1 requires failing; like Autobahn's "fail fast" cases (6.4.x), this checks it happens
    # as the bad bytes arrive, before the message is whole.
    await fails_with(frame(OP_TEXT, b"ok\xed\xa0\x80", fin=False), 1007)


async def test_8_1_binary_messages_are_not_checked() -> None:
    junk = b"".join(INVALID.values())
    data = frame(2, junk[:5], fin=False) + frame(OP_CONT, junk[5:])
    await echoes(data, [(True, 2, junk)])
