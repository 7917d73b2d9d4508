"""AsyncAPI 3.0 documents of an App, made from its routes and its handlers' annotations.

Each endpoint (a route, or the App's own callbacks for every other path) is one channel: a
client opens a WebSocket connection at the channel's address and exchanges messages on it.
Each `on_message` handler is one `receive` operation, whose messages come from the annotation
of its message parameter; what it returns is the operation's `reply`. Message payloads are
pydantic's JSON Schemas, with the models under `components/schemas`.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Union
from urllib.parse import urlsplit

from pydantic import BaseModel, TypeAdapter
from pydantic.errors import PydanticUserError
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from wsapp.endpoint import ConnectorEndpoint, Endpoint
from wsapp.messages import Handler, union_members
from wsapp.routing import Route

if TYPE_CHECKING:
    from wsapp.app import App

__all__ = ["ASYNCAPI_VERSION", "asyncapi_document"]

#: The version of the AsyncAPI specification the documents follow.
ASYNCAPI_VERSION = "3.0.0"

Mode = Literal["validation", "serialization"]

_REF_TEMPLATE = "#/components/schemas/{model}"
_REF_PREFIX = _REF_TEMPLATE.removesuffix("{model}")

#: What each path converter matches, for the description of a channel parameter.
_CONVERTERS = {
    "str": "one path segment (anything but `/`), passed as `str`",
    "int": "digits, converted to `int`",
    "float": "a decimal number such as `2.5`, converted to `float`",
    "uuid": "a UUID such as `8c5f2f4e-0f6a-4b8e-9d7e-3b1f7a2c9d10`, converted to `uuid.UUID`",
    "path": "the rest of the path, slashes included, passed as `str`",
}

_TEXT = {
    "name": "text",
    "title": "Text message",
    "summary": "Any text message, as it arrived.",
    "contentType": "text/plain",
    "payload": {"type": "string"},
}
_BINARY = {
    "name": "binary",
    "title": "Binary message",
    "summary": "Any binary message, as it arrived.",
    "contentType": "application/octet-stream",
    "payload": {"type": "string", "format": "binary"},
}
#: The error reply of the default invalid-message policy (`InvalidMessage.reply`).
_INVALID_MESSAGE = {
    "name": "invalid_message",
    "title": "Invalid message",
    "summary": "The reply to a message that does not decode into what its handler takes.",
    "description": "`detail` is pydantic's list of validation errors, without the input. A "
    "binary message where text is expected (or the reverse) reports `message_kind`. "
    "After `max_invalid_messages` invalid messages in a row the server closes with 1008.",
    "payload": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "const": "error"},
            "error": {"type": "string", "const": "invalid_message"},
            "detail": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "description": "The kind of error."},
                        "loc": {
                            "type": "array",
                            "items": {"type": ["string", "integer"]},
                            "description": "Where in the message: field names, list indexes.",
                        },
                        "msg": {"type": "string", "description": "What is wrong, in English."},
                    },
                    "required": ["type", "loc", "msg"],
                },
            },
        },
        "required": ["type", "error", "detail"],
    },
}


#: The error reply of the `"drop"` rate-limit policy (`RateLimited.reply`).
_RATE_LIMITED = {
    "name": "rate_limited",
    "title": "Rate limited",
    "summary": "The reply to a run of messages over a rate limit, which were dropped.",
    "description": "Sent once per run of messages over `rate_limit_messages` or "
    "`rate_limit_bytes` (until one is let through again); the dropped messages never reach "
    "a handler.",
    "payload": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "const": "error"},
            "error": {"type": "string", "const": "rate_limited"},
            "detail": {
                "type": "string",
                "description": "Which limit, e.g. `more than 10 messages per second`.",
            },
            "dropped": {
                "type": "integer",
                "minimum": 1,
                "description": "How many messages of the run were dropped when it was sent.",
            },
            "retry_after": {
                "type": "number",
                "minimum": 0,
                "description": "Seconds until the client may send again.",
            },
        },
        "required": ["type", "error", "detail", "dropped", "retry_after"],
    },
}


def asyncapi_document(
    app: App,
    *,
    title: str | None = None,
    version: str = "1.0.0",
    server_url: str | None = None,
    subprotocols: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document describing ``app``, as JSON-compatible data.

    One channel per route, in declaration order, then one for the App's own callbacks
    (address null: any path no route claims). Each `on_message` handler is a `receive`
    operation with a `reply` when its return annotation names what it sends back, or when
    invalid messages get the default error reply.

    Args:
        app: The application to describe.
        title: The document's title (`info.title`); "wsapp application" by default.
        version: The version of *your* API (`info.version`), not of AsyncAPI.
        server_url: Where clients connect, e.g. `wss://chat.example.com` (a path is
            the prefix the app is mounted under); omitted from the document by default.
        subprotocols: The subprotocols to document; `app.settings.subprotocols` by default.

    Returns:
        The document: dump it with `json.dumps` or `yaml.safe_dump`.

    Raises:
        ValueError: ``server_url`` is not a `ws://` or `wss://` URL.
    """
    protocols = list(app.settings.subprotocols if subprotocols is None else subprotocols)
    schemas = _Schemas()
    keys = _Keys()
    router = app.router
    fallback_key = keys.claim("default") if router.fallback is not None else None
    plans = [
        _plan_endpoint(
            route.target,
            keys.claim(_slug(re.sub(r"[{}]", "", route.address).replace("/", "_")) or "root"),
            route.address,
            _parameters(route),
            schemas,
        )
        for route in router.routes
    ]
    if router.fallback is not None and fallback_key is not None:
        plans.append(_plan_endpoint(router.fallback, fallback_key, None, {}, schemas))
    schemas.generate()
    for plan in plans:
        if plan.query is not None:
            plan.query_schema = schemas.inline(plan.query)
        for operation in plan.operations:
            for message in operation.receives + operation.replies:
                if message.schema is not None:
                    schemas.fill(message)

    messages: dict[str, dict[str, Any]] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for plan in plans:
        channel, channel_operations = _build_channel(plan, protocols, messages, operations)
        channels[plan.key] = channel
        operations.update(channel_operations)

    info: dict[str, Any] = {
        "title": title or "wsapp application",
        "version": version,
        "description": _info_description(protocols),
    }
    document: dict[str, Any] = {"asyncapi": ASYNCAPI_VERSION, "info": info}
    if server_url is not None:
        document["servers"] = {"default": _server(server_url)}
    document["defaultContentType"] = "application/json"
    document["channels"] = channels
    document["operations"] = operations
    components: dict[str, Any] = {}
    if schemas.definitions:
        components["schemas"] = schemas.definitions
    if messages:
        components["messages"] = messages
    if components:
        document["components"] = components
    # Plain data with nothing shared: YAML dumps it without anchors and aliases.
    result: dict[str, Any] = json.loads(json.dumps(document))
    return result


