"""The wsapp side of `bench/broadcast.py`: `python -m wsapp bench.broadcast_wsapp:app`.

Members connect to `/`: each joins the room `bench` in `on_open` and is then told `ok`, so the
load generator knows it is a member; those connecting to `/stall` (the ones the benchmark will
stop reading from) join the room `stall` too. The control connection (`/control`) asks for
broadcasts, `run N B`: the publisher, inside the server, sends N 64-byte text messages to
`bench` in bursts of B back to back, yielding to the event loop after each burst; then it
answers `done`. `fill N SIZE` broadcasts N messages of SIZE bytes to `stall` alone (it fills
the stalled members' buffers quickly). `stats` answers a JSON object: members here, the
rooms' counters, close codes seen, time spent in the garbage collector.

Keepalive is off (the load generator counts bytes, it does not answer pings), as it is for
the other contenders.
"""

from __future__ import annotations

import gc
import json
import time
from collections import Counter

import anyio
import anyio.lowlevel

import wsapp

ROOM = "bench"
STALL_ROOM = "stall"
#: The broadcast: 64 bytes of text, the same for every contender.
MESSAGE = "x" * 64

app = wsapp.App(ping_interval=None)
control = app.route("/control")
closes: Counter[int] = Counter()
#: Seconds spent in the garbage collector, by generation (what a profiler shows as the
#: allocation that happened to trigger a collection).
gc_seconds = [0.0, 0.0, 0.0]
_gc_started = [0.0]


def _time_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        gc_seconds[info["generation"]] += time.perf_counter() - _gc_started[0]


gc.callbacks.append(_time_gc)


@app.on_open
async def joined(conn: wsapp.Connection) -> None:
    await conn.join(ROOM)
    if conn.request.path == "/stall":
        await conn.join(STALL_ROOM)
    await conn.send("ok")


@app.on_message
async def ignored(conn: wsapp.Connection, message: str | bytes) -> None:
    """Members send nothing; what they would send is ignored."""


@app.on_close
async def closed(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
    closes[code] += 1


async def publish(count: int, burst: int) -> None:
    """The publisher: ``count`` broadcasts, ``burst`` back to back, then a yield."""
    for sent in range(1, count + 1):
        await app.broadcast(ROOM, MESSAGE)
        if sent % burst == 0:
            await anyio.lowlevel.checkpoint()


@control.on_message
async def command(conn: wsapp.Connection, message: str | bytes) -> None:
    words = str(message).split()
    if words[0] == "run":
        await publish(int(words[1]), int(words[2]))
        await conn.send("done")
    elif words[0] == "fill":
        filler = "y" * int(words[2])
        for _ in range(int(words[1])):
            await app.broadcast(STALL_ROOM, filler)
            await anyio.lowlevel.checkpoint()
        await conn.send("done")
    elif words[0] == "stats":
        stats = app.rooms.stats
        await conn.send(
            json.dumps(
                {
                    "members": app.rooms.count(ROOM),
                    "deliveries": stats.deliveries,
                    "slow_closes": stats.slow_closes,
                    "dropped": stats.dropped,
                    "closes": dict(closes),
                    "gc_seconds": gc_seconds,
                }
            )
        )
