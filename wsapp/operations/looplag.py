"""The event-loop lag warning: a handler that blocks the loop is named before keepalive fails.

Every connection of a process shares one event loop. A callback that blocks it (a
synchronous database call inside `async def`, a CPU-heavy loop) stops every connection's
reads, writes and pings at once; held longer than `pong_timeout`, the blocked pings and
pongs close connections with 1011 ("keepalive ping timeout"), and the log says nothing of
the cause. So a watcher sleeps a short, fixed tick and measures how late it wakes: that
lateness is the time the loop was blocked, and past `loop_lag_warning` it is logged.
"""

from __future__ import annotations

import anyio

from wsapp.log import RateLimitedLog
from wsapp.operations.metrics import Histogram
from wsapp.settings import Settings

__all__ = ["TICK", "watch_loop_lag"]

#: Seconds between the watcher's wake-ups: short enough to see sub-second blocks, long
#: enough to cost nothing (four wake-ups a second per process).
TICK = 0.25

DOCS = "docs/lifecycle.md, 'Keepalive and blocking the loop'"


async def watch_loop_lag(settings: Settings, lags: Histogram) -> None:
    """Observe every wake-up's lag into ``lags``, and warn whenever the loop wakes the
    watcher `loop_lag_warning` seconds or more late (read live; `None` stops the warnings).
    Runs until cancelled."""
    log = RateLimitedLog()
    while True:
        asleep = anyio.current_time()
        await anyio.sleep(TICK)
        lag = max(0.0, anyio.current_time() - asleep - TICK)
        lags.observe(lag)
        threshold = settings.loop_lag_warning
        if threshold is not None and lag >= threshold:
            log.warning(
                "the event loop was blocked for %.2fs: a callback ran blocking code inside "
                "async def (connections time out with 1011 once a block outlasts "
                "pong_timeout, %ss); run it with anyio.to_thread.run_sync or make the "
                "callback a plain def (see %s)",
                lag,
                settings.pong_timeout,
                DOCS,
            )