# -- Planning: what each endpoint receives and replies, before the schemas exist ------------


@dataclass
class _Message:
    """A message to document; its payload is known now or once the schemas are generated."""

    key: str
    fields: dict[str, Any]
    schema: int | None = None  # an index into _Schemas, for JSON payloads


@dataclass
class _Operation:
    key: str
    handler: str
    description: list[str]
    receives: list[_Message]
    replies: list[_Message]
    action: Literal["receive", "send"] = "receive"


@dataclass
class _Plan:
    key: str
    address: str | None
    parameters: dict[str, Any]
    title: str
    description: list[str]
    operations: list[_Operation] = field(default_factory=list)
    query: int | None = None  # the query model's schema request, if the endpoint declares one
    query_schema: dict[str, Any] | None = None


class _Keys:
    """Hands out keys unique within one map, made of the characters AsyncAPI allows."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def claim(self, wanted: str) -> str:
        base = _slug(wanted) or "message"
        key, n = base, 2
        while key in self.used:
            key, n = f"{base}_{n}", n + 1
        self.used.add(key)
        return key


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", text).strip("_")


def _parameters(route: Route[Endpoint]) -> dict[str, Any]:
    parameters = {}
    for name, kind in route.kinds.items():
        what = _CONVERTERS.get(kind, f"converted by `{kind}`")
        parameters[name] = {
            "description": f"`{kind}`: {what}; the handler reads it as "
            f'`conn.request.path_params["{name}"]`.'
        }
    return parameters


class _Schemas:
    """Collects the types to describe, then has pydantic generate all their schemas at once.

    One generation names every model consistently (two models called `Item` in different
    modules get different names) and puts each definition in `components/schemas` once.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[TypeAdapter[Any] | None, Mode]] = []
        self.results: dict[int, dict[str, Any]] = {}
        self.definitions: dict[str, Any] = {}

    def request(self, annotation: Any, mode: Mode, adapter: TypeAdapter[Any] | None = None) -> int:
        """Ask for the schema of ``annotation`` (or ``adapter``); returns the request's index."""
        if adapter is None:
            try:
                adapter = TypeAdapter(annotation)
            except PydanticUserError:  # pydantic has no schema for it at all
                adapter = None
        self.requests.append((adapter, mode))
        return len(self.requests) - 1

    def generate(self) -> None:
        """Generate every schema asked for; those pydantic cannot write are left out."""
        inputs: list[tuple[int, Mode, TypeAdapter[Any]]] = []
        for index, (adapter, mode) in enumerate(self.requests):
            if adapter is None:
                continue
            try:
                with warnings.catch_warnings():  # pydantic warns again in the real run below
                    warnings.simplefilter("ignore")
                    adapter.json_schema(mode=mode, schema_generator=_Generator)
            except PydanticUserError:  # e.g. PydanticInvalidForJsonSchema: a Callable field
                continue
            inputs.append((index, mode, adapter))
        if not inputs:
            return
        generated, definitions = TypeAdapter.json_schemas(
            inputs, ref_template=_REF_TEMPLATE, schema_generator=_Generator
        )
        self.results = {index: _draft07(schema) for (index, _), schema in generated.items()}
        self.definitions = {
            name: _draft07(schema) for name, schema in definitions.get("$defs", {}).items()
        }

    def inline(self, index: int) -> dict[str, Any] | None:
        """The schema of request ``index`` itself, not a reference to it (where AsyncAPI
        wants a schema object: a binding's `query`), if pydantic could write it."""
        schema = self.results.get(index)
        ref = schema.get("$ref") if schema is not None else None
        if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
            return dict(self.definitions[ref.removeprefix(_REF_PREFIX)])
        return schema

    def fill(self, message: _Message) -> None:
        """Set the payload of ``message`` (which asked for a schema) from the generation."""
        assert message.schema is not None
        payload = self.results.get(message.schema)
        if payload is None:
            payload = {}
            message.fields["description"] = (
                "pydantic cannot write a JSON Schema for this type, so any payload is shown."
            )
        message.fields["payload"] = payload


