from collections.abc import Sequence

def apply_mask(data: bytes | bytearray | memoryview, mask: bytes | bytearray | memoryview) -> bytes:
    """``data`` XORed with the 4-byte ``mask``, cycled."""

def apply_mask_pieces(
    pieces: Sequence[bytes | bytearray | memoryview], mask: bytes | bytearray | memoryview
) -> bytes:
    """The ``pieces`` joined, XORed with the 4-byte ``mask``, cycled."""
