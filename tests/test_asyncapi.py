"""AsyncAPI documents: valid against the spec's JSON Schema, and saying what the app does."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
import yaml
from jsonschema import Draft7Validator
from pydantic import BaseModel, Field
from referencing import Registry
from referencing.jsonschema import DRAFT7
from typing_extensions import TypedDict

import wsapp
from tests.apps import typed
from tests.helpers import ROOT, run_cli
from wsapp.asyncapi import asyncapi_document
from wsapp.ratelimit import RateLimited

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "asyncapi-3.0.0.json").read_text())
SPEC = Draft7Validator(SCHEMA)


# -- Checking a document ------------------------------------------------------------------


def resolve(document: dict[str, Any], ref: str) -> Any:
    """The value a local `$ref` (`#/a/b`) points at; KeyError if it points at nothing."""
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs(value)]
    return []


def check(document: dict[str, Any]) -> dict[str, Any]:
    """Valid against the AsyncAPI 3.0.0 schema, plus the spec's rules a schema cannot say."""
    errors = [f"{list(e.absolute_path)}: {e.message[:300]}" for e in SPEC.iter_errors(document)]
    assert errors == []
    for ref in refs(document):
        resolve(document, ref)  # raises if it leads nowhere
    for key, operation in document["operations"].items():
        channel = operation["channel"]["$ref"]
        for message in operation["messages"]:  # a subset of the channel's messages
            assert message["$ref"].startswith(channel + "/messages/"), (key, message)
        reply = operation.get("reply")
        if reply is not None:
            for message in reply["messages"]:
                assert message["$ref"].startswith(reply["channel"]["$ref"] + "/messages/")
    for channel in document["channels"].values():
        address = channel["address"]
        if address is not None:
            named = {part[1:-1] for part in address.split("/") if part.startswith("{")}
            assert named == set(channel.get("parameters", {}))
    return document


def payload(document: dict[str, Any], message: str) -> Draft7Validator:
    """A validator for the payload of `components/messages/<message>`, refs resolved."""
    registry: Registry[Any] = Registry().with_resource("urn:doc", DRAFT7.create_resource(document))
    return Draft7Validator(
        {"$ref": f"urn:doc#/components/messages/{message}/payload"}, registry=registry
    )


def message_names(refs_: list[dict[str, str]]) -> list[str]:
    return [ref["$ref"].rsplit("/", 1)[1] for ref in refs_]


def test_the_shipped_schema_refuses_what_asyncapi_3_refuses() -> None:
    document = check(asyncapi_document(typed.app))
    broken = copy.deepcopy(document)
    broken["channels"]["rooms_room_seat"]["parameters"]["seat"]["schema"] = {"type": "integer"}
    assert not SPEC.is_valid(broken)  # 3.0 parameters have no schema
    broken = copy.deepcopy(document)
    broken["operations"]["default.say"]["action"] = "reply"
    assert not SPEC.is_valid(broken)
    broken = copy.deepcopy(document)
    broken["components"]["schemas"]["Say"]["discriminator"] = {"propertyName": "type"}
    assert not SPEC.is_valid(broken)  # AsyncAPI's discriminator is a property name


# -- (a) function form: typed handlers dispatched by type, with a reply ------------------------


def test_function_form_handlers_are_operations_of_the_default_channel() -> None:
    document = check(asyncapi_document(typed.app, title="Chat", version="2.1.0"))
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] == "Chat"
    assert document["info"]["version"] == "2.1.0"
    assert document["defaultContentType"] == "application/json"
    channel = document["channels"]["default"]
    assert channel["address"] is None  # any path no route claims
    assert "`type` field" in channel["description"]
    assert list(channel["messages"]) == ["Join", "Say", "invalid_message", "Said"]
    join = document["operations"]["default.join"]
    assert join["action"] == "receive"
    assert join["channel"] == {"$ref": "#/channels/default"}
    assert message_names(join["messages"]) == ["Join"]
    assert join["description"].startswith("Join a room; nothing is sent back.")
    assert "`join`" in join["description"]
    assert message_names(join["reply"]["messages"]) == ["invalid_message"]  # `-> None`
    say = document["operations"]["default.say"]
    assert message_names(say["messages"]) == ["Say"]
    assert say["reply"]["channel"] == {"$ref": "#/channels/default"}
    assert message_names(say["reply"]["messages"]) == ["Said", "invalid_message"]