class _Generator(GenerateJsonSchema):
    """pydantic's generator, but a reply's fields with defaults are required: they are sent.

    `model_dump_json` writes every field, so a client may rely on a reply's `type` being there
    even when the model gives it a default.
    """

    def field_is_required(
        self,
        field: core_schema.ModelField | core_schema.DataclassField | core_schema.TypedDictField,
        total: bool,
    ) -> bool:
        if self.mode == "serialization" and field["type"] != "typed-dict-field":
            return field.get("serialization_exclude_if") is None
        return super().field_is_required(field, total)


def _plan_endpoint(
    endpoint: Endpoint,
    key: str,
    address: str | None,
    parameters: dict[str, Any],
    schemas: _Schemas,
) -> _Plan:
    if isinstance(endpoint, ConnectorEndpoint):
        title = endpoint.cls.__name__
        doc = endpoint.cls.__dict__.get("__doc__")
        description = [inspect.cleandoc(doc)] if doc else []
        description.append(f"Served by the Connector `{endpoint.cls.__qualname__}`.")
    elif address is not None:
        title = address
        description = ["Served by the functions declared on this route."]
    else:
        title = "Any other path"
        description = ["Any path no route claims, served by the App's own callbacks."]
    plan = _Plan(key, address, parameters, title, description)
    if endpoint.query is not None:
        plan.query = schemas.request(endpoint.query, "validation")
        plan.description.append(
            "Its query parameters are validated at the handshake (the WebSocket binding's "
            "`query`): a query that does not fit is refused with 400."
        )
    if endpoint.sends:
        plan.operations.append(
            _Operation(
                f"{key}.sends",
                "sends",
                [
                    "Messages the server sends on its own, not as replies: broadcasts to the "
                    "rooms the connection is in, notifications."
                ],
                [_model_message(model, "serialization", schemas) for model in endpoint.sends],
                [],
                "send",
            )
        )
    decoder = endpoint.decoder
    if decoder is None:
        plan.description.append(
            "The endpoint reads messages itself (the reading form): what it expects and what "
            "it sends is not declared, so any text or binary message is documented."
        )
        plan.operations.append(
            _Operation(f"{key}.receive", "receive", [], [_raw("text"), _raw("binary")], [])
        )
        return plan

    policy = endpoint.policy
    kinds = {handler.kind for handler in decoder.handlers}
    if "json" in kinds:
        frames = "text or binary frames" if decoder.binary_json else "text frames"
        plan.description.append(f"JSON messages come in {frames}.")
    if decoder.discriminator is not None:
        plan.description.append(
            f"Messages are JSON objects told apart by their `{decoder.discriminator}` field, "
            "each handled by the operation that declares its value."
        )
    if policy.concurrency > 1:
        plan.description.append(
            f"Up to {policy.concurrency} messages of one connection are handled at once, so "
            "replies may come in another order than the messages they answer."
        )
    if policy.on_rate_limit == "drop":
        plan.description.append(
            "A message over a rate limit is dropped; a run of them gets the `rate_limited` "
            "error reply."
        )
    else:
        plan.description.append("A message over a rate limit, if one is set, closes (1008).")
    invalid_handler = endpoint.invalid_callback
    if not kinds <= {"raw"}:
        if invalid_handler is not None:
            plan.description.append(
                f"A message that does not decode is answered by `{_qualname(invalid_handler)}`."
            )
        elif policy.on_invalid == "close":
            plan.description.append("A message that does not decode closes the connection (1007).")
        else:
            plan.description.append(
                "A message that does not decode gets the `invalid_message` error reply."
            )

    handler_keys = _Keys()
    for handler in decoder.handlers:
        name = getattr(handler.function, "__name__", "on_message")
        description = []
        doc = handler.function.__doc__
        if doc:
            description.append(inspect.cleandoc(doc))
        if decoder.discriminator is not None and handler.models:
            tags = _tags(handler.models, decoder.discriminator)
            if tags:
                description.append(f"Handles `{decoder.discriminator}`: {tags}.")
        replies = _reply_messages(handler.returns, _qualname(handler.function), schemas)
        if handler.kind != "raw":
            if invalid_handler is not None:
                replies += _reply_messages(
                    _return_annotation(invalid_handler), _qualname(invalid_handler), schemas
                )
            elif policy.on_invalid == "reply":
                replies.append(_Message("invalid_message", dict(_INVALID_MESSAGE)))
        if policy.on_rate_limit == "drop":
            replies.append(_Message("rate_limited", dict(_RATE_LIMITED)))
        plan.operations.append(
            _Operation(
                f"{key}.{handler_keys.claim(name)}",
                name,
                description,
                _accepted_messages(handler, schemas),
                replies,
            )
        )
    return plan


