"""Named counters in function form: `python -m wsapp examples.counters:app`, then connect to
/counters/<name> and send `{"type": "add", "amount": 2}` or `{"type": "reset"}`.

One route with a path parameter, and one typed handler per message type: the route's own
decorators work exactly like the App's.
"""

from collections import Counter
from typing import Literal

from pydantic import BaseModel

import wsapp

app = wsapp.App()
counters: Counter[str] = Counter()
counter = app.route("/counters/{name}")


class Add(BaseModel):
    type: Literal["add"]
    amount: int = 1


class Reset(BaseModel):
    type: Literal["reset"]


class Count(BaseModel):
    type: Literal["count"] = "count"
    name: str
    value: int


def current(conn: wsapp.Connection) -> Count:
    name = conn.request.path_params["name"]
    return Count(name=name, value=counters[name])


@counter.on_open
async def show(conn: wsapp.Connection) -> None:
    await conn.send(current(conn))


@counter.on_message
async def add(conn: wsapp.Connection, message: Add) -> Count:
    counters[conn.request.path_params["name"]] += message.amount
    return current(conn)


@counter.on_message
async def reset(conn: wsapp.Connection, message: Reset) -> Count:
    del counters[conn.request.path_params["name"]]
    return current(conn)
