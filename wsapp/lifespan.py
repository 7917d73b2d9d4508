"""Start-up and shutdown hooks, and background tasks: what an app opens before its first
connection, runs beside its connections, and closes after its last, run the same way by
every transport (built-in server, ASGI host, test client).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from wsapp.endpoint import as_async
from wsapp.log import logger
from wsapp.tasks import tasks_for_block

__all__ = ["Lifespan", "LifespanError"]


class LifespanError(RuntimeError):
    """A start-up or shutdown hook raised; the message names the hook and its error.

    A failed start-up means the app must not serve: the built-in server exits with code 1,
    an ASGI host reports `lifespan.startup.failed` and stops.
    """


def _name(hook: Callable[..., Any]) -> str:
    return getattr(hook, "__qualname__", repr(hook))


class Lifespan:
    """The ordered start-up and shutdown hooks of one app."""

    def __init__(self) -> None:
        self._startup: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        self._shutdown: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        self._background: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        #: Whether the start-up hooks have run (and the shutdown hooks not yet).
        self.started = False

    @property
    def needs_startup(self) -> bool:
        """Start-up hooks are declared and have not run."""
        return bool(self._startup) and not self.started

    def add(self, phase: str, hook: Callable[[], Any]) -> None:
        """Declare a hook for ``phase`` (``startup``, ``shutdown`` or ``background``),
        checked now, not at start."""
        if not callable(hook):
            raise TypeError(f"on_{phase} takes a function, not {type(hook).__name__}")
        try:
            inspect.signature(hook).bind()
        except TypeError:
            raise TypeError(
                f"on_{phase} hook {_name(hook)!r} must take no arguments; "
                "reach shared resources through app.state"
            ) from None
        except ValueError:  # no signature available (some builtins): trust the user
            pass
        if phase == "background" and not inspect.iscoroutinefunction(hook):
            raise TypeError(f"background task {_name(hook)!r} must be an async def")
        hooks = {"startup": self._startup, "shutdown": self._shutdown}.get(phase, self._background)
        hooks.append((_name(hook), as_async(hook)))

    async def startup(self) -> None:
        """Run the start-up hooks in declaration order; the first failure stops the rest."""
        for name, hook in self._startup:
            try:
                await hook()
            except Exception as exc:
                logger.exception("start-up hook %s failed", name)
                raise LifespanError(
                    f"start-up hook {name!r} failed: {type(exc).__name__}: {exc}"
                ) from exc
        self.started = True

    async def shutdown(self) -> None:
        """Run every shutdown hook in declaration order, even after one fails.

        Each hook releases its own resource, so one failure must not leak the others'.
        """
        self.started = False
        failed: list[str] = []
        for name, hook in self._shutdown:
            try:
                await hook()
            except Exception:
                logger.exception("shutdown hook %s failed", name)
                failed.append(name)
        if failed:
            raise LifespanError(f"shutdown hook(s) {failed!r} failed (tracebacks logged above)")

    @asynccontextmanager
    async def background(self) -> AsyncIterator[None]:
        """The background tasks, running for the duration of the block, then cancelled."""
        async with tasks_for_block() as tg:
            for name, task in self._background:
                tg.start_soon(self._run_background, name, task)
            yield

    @staticmethod
    async def _run_background(name: str, task: Callable[[], Awaitable[Any]]) -> None:
        try:
            await task()
        except Exception:
            # The connections are still served; the task is gone, and the log says why.
            logger.exception("background task %s failed; it is not restarted", name)