def _qualname(function: Callable[..., Any]) -> str:
    return str(getattr(function, "__qualname__", getattr(function, "__name__", "handler")))


def _return_annotation(function: Callable[..., Any]) -> Any:
    try:
        return typing.get_type_hints(function).get("return", inspect.Parameter.empty)
    except (NameError, TypeError):  # an annotation that does not resolve: say nothing
        return inspect.Parameter.empty


def _tags(models: Sequence[type[BaseModel]], discriminator: str) -> str:
    values = []
    for model in models:
        info = model.model_fields.get(discriminator)
        if info is not None and typing.get_origin(info.annotation) is Literal:
            values += [f"`{value}`" for value in typing.get_args(info.annotation)]
    return ", ".join(values)


def _raw(kind: Literal["text", "binary"]) -> _Message:
    return _Message(kind, dict(_TEXT if kind == "text" else _BINARY))


def _model_message(model: type[BaseModel], mode: Mode, schemas: _Schemas) -> _Message:
    fields: dict[str, Any] = {"name": model.__name__, "title": model.__name__}
    doc = model.__dict__.get("__doc__")
    if doc:
        fields["summary"] = inspect.cleandoc(doc).split("\n\n")[0].replace("\n", " ")
    return _Message(model.__name__, fields, schemas.request(model, mode))


