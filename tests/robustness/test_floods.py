"""Floods of control frames and of tiny fragments: memory stays bounded."""

from __future__ import annotations

from functools import cache

import anyio
import pytest

from tests.helpers import port, running
from tests.rawclient import OP_BINARY, OP_CONT, OP_PING, RawClient, close_frame, frame
from tests.robustness.helpers import MiB, PeakMemory, Tally, send_until_refused, tally_app

pytestmark = pytest.mark.anyio

PINGS = 100_000
PING_BATCH = 1000
WRITE_TIMEOUT = 1.0
FRAGMENTS = 200_000


@pytest.mark.timeout(20)
async def test_ping_flood_from_a_peer_that_never_reads_pongs_stays_bounded() -> None:
    tally = Tally()
    app = tally_app(tally, write_timeout=WRITE_TIMEOUT, ping_interval=None)
    batch = b"".join(frame(OP_PING, bytes(125)) for _ in range(PING_BATCH))  # 131 KB, resent
    async with running(app) as server, RawClient.connect(port(server)) as raw:
        memory = PeakMemory()
        sent = 0
        with anyio.move_on_after(WRITE_TIMEOUT + 5) as window:
            # Pongs pile up unread: the server must stop reading (throttle) or drop us.
            sent = await send_until_refused(raw.stream, [batch] * (PINGS // PING_BATCH))
            await tally.wait_for_closes(1)
        throttled = window.cancelled_caught and sent < PINGS * len(batch) // PING_BATCH
        growth = memory.growth
    await tally.wait_for_closes(1)  # closing our socket ends it in any case
    assert tally.closed == 1 or throttled, f"sent {sent} bytes of pings, connection still open"
    assert growth < 10 * MiB, f"peak RSS growth {growth / MiB:.1f} MiB for {PINGS} pings"


@cache
def one_byte_fragments() -> tuple[bytes, bytes]:
    """A binary message and its FRAGMENTS one-byte frames, built once (outside measurements)."""
    message = bytes(i % 251 for i in range(FRAGMENTS))
    frames = b"".join(
        frame(OP_BINARY if i == 0 else OP_CONT, message[i : i + 1], fin=i == FRAGMENTS - 1)
        for i in range(FRAGMENTS)
    )
    return message, frames


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("max_message_size", "echoed"),
    [(MiB, True), (FRAGMENTS // 2, False)],
    ids=["within-the-limit-echoes", "over-the-limit-1009"],
)
async def test_message_in_one_byte_fragments(max_message_size: int, echoed: bool) -> None:
    tally = Tally()
    message, frames = one_byte_fragments()
    app = tally_app(tally, max_message_size=max_message_size, ping_interval=None)
    async with running(app) as server, RawClient.connect(port(server)) as raw:
        memory = PeakMemory()
        chunks = [frames[i : i + 65536] for i in range(0, len(frames), 65536)]
        sent = await send_until_refused(raw.stream, chunks)
        if echoed:
            assert sent == len(frames)
            assert await raw.read_frame() == (True, OP_BINARY, message)
            await raw.send(close_frame(1000))
            assert await raw.read_close() == (1000, "")
        else:
            assert await raw.read_close() == (1009, f"message over {max_message_size} bytes")
            await raw.send(close_frame(1009))
        await raw.read_eof()
        await tally.wait_for_closes(1)
        growth = memory.growth
    assert tally.messages == (1 if echoed else 0)
    assert tally.closes == {(True, 1000 if echoed else 1009): 1}
    assert growth < 8 * MiB, f"peak RSS growth {growth / MiB:.1f} MiB for {FRAGMENTS} fragments"
