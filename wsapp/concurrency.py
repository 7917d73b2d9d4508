"""Concurrency primitives at the price the per-message path (and the per-connection
memory) can pay."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

import anyio

if TYPE_CHECKING:
    import trio  # the [trio] extra

__all__ = ["Nursery", "Signal", "open_nursery", "running_asyncio", "signal_factory"]

logger = logging.getLogger("wsapp")


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


class Deadline(Protocol):
    """A cancel scope, as the owner of a nursery handles it."""

    deadline: float

    def cancel(self) -> None: ...


class Nursery(Protocol):
    """Where a server starts a task per connection: an anyio task group's `start_soon` and
    `cancel_scope`, without the task handle anyio (4.14 and later) makes for every task."""

    @property
    def cancel_scope(self) -> Deadline: ...

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, None]], *args: object) -> None:
        """Start ``func(*args)``, which must not raise (what it raises is logged)."""


@asynccontextmanager
async def open_nursery() -> AsyncIterator[Nursery]:
    """A nursery for tasks such as one per connection: on exit it waits for them all;
    cancelling its scope (or its deadline passing) cancels them, as anyio's task group does,
    shielded sections included. What a task raises is logged, and ends that task only.

    Why not anyio's task group: from anyio 4.14 on, each task it starts carries a task handle
    with its own cancel scope and event, about 1.8 KiB, which an open connection would hold
    for its whole life (a sixth of what it costs). On Trio this is Trio's own nursery; on
    asyncio, a cancel scope per task, which anyio cancels as it cancels its own tasks.
    """
    if running_asyncio():
        nursery = _AsyncioNursery()
        with nursery.cancel_scope:
            try:
                yield nursery
            finally:
                await nursery.wait()
    else:
        import trio

        async with trio.open_nursery() as trio_nursery:
            yield _TrioNursery(trio_nursery)


def _task_failed() -> None:
    # Nothing a task raises may reach the server that owns it (and its other connections).
    logger.exception("a task of the server failed")


class _TrioNursery:
    __slots__ = ("_nursery",)

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    @property
    def cancel_scope(self) -> Deadline:
        return self._nursery.cancel_scope

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, None]], *args: object) -> None:
        self._nursery.start_soon(self._run, func(*args))

    @staticmethod
    async def _run(work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except Exception:
            _task_failed()


class _AsyncioNursery:
    __slots__ = ("_running", "cancel_scope")

    def __init__(self) -> None:
        self.cancel_scope = anyio.CancelScope()
        # Each running task and the scope it runs in, which `wait` cancels.
        self._running: dict[asyncio.Task[None], anyio.CancelScope] = {}

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, None]], *args: object) -> None:
        scope = anyio.CancelScope()
        task = asyncio.get_running_loop().create_task(self._run(scope, func(*args)))
        self._running[task] = scope
        task.add_done_callback(self._running.pop)

    @staticmethod
    async def _run(scope: anyio.CancelScope, work: Coroutine[Any, Any, None]) -> None:
        with scope:
            try:
                await work
            except Exception:
                _task_failed()

    async def wait(self) -> None:
        """Until every task has ended; cancelled meanwhile (the nursery's scope), cancel them,
        wait for them still (they may have shielded work to finish), then re-raise."""
        running = self._running
        try:
            while running:
                await asyncio.wait(list(running))
        except BaseException:
            for scope in list(running.values()):
                scope.cancel()
            with anyio.CancelScope(shield=True):
                while running:
                    await asyncio.wait(list(running))
            raise
