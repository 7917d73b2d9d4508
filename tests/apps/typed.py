"""An app with typed handlers, routes and subprotocols: what `--asyncapi` documents."""

from typing import Literal

from pydantic import BaseModel, Field

import wsapp


class Join(BaseModel):
    """Enter a room."""

    type: Literal["join"]
    room: str = Field(min_length=1)


class Say(BaseModel):
    type: Literal["say"]
    text: str = Field(max_length=1000)


class Said(BaseModel):
    """What was said, echoed to the sender."""

    type: Literal["said"] = "said"
    text: str


app = wsapp.App(subprotocols=["chat.v2", "chat.v1"])


@app.on_message
async def join(conn: wsapp.Connection, message: Join) -> None:
    """Join a room; nothing is sent back."""


@app.on_message
async def say(conn: wsapp.Connection, message: Say) -> Said:
    return Said(text=message.text)


@app.route("/rooms/{room}/{seat:int}")
class Room(wsapp.Connector):
    """One seat of a room: whatever arrives is echoed."""

    async def on_message(self, message: str | bytes) -> None:
        await self.conn.send(message)


@app.route("/feed")
class Feed(wsapp.Connector):
    async def on_open(self) -> None:
        await self.conn.send("hello")
