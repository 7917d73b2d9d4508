"""What the protocol layer reads from the settings, as small interfaces.

The sans-I/O code must not depend on the pydantic settings model: it reads only these
attributes, live, so a per-connection change (a new `max_message_size` in `on_open`) applies
from the next frame. [wsapp.Settings][] satisfies both interfaces.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["CompressionOptions", "MessageLimits"]


class MessageLimits(Protocol):
    """The limits a session enforces on what it receives."""

    @property
    def max_message_size(self) -> int:
        """Largest message, in bytes, after reassembly and decompression."""
        ...


class CompressionOptions(MessageLimits, Protocol):
    """What permessage-deflate negotiation offers and accepts."""

    @property
    def compression(self) -> bool: ...

    @property
    def compression_server_max_window_bits(self) -> int: ...

    @property
    def compression_client_max_window_bits(self) -> int: ...

    @property
    def compression_server_no_context_takeover(self) -> bool: ...

    @property
    def compression_client_no_context_takeover(self) -> bool: ...