def test_model_payloads_are_their_json_schemas_in_components() -> None:
    document = check(asyncapi_document(typed.app))
    messages = document["components"]["messages"]
    assert messages["Join"]["payload"] == {"$ref": "#/components/schemas/Join"}
    assert messages["Join"]["summary"] == "Enter a room."  # the model's docstring
    schemas = document["components"]["schemas"]
    assert schemas["Say"]["properties"]["text"]["maxLength"] == 1000
    join = payload(document, "Join")
    assert join.is_valid({"type": "join", "room": "lobby"})
    assert not join.is_valid({"type": "join", "room": ""})
    assert not join.is_valid({"type": "say", "room": "lobby"})
    # a reply's fields with defaults are always sent, so the reply schema requires them
    assert schemas["Said"]["required"] == ["type", "text"]
    assert payload(document, "Said").is_valid(json.loads(typed.Said(text="hi").model_dump_json()))


def test_the_invalid_message_reply_is_what_wsapp_sends() -> None:
    document = check(asyncapi_document(typed.app))
    error = payload(document, "invalid_message")
    fallback = typed.app.router.fallback
    assert fallback is not None and fallback.decoder is not None
    bad_messages: list[str | bytes] = [
        '{"type": "join"}',  # a missing field
        "not json",
        b'{"type": "say", "text": "hi"}',  # binary, where JSON comes in text
    ]
    for bad in bad_messages:
        with pytest.raises(wsapp.InvalidMessage) as caught:
            fallback.decoder.decode(bad)
        sent = json.loads(caught.value.reply())
        assert list(error.iter_errors(sent)) == []
    assert not error.is_valid({"type": "error", "error": "invalid_message"})


def test_the_rate_limited_reply_is_documented_where_it_is_sent_and_is_what_wsapp_sends() -> None:
    app = wsapp.App(on_rate_limit="drop", rate_limit_messages=10)
    app.on_message(typed.join)
    closing = app.route("/strict", on_rate_limit="close")
    closing.on_message(typed.join)
    document = check(asyncapi_document(app))
    operation = document["operations"]["default.join"]
    assert "rate_limited" in message_names(operation["reply"]["messages"])
    assert "rate_limited" not in message_names(
        document["operations"]["strict.join"]["reply"]["messages"]
    )
    assert "closes (1008)" in document["channels"]["strict"]["description"]
    reply = payload(document, "rate_limited")
    sent = json.loads(RateLimited("drop", "10 messages per second", 3, 0.25).reply())
    assert list(reply.iter_errors(sent)) == []
    assert not reply.is_valid({**sent, "dropped": 0})


# -- (b) a Connector route: path parameters, a raw handler ----------------------------------


def test_route_is_a_channel_with_its_parameters() -> None:
    document = check(asyncapi_document(typed.app))
    assert list(document["channels"]) == ["rooms_room_seat", "feed", "default"]
    room = document["channels"]["rooms_room_seat"]
    assert room["address"] == "/rooms/{room}/{seat}"
    assert room["title"] == "Room"
    assert room["description"].startswith("One seat of a room")  # the class docstring
    assert set(room["parameters"]) == {"room", "seat"}
    assert room["parameters"]["room"]["description"].startswith("`str`")
    assert room["parameters"]["seat"]["description"].startswith("`int`: digits")
    assert 'path_params["seat"]' in room["parameters"]["seat"]["description"]