def _json_message(
    annotation: Any, key: str, mode: Mode, schemas: _Schemas, adapter: TypeAdapter[Any] | None
) -> _Message:
    if isinstance(annotation, type) and annotation.__module__ != "builtins":
        key = annotation.__name__  # a TypedDict, a dataclass...: named after itself
    fields = {"name": key, "title": _type_name(annotation)}
    return _Message(key, fields, schemas.request(annotation, mode, adapter))


def _accepted_messages(handler: Handler, schemas: _Schemas) -> list[_Message]:
    if handler.kind == "raw":
        return [_raw("text"), _raw("binary")]
    if handler.kind == "text" or handler.kind == "binary":
        return [_raw(handler.kind)]
    if handler.models:
        return [_model_message(model, "validation", schemas) for model in handler.models]
    key = f"{_qualname(handler.function)}.message"
    return [_json_message(handler.accepts, key, "validation", schemas, handler.adapter)]


def _reply_messages(returns: Any, owner: str, schemas: _Schemas) -> list[_Message]:
    """What ``send_reply`` sends for a value of the return annotation ``returns``."""
    if returns is inspect.Parameter.empty or returns is None or returns is type(None):
        return []
    members = [m for m in union_members(returns) if m is not type(None)]
    replies = []
    rest = []
    for member in members:
        if member is str:
            replies.append(_raw("text"))
        elif member is bytes:
            replies.append(_raw("binary"))
        elif isinstance(member, type) and issubclass(member, BaseModel):
            replies.append(_model_message(member, "serialization", schemas))
        else:
            rest.append(member)
    if rest:
        annotation = rest[0] if len(rest) == 1 else Union[tuple(rest)]  # noqa: UP007
        replies.append(_json_message(annotation, f"{owner}.reply", "serialization", schemas, None))
    return replies


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__qualname__
    return re.sub(r"\btyping(_extensions)?\.", "", repr(annotation))


# -- Building: the channels, operations and component messages --------------------------------


