"""A chat with typed messages: `python -m wsapp examples.chat_typed:app`.

Clients send JSON: `{"type": "join", "name": "ann"}`, then `{"type": "say", "text": "hi"}`,
and `{"type": "leave"}`. Each type has its model and its handler; wsapp decodes, validates and
dispatches by the `type` field, and answers anything else with an error reply. Everyone
joined receives `{"type": "said", "name": ..., "text": ...}`.
"""

import contextlib
from typing import Literal

import anyio
from pydantic import BaseModel, Field

import wsapp

app = wsapp.App()
members: dict[wsapp.Connection, str] = {}


class Join(BaseModel):
    type: Literal["join"]
    name: str = Field(min_length=1, max_length=32)


class Say(BaseModel):
    type: Literal["say"]
    text: str = Field(max_length=1000)


class Leave(BaseModel):
    type: Literal["leave"]


class Said(BaseModel):
    type: Literal["said"] = "said"
    name: str
    text: str


class Welcome(BaseModel):
    type: Literal["welcome"] = "welcome"
    members: list[str]


async def broadcast(message: BaseModel) -> None:
    async with anyio.create_task_group() as tg:
        for member in list(members):
            tg.start_soon(deliver, member, message)


async def deliver(member: wsapp.Connection, message: BaseModel) -> None:
    with contextlib.suppress(wsapp.ConnectionClosed):  # it left meanwhile
        await member.send(message)


@app.on_message
async def join(conn: wsapp.Connection, message: Join) -> Welcome:
    members[conn] = message.name
    await broadcast(Said(name="server", text=f"{message.name} joined"))
    return Welcome(members=sorted(members.values()))  # the reply to the joiner


@app.on_message
async def say(conn: wsapp.Connection, message: Say) -> None:
    if conn not in members:
        await conn.send_json({"type": "error", "error": "join first"})
        return
    await broadcast(Said(name=members[conn], text=message.text))


@app.on_message
async def leave(conn: wsapp.Connection, message: Leave) -> None:
    await conn.close(1000, "bye")


@app.on_close
async def gone(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
    name = members.pop(conn, None)
    if name is not None:
        await broadcast(Said(name="server", text=f"{name} left"))
