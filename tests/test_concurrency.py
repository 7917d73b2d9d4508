"""The nursery a server starts its connections' tasks in: it behaves as anyio's task group
does, but that what a task raises is logged (the server's own tests run every connection in
it)."""

from __future__ import annotations

import logging

import anyio
import pytest

from wsapp.concurrency import open_nursery

pytestmark = pytest.mark.anyio


async def test_leaving_the_nursery_waits_for_its_tasks() -> None:
    finished: list[int] = []

    async def work(number: int, go: anyio.Event) -> None:
        await go.wait()
        finished.append(number)

    go = anyio.Event()
    with anyio.fail_after(5):
        async with open_nursery() as nursery:
            for number in range(3):
                nursery.start_soon(work, number, go)
            go.set()
    assert sorted(finished) == [0, 1, 2]


async def test_cancelling_its_scope_cancels_the_tasks_but_not_their_shielded_work() -> None:
    events: list[str] = []
    started = anyio.Event()

    async def connection() -> None:
        with anyio.CancelScope(shield=True):  # a close in progress must not be cut short
            started.set()
            await anyio.sleep(0.05)
            events.append("closed")
        await anyio.sleep_forever()  # cancelled here, once out of the shield

    with anyio.fail_after(5):
        async with open_nursery() as nursery:
            nursery.start_soon(connection)
            await started.wait()
            nursery.cancel_scope.cancel()
    assert events == ["closed"]


async def test_a_deadline_on_its_scope_ends_the_tasks_still_running() -> None:
    async def stuck() -> None:
        await anyio.sleep_forever()

    with anyio.fail_after(5):
        async with open_nursery() as nursery:
            nursery.start_soon(stuck)
            nursery.cancel_scope.deadline = anyio.current_time() + 0.05
    # Reached: the deadline ended the task, and the nursery's own scope took the cancellation.


async def test_a_task_started_after_the_cancel_is_cancelled_too() -> None:
    ran_to_the_end: list[bool] = []

    async def late() -> None:
        await anyio.sleep(10)
        ran_to_the_end.append(True)

    with anyio.fail_after(5):
        async with open_nursery() as nursery:
            nursery.cancel_scope.cancel()
            nursery.start_soon(late)
    assert ran_to_the_end == []


async def test_a_task_that_raises_is_logged_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    finished: list[str] = []

    async def failing() -> None:
        raise RuntimeError("a bug")

    async def other() -> None:
        await anyio.sleep(0.01)
        finished.append("other")

    with anyio.fail_after(5), caplog.at_level(logging.ERROR, logger="wsapp"):
        async with open_nursery() as nursery:
            nursery.start_soon(failing)
            nursery.start_soon(other)
    assert finished == ["other"]
    assert "a task of the server failed" in caplog.text