def test_raw_handler_receives_text_and_binary_and_replies_nothing() -> None:
    document = check(asyncapi_document(typed.app))
    operation = document["operations"]["rooms_room_seat.on_message"]
    assert operation["channel"] == {"$ref": "#/channels/rooms_room_seat"}
    assert message_names(operation["messages"]) == ["text", "binary"]
    assert "reply" not in operation  # raw messages are never invalid, and it returns None
    messages = document["components"]["messages"]
    assert messages["text"]["contentType"] == "text/plain"
    assert messages["text"]["payload"] == {"type": "string"}
    assert messages["binary"]["contentType"] == "application/octet-stream"
    assert messages["binary"]["payload"] == {"type": "string", "format": "binary"}


# -- (c) subprotocols ---------------------------------------------------------------------------


def test_subprotocols_are_the_handshake_header_of_every_channel() -> None:
    document = check(asyncapi_document(typed.app))
    assert "`chat.v2`, `chat.v1`" in document["info"]["description"]
    for channel in document["channels"].values():
        ws = channel["bindings"]["ws"]
        assert ws["bindingVersion"] == "0.1.0"
        header = ws["headers"]["properties"]["Sec-WebSocket-Protocol"]
        assert "`chat.v2`, `chat.v1`, in this order of preference" in header["description"]
        assert header["examples"] == ["chat.v2"]
    other = check(asyncapi_document(typed.app, subprotocols=["v3"]))
    header = other["channels"]["default"]["bindings"]["ws"]["headers"]["properties"]
    assert header["Sec-WebSocket-Protocol"]["examples"] == ["v3"]
    none = check(asyncapi_document(typed.app, subprotocols=[]))
    assert all("bindings" not in channel for channel in none["channels"].values())
    assert "Subprotocols" not in none["info"]["description"]


# -- (d) the reading form -----------------------------------------------------------------------


def test_reading_form_documents_any_message() -> None:
    document = check(asyncapi_document(typed.app))
    feed = document["channels"]["feed"]
    assert feed["address"] == "/feed"
    assert "reading form" in feed["description"]
    operation = document["operations"]["feed.receive"]
    assert message_names(operation["messages"]) == ["text", "binary"]
    assert "reply" not in operation


def test_function_form_reading_form_and_an_empty_app() -> None:
    reader = wsapp.App()

    @reader.on_open
    async def read(conn: wsapp.Connection) -> None: ...

    document = check(asyncapi_document(reader))
    assert document["info"]["title"] == "wsapp application"
    assert document["channels"]["default"]["address"] is None
    assert "reading form" in document["channels"]["default"]["description"]
    assert list(document["operations"]) == ["default.receive"]
    empty = check(asyncapi_document(wsapp.App()))
    assert empty["channels"] == {}
    assert empty["operations"] == {}
    assert "components" not in empty


# -- Other annotations --------------------------------------------------------------------------


class Point(TypedDict):
    x: int
    y: int


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int = 9


class Dog(BaseModel):
    kind: Literal["dog"]


class Shout(BaseModel):
    type: Literal["shout"]
    text: str


class Pet(BaseModel):
    """A nested discriminated union and a tuple: draft 2020-12 that must become draft 07."""

    pet: Annotated[Cat | Dog, Field(discriminator="kind")]
    at: tuple[int, str]


class Opaque:
    """Not something pydantic knows."""


class Hook(BaseModel):
    callback: Callable[[], int]  # valid for pydantic, but no JSON Schema


# Its routes inherit these policies; those that answer invalid messages say so themselves.
numbers_app = wsapp.App(on_invalid="close", concurrency=4, binary_json=True)


@numbers_app.on_message
async def numbers(conn: wsapp.Connection, message: list[int]) -> dict[str, int]:
    return {"sum": sum(message)}


@numbers_app.route("/points")
class Points(wsapp.Connector):
    async def on_message(self, message: Point) -> str | typed.Said | Shout | None:
        return None

    async def on_invalid(self, error: wsapp.InvalidMessage) -> dict[str, str]:
        return {"error": "bad point"}


@numbers_app.route("/pets/{id:uuid}/{rest:path}", on_invalid="reply")
class Pets(wsapp.Connector):
    async def on_message(self, message: Pet | typed.Join) -> bytes:
        return b""


