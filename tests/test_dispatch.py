"""Dispatch policy: one message at a time in order by default, or up to N at once."""

from __future__ import annotations

import random

import anyio
import pytest

import wsapp
from tests.test_messages import talk

pytestmark = pytest.mark.anyio


class Gauge:
    """How many handlers run at once, and the most there ever were."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0

    async def work(self, seconds: float) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await anyio.sleep(seconds)  # the handler's slow work (a database call, say)
        finally:
            self.running -= 1


async def test_sequential_by_default_one_at_a_time_in_order() -> None:
    gauge = Gauge()
    app = wsapp.App()

    @app.on_message
    async def slow(conn: wsapp.Connection, message: str) -> str:
        await gauge.work(random.uniform(0, 0.005))  # uneven: order must not depend on it
        return message

    sent = [str(i) for i in range(50)]
    replies, _, _ = await talk(app, *sent, replies=50)
    assert replies == sent
    assert gauge.peak == 1


async def test_concurrency_runs_up_to_n_handlers_at_once_and_never_more() -> None:
    gauge = Gauge()
    app = wsapp.App(concurrency=4)

    @app.on_message
    async def slow(conn: wsapp.Connection, message: str) -> str:
        await gauge.work(0.01)
        return message

    sent = [str(i) for i in range(50)]
    replies, _, _ = await talk(app, *sent, replies=50)
    assert sorted(replies, key=int) == sent  # every message handled (in some order)
    assert gauge.peak == 4


async def test_a_route_has_its_own_concurrency() -> None:
    gauge = Gauge()
    app = wsapp.App()

    @app.route("/", concurrency=2)
    class Slow(wsapp.Connector):
        async def on_message(self, message: str) -> str:
            await gauge.work(0.01)
            return message

    replies, _, _ = await talk(app, *[str(i) for i in range(10)], replies=10)
    assert len(replies) == 10
    assert gauge.peak == 2


async def test_a_failing_concurrent_handler_closes_with_1011_and_stops_the_others() -> None:
    cancelled = []
    app = wsapp.App(concurrency=4)

    @app.on_message
    async def handler(conn: wsapp.Connection, message: str) -> None:
        if message == "fail":
            raise RuntimeError("boom")
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(message)
            raise

    _, code, reason = await talk(app, "a", "b", "fail", replies=0, closes=True)
    assert (code, reason) == (1011, "internal error")
    assert sorted(cancelled) == ["a", "b"]
