"""The byte queue behind a connection's output and the fast path's partial frames."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wsapp.protocol.bytequeue import COALESCE_LIMIT, ByteQueue

SIZES = st.sampled_from([0, 1, COALESCE_LIMIT, COALESCE_LIMIT + 1]) | st.integers(
    0, 3 * COALESCE_LIMIT
)


@given(steps=st.lists(st.tuples(st.booleans(), SIZES, st.integers(0, 255)), max_size=30))
def test_it_holds_exactly_the_bytes_appended_and_not_popped(
    steps: list[tuple[bool, int, int]],
) -> None:
    queue, model = ByteQueue(), bytearray()
    for appending, size, fill in steps:
        if appending:
            data = bytes([fill]) * size
            queue.append(data if fill % 2 else memoryview(data))
            model += data
        else:
            count = min(size, len(model))
            assert b"".join(queue.pop(count)) == model[:count]
            del model[:count]
        assert len(queue) == len(model)
        assert b"".join(queue.pieces(1 << 20)) == model
    assert queue.take() == model
    assert len(queue) == 0
    assert queue.take() == b""


def test_a_large_piece_is_queued_as_it_is_and_small_ones_are_copied_together() -> None:
    queue = ByteQueue()
    large = bytes(COALESCE_LIMIT + 1)
    queue.append(b"a")
    queue.append(b"b")
    queue.append(large)
    first, second = queue.pieces(8)
    assert first == b"ab" and second is large
    assert queue.pieces(1) == [b"ab"]  # at most that many pieces, for one vectored write
    assert queue.take() == b"ab" + large


def test_thousands_of_tiny_pieces_make_one_buffer() -> None:
    queue = ByteQueue()
    for _ in range(10_000):
        queue.append(b"\x81\x00")
    assert len(queue.pieces(1024)) == 1
    assert len(queue) == 20_000


def test_a_single_piece_is_taken_without_a_copy() -> None:
    queue = ByteQueue()
    large = bytes(COALESCE_LIMIT * 2)
    queue.append(large)
    assert queue.take() is large