@numbers_app.route("/text/{ratio:float}", on_invalid="reply")
class Text(wsapp.Connector):
    async def on_message(self, message: str) -> None: ...


@numbers_app.route("/opaque", on_invalid="reply")
class Opaques(wsapp.Connector):
    async def on_message(self, message: bytes) -> Opaque | Hook:
        return Opaque()


def test_replies_pydantic_cannot_describe_are_any_payload() -> None:
    document = check(asyncapi_document(numbers_app))
    operation = document["operations"]["opaque.on_message"]
    assert message_names(operation["reply"]["messages"]) == ["Hook", "Opaque", "invalid_message"]
    for name in ("Hook", "Opaque"):
        message = document["components"]["messages"][name]
        assert message["payload"] == {}
        assert "cannot write a JSON Schema" in message["description"]
    assert "Hook" not in document["components"]["schemas"]


def test_non_model_json_messages_and_replies() -> None:
    document = check(asyncapi_document(numbers_app))
    operation = document["operations"]["default.numbers"]
    assert message_names(operation["messages"]) == ["numbers.message"]
    assert message_names(operation["reply"]["messages"]) == ["numbers.reply"]  # no error reply
    messages = document["components"]["messages"]
    assert messages["numbers.message"]["title"] == "list[int]"
    assert messages["numbers.message"]["payload"] == {"type": "array", "items": {"type": "integer"}}
    assert payload(document, "numbers.reply").is_valid({"sum": 3})
    assert not payload(document, "numbers.reply").is_valid({"sum": "3"})
    description = document["channels"]["default"]["description"]
    assert "closes the connection (1007)" in description
    assert "Up to 4 messages" in description
    assert "text or binary frames" in description  # binary_json


def test_typed_dict_union_reply_and_custom_on_invalid() -> None:
    document = check(asyncapi_document(numbers_app))
    operation = document["operations"]["points.on_message"]
    assert message_names(operation["messages"]) == ["Point"]
    assert payload(document, "Point").is_valid({"x": 1, "y": 2})
    assert not payload(document, "Point").is_valid({"x": 1})
    replies = message_names(operation["reply"]["messages"])
    # str -> a text frame, models -> their JSON, None -> nothing; then what on_invalid returns
    assert replies == ["text", "Said", "Shout", "Points.on_invalid.reply"]
    assert "answered by `Points.on_invalid`" in document["channels"]["points"]["description"]


def test_union_of_models_nested_unions_and_tuples() -> None:
    document = check(asyncapi_document(numbers_app))
    pets = document["channels"]["pets_id_rest"]
    assert pets["address"] == "/pets/{id}/{rest}"
    assert pets["parameters"]["id"]["description"].startswith("`uuid`")
    assert "slashes included" in pets["parameters"]["rest"]["description"]
    operation = document["operations"]["pets_id_rest.on_message"]
    assert message_names(operation["messages"]) == ["Pet", "Join"]
    assert message_names(operation["reply"]["messages"]) == ["binary", "invalid_message"]
    pet_schema = document["components"]["schemas"]["Pet"]
    assert "discriminator" not in pet_schema["properties"]["pet"]
    assert "prefixItems" not in pet_schema["properties"]["at"]
    pet = payload(document, "Pet")
    assert pet.is_valid({"pet": {"kind": "cat"}, "at": [1, "a"]})
    assert not pet.is_valid({"pet": {"kind": "cat"}, "at": ["a", 1]})  # tuple items checked
    assert not pet.is_valid({"pet": {"kind": "cow"}, "at": [1, "a"]})


def test_text_handler_and_float_parameter() -> None:
    document = check(asyncapi_document(numbers_app))
    operation = document["operations"]["text_ratio.on_message"]
    assert message_names(operation["messages"]) == ["text"]
    reply = message_names(operation["reply"]["messages"])
    assert reply == ["invalid_message"]  # a binary message gets the message_kind error
    ratio = document["channels"]["text_ratio"]["parameters"]["ratio"]
    assert ratio["description"].startswith("`float`")


