"""The coming and going of a connection's callbacks' task, without sockets: started when a
message arrives and none runs, sent away by the parking once it has waited long enough."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from wsapp.dispatcher import OnDemand, Parking
from wsapp.inbox import Inbox
from wsapp.intake import Inbound

pytestmark = pytest.mark.anyio


class Owner:
    """What the task would be started with: counts the starts."""

    def __init__(self) -> None:
        self.starts = 0

    def resume(self) -> None:
        self.starts += 1


def on_demand(running: bool = True) -> tuple[OnDemand, Inbox[Inbound], Parking, Owner]:
    inbox: Inbox[Inbound] = Inbox()
    parking, owner = Parking(), Owner()
    return OnDemand(inbox, parking, owner, running=running), inbox, parking, owner


@asynccontextmanager
async def lingering(waiting: OnDemand) -> AsyncIterator[list[Inbound | None]]:
    """A task waiting for the next message in a task of its own, for the block: what it took
    (None: it was sent away) is in the list once the block has ended."""
    taken: list[Inbound | None] = []

    async def take() -> None:
        taken.append(await waiting.next(linger=True))

    async with anyio.create_task_group() as tg:
        tg.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        yield taken


async def test_the_first_message_starts_the_task_when_none_runs_and_only_one() -> None:
    _, inbox, _, owner = on_demand(running=False)
    assert inbox.offer("a", 10, 1000) is None
    assert inbox.offer("b", 10, 1000) is None  # it has not begun yet: no second one
    assert owner.starts == 1


async def test_a_task_that_may_not_linger_leaves_an_empty_inbox_at_once() -> None:
    waiting, inbox, _, owner = on_demand()
    assert await waiting.next(linger=False) is None
    assert inbox.offer("a", 10, 1000) is None  # the task left: this message starts another
    assert inbox.offer("b", 10, 1000) is None
    assert owner.starts == 1
    assert [inbox.take_nowait(), inbox.take_nowait()] == ["a", "b"]
    assert await waiting.next(linger=False) is None


async def test_a_lingering_task_is_sent_away_after_a_whole_parking_period() -> None:
    waiting, inbox, parking, owner = on_demand()
    async with lingering(waiting) as taken:
        parking.sweep()  # it began waiting after the last sweep: it stays
        await anyio.wait_all_tasks_blocked()
        assert taken == []
        parking.sweep()  # it waited through a whole period: it goes
    assert taken == [None]
    assert inbox.offer("late", 10, 1000) is None
    assert owner.starts == 1


async def test_a_message_arriving_before_the_sweep_keeps_the_task() -> None:
    waiting, inbox, parking, owner = on_demand()
    async with lingering(waiting) as taken:
        parking.sweep()
        assert inbox.offer("just in time", 10, 1000) is None
        parking.sweep()  # it was no longer waiting: the message is taken
    assert taken == ["just in time"]
    assert owner.starts == 0


async def lingering_until_the_end(waiting: OnDemand, ended: list[str]) -> None:
    """A callback task lingering for a message; what ended it goes into ``ended``."""
    try:
        await waiting.next(linger=True)
    except anyio.EndOfStream:
        ended.append("EndOfStream")


async def test_a_closed_inbox_ends_a_lingering_task_and_starts_none() -> None:
    waiting, inbox, _, owner = on_demand()
    ended: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lingering_until_the_end, waiting, ended)
        await anyio.wait_all_tasks_blocked()
        inbox.close()
    assert (ended, owner.starts) == (["EndOfStream"], 0)
    _, idle_inbox, _, idle_owner = on_demand(running=False)
    idle_inbox.close()  # no task runs: none is started for the close
    assert idle_owner.starts == 0


async def test_a_closed_connection_is_forgotten_by_the_parking() -> None:
    waiting, inbox, parking, _ = on_demand()
    ended: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lingering_until_the_end, waiting, ended)
        await anyio.wait_all_tasks_blocked()
        waiting.close()
        parking.sweep()
        parking.sweep()  # forgotten: not sent away (nor kept alive by the parking)
        await anyio.wait_all_tasks_blocked()
        assert ended == []
        inbox.close()
    assert ended == ["EndOfStream"]
