"""The server's one keepalive task calls each connection back at the time it asked for: in
order of time, once per request, the latest request replacing earlier ones, never after a
cancel, and soon for a time earlier than the one it sleeps towards."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from wsapp.server.keepalive import Keepalive

pytestmark = pytest.mark.anyio


class Pinged:
    """A connection as the keepalive sees it: it notes when it was called."""

    def __init__(self, name: str, calls: list[str], done: anyio.Event | None = None) -> None:
        self.name = name
        self.calls = calls
        self.done = done

    def keepalive(self) -> None:
        self.calls.append(self.name)
        if self.done is not None:
            self.done.set()


async def run_until(keepalive: Keepalive, event: anyio.Event) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(keepalive.run)
        with anyio.fail_after(5):
            await event.wait()
        tg.cancel_scope.cancel()


async def test_connections_are_called_in_order_of_their_times() -> None:
    keepalive, done = Keepalive(), anyio.Event()
    calls: list[str] = []
    now = anyio.current_time()
    keepalive.schedule(Pinged("late", calls, done), now + 0.06)
    keepalive.schedule(Pinged("early", calls), now + 0.02)
    keepalive.schedule(Pinged("middle", calls), now + 0.04)
    await run_until(keepalive, done)
    assert calls == ["early", "middle", "late"]
    assert anyio.current_time() >= now + 0.06  # not before its time


async def test_a_new_time_replaces_the_old_and_a_cancel_stops_the_calls() -> None:
    keepalive, done = Keepalive(), anyio.Event()
    calls: list[str] = []
    now = anyio.current_time()
    moved, cancelled = Pinged("moved", calls), Pinged("cancelled", calls)
    keepalive.schedule(moved, now + 0.01)
    keepalive.schedule(moved, now + 0.05)  # replaces the first time
    keepalive.schedule(cancelled, now + 0.02)
    keepalive.cancel(cancelled)
    keepalive.schedule(Pinged("last", calls, done), now + 0.08)
    await run_until(keepalive, done)
    assert calls == ["moved", "last"]


async def test_an_earlier_time_wakes_the_sleeping_task() -> None:
    keepalive, done = Keepalive(), anyio.Event()
    calls: list[str] = []
    keepalive.schedule(Pinged("far", calls), anyio.current_time() + 3600)
    async with anyio.create_task_group() as tg:
        tg.start_soon(keepalive.run)
        await anyio.lowlevel.checkpoint()  # the task now sleeps towards the far time
        keepalive.schedule(Pinged("near", calls, done), anyio.current_time() + 0.01)
        with anyio.fail_after(5):
            await done.wait()
        tg.cancel_scope.cancel()
    assert calls == ["near"]


async def test_many_reschedules_call_each_connection_once_at_its_last_time() -> None:
    keepalive, done = Keepalive(), anyio.Event()
    calls: list[str] = []
    now = anyio.current_time()
    connections = [Pinged(f"c{i}", calls) for i in range(50)]
    for round_ in range(20):  # stale entries pile up, and are dropped
        for i, connection in enumerate(connections):
            keepalive.schedule(connection, now + 0.01 * (i % 5) + 0.001 * round_)
    keepalive.schedule(Pinged("end", calls, done), now + 0.2)
    await run_until(keepalive, done)
    assert sorted(calls[:-1]) == sorted(c.name for c in connections)
    assert calls[-1] == "end"
