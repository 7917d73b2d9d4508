"""The peers of `bench/broadcast.py`, written as their users write them, with the same
publisher as wsapp's (`bench/broadcast_wsapp.py`): N broadcasts in bursts of B, a yield to
the event loop after each burst.

- `websockets`: `python bench/broadcast_peers.py websockets PORT` (its asyncio server);
  members connect to `/` (or `/stall`), the control connection to `/control` (`run N B`,
  `fill N SIZE`, `stats`); a broadcast is `websockets.broadcast(members, message)`.
- python-socketio, default in-memory manager, under uvicorn:
  `uvicorn --factory bench.broadcast_peers:socketio_app`. Members emit `join` (the handler
  enters the room, and the room `stall` too when asked, and acknowledges); the control
  connection emits `run` with `[N, B]`, `fill` with `[N, SIZE]` and `stats`, all
  acknowledged; a broadcast is `await sio.emit("m", message, room="bench")`.

The commands are those of wsapp's app (see there).

Keepalive is off in both, as in wsapp's app: the load generator counts bytes and answers no
pings.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
from collections import Counter
from typing import Any

ROOM = "bench"
STALL_ROOM = "stall"
MESSAGE = "x" * 64


def raise_nofile() -> None:
    """Let this process hold as many sockets as the hard limit allows."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve_websockets(port: int, loop: str = "asyncio") -> None:
    """The websockets server: members in a set, broadcast with `websockets.broadcast`."""
    import websockets
    from websockets.asyncio.server import ServerConnection, serve

    members: set[ServerConnection] = set()
    stalling: set[ServerConnection] = set()
    closes: Counter[int] = Counter()

    async def publish(count: int, burst: int) -> None:
        for sent in range(1, count + 1):
            websockets.broadcast(members, MESSAGE)
            if sent % burst == 0:
                await asyncio.sleep(0)

    async def handler(ws: ServerConnection) -> None:
        if ws.request is not None and ws.request.path == "/control":
            async for message in ws:
                words = str(message).split()
                if words[0] == "run":
                    await publish(int(words[1]), int(words[2]))
                    await ws.send("done")
                elif words[0] == "fill":
                    filler = "y" * int(words[2])
                    for _ in range(int(words[1])):
                        websockets.broadcast(stalling, filler)
                        await asyncio.sleep(0)
                    await ws.send("done")
                elif words[0] == "stats":
                    await ws.send(json.dumps({"members": len(members), "closes": dict(closes)}))
            return
        members.add(ws)
        if ws.request is not None and ws.request.path == "/stall":
            stalling.add(ws)
        try:
            await ws.send("ok")
            await ws.wait_closed()
        finally:
            members.discard(ws)
            stalling.discard(ws)
            closes[ws.close_code or 1006] += 1

    async def main() -> None:
        # backlog: asyncio's default of 100 would drop the load generator's SYNs.
        async with serve(handler, "127.0.0.1", port, ping_interval=None, backlog=4096) as server:
            await server.serve_forever()

    raise_nofile()
    if loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def socketio_app() -> Any:
    """The python-socketio ASGI app (default in-memory manager), for uvicorn's --factory."""
    import socketio

    raise_nofile()
    # A ping interval longer than any run: keepalive off, as for the other contenders.
    sio = socketio.AsyncServer(async_mode="asgi", ping_interval=3600, ping_timeout=3600)
    state: dict[str, int] = {"members": 0}

    async def publish(count: int, burst: int) -> None:
        for sent in range(1, count + 1):
            await sio.emit("m", MESSAGE, room=ROOM)
            if sent % burst == 0:
                await asyncio.sleep(0)

    @sio.on("join")  # type: ignore[untyped-decorator]
    async def join(sid: str, *rooms: str) -> str:
        await sio.enter_room(sid, ROOM)
        for room in rooms:
            await sio.enter_room(sid, room)
        state["members"] += 1
        return "ok"

    @sio.on("run")  # type: ignore[untyped-decorator]
    async def run(sid: str, count: int, burst: int) -> str:
        await publish(count, burst)
        return "done"

    @sio.on("fill")  # type: ignore[untyped-decorator]
    async def fill(sid: str, count: int, size: int) -> str:
        filler = "y" * size
        for _ in range(count):
            await sio.emit("f", filler, room=STALL_ROOM)
            await asyncio.sleep(0)
        return "done"

    @sio.on("stats")  # type: ignore[untyped-decorator]
    async def stats(sid: str) -> dict[str, int]:
        return {"members": state["members"]}

    @sio.on("disconnect")  # type: ignore[untyped-decorator]
    async def disconnect(sid: str, reason: Any = None) -> None:
        if ROOM in sio.rooms(sid):
            state["members"] -= 1

    return socketio.ASGIApp(sio)


if __name__ == "__main__":
    if sys.argv[1:2] != ["websockets"] or len(sys.argv) not in (3, 4):
        raise SystemExit("usage: python bench/broadcast_peers.py websockets PORT [uvloop]")
    serve_websockets(int(sys.argv[2]), *sys.argv[3:])