def test_server_url() -> None:
    document = check(asyncapi_document(typed.app, server_url="wss://chat.example.com/ws"))
    server = document["servers"]["default"]
    assert server == {"host": "chat.example.com", "protocol": "wss", "pathname": "/ws"}
    plain = check(asyncapi_document(typed.app, server_url="ws://localhost:8000"))
    assert plain["servers"]["default"] == {"host": "localhost:8000", "protocol": "ws"}
    assert "servers" not in check(asyncapi_document(typed.app))
    with pytest.raises(ValueError, match="ws:// or wss://"):
        asyncapi_document(typed.app, server_url="http://localhost:8000")


def test_a_document_is_plain_data_that_yaml_dumps_without_aliases() -> None:
    document = asyncapi_document(numbers_app)
    text = yaml.safe_dump(document, sort_keys=False)
    assert "&id" not in text and "*id" not in text
    assert yaml.safe_load(text) == document


# -- The command line -------------------------------------------------------------------------


def test_cli_prints_json() -> None:
    result = run_cli("tests.apps.typed:app", "--asyncapi", "json")
    assert result.returncode == 0, result.stderr
    document = check(json.loads(result.stdout))
    assert document == asyncapi_document(typed.app, title="tests.apps.typed:app")


def test_cli_prints_yaml_by_default_when_pyyaml_is_installed() -> None:
    as_json = json.loads(run_cli("tests.apps.typed:app", "--asyncapi", "json").stdout)
    for args in (["--asyncapi", "yaml"], ["--asyncapi"]):
        result = run_cli("tests.apps.typed:app", *args)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("asyncapi: 3.0.0\n")
        assert yaml.safe_load(result.stdout) == as_json


def test_cli_documents_the_settings_it_would_serve_with() -> None:
    result = run_cli("tests.apps.typed:app", "--asyncapi", "json", "--subprotocols", "v3")
    assert result.returncode == 0, result.stderr
    document = check(json.loads(result.stdout))
    header = document["channels"]["feed"]["bindings"]["ws"]["headers"]["properties"]
    assert header["Sec-WebSocket-Protocol"]["examples"] == ["v3"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tests.apps.typed:app", "--asyncapi", "xml"], "expected json or yaml, got 'xml'"),
        (
            ["--asyncapi", "tests.apps.typed:app"],
            "expected json or yaml, got 'tests.apps.typed:app' (put module:app before --asyncapi)",
        ),
    ],
)
def test_cli_usage_errors(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_cli_yaml_without_pyyaml_is_a_one_line_error() -> None:
    code = (
        "import sys; sys.modules['yaml'] = None\n"  # makes `import yaml` fail
        "from wsapp.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    base = [sys.executable, "-c", code, "tests.apps.typed:app", "--asyncapi"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
        )

    refused = run("yaml")
    assert refused.returncode == 2
    expected = "wsapp: error: --asyncapi yaml needs PyYAML: pip install 'wsapp[asyncapi]'\n"
    assert refused.stderr == expected
    fallback = run()  # no format asked: JSON
    assert fallback.returncode == 0, fallback.stderr
    check(json.loads(fallback.stdout))


def test_messages_an_endpoint_sends_besides_replies_are_a_send_operation() -> None:
    from examples import chat_rooms

    document = check(asyncapi_document(chat_rooms.app, title="chat"))
    sends = document["operations"]["rooms_room.sends"]
    assert sends["action"] == "send"
    assert message_names(sends["messages"]) == ["Said", "Arrived", "Left"]
    said = payload(document, "Said")
    said.validate({"type": "said", "room": "r", "name": "ann", "text": "hi"})

    class Tick(BaseModel):
        type: Literal["tick"] = "tick"

    class Clock(wsapp.Connector):
        sends = (Tick,)

    app = wsapp.App()
    app.route("/clock")(Clock)
    document = check(asyncapi_document(app, title="clock"))
    assert message_names(document["operations"]["clock.sends"]["messages"]) == ["Tick"]
    with pytest.raises(TypeError, match="pydantic model classes"):
        app.sends(dict)  # type: ignore[arg-type]
