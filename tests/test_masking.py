"""Unmasking: the C speed-up and the pure-Python version agree with wsproto's masker."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto.frame_protocol import XorMaskerSimple

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
