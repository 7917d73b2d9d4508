"""Typed messages: a handler's annotation decides how what arrives is decoded and dispatched.

`str`, `bytes` or `str | bytes` (or no annotation) hand over the frame as it came. Anything
else is JSON, validated by pydantic into that type: a model, `list[int]`, a `TypedDict`, a
discriminated union. Several handlers on one endpoint, each annotated with its own models,
are told apart by a `Literal` field their models share (the discriminator, e.g. `type`);
everything is checked when the handlers are declared, not when the first message arrives.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

from pydantic import BaseModel, Discriminator, Field, TypeAdapter, ValidationError
from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError
from pydantic.fields import FieldInfo
from pydantic_core import to_json

from wsapp.connection import Connection
from wsapp.operations.metrics import Metrics
from wsapp.protocol import CloseCode, Message

__all__ = [
    "DispatchPolicy",
    "Handler",
    "InvalidMessage",
    "MessageDecoder",
    "message_callback",
    "send_reply",
    "union_members",
]

Kind = Literal["raw", "text", "binary", "json"]


class InvalidMessage(Exception):
    """A message that could not be decoded into what its handler accepts.

    Attributes:
        message: The message as it arrived (`str` for text, `bytes` for binary).
        errors: What was wrong, as pydantic reports it: dicts with `type`, `loc` and `msg`.
    """

    def __init__(self, message: Message, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(error["msg"]) for error in errors))
        self.message: Message = message
        self.errors: list[dict[str, Any]] = errors

    @classmethod
    def from_validation(cls, message: Message, error: ValidationError) -> InvalidMessage:
        errors = error.errors(include_url=False, include_input=False, include_context=False)
        return cls(message, [{**e, "loc": list(e["loc"])} for e in errors])

    @classmethod
    def wrong_kind(cls, message: Message, expected: str) -> InvalidMessage:
        got = "text" if isinstance(message, str) else "binary"
        error = {"type": "message_kind", "loc": [], "msg": f"expected {expected}, got {got}"}
        return cls(message, [error])

    def reply(self) -> str:
        """The error reply sent by default: ``{"type": "error", "error": "invalid_message",
        "detail": [...]}``."""
        reply = {"type": "error", "error": "invalid_message", "detail": self.errors}
        return to_json(reply).decode()


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    """How an endpoint runs its `on_message` handlers.

    Attributes:
        concurrency: How many messages of one connection are handled at once. 1 (the
            default) handles them one at a time, in order; more runs up to that many
            handlers concurrently, in no guaranteed order.
        on_invalid: `"reply"` (the default) answers an invalid message with an error reply
            and keeps the connection; `"close"` closes with 1007.
        binary_json: Whether binary messages are decoded as JSON too (text always is).
        on_slow: What a broadcast does to a member whose unsent bytes would pass its
            `outbound_budget`: `"close"` (the default) closes it with 1008, `"drop"` skips
            the message for it.
        on_rate_limit: What a message over a rate limit (`rate_limit_messages`,
            `rate_limit_bytes`) does: `"close"` (the default) closes with 1008, `"drop"`
            drops it and answers with an error reply.
    """

    concurrency: int = 1
    on_invalid: Literal["reply", "close"] = "reply"
    binary_json: bool = False
    on_slow: Literal["close", "drop"] = "close"
    on_rate_limit: Literal["close", "drop"] = "close"

    def __post_init__(self) -> None:
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ValueError(f"concurrency must be an int of at least 1, not {self.concurrency!r}")
        if self.on_invalid not in ("reply", "close"):
            raise ValueError(f"on_invalid must be 'reply' or 'close', not {self.on_invalid!r}")
        for name in ("on_slow", "on_rate_limit"):
            if getattr(self, name) not in ("close", "drop"):
                raise ValueError(f"{name} must be 'close' or 'drop', not {getattr(self, name)!r}")


def _name(function: Callable[..., Any]) -> str:
    return getattr(function, "__qualname__", repr(function))


def _annotations(function: Callable[..., Any]) -> tuple[Any, Any]:
    """The annotations of the message parameter (the last one) and of the return value."""
    signature = inspect.signature(function)
    parameter = list(signature.parameters.values())[-1]
    try:
        hints = typing.get_type_hints(function, include_extras=True)
    except NameError as exc:
        raise TypeError(
            f"cannot resolve the annotations of on_message handler {_name(function)!r}: {exc}; "
            "define the types it uses at module level"
        ) from None
    empty = inspect.Parameter.empty
    return hints.get(parameter.name, empty), hints.get("return", empty)


def union_members(annotation: Any) -> tuple[Any, ...]:
    """The members of a union (``A | B``, ``Annotated[A | B, ...]``), or the type itself."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return (annotation,)


