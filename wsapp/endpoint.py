"""The four callbacks, in function or class form, bound to one connection.

Whatever form the user wrote, binding yields a :class:`Callbacks`: async callables that take
only their event's arguments, so the lifecycle has one call path and no per-message lookups.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import MethodType
from typing import Any, ClassVar, TypeVar

import anyio.to_thread
from pydantic import BaseModel

from wsapp.connection import Connection
from wsapp.messages import DispatchPolicy, Handler, InvalidMessage, MessageDecoder, message_callback
from wsapp.operations.metrics import Metrics
from wsapp.protocol import Message
from wsapp.query import checked_query_model
from wsapp.request import Request

__all__ = [
    "CallbackDecorators",
    "Callbacks",
    "Connector",
    "ConnectorEndpoint",
    "Declared",
    "Endpoint",
    "FunctionEndpoint",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The parameters each callback is called with, in function form.
SIGNATURES = {
    "on_connect": ("conn", "request"),
    "on_open": ("conn",),
    "on_message": ("conn", "message"),
    "on_invalid": ("conn", "error"),
    "on_close": ("conn", "was_clean", "code", "reason"),
    "on_join": ("conn", "room", "params"),
}
#: The callbacks of one connection (a Connector's methods); `on_join` is the app's.
CONNECTION_CALLBACKS = ("on_connect", "on_open", "on_message", "on_invalid", "on_close")


@dataclass(frozen=True, slots=True)
class Declared:
    """The `on_connect`, `on_open` and `on_close` of an endpoint, as async functions that
    take their subject first: the connection (function form) or the Connector instance."""

    on_connect: Callable[..., Awaitable[None]]
    on_open: Callable[..., Awaitable[None]]
    on_close: Callable[..., Awaitable[None]]
    # Whether each was declared: one that was not does nothing, and need not be run (nor
    # given a task, a deadline or a shield).
    connects: bool
    opens: bool
    closes: bool


class Callbacks:
    """The callbacks of one connection, bound to it; ``on_message`` None means reading form.

    ``on_message`` takes the message as it arrived: decoding, dispatch to the right handler
    and replies happen inside it. ``concurrency`` is how many may run at once. The other
    callbacks are the endpoint's, called with their subject: binding them one by one would
    cost every open connection a few hundred bytes.
    """

    __slots__ = ("_declared", "_subject", "concurrency", "on_message")

    def __init__(
        self,
        declared: Declared,
        subject: object,
        on_message: Callable[[Message], Awaitable[None]] | None,
        concurrency: int = 1,
    ) -> None:
        self._declared = declared
        self._subject = subject
        self.on_message = on_message
        self.concurrency = concurrency

    def on_connect(self, request: Request) -> Awaitable[None]:
        return self._declared.on_connect(self._subject, request)

    @property
    def connects(self) -> bool:
        """Whether `on_connect` does anything (it was declared)."""
        return self._declared.connects

    def on_open(self) -> Awaitable[None]:
        return self._declared.on_open(self._subject)

    @property
    def opens(self) -> bool:
        """Whether `on_open` does anything (it was declared)."""
        return self._declared.opens

    def on_close(self, was_clean: bool, code: int, reason: str) -> Awaitable[None]:
        return self._declared.on_close(self._subject, was_clean, code, reason)

    @property
    def closes(self) -> bool:
        """Whether `on_close` does anything (it was declared)."""
        return self._declared.closes


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
    """Something that yields the callbacks of a new connection.

    Attributes:
        policy: How its `on_message` handlers are run.
        decoder: Its `on_message` handlers and how messages reach them; None in the
            reading form.
        sends: The models it declares it sends besides replies.
    """

    policy: DispatchPolicy
    decoder: MessageDecoder | None
    #: Models the endpoint sends outside replies (broadcasts...), for the AsyncAPI document.
    sends: tuple[type[BaseModel], ...] = ()
    #: The model its query string is validated into at the handshake, if it declares one.
    query: type[BaseModel] | None = None

    @property
    def invalid_callback(self) -> Callable[..., Any] | None:
        """The `on_invalid` callback as declared, or None when the policy answers."""
        return None

    def bind(self, conn: Connection, metrics: Metrics) -> Callbacks:
        """The callbacks for ``conn`` (invalid messages are counted in ``metrics``)."""
        raise NotImplementedError


class FunctionEndpoint(Endpoint):
    """Callbacks declared with decorators (``@app.on_message`` and friends).

    Several ``on_message`` handlers may be declared, each taking its own message models; the
    other callbacks are declared at most once.
    """

    def __init__(self, policy: DispatchPolicy | None = None) -> None:
        self.policy = policy or DispatchPolicy()
        self.functions: dict[str, Callable[..., Awaitable[Any]]] = {}
        self.decoder: MessageDecoder | None = None
        self._handler_calls: list[Callable[..., Awaitable[Any]]] = []
        self._declared = Declared(_noop, _noop, _noop, connects=False, opens=False, closes=False)

    def declare_sends(self, models: tuple[type[BaseModel], ...]) -> None:
        self.sends = (*self.sends, *checked_models(models))

    def declare_query(self, model: type[BaseModel]) -> None:
        if self.query is not None:
            raise ValueError(
                f"the query is already declared (as {self.query.__qualname__}); an endpoint "
                "has one query model"
            )
        self.query = checked_query_model(model)

    def declare(self, name: str, function: F) -> F:
        check_signature(name, function)
        if name == "on_message":
            handlers = [*(self.decoder.handlers if self.decoder else ()), Handler.declare(function)]
            self.decoder = MessageDecoder(handlers, self.policy.binary_json)  # checks them all
            self._handler_calls.append(as_async(function))
            return function
        if name in self.functions:
            raise ValueError(
                f"{name} is already declared (by {self.functions[name].__qualname__}); "
                "an endpoint has one of each callback"
            )
        self.functions[name] = as_async(function)
        get = self.functions.get
        self._declared = Declared(
            get("on_connect", _noop),
            get("on_open", _noop),
            get("on_close", _noop),
            connects="on_connect" in self.functions,
            opens="on_open" in self.functions,
            closes="on_close" in self.functions,
        )
        return function

    @property
    def declared(self) -> bool:
        """Whether any callback is declared."""
        return bool(self.functions) or self.decoder is not None

    @property
    def invalid_callback(self) -> Callable[..., Any] | None:
        declared = self.functions.get("on_invalid")
        return None if declared is None else inspect.unwrap(declared)

    def bind(self, conn: Connection, metrics: Metrics) -> Callbacks:
        get = self.functions.get
        on_invalid = get("on_invalid")
        on_message = None
        if self.decoder is not None:
            on_message = message_callback(
                conn,
                self.decoder,
                # Methods of the connection, not partials: a third of the size, kept by
                # every open connection, and called as fast.
                [MethodType(call, conn) for call in self._handler_calls],
                None if on_invalid is None else MethodType(on_invalid, conn),
                self.policy,
                metrics,
            )
        return Callbacks(self._declared, conn, on_message, self.policy.concurrency)


def checked_models(models: tuple[Any, ...]) -> tuple[type[BaseModel], ...]:
    """``models``, if every one is a pydantic model class."""
    for model in models:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"sends() takes pydantic model classes, not {model!r}")
    return models


class CallbackDecorators:
    """The callback decorators of the function form, on [App][wsapp.App] (for every path no
    route claims) and on [RouteHandlers][wsapp.RouteHandlers] (for one route)."""

    def _declare(self, name: str, function: F) -> F:
        raise NotImplementedError

    def _functions_endpoint(self) -> FunctionEndpoint:
        raise NotImplementedError

    def sends(self, *models: type[BaseModel]) -> None:
        """Declare the models this endpoint sends besides replies (what it broadcasts to its
        rooms, notifications), so that the AsyncAPI document lists them as messages the
        server sends. A Connector declares them as its `sends` class attribute."""
        self._functions_endpoint().declare_sends(models)

    def query(self, model: type[BaseModel]) -> None:
        """Declare this endpoint's query parameters as a pydantic model: the handshake
        validates the query string into it, before `on_connect` (a query that does not fit
        is refused with 400, saying what is wrong), callbacks read the result as
        `conn.query`, and the AsyncAPI document lists it. A key repeated in the query gives
        a list field all its values, any other field the last one. A Connector declares it
        as its `query` class attribute."""
        self._functions_endpoint().declare_query(model)

    def on_connect(self, function: F) -> F:
        """Declare `on_connect(conn, request)`: runs before the upgrade.

        Raise [Reject][wsapp.Reject] to refuse; set `conn.response_headers`,
        `conn.subprotocol` or `conn.settings` to shape the connection.
        """
        return self._declare("on_connect", function)

    def on_open(self, function: F) -> F:
        """Declare `on_open(conn)`: runs once after the upgrade, before any message."""
        return self._declare("on_open", function)

    def on_message(self, function: F) -> F:
        """Declare `on_message(conn, message)`: runs once per complete message, in order.

        The annotation of `message` decides what it receives: `str | bytes` the message as
        it came, a pydantic model (or `list[int]`, a `TypedDict`...) the message decoded from
        JSON and validated. Declare several, each taking its own models, to have messages
        dispatched by their `type` (a `Literal` field the models share). A returned value is
        sent as the reply.
        """
        return self._declare("on_message", function)

    def on_invalid(self, function: F) -> F:
        """Declare `on_invalid(conn, error)`: answers a message that did not decode.

        `error` is an [InvalidMessage][wsapp.InvalidMessage]; a returned value is sent as
        the reply, and the callback may close the connection.
        """
        return self._declare("on_invalid", function)

    def on_close(self, function: F) -> F:
        """Declare `on_close(conn, was_clean, code, reason)`: runs exactly once per opened
        connection, however it ended."""
        return self._declare("on_close", function)


class Connector:
    """Base class for the class form: override only the callbacks you need.

    A new instance is made for every connection, so instance attributes are per-connection
    state. `self.conn` is the [Connection][wsapp.Connection] (set before `on_connect`).
    Leave `on_message` out to use the reading form: read with `self.conn` in `on_open`.
    """

    conn: Connection
    #: Models this endpoint sends besides replies (for the AsyncAPI document).
    sends: ClassVar[tuple[type[BaseModel], ...]] = ()
    #: The model of its query parameters, validated at the handshake into `conn.query`.
    query: ClassVar[type[BaseModel] | None] = None

    async def on_connect(self, request: Request) -> None:
        """Before the upgrade: raise [Reject][wsapp.Reject] to refuse, set headers..."""

    async def on_open(self) -> None:
        """After the upgrade, before any message."""

    async def on_message(self, message: Any) -> Any:
        """Once per complete message, in order. Annotate ``message`` with a pydantic model
        (or another type) to receive it decoded; a returned value is sent as the reply."""

    async def on_invalid(self, error: InvalidMessage) -> Any:
        """A message did not decode into what `on_message` takes. Not overridden: the
        route's `on_invalid` policy answers. A returned value is sent as the reply."""

    async def on_close(self, was_clean: bool, code: int, reason: str) -> None:
        """Exactly once, however the connection ended."""