def _build_channel(
    plan: _Plan,
    protocols: list[str],
    messages: dict[str, dict[str, Any]],
    taken_operations: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    channel_ref = {"$ref": f"#/channels/{plan.key}"}
    channel_messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def refs(specs: list[_Message]) -> list[dict[str, str]]:
        result = []
        for spec in specs:
            key = _register(spec, messages)
            channel_messages[key] = {"$ref": f"#/components/messages/{key}"}
            ref = {"$ref": f"#/channels/{plan.key}/messages/{key}"}
            if ref not in result:
                result.append(ref)
        return result

    for op in plan.operations:  # the channel lists what it receives first, then the replies
        refs(op.receives)
    for op in plan.operations:
        operation: dict[str, Any] = {
            "action": op.action,
            "channel": channel_ref,
            "title": op.handler,
        }
        if op.description:
            operation["description"] = "\n\n".join(op.description)
        operation["messages"] = refs(op.receives)
        if op.replies:
            operation["reply"] = {"channel": channel_ref, "messages": refs(op.replies)}
        key = op.key
        while key in taken_operations or key in operations:
            key += "_"
        operations[key] = operation

    channel: dict[str, Any] = {"address": plan.address, "title": plan.title}
    if plan.description:
        channel["description"] = "\n\n".join(plan.description)
    if plan.parameters:
        channel["parameters"] = plan.parameters
    channel["messages"] = channel_messages
    binding: dict[str, Any] = {}
    if plan.query_schema is not None:
        binding["query"] = plan.query_schema
    if protocols:
        binding["headers"] = _subprotocol_headers(protocols)
    if binding:
        channel["bindings"] = {"ws": {**binding, "bindingVersion": "0.1.0"}}
    return channel, operations


def _register(spec: _Message, messages: dict[str, dict[str, Any]]) -> str:
    """Put ``spec`` in `components/messages`: under its own key, or a free variant of it."""
    message = spec.fields
    base = _slug(spec.key) or "message"
    key, n = base, 2
    while key in messages and messages[key] != message:
        key, n = f"{base}_{n}", n + 1
    messages[key] = message
    return key


def _subprotocol_headers(protocols: list[str]) -> dict[str, Any]:
    listed = ", ".join(f"`{p}`" for p in protocols)
    return {
        "type": "object",
        "properties": {
            "Sec-WebSocket-Protocol": {
                "type": "string",
                "description": f"The subprotocols the client offers, comma-separated. The "
                f"server speaks {listed}, in this order of preference, and picks the first "
                "of them the client offers.",
                "examples": [protocols[0]],
            }
        },
    }


def _info_description(protocols: list[str]) -> str:
    text = (
        "Generated by wsapp from the app's routes and its handlers' annotations. Each channel "
        "is one WebSocket endpoint: a client connects at its address, then sends the messages "
        "of its `receive` operations, and the server answers with their replies."
    )
    if protocols:
        text += " Subprotocols: " + ", ".join(f"`{p}`" for p in protocols) + "."
    return text


def _server(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"server_url must be a ws:// or wss:// URL, not {url!r}")
    server: dict[str, Any] = {"host": parts.netloc, "protocol": parts.scheme}
    if parts.path not in ("", "/"):
        server["pathname"] = parts.path
    return server


# -- JSON Schema: pydantic writes draft 2020-12, AsyncAPI 3.0 reads a superset of draft 07 ---

#: Keywords whose value is a map of names to schemas.
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "definitions", "$defs"})
#: Keywords whose value is one schema.
_SCHEMA_ONE = frozenset(
    {"additionalProperties", "not", "if", "then", "else", "contains", "propertyNames"}
)
#: Keywords whose value is a list of schemas.
_SCHEMA_LIST = frozenset({"allOf", "anyOf", "oneOf"})


def _draft07(schema: Any) -> Any:
    """``schema`` with pydantic's draft 2020-12 keywords rewritten for draft 07.

    `prefixItems` (tuples) becomes an `items` array; pydantic's OpenAPI-style
    `discriminator` object is dropped (AsyncAPI's is a property name with another meaning,
    and the `oneOf` of `const` tags already says everything).
    """
    if not isinstance(schema, dict):
        return schema
    result: dict[str, Any] = {}
    for keyword, value in schema.items():
        if keyword in _SCHEMA_MAPS and isinstance(value, dict):
            result[keyword] = {name: _draft07(sub) for name, sub in value.items()}
        elif keyword in _SCHEMA_ONE:
            result[keyword] = _draft07(value)
        elif keyword in _SCHEMA_LIST and isinstance(value, list):
            result[keyword] = [_draft07(sub) for sub in value]
        elif keyword == "items":
            if "prefixItems" in schema:
                result["additionalItems"] = _draft07(value)
            else:
                result["items"] = _draft07(value)
        elif keyword == "prefixItems" and isinstance(value, list):
            result["items"] = [_draft07(sub) for sub in value]
        elif keyword == "discriminator" and isinstance(value, dict):
            continue
        else:
            result[keyword] = value
    return result
