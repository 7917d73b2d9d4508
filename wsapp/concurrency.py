"""Concurrency primitives at the price the per-message path can pay."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio

__all__ = ["Signal", "running_asyncio", "signal_factory"]


class Signal(Protocol):
    """A one-shot event: `wait` until some task calls `set`."""

    def set(self) -> None: ...

    def wait(self) -> Awaitable[object]: ...


def running_asyncio() -> bool:
    """Whether the calling code runs in an asyncio event loop (uvloop's included)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def signal_factory() -> Callable[[], Signal]:
    """What makes the cheapest event of the running async library: asyncio's own `Event` on
    asyncio (which anyio's wraps), anyio's Event class of the library elsewhere (Trio).

    ``anyio.Event()`` looks the running library up on every call, which costs as much as the
    event itself, and then waits through a wrapper: together a third of what handing a message
    from one task to another costs on asyncio, paid per message. Call this once, in the loop
    that will use the signals. Unlike anyio's, asyncio's `wait` on a signal already set returns
    without letting other tasks run (no checkpoint).
    """
    if running_asyncio():
        return asyncio.Event
    return type(anyio.Event())
