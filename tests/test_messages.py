"""Typed messages: what each annotation decodes, dispatch by `type`, replies, invalid messages."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field
from typing_extensions import TypedDict  # pydantic needs it for TypedDicts before 3.12
from websockets.asyncio.client import connect

import wsapp
from tests.helpers import ROOT, client, running, url

pytestmark = pytest.mark.anyio


class Join(BaseModel):
    type: Literal["join"]
    room: str


class Say(BaseModel):
    type: Literal["say"]
    text: str


class Leave(BaseModel):
    type: Literal["leave"]


class Said(BaseModel):
    type: Literal["said"] = "said"
    text: str


class Point(TypedDict):
    x: int
    y: int


Command = Annotated[Join | Say, Field(discriminator="type")]


async def talk(
    app: wsapp.App, *messages: str | bytes, replies: int, closes: bool = False
) -> tuple[list[Any], int | None, str | None]:
    """Send ``messages`` over a real socket; the replies (JSON decoded) and the close seen."""

    async def run(address: str) -> tuple[list[Any], int | None, str | None]:
        async with connect(address) as ws:
            for message in messages:
                await ws.send(message)
            got = [await ws.recv() for _ in range(replies)]
            if closes:
                await ws.wait_closed()
                return got, ws.close_code, ws.close_reason
            return got, None, None

    async with running(app) as server:
        got, code, reason = await client(run, url(server))
    decoded = [json.loads(m) if isinstance(m, str) and m[:1] in "[{" else m for m in got]
    return decoded, code, reason


def echo_app(annotation: Any, **policy: Any) -> wsapp.App:
    """An app whose one handler takes ``annotation`` and replies with what it received."""
    app = wsapp.App(**policy)

    async def handler(conn: wsapp.Connection, message: Any) -> Any:
        return {"got": repr(message)} if not isinstance(message, str | bytes) else message

    handler.__annotations__["message"] = annotation
    app.on_message(handler)
    return app


def error(msg: str, type_: str, loc: list[Any] | None = None) -> dict[str, Any]:
    detail = [{"type": type_, "loc": loc or [], "msg": msg}]
    return {"type": "error", "error": "invalid_message", "detail": detail}


INT_PARSING = "Input should be a valid integer, unable to parse string as an integer"
TEXT_EXPECTED = error("expected a text message, got binary", "message_kind")
BINARY_EXPECTED = error("expected a binary message, got text", "message_kind")
JSON_EXPECTED = error("expected JSON in a text message, got binary", "message_kind")


@pytest.mark.parametrize(
    ("annotation", "sent", "reply"),
    [
        pytest.param(str, "plain text", "plain text", id="str"),
        pytest.param(str, b"\x00", TEXT_EXPECTED, id="str-refuses-binary"),
        pytest.param(bytes, b"\x00", b"\x00", id="bytes"),
        pytest.param(bytes, "text", BINARY_EXPECTED, id="bytes-refuses-text"),
        pytest.param(str | bytes, b"\x01", b"\x01", id="raw-binary"),
        pytest.param(wsapp.Message, "not json", "not json", id="raw-text"),
        pytest.param(Say, '{"type": "say", "text": "hi"}', {"got": "Say(type='say', text='hi')"}),
        pytest.param(list[int], "[1, 2]", {"got": "[1, 2]"}, id="list-int"),
        pytest.param(dict[str, Any], '{"a": null}', {"got": "{'a': None}"}, id="dict"),
        pytest.param(Point, '{"x": 1, "y": 2}', {"got": "{'x': 1, 'y': 2}"}, id="TypedDict"),
        pytest.param(
            Command, '{"type": "join", "room": "a"}', {"got": "Join(type='join', room='a')"}
        ),
        pytest.param(
            list[int],
            '["a"]',
            error(INT_PARSING, "int_parsing", [0]),
            id="list-int-invalid",
        ),
        pytest.param(
            Say,
            '{"type": "say"}',
            error("Field required", "missing", ["text"]),
            id="model-missing-field",
        ),
        pytest.param(
            Say,
            "{oops",
            error("Invalid JSON: key must be a string at line 1 column 2", "json_invalid"),
            id="not-json",
        ),
        pytest.param(Say, b'{"type": "say", "text": "hi"}', JSON_EXPECTED, id="binary-refused"),
    ],
)
async def test_the_annotation_decides_what_the_handler_receives(
    annotation: Any, sent: str | bytes, reply: Any
) -> None:
    assert (await talk(echo_app(annotation), sent, replies=1))[0] == [reply]


async def test_binary_json_decodes_binary_messages_too() -> None:
    app = echo_app(Say, binary_json=True)
    replies, _, _ = await talk(app, b'{"type": "say", "text": "hi"}', replies=1)
    assert replies == [{"got": "Say(type='say', text='hi')"}]


def chat_app(**policy: Any) -> wsapp.App:
    app = wsapp.App(**policy)

    @app.on_message
    async def join(conn: wsapp.Connection, message: Join) -> None:
        conn.state.room = message.room
        await conn.send_json({"joined": message.room})

    @app.on_message
    async def say(conn: wsapp.Connection, message: Say) -> Said:
        return Said(text=f"{conn.state.room}: {message.text}")

    @app.on_message
    async def leave(conn: wsapp.Connection, message: Leave) -> None:
        await conn.close(1000, "bye")

    return app


async def test_several_handlers_are_dispatched_by_their_type_field() -> None:
    replies, code, reason = await talk(
        chat_app(),
        '{"type": "join", "room": "blue"}',
        '{"type": "say", "text": "hi"}',
        '{"type": "dance"}',
        '{"type": "leave"}',
        replies=3,
        closes=True,
    )
    assert replies == [
        {"joined": "blue"},
        {"type": "said", "text": "blue: hi"},
        error(
            "Input tag 'dance' found using 'type' does not match any of the expected tags: "
            "'join', 'say', 'leave'",
            "union_tag_invalid",
        ),
    ]
    assert (code, reason) == (1000, "bye")


async def test_invalid_messages_keep_the_connection_by_default() -> None:
    replies, _, _ = await talk(chat_app(), "{", "[]", '{"type": "join", "room": "a"}', replies=3)
    assert [r.get("error") for r in replies] == ["invalid_message", "invalid_message", None]


def documented_invalid_replies() -> list[Any]:
    """The error replies the "Invalid messages" section of docs/messages.md shows."""
    page = (ROOT / "docs" / "messages.md").read_text()
    section = page.split("## Invalid messages", 1)[1].split("\n## ", 1)[0]
    return [json.loads(block) for block in re.findall(r"```json[^\n]*\n(.*?)```", section, re.S)]


async def test_the_invalid_message_replies_are_the_documented_ones_sent_compact() -> None:
    one_type, several_types = documented_invalid_replies()
    invalid_say = '{"type": "say"}'

    async def raw_reply(address: str) -> str | bytes:
        async with connect(address) as ws:
            await ws.send(invalid_say)
            return await ws.recv()

    async with running(echo_app(Say)) as server:
        sent = await client(raw_reply, url(server))
    assert json.loads(sent) == one_type
    assert sent == json.dumps(one_type, separators=(",", ":"))  # compact, as every reply
    assert (await talk(chat_app(), invalid_say, replies=1))[0] == [several_types]
    unknown_tag = (await talk(chat_app(), '{"type": "shout"}', replies=1))[0][0]
    assert [(e["type"], e["loc"]) for e in unknown_tag["detail"]] == [("union_tag_invalid", [])]


async def test_on_invalid_close_closes_with_1007() -> None:
    replies, code, reason = await talk(chat_app(on_invalid="close"), "{", replies=0, closes=True)
    assert (replies, code, reason) == ([], 1007, "invalid message")


async def test_too_many_invalid_messages_in_a_row_close_with_1008() -> None:
    app = chat_app(max_invalid_messages=3)
    valid = '{"type": "join", "room": "a"}'
    # A valid message resets the count: 2 + 2 invalid stay open, the third in a row closes.
    replies, code, reason = await talk(
        app, "{", "{", valid, "{", "{", "{", valid, replies=5, closes=True
    )
    assert [r.get("error") for r in replies] == [
        "invalid_message",
        "invalid_message",
        None,
        "invalid_message",
        "invalid_message",
    ]
    assert (code, reason) == (1008, "3 invalid messages in a row")


async def test_a_custom_on_invalid_callback_decides_per_case() -> None:
    app = chat_app()

    @app.on_invalid
    async def explain(conn: wsapp.Connection, error: wsapp.InvalidMessage) -> Any:
        if error.message == "quit":
            await conn.close(4400, "asked to")
            return None
        return {"problem": error.errors[0]["type"], "echo": error.message}

    replies, code, reason = await talk(app, "{", "quit", replies=1, closes=True)
    assert replies == [{"problem": "json_invalid", "echo": "{"}]
    assert (code, reason) == (4400, "asked to")


class Room(wsapp.Connector):
    async def on_message(self, message: Join | Say) -> Said:
        return Said(text=message.type)

    async def on_invalid(self, error: wsapp.InvalidMessage) -> str:
        return f"no: {error}"


async def test_class_form_takes_typed_messages_and_its_own_on_invalid() -> None:
    app = wsapp.App()
    app.route("/", binary_json=True)(Room)
    replies, _, _ = await talk(app, b'{"type": "say", "text": "x"}', "[]", replies=2)
    assert replies[0] == {"type": "said", "text": "say"}
    assert replies[1] == "no: Input should be an object; Input should be an object"  # per member


async def test_sending_models_and_json() -> None:
    app = wsapp.App()

    @app.on_open
    async def greet(conn: wsapp.Connection) -> None:
        await conn.send(Said(text="model"))
        await conn.send_json({"n": [1, 2], "model": Said(text="inside")})

    @app.on_message
    async def reply(conn: wsapp.Connection, message: str) -> Any:
        return {"str": "text", "bytes": b"raw", "list": [1]}[message]

    replies, _, _ = await talk(app, "str", "bytes", "list", replies=5)
    assert replies == [
        {"type": "said", "text": "model"},
        {"n": [1, 2], "model": {"type": "said", "text": "inside"}},
        "text",
        b"raw",
        [1],
    ]


class NotDecodable:
    pass


class Shout(BaseModel):
    type: Literal["say"]  # the same tag as Say
    text: str


class Untagged(BaseModel):
    text: str


class TwoTags(BaseModel):
    kind: Literal["x"]
    flavor: Literal["a"]


class TwoTagsToo(BaseModel):
    kind: Literal["y"]
    flavor: Literal["b"]


async def on_say(conn: wsapp.Connection, message: Say) -> None: ...
async def on_shout(conn: wsapp.Connection, message: Shout) -> None: ...
async def on_untagged(conn: wsapp.Connection, message: Untagged) -> None: ...
async def on_raw(conn: wsapp.Connection, message: str) -> None: ...
async def on_nothing(conn: wsapp.Connection, message: NotDecodable) -> None: ...
async def on_two(conn: wsapp.Connection, message: TwoTags) -> None: ...
async def on_too(conn: wsapp.Connection, message: TwoTagsToo) -> None: ...
async def on_kind(
    conn: wsapp.Connection, message: Annotated[TwoTags, Field(discriminator="kind")]
) -> None: ...


@pytest.mark.parametrize(
    ("handlers", "message"),
    [
        ([on_say, on_shout], r"type='say' is claimed by both Say \(handler 'on_say'\) and Shout"),
        ([on_say, on_raw], r"each must take a pydantic model .* \['on_raw'\] do not"),
        ([on_say, on_untagged], r"need a common Literal field to tell them apart"),
        ([on_two, on_too], r"share several Literal fields \['flavor', 'kind'\]; name the one"),
        ([on_nothing], r"takes <class '.*NotDecodable'>, which pydantic cannot decode"),
    ],
)
def test_ambiguous_or_undecodable_handlers_fail_when_declared(
    handlers: list[Any], message: str
) -> None:
    app = wsapp.App()
    with pytest.raises(TypeError, match=message):
        for handler in handlers:
            app.on_message(handler)


def test_a_declared_discriminator_settles_several_common_fields() -> None:
    app = wsapp.App()
    app.on_message(on_kind)
    app.on_message(on_too)
    assert app.router.fallback is not None
    assert app.router.fallback.decoder is not None
    assert app.router.fallback.decoder.discriminator == "kind"


@pytest.mark.parametrize(
    ("policy", "error"),
    [
        ({"concurrency": 0}, "concurrency must be an int of at least 1, not 0"),
        ({"on_invalid": "ignore"}, "on_invalid must be 'reply' or 'close', not 'ignore'"),
    ],
)
def test_bad_dispatch_policies_are_refused(policy: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        wsapp.App(**policy)
    with pytest.raises(ValueError, match=error):
        wsapp.App().route("/x", **policy)