class ConnectorEndpoint(Endpoint):
    """A [Connector][wsapp.Connector] subclass, instantiated per connection."""

    def __init__(self, cls: type[Connector], policy: DispatchPolicy | None = None) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise TypeError(f"route() takes a wsapp.Connector subclass, not {cls!r}")
        for name in CONNECTION_CALLBACKS:
            check_signature(name, getattr(cls, name))
        self.cls = cls
        self.policy = policy or DispatchPolicy()
        self.decoder = (
            None
            if cls.on_message is Connector.on_message  # the reading form
            else MessageDecoder([Handler.declare(cls.on_message)], self.policy.binary_json)
        )
        self.custom_invalid = cls.on_invalid is not Connector.on_invalid
        self.sends = checked_models(tuple(cls.sends))
        self.query = None if cls.query is None else checked_query_model(cls.query)
        self._declared = Declared(
            as_async(cls.on_connect),
            as_async(cls.on_open),
            as_async(cls.on_close),
            connects=cls.on_connect is not Connector.on_connect,
            opens=cls.on_open is not Connector.on_open,
            closes=cls.on_close is not Connector.on_close,
        )

    @property
    def invalid_callback(self) -> Callable[..., Any] | None:
        return self.cls.on_invalid if self.custom_invalid else None

    def bind(self, conn: Connection, metrics: Metrics) -> Callbacks:
        instance = self.cls()
        instance.conn = conn
        on_message = None
        if self.decoder is not None:
            on_message = message_callback(
                conn,
                self.decoder,
                [as_async(instance.on_message)],
                as_async(instance.on_invalid) if self.custom_invalid else None,
                self.policy,
                metrics,
            )
        return Callbacks(self._declared, instance, on_message, self.policy.concurrency)
