"""Bytes waiting their turn, queued without copying the large pieces.

A 1 MiB message passes through a connection's buffers twice (gathered as it arrives, queued
as it is sent). Appending it to a growing `bytearray` copies it each time, and each copy of a
block that size costs page faults as well as the copy itself; a queue of references costs
nothing until the bytes are needed together. Small pieces are the opposite case: thousands of
2-byte frames kept as thousands of objects would cost many times their size, so they are
copied together into one `bytearray` instead.
"""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["COALESCE_LIMIT", "Buffer", "ByteQueue"]

Buffer: TypeAlias = bytes | bytearray | memoryview

#: Pieces up to this many bytes are copied together; larger ones are queued as they are.
COALESCE_LIMIT = 4096


class ByteQueue:
    """A FIFO of bytes, kept as the pieces appended (large ones by reference).

    A piece larger than ``COALESCE_LIMIT`` is queued as the object given, so it must not be
    changed afterwards (pass `bytes`, or a `memoryview` of bytes). ``len()`` is the number of
    bytes queued.
    """

    __slots__ = ("_pieces", "_size")

    def __init__(self) -> None:
        # A list, not a deque: it holds a piece or two but for a slow reader (small frames
        # share pieces), and an empty deque costs 600 bytes on every idle connection.
        self._pieces: list[Buffer] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, data: Buffer) -> None:
        """Queue ``data`` behind what is queued."""
        size = len(data)
        if not size:
            return
        self._size += size
        pieces = self._pieces
        if size <= COALESCE_LIMIT:
            last = pieces[-1] if pieces else None
            if type(last) is bytearray:  # a piece of small ones, which only this queue holds
                last += data
                return
            data = bytearray(data)
        pieces.append(data)

    def pieces(self, limit: int) -> list[Buffer]:
        """The first ``limit`` pieces, in order (for a vectored write)."""
        return self._pieces[:limit]

    def pop(self, count: int) -> list[Buffer]:
        """Remove the first ``count`` bytes (at most `len()`) and return them, as pieces."""
        self._size -= count
        pieces = self._pieces
        whole = 0  # pieces popped whole
        for piece in pieces:
            if count < len(piece):
                break
            count -= len(piece)
            whole += 1
        popped = pieces[:whole]
        del pieces[:whole]
        if count:
            first = pieces[0]
            if type(first) is bytearray:
                popped.append(bytes(first[:count]))
                del first[:count]
            else:
                view = memoryview(first)
                popped.append(view[:count])
                pieces[0] = view[count:]
        return popped

    def take(self) -> Buffer:
        """Everything queued as one buffer (joined only when there is more than one piece),
        leaving the queue empty."""
        pieces = self._pieces
        data: Buffer = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()
        self._size = 0
        return data
