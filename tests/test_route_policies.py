"""A route inherits every dispatch policy from its App unless it sets its own.

Each policy is observed as a client sees it (a reply, a close code, the messages that
arrive), on a route served by functions and on one served by a Connector class.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Literal

import anyio
import pytest
from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import wsapp
from tests.helpers import client, running, url

pytestmark = pytest.mark.anyio

#: The budget is the smallest allowed, so that one large broadcast passes it at once.
BUDGET = 1024
#: How long a message waits for the next one to run beside it (concurrency probe).
TOGETHER_WITHIN = 0.5


class Say(BaseModel):
    text: str


class Probe:
    """What every probed route does, shared by its function form and its class form: it
    joins room "r"; "wait" replies "together" if a "release" ran meanwhile (two handlers at
    once), "alone" otherwise; "big" broadcasts past the budget, then a small "after"."""

    def __init__(self, app: wsapp.App) -> None:
        self.app = app
        self.released = anyio.Event()

    async def opened(self, conn: wsapp.Connection) -> None:
        await conn.join("r")

    async def handle(self, conn: wsapp.Connection, message: Say) -> None:
        if message.text == "wait":
            with anyio.move_on_after(TOGETHER_WITHIN):
                await self.released.wait()
            await conn.send("together" if self.released.is_set() else "alone")
        elif message.text == "release":
            self.released.set()
        elif message.text == "big":
            await self.app.broadcast("r", "x" * (2 * BUDGET))
            await self.app.broadcast("r", "after")
        else:
            await conn.send(f"ok:{message.text}")


def probed_app(
    form: Literal["functions", "class"], app_policy: dict[str, Any], route_policy: dict[str, Any]
) -> wsapp.App:
    limited = "on_rate_limit" in app_policy  # one message a second, then the policy
    app = wsapp.App(
        outbound_budget=BUDGET, rate_limit_messages=1 if limited else None, **app_policy
    )
    probe = Probe(app)
    if form == "functions":
        route = app.route("/probe", **route_policy)
        route.on_open(probe.opened)

        @route.on_message
        async def handle(conn: wsapp.Connection, message: Say) -> None:
            await probe.handle(conn, message)

    else:

        @app.route("/probe", **route_policy)
        class Probed(wsapp.Connector):
            async def on_open(self) -> None:
                await probe.opened(self.conn)

            async def on_message(self, message: Say) -> None:
                await probe.handle(self.conn, message)

    return app


async def next_or_close(ws: ClientConnection) -> str | bytes | int:
    """The next message, or the close code if the server closed instead."""
    try:
        return await ws.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else 1006


async def outcome_of_invalid(ws: ClientConnection) -> str:
    await ws.send('{"wrong": 1}')
    reply = await next_or_close(ws)
    if reply == 1007:
        return "close"
    assert '"invalid_message"' in str(reply)
    return "reply"


async def outcome_of_binary(ws: ClientConnection) -> str:
    await ws.send(b'{"text": "b"}')
    return "decoded" if await next_or_close(ws) == "ok:b" else "refused"


async def outcome_of_rate_limit(ws: ClientConnection) -> str:
    for _ in range(3):  # one a second is allowed, after a burst of one
        await ws.send('{"text": "fast"}')
    assert await next_or_close(ws) == "ok:fast"
    reply = await next_or_close(ws)
    if reply == 1008:
        return "close"
    assert '"rate_limited"' in str(reply)
    return "drop"


async def outcome_of_concurrency(ws: ClientConnection) -> str:
    await ws.send('{"text": "wait"}')
    await ws.send('{"text": "release"}')
    return str(await next_or_close(ws))


async def outcome_of_slow(ws: ClientConnection) -> str:
    await ws.send('{"text": "big"}')
    message = await next_or_close(ws)
    if message == 1008:
        return "close"
    assert message == "after"  # the large one was skipped for this member only
    return "drop"


Outcome = Callable[[ClientConnection], Coroutine[Any, Any, str]]

#: Each policy: a value other than the default, what a client sees with it, what it sees
#: with the default, and how it is observed.
POLICIES: dict[str, tuple[Any, str, Any, str, Outcome]] = {
    "on_invalid": ("close", "close", "reply", "reply", outcome_of_invalid),
    "binary_json": (True, "decoded", False, "refused", outcome_of_binary),
    "on_rate_limit": ("drop", "drop", "close", "close", outcome_of_rate_limit),
    "concurrency": (2, "together", 1, "alone", outcome_of_concurrency),
    "on_slow": ("drop", "drop", "close", "close", outcome_of_slow),
}


async def observe(app: wsapp.App, outcome: Outcome) -> str:
    async def session(address: str) -> str:
        async with connect(address) as ws:
            return await outcome(ws)

    async with running(app) as server:
        return await client(session, url(server, "/probe"))


@pytest.mark.parametrize("form", ["functions", "class"])
@pytest.mark.parametrize("policy", sorted(POLICIES))
async def test_a_policy_set_on_the_app_reaches_a_route(
    policy: str, form: Literal["functions", "class"]
) -> None:
    value, seen, _default, _seen_by_default, outcome = POLICIES[policy]
    app = probed_app(form, {policy: value}, {})
    assert await observe(app, outcome) == seen


@pytest.mark.parametrize("form", ["functions", "class"])
@pytest.mark.parametrize("policy", sorted(POLICIES))
async def test_a_routes_own_policy_wins_over_the_apps(
    policy: str, form: Literal["functions", "class"]
) -> None:
    value, _seen, default, seen_by_default, outcome = POLICIES[policy]
    app = probed_app(form, {policy: value}, {policy: default})
    assert await observe(app, outcome) == seen_by_default


def test_the_apps_policies_are_checked_once_when_it_is_made() -> None:
    with pytest.raises(ValueError, match="on_slow must be 'close' or 'drop'"):
        wsapp.App(on_slow="later")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="concurrency must be an int of at least 1"):
        wsapp.App().route("/", concurrency=0)
