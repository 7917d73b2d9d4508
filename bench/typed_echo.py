"""The two echo apps of `bench/typed.py`: the same JSON echo, raw and typed.

`raw_app` hands the text over as a `str` and sends it back. `typed_app` declares three
handlers taking the models `Echo`, `Join` and `Leave`, told apart by their `type` field, as
a real app would; the `echo` handler returns its `Echo`, so every message is decoded,
validated, dispatched and encoded again. Both reply with exactly `MESSAGE`, byte for byte.

    python -m wsapp bench.typed_echo:raw_app     (from the repository root)
    python -m wsapp bench.typed_echo:typed_app
"""

from typing import Literal

from pydantic import BaseModel

import wsapp

#: What the load generator sends; pydantic's `model_dump_json()` writes it back unchanged.
MESSAGE = '{"type":"echo","text":"xxxxxxxxxxxxxxxx"}'

raw_app = wsapp.App()


@raw_app.on_message
async def raw_echo(conn: wsapp.Connection, message: str) -> None:
    await conn.send(message)


class Echo(BaseModel):
    type: Literal["echo"]
    text: str


class Join(BaseModel):
    type: Literal["join"]
    room: str


class Leave(BaseModel):
    type: Literal["leave"]
    room: str


typed_app = wsapp.App()


@typed_app.on_message
async def echo(conn: wsapp.Connection, message: Echo) -> Echo:
    return message


@typed_app.on_message
async def join(conn: wsapp.Connection, message: Join) -> None:
    pass


@typed_app.on_message
async def leave(conn: wsapp.Connection, message: Leave) -> None:
    pass