def _is_raw(annotation: Any) -> bool:
    """``str | bytes`` (or ``wsapp.Message``): the frame as it came, text or binary."""
    return set(union_members(annotation)) == {str, bytes}


def _models(annotation: Any) -> tuple[type[BaseModel], ...] | None:
    """The models an annotation accepts, if it is a model or a union of models."""
    members = union_members(annotation)
    if all(isinstance(m, type) and issubclass(m, BaseModel) for m in members):
        return tuple(members)
    return None


def _declared_discriminator(annotation: Any) -> str | None:
    if typing.get_origin(annotation) is not typing.Annotated:
        return None
    for extra in annotation.__metadata__:
        if isinstance(extra, FieldInfo) and isinstance(extra.discriminator, str):
            return extra.discriminator
        if isinstance(extra, Discriminator) and isinstance(extra.discriminator, str):
            return extra.discriminator
    return None


def _literal_fields(model: type[BaseModel]) -> dict[str, tuple[Any, ...]]:
    return {
        name: typing.get_args(field.annotation)
        for name, field in model.model_fields.items()
        if typing.get_origin(field.annotation) is Literal
    }


def _validate_json(adapter: TypeAdapter[Any], message: Message, binary_json: bool) -> Any:
    if isinstance(message, bytes) and not binary_json:
        raise InvalidMessage.wrong_kind(message, "JSON in a text message")
    try:
        return adapter.validate_json(message)
    except ValidationError as error:
        raise InvalidMessage.from_validation(message, error) from None


@dataclass(frozen=True)
class Handler:
    """One declared `on_message` handler and what its annotations say.

    Attributes:
        function: The handler as declared (function form) or the class's method.
        accepts: The annotation of its message parameter.
        returns: Its return annotation (the reply), or `inspect.Parameter.empty`.
        kind: `raw` (str | bytes), `text` (str), `binary` (bytes) or `json` (validated).
        adapter: The pydantic adapter validating its messages (`json` kind only).
        models: The models it accepts, if its annotation is a model or a union of models.
    """

    function: Callable[..., Awaitable[Any]]
    accepts: Any
    returns: Any
    kind: Kind
    adapter: TypeAdapter[Any] | None
    models: tuple[type[BaseModel], ...] | None

    @classmethod
    def declare(cls, function: Callable[..., Awaitable[Any]]) -> Handler:
        accepts, returns = _annotations(function)
        if accepts is inspect.Parameter.empty or accepts is Any or _is_raw(accepts):
            return cls(function, accepts, returns, "raw", None, None)
        if accepts is str or accepts is bytes:
            kind: Kind = "text" if accepts is str else "binary"
            return cls(function, accepts, returns, kind, None, None)
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(accepts)
        except (PydanticSchemaGenerationError, PydanticUserError) as exc:
            raise TypeError(
                f"on_message handler {_name(function)!r} takes {accepts!r}, which pydantic "
                f"cannot decode: {exc}"
            ) from None
        return cls(function, accepts, returns, "json", adapter, _models(accepts))

    def decode(self, message: Message, binary_json: bool) -> Any:
        kind = self.kind
        if kind == "raw":
            return message
        if kind == "text" or kind == "binary":
            if isinstance(message, str) is (kind == "text"):
                return message
            raise InvalidMessage.wrong_kind(message, f"a {kind} message")
        assert self.adapter is not None
        return _validate_json(self.adapter, message, binary_json)


