"""Unmasking: the C speed-up and the pure-Python version agree with wsproto's masker."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto.frame_protocol import XorMaskerSimple

from tests.conformance.wire import split
from wsapp.protocol import masking

IMPLEMENTATIONS = [pytest.param(masking.python_unmask, id="python")]
if masking.SPEEDUPS:
    IMPLEMENTATIONS.append(pytest.param(masking.unmask, id="c"))


@pytest.mark.parametrize("unmask", IMPLEMENTATIONS)
@given(data=st.binary(max_size=300), key=st.binary(min_size=4, max_size=4))
def test_unmasking_is_the_xor_with_the_key_cycled(
    unmask: masking.Unmask, data: bytes, key: bytes
) -> None:
    expected = bytes(XorMaskerSimple(key).process(bytearray(data)))
    assert unmask(data, key) == expected
    assert unmask(memoryview(bytearray(data)), bytearray(key)) == expected


@pytest.mark.parametrize("unmask", IMPLEMENTATIONS)
def test_a_megabyte_unmasks_whole(unmask: masking.Unmask) -> None:
    data, key = os.urandom(1 << 20), os.urandom(4)
    assert unmask(unmask(data, key), key) == data


@pytest.mark.skipif(
    bool(os.environ.get("WSAPP_NO_SPEEDUPS")) or shutil.which("cc") is None,
    reason="the pure-Python version was asked for, or there is no compiler to build the C one",
)
def test_the_speedup_is_built_and_used_where_a_compiler_is() -> None:
    assert masking.SPEEDUPS
    assert masking.unmask is not masking.python_unmask


def test_a_mask_of_the_wrong_size_is_refused() -> None:
    for unmask in (masking.python_unmask, masking.unmask):
        with pytest.raises(ValueError, match="4 bytes"):
            unmask(b"abc", b"\x00")


@pytest.mark.parametrize(
    "unmask_pieces",
    [pytest.param(masking.python_unmask_pieces, id="python")]
    + ([pytest.param(masking.unmask_pieces, id="c")] if masking.SPEEDUPS else []),
)
@given(
    data=st.binary(max_size=300),
    cuts=st.lists(st.integers(0, 300), max_size=6),
    key=st.binary(min_size=4, max_size=4),
)
def test_a_payload_in_pieces_unmasks_as_it_would_whole(
    unmask_pieces: masking.UnmaskPieces, data: bytes, cuts: list[int], key: bytes
) -> None:
    pieces = split(data, sorted(min(cut, len(data)) for cut in cuts))
    mixed = [memoryview(p) if i % 2 else bytearray(p) for i, p in enumerate(pieces)]
    assert unmask_pieces(mixed, key) == masking.python_unmask(data, key)


def test_pieces_and_their_mask_are_checked() -> None:
    for unmask_pieces in (masking.python_unmask_pieces, masking.unmask_pieces):
        with pytest.raises(ValueError, match="4 bytes"):
            unmask_pieces([b"abc"], b"\x00")
        with pytest.raises(TypeError):
            unmask_pieces([b"abc", "text"], b"abcd")  # type: ignore[list-item]
