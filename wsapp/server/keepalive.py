"""Pinging every open connection from one task of the server's, not one task per connection.

A task that sleeps ``ping_interval`` between pings costs each idle connection a few KiB and
the server a task switch per ping and a task to start and cancel per connection. Instead each
connection asks the server's one `Keepalive` to call it back at a time of its choosing (its
next ping, or the deadline of the pong it waits for), and the keepalive task sleeps until the
earliest of these times.
"""

from __future__ import annotations

import heapq
import math
from typing import NoReturn, Protocol

import anyio

__all__ = ["Keepalive", "Pinged"]


class Pinged(Protocol):
    def keepalive(self) -> None:
        """The time this connection asked for has come (it may ask again). Never raises."""


class Keepalive:
    """Calls each connection's `keepalive` at the time it asked for.

    `run` is a task of the server, started before its connections and ended after them.
    """

    def __init__(self) -> None:
        self._when: dict[int, tuple[float, Pinged]] = {}  # id(connection) -> its one time
        self._heap: list[tuple[float, int]] = []  # (time, id), stale ones included
        self._wake = anyio.Event()

    def schedule(self, connection: Pinged, when: float) -> None:
        """Call ``connection`` at ``when`` (`anyio.current_time` clock), instead of any time
        asked before."""
        self._when[id(connection)] = (when, connection)
        if not self._heap or when < self._heap[0][0]:
            self._wake.set()
        heapq.heappush(self._heap, (when, id(connection)))
        if len(self._heap) > 2 * len(self._when) + 64:  # mostly stale: drop those
            self._heap = [(when, key) for key, (when, _) in self._when.items()]
            heapq.heapify(self._heap)

    def cancel(self, connection: Pinged) -> None:
        """Do not call ``connection`` any more (it is closed)."""
        self._when.pop(id(connection), None)

    async def run(self) -> NoReturn:
        due = self._when
        while True:
            now = anyio.current_time()
            heap = self._heap
            while heap and heap[0][0] <= now:
                when, key = heapq.heappop(heap)
                entry = due.get(key)
                if entry is not None and entry[0] == when:
                    del due[key]
                    entry[1].keepalive()
                heap = self._heap  # schedule() may have rebuilt it
            self._wake = anyio.Event()
            with anyio.move_on_after(heap[0][0] - now if heap else math.inf):
                await self._wake.wait()
