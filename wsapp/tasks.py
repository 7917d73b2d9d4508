"""Background tasks that belong to a block of code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import TaskGroup

__all__ = ["tasks_for_block"]


@asynccontextmanager
async def tasks_for_block() -> AsyncIterator[TaskGroup]:
    """A task group for tasks that live exactly as long as the block: they are cancelled
    when it ends, and an exception from the block comes out as itself, not wrapped in an
    ExceptionGroup (which is what a task group around a ``yield`` would raise)."""
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        try:
            yield tg
        except Exception as exc:
            failure = exc
        finally:
            tg.cancel_scope.cancel()
    if failure is not None:
        raise failure
