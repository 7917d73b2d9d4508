def apply_mask(data: bytes | bytearray | memoryview, mask: bytes | bytearray | memoryview) -> bytes:
    """``data`` XORed with the 4-byte ``mask``, cycled."""
