"""The four callbacks, in function or class form, bound to one connection.

Whatever form the user wrote, binding yields a :class:`Callbacks`: async callables that take
only their event's arguments, so the lifecycle has one call path and no per-message lookups.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.to_thread

from wsapp.connection import Connection, Message
from wsapp.request import Request

__all__ = ["Callbacks", "Connector", "ConnectorEndpoint", "Endpoint", "FunctionEndpoint"]

F = TypeVar("F", bound=Callable[..., Any])

#: The parameters each callback is called with, in function form.
SIGNATURES = {
    "on_connect": ("conn", "request"),
    "on_open": ("conn",),
    "on_message": ("conn", "message"),
    "on_close": ("conn", "was_clean", "code", "reason"),
}


@dataclass(frozen=True, slots=True)
class Callbacks:
    """The callbacks of one connection, bound to it; ``on_message`` None means reading form."""

    on_connect: Callable[[Request], Awaitable[None]]
    on_open: Callable[[], Awaitable[None]]
    on_message: Callable[[Message], Awaitable[None]] | None
    on_close: Callable[[bool, int, str], Awaitable[None]]


async def _noop(*args: object) -> None:
    return None


def as_async(function: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """``function`` itself if it is async; else a wrapper running it in a worker thread.

    Plain ``def`` callbacks run in anyio's thread pool so that a blocking call in them (a
    database driver, a file read) cannot stall every other connection.
    """
    if inspect.iscoroutinefunction(function):
        return function

    @functools.wraps(function)
    async def in_thread(*args: Any) -> Any:
        return await anyio.to_thread.run_sync(function, *args)

    return in_thread


def check_signature(name: str, function: Callable[..., Any]) -> None:
    """Fail at declaration, not at the first connection, when a callback has the wrong shape.

    A method's ``self`` takes the place of the function form's ``conn``, so one check fits both.
    """
    params = SIGNATURES[name]
    if not callable(function):
        raise TypeError(f"{name} must be a function, not {type(function).__name__}")
    try:
        inspect.signature(function).bind(*params)
    except TypeError:
        expected = ", ".join(params)
        raise TypeError(
            f"{name} handler {getattr(function, '__qualname__', function)!r} must accept "
            f"({expected})"
        ) from None
    except ValueError:  # no signature available (some builtins): trust the user
        pass


class Endpoint:
    """Something that yields the callbacks of a new connection."""

    def bind(self, conn: Connection) -> Callbacks:
        """The callbacks for ``conn``."""
        raise NotImplementedError


class FunctionEndpoint(Endpoint):
    """Callbacks declared with decorators (``@app.on_message`` and friends)."""

    def __init__(self) -> None:
        self.functions: dict[str, Callable[..., Awaitable[None]]] = {}

    def declare(self, name: str, function: F) -> F:
        check_signature(name, function)
        if name in self.functions:
            raise ValueError(
                f"{name} is already declared (by {self.functions[name].__qualname__}); "
                "an endpoint has one of each callback"
            )
        self.functions[name] = as_async(function)
        return function

    def bind(self, conn: Connection) -> Callbacks:
        get = self.functions.get
        on_message = get("on_message")
        return Callbacks(
            on_connect=functools.partial(get("on_connect", _noop), conn),
            on_open=functools.partial(get("on_open", _noop), conn),
            on_message=None if on_message is None else functools.partial(on_message, conn),
            on_close=functools.partial(get("on_close", _noop), conn),
        )


class Connector:
    """Base class for the class form: override only the callbacks you need.

    A new instance is made for every connection, so instance attributes are per-connection
    state. `self.conn` is the [Connection][wsapp.Connection] (set before `on_connect`).
    Leave `on_message` out to use the reading form: read with `self.conn` in `on_open`.
    """

    conn: Connection

    async def on_connect(self, request: Request) -> None:
        """Before the upgrade: raise [Reject][wsapp.Reject] to refuse, set headers..."""

    async def on_open(self) -> None:
        """After the upgrade, before any message."""

    async def on_message(self, message: Message) -> None:
        """Once per complete message, in order."""

    async def on_close(self, was_clean: bool, code: int, reason: str) -> None:
        """Exactly once, however the connection ended."""


class ConnectorEndpoint(Endpoint):
    """A [Connector][wsapp.Connector] subclass, instantiated per connection."""

    def __init__(self, cls: type[Connector]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise TypeError(f"route() takes a wsapp.Connector subclass, not {cls!r}")
        for name in SIGNATURES:
            check_signature(name, getattr(cls, name))
        self.cls = cls
        self.reading_form = cls.on_message is Connector.on_message

    def bind(self, conn: Connection) -> Callbacks:
        instance = self.cls()
        instance.conn = conn
        return Callbacks(
            on_connect=as_async(instance.on_connect),
            on_open=as_async(instance.on_open),
            on_message=None if self.reading_form else as_async(instance.on_message),
            on_close=as_async(instance.on_close),
        )
