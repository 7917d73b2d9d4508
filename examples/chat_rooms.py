"""Chat rooms: `python -m wsapp examples.chat_rooms:app`, then connect to
`/rooms/<room>?name=<you>` and send `{"type": "say", "text": "hi"}`.

The room comes from the path, the name from the query. Everyone in the room hears what is said
(`Said`), who arrives and who leaves; `{"type": "join", "room": "other"}` joins another room
as well, `{"type": "who"}` asks who is there. Presence spans every process serving the app:
run it with `--workers 2`, or on several hosts with `--broker redis://...`, and the rooms are
the same everywhere.
"""

import re
from typing import Literal

from pydantic import BaseModel, Field

import wsapp

app = wsapp.App()
rooms = app.route("/rooms/{room}")

NAME = re.compile(r"[\w.-]{1,32}")


class Say(BaseModel):
    type: Literal["say"]
    text: str = Field(max_length=2000)
    room: str | None = None  # one of the rooms joined; the path's room by default


class Join(BaseModel):
    type: Literal["join"]
    room: str = Field(pattern=NAME.pattern)


class Who(BaseModel):
    type: Literal["who"]
    room: str | None = None


class Said(BaseModel):
    type: Literal["said"] = "said"
    room: str
    name: str
    text: str


class Arrived(BaseModel):
    type: Literal["arrived"] = "arrived"
    room: str
    name: str


class Left(BaseModel):
    type: Literal["left"] = "left"
    room: str
    name: str


class Here(BaseModel):
    type: Literal["here"] = "here"
    room: str
    names: list[str]


rooms.sends(Said, Arrived, Left)  # what members receive besides replies (for AsyncAPI)


def name_of(conn: wsapp.Connection) -> str:
    return str(conn.state.name)


async def here(room: str) -> Here:
    members = await app.rooms.presence(room)
    return Here(room=room, names=sorted(member.info["name"] for member in members))


async def enter(conn: wsapp.Connection, room: str) -> Here:
    await conn.join(room, info={"name": name_of(conn)})
    conn.state.joined.append(room)
    await app.broadcast(room, Arrived(room=room, name=name_of(conn)), exclude=conn)
    return await here(room)


@rooms.on_connect
async def check(conn: wsapp.Connection, request: wsapp.Request) -> None:
    name = request.query_params.get("name", "")
    if not NAME.fullmatch(name):
        raise wsapp.Reject(400, "connect with ?name=<up to 32 letters, digits, _ . or ->")
    conn.state.name = name
    conn.state.joined = []


@rooms.on_open
async def welcome(conn: wsapp.Connection) -> None:
    await conn.send(await enter(conn, conn.request.path_params["room"]))


@rooms.on_message
async def say(conn: wsapp.Connection, message: Say) -> None:
    room = message.room or conn.request.path_params["room"]
    if room not in conn.rooms:
        await conn.send_json({"type": "error", "error": "not_in_room", "room": room})
        return
    await app.broadcast(room, Said(room=room, name=name_of(conn), text=message.text))


@rooms.on_message
async def join(conn: wsapp.Connection, message: Join) -> Here:
    return await enter(conn, message.room)


@rooms.on_message
async def who(conn: wsapp.Connection, message: Who) -> Here:
    return await here(message.room or conn.request.path_params["room"])


@rooms.on_close
async def leave(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
    # The connection has left its rooms already (so it does not hear this): tell them.
    for room in conn.state.joined:
        await app.broadcast(room, Left(room=room, name=name_of(conn)))