class MessageDecoder:
    """Turns one endpoint's incoming messages into ``(handler index, value)``.

    One handler: its annotation decides. Several: all must take models, told apart by the
    discriminator field; one pydantic validation decodes and picks the handler at once.
    """

    def __init__(self, handlers: Sequence[Handler], binary_json: bool = False) -> None:
        if not handlers:
            raise ValueError("a decoder needs at least one handler")
        self.handlers = tuple(handlers)
        self.binary_json = binary_json
        self.discriminator: str | None = None
        self._routes: dict[Any, int] = {}
        self._union: TypeAdapter[Any] | None = None
        if len(handlers) > 1:
            self._prepare_dispatch()

    def _prepare_dispatch(self) -> None:
        untyped = [_name(h.function) for h in self.handlers if h.models is None]
        if untyped:
            raise TypeError(
                f"several on_message handlers share this endpoint, so each must take a pydantic "
                f"model (or a union of models) to be told apart; {untyped} do not"
            )
        models = [(m, index) for index, h in enumerate(self.handlers) for m in h.models or ()]
        field = self._find_discriminator([m for m, _ in models])
        claimed: dict[Any, tuple[int, type[BaseModel]]] = {}
        for model, index in models:
            tags = _literal_fields(model).get(field, ())
            for tag in tags:
                if tag in claimed and claimed[tag][0] != index:
                    other = self.handlers[claimed[tag][0]]
                    raise TypeError(
                        f"{field}={tag!r} is claimed by both {claimed[tag][1].__name__} (handler "
                        f"{_name(other.function)!r}) and {model.__name__} (handler "
                        f"{_name(self.handlers[index].function)!r}); each tag needs one handler"
                    )
                claimed[tag] = (index, model)
                self._routes[tag] = index
        unique = tuple(dict.fromkeys(m for m, _ in models))
        union = Union[unique] if len(unique) > 1 else unique[0]  # noqa: UP007
        self._union = TypeAdapter(typing.Annotated[union, Field(discriminator=field)])
        self.discriminator = field

    def _find_discriminator(self, models: list[type[BaseModel]]) -> str:
        declared = {
            name for h in self.handlers if (name := _declared_discriminator(h.accepts)) is not None
        }
        if len(declared) > 1:
            raise TypeError(f"the handlers declare different discriminators: {sorted(declared)}")
        common = set.intersection(*(set(_literal_fields(m)) for m in models))
        if declared:
            field = next(iter(declared))
            if field not in common:
                raise TypeError(f"discriminator {field!r} is not a Literal field of every model")
            return field
        if len(common) == 1:
            return next(iter(common))
        if "type" in common:
            return "type"
        names = [m.__name__ for m in models]
        if not common:
            raise TypeError(
                f"the models of this endpoint's on_message handlers ({names}) need a common "
                "Literal field to tell them apart, e.g. `type: Literal['join']`"
            )
        raise TypeError(
            f"the models {names} share several Literal fields {sorted(common)}; name the one "
            "that tells them apart: Annotated[Model, Field(discriminator='...')]"
        )

    def decode(self, message: Message) -> tuple[int, Any]:
        """The index of the handler for ``message`` and the value to pass it.

        Raises:
            InvalidMessage: The message is not what the handlers accept.
        """
        union = self._union
        if union is None:
            return 0, self.handlers[0].decode(message, self.binary_json)
        value = _validate_json(union, message, self.binary_json)
        assert self.discriminator is not None
        return self._routes[getattr(value, self.discriminator)], value


async def send_reply(conn: Connection, value: Any) -> None:
    """Send what a handler returned: models, `str` and `bytes` as `send` does, the rest as JSON."""
    if isinstance(value, (str, bytes, BaseModel)):  # a tuple: cheaper than a union here
        await conn.send(value)
    else:
        await conn.send_json(value)


def message_callback(
    conn: Connection,
    decoder: MessageDecoder,
    calls: Sequence[Callable[[Any], Awaitable[Any]]],
    on_invalid: Callable[[InvalidMessage], Awaitable[Any]] | None,
    policy: DispatchPolicy,
    metrics: Metrics,
) -> Callable[[Message], Awaitable[None]]:
    """The `on_message` of one connection: decode, call the handler, send what it returns.

    An invalid message is answered by ``on_invalid`` if declared, else by the policy; once
    `max_invalid_messages` arrive in a row, the connection closes with 1008 regardless.
    """
    handlers = decoder.handlers
    if len(calls) == 1 and handlers[0].kind == "raw" and handlers[0].returns is type(None):
        return calls[0]  # nothing to decode, nothing to reply: the plain path, untouched
    decode = decoder.decode
    invalid_in_a_row = 0

    async def on_message(message: Message) -> None:
        nonlocal invalid_in_a_row
        try:
            index, value = decode(message)
        except InvalidMessage as invalid:
            metrics.invalid_messages += 1
            invalid_in_a_row += 1
            await _refuse(invalid, invalid_in_a_row)
            return
        invalid_in_a_row = 0
        result = await calls[index](value)
        if result is not None:
            await send_reply(conn, result)

    async def _refuse(invalid: InvalidMessage, in_a_row: int) -> None:
        limit = conn.settings.max_invalid_messages
        if limit is not None and in_a_row >= limit:
            await conn.close(CloseCode.POLICY_VIOLATION, f"{in_a_row} invalid messages in a row")
        elif on_invalid is not None:
            result = await on_invalid(invalid)
            if result is not None:
                await send_reply(conn, result)
        elif policy.on_invalid == "close":
            await conn.close(CloseCode.INVALID_DATA, "invalid message")
        else:
            await conn.send(invalid.reply())

    return on_message
