"""Unmasking client payloads (RFC 6455 section 5.3): the payload XORed with its 4-byte key.

`unmask` and `unmask_pieces` are the C speed-up when it was compiled at install time, else
pure Python; set
``WSAPP_NO_SPEEDUPS=1`` to use the pure-Python version anyway (the test suite runs both).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TypeAlias

__all__ = [
    "NO_SPEEDUPS",
    "SPEEDUPS",
    "Unmask",
    "UnmaskPieces",
    "python_unmask",
    "python_unmask_pieces",
    "unmask",
    "unmask_pieces",
]

#: The environment variable that, set to anything but empty, turns the C speed-up off.
NO_SPEEDUPS = "WSAPP_NO_SPEEDUPS"

BytesLike: TypeAlias = bytes | bytearray | memoryview
Unmask: TypeAlias = Callable[[BytesLike, BytesLike], bytes]
UnmaskPieces: TypeAlias = Callable[[Sequence[BytesLike], BytesLike], bytes]

_XOR_TABLES = [bytes(key ^ byte for byte in range(256)) for key in range(256)]


def python_unmask(data: BytesLike, key: BytesLike) -> bytes:
    """``data`` XORed with ``key`` (4 bytes), cycled, in pure Python."""
    payload = bytearray(data)
    if len(key) != 4:
        raise ValueError("the mask must be 4 bytes long")
    k0, k1, k2, k3 = bytes(key)
    if len(payload) < 64:
        # Below a few words, one integer XOR beats four table passes.
        size = len(payload)
        stream = bytes((k0, k1, k2, k3)) * ((size >> 2) + 1)
        return (int.from_bytes(payload) ^ int.from_bytes(stream[:size])).to_bytes(size)
    # One C-speed table lookup per byte, in four strided passes.
    for offset, k in enumerate((k0, k1, k2, k3)):
        payload[offset::4] = payload[offset::4].translate(_XOR_TABLES[k])
    return bytes(payload)


def python_unmask_pieces(pieces: Sequence[BytesLike], key: BytesLike) -> bytes:
    """The ``pieces`` joined, then unmasked with `python_unmask`."""
    return python_unmask(b"".join(pieces), key)


def _compiled() -> tuple[Unmask, UnmaskPieces] | None:
    if os.environ.get(NO_SPEEDUPS):
        return None
    try:
        from wsapp.protocol._speedups import apply_mask, apply_mask_pieces
    except ImportError:
        return None
    return apply_mask, apply_mask_pieces


_compiled_pair = _compiled()
#: True when `unmask` and `unmask_pieces` are the compiled speed-up.
SPEEDUPS = _compiled_pair is not None
unmask: Unmask = _compiled_pair[0] if _compiled_pair else python_unmask
"""``data`` XORed with ``key`` (4 bytes), cycled: a masked payload made plain."""
unmask_pieces: UnmaskPieces = _compiled_pair[1] if _compiled_pair else python_unmask_pieces
"""A masked payload that arrived in pieces, made plain: ``b"".join(pieces)`` unmasked."""
