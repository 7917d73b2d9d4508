"""The event-loop lag warning: a callback blocking the loop is named in the log."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest
from websockets.asyncio.client import connect

import wsapp
from tests.helpers import client, running, url

pytestmark = pytest.mark.anyio


@contextmanager
def warnings_about_lag() -> Iterator[tuple[anyio.Event, list[str]]]:
    """The wsapp warnings about a blocked loop, and an event set at the first one."""
    seen = anyio.Event()
    lines: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            # Logged by the watcher, which runs in the test's own loop: safe to set here.
            if "event loop was blocked" in record.getMessage():
                lines.append(record.getMessage())
                seen.set()

    handler = Catch(logging.WARNING)
    logger = logging.getLogger("wsapp")
    logger.addHandler(handler)
    try:
        yield seen, lines
    finally:
        logger.removeHandler(handler)


def blocking_app(lag_warning: float) -> wsapp.App:
    app = wsapp.App(loop_lag_warning=lag_warning)

    @app.on_message
    async def block(conn: wsapp.Connection, message: str) -> None:
        time.sleep(float(message))  # noqa: ASYNC251 (the mistake the warning is for)
        await conn.send("done")

    return app


async def send_and_wait(address: str, message: str) -> object:
    async with connect(address) as ws:
        await ws.send(message)
        return await ws.recv()


async def test_a_callback_blocking_the_loop_is_reported_with_the_lag() -> None:
    with warnings_about_lag() as (seen, lines):
        async with running(blocking_app(lag_warning=0.3)) as server:
            assert await client(send_and_wait, url(server), "0.6") == "done"
            await seen.wait()
    lag = float(lines[0].split("blocked for ")[1].split("s:")[0])
    assert 0.3 <= lag < 5  # the block was 0.6 s; the watcher's tick is 0.25 s
    assert "pong_timeout" in lines[0] and "anyio.to_thread.run_sync" in lines[0]


@pytest.mark.parametrize("value", [0, -1])
def test_the_lag_threshold_must_be_positive(value: float) -> None:
    with pytest.raises(wsapp.ConfigError, match="loop_lag_warning"):
        wsapp.Settings(loop_lag_warning=value)
