"""Rate limits: messages and bytes per connection (close with 1008, or drop with an error
reply), handshakes per client address (429 with Retry-After), behind trusted proxies too."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

import wsapp
from tests.helpers import client, echo_app, port, running, url
from tests.rawclient import OP_TEXT, RawClient, close_frame, frame, handshake
from tests.test_handshake import http_exchange
from wsapp.ratelimit import MAX_CLIENTS, HandshakeLimiter, TokenBucket

pytestmark = pytest.mark.anyio

#: So slow a refill that a test's own run time adds no token: only the burst counts.
NEVER = 1e-6


# Without sockets


def test_a_bucket_lets_a_burst_through_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=0.0)
    assert [bucket.take(1, 0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.wait(1) == pytest.approx(0.5)
    assert not bucket.take(1, 0.4)
    assert bucket.take(1, 0.5)
    assert bucket.take(1, 10.0) and bucket.take(1, 10.0) and bucket.take(1, 10.0)  # capped
    assert not bucket.take(1, 10.0)


def test_more_than_a_burst_passes_when_full_and_leaves_the_bucket_in_debt() -> None:
    bucket = TokenBucket(rate=100, burst=100, now=0.0)
    assert bucket.take(250, 0.0)  # a message larger than the whole burst
    assert not bucket.take(1, 1.0)  # 150 in debt, refilled 100: still 50 short
    assert bucket.take(1, 1.51)


def settings(**values: Any) -> wsapp.Settings:
    return wsapp.Settings(**values)


def test_handshakes_are_limited_per_client_address() -> None:
    limiter = HandshakeLimiter()
    limited = settings(rate_limit_handshakes=NEVER, rate_limit_handshake_burst=2)
    assert limiter.refusal("10.0.0.1", limited) is None
    assert limiter.refusal("10.0.0.1", limited) is None
    refusal = limiter.refusal("10.0.0.1", limited)
    assert refusal is not None and refusal.status == 429
    assert ("Retry-After", str(int(1 / NEVER))) in refusal.headers
    assert limiter.refusal("10.0.0.2", limited) is None  # another client has its own
    assert limiter.refusal(None, limited) is None  # a unix socket peer has no address
    assert limiter.refusal("10.0.0.1", settings()) is None  # off: nothing is limited


def test_the_table_of_client_addresses_stays_bounded() -> None:
    limiter = HandshakeLimiter()
    limited = settings(rate_limit_handshakes=NEVER, rate_limit_handshake_burst=5)
    for n in range(MAX_CLIENTS * 3):
        limiter.refusal(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", limited)
    assert len(limiter) <= MAX_CLIENTS


@pytest.mark.parametrize(
    "name", ["rate_limit_messages", "rate_limit_bytes", "rate_limit_handshake_burst"]
)
@pytest.mark.parametrize("value", [0, -1, float("inf")])
def test_a_rate_must_be_a_finite_number_above_zero(name: str, value: float) -> None:
    with pytest.raises(wsapp.ConfigError, match=name):
        wsapp.Settings(**{name: value})


def test_a_rate_limit_policy_is_close_or_drop() -> None:
    with pytest.raises(ValueError, match="on_rate_limit must be 'close' or 'drop', not 'ban'"):
        wsapp.App(on_rate_limit="ban")  # type: ignore[arg-type]


# The built-in server


async def test_a_connection_over_its_message_rate_is_closed_with_1008() -> None:
    app = echo_app(rate_limit_messages=NEVER, rate_limit_message_burst=5)
    async with running(app) as server, RawClient.connect(port(server)) as raw:
        for n in range(8):  # all at once, as a flooding client sends
            await raw.send(frame(OP_TEXT, f"m{n}".encode()))
        echoed = [(await raw.read_frame())[2] for _ in range(5)]
        assert echoed == [f"m{n}".encode() for n in range(5)]  # the burst, in order
        code, reason = await raw.read_close()
        await raw.send(close_frame(code))
    assert (code, reason) == (1008, "rate limit: more than 1e-06 messages per second")
    # The first message over the limit closed it; those behind it may arrive after the close.
    assert 1 <= app.metrics.rate_limited <= 3


async def test_the_drop_policy_answers_with_an_error_reply_and_keeps_the_connection() -> None:
    app = echo_app(rate_limit_bytes=NEVER, rate_limit_byte_burst=100, on_rate_limit="drop")
    async with running(app) as server, RawClient.connect(port(server)) as raw:
        for n in range(6):
            await raw.send(frame(OP_TEXT, f"{n}".encode() * 40))  # 40 bytes each
        replies = [(await raw.read_frame())[2] for _ in range(2)]
        assert replies == [b"0" * 40, b"1" * 40]  # 80 of the 100 bytes; the third is over
        error = json.loads((await raw.read_frame())[2])  # one reply for the run of 4
        assert (error["type"], error["error"]) == ("error", "rate_limited")
        assert error["detail"] == "more than 1e-06 bytes per second"
        assert error["retry_after"] > 0
        assert 1 <= error["dropped"] <= 4  # those turned away when it was sent
        await raw.send(close_frame(1000))
        assert await raw.read_close() == (1000, "")  # it stayed open until now, no reply more
        assert app.metrics.rate_limited == 4


async def test_a_run_of_dropped_messages_gets_one_reply_however_fast_it_is_answered() -> None:
    app = echo_app(rate_limit_messages=1, rate_limit_message_burst=2, on_rate_limit="drop")
    async with running(app) as server, RawClient.connect(port(server)) as raw:
        for n in range(5):
            await raw.send(frame(OP_TEXT, f"m{n}".encode()))
        assert [(await raw.read_frame())[2] for _ in range(2)] == [b"m0", b"m1"]
        first = json.loads((await raw.read_frame())[2])
        assert first["error"] == "rate_limited"
        # The reply has been sent; the flood goes on, within the same run.
        for n in range(5, 25):
            await raw.send(frame(OP_TEXT, f"m{n}".encode()))
        await anyio.sleep(first["retry_after"] + 0.2)  # what the reply says to wait
        await raw.send(frame(OP_TEXT, b"again"))
        rest = []
        while (message := (await raw.read_frame())[2]) != b"again":
            rest.append(message)
        await raw.send(close_frame(1000))
        assert await raw.read_close() == (1000, "")
    assert rest == []  # no second reply for the same run
    assert app.metrics.rate_limited == 23


async def test_the_reading_form_is_limited_too() -> None:
    app = wsapp.App(rate_limit_messages=NEVER, rate_limit_message_burst=2)
    read: list[wsapp.Message] = []

    @app.on_open
    async def read_all(conn: wsapp.Connection) -> None:
        async for message in conn:
            read.append(message)

    async def flood(address: str) -> int | None:
        async with connect(address) as ws:
            for n in range(5):
                await ws.send(f"m{n}")
            with pytest.raises(ConnectionClosedError):
                await ws.recv()
            return ws.close_code

    async with running(app) as server:
        assert await client(flood, url(server)) == 1008
    assert read == ["m0", "m1"]


async def test_a_client_over_its_handshake_rate_gets_429_with_retry_after() -> None:
    app = echo_app(rate_limit_handshakes=NEVER, rate_limit_handshake_burst=2)

    async def connect_three(address: str) -> tuple[int, str | None]:
        for _ in range(2):
            async with connect(address) as ws:
                await ws.send("in")
                await ws.recv()
        with pytest.raises(InvalidStatus) as refused:
            async with connect(address):
                pass
        response = refused.value.response
        return response.status_code, response.headers.get("Retry-After")

    async with running(app) as server:
        status, retry_after = await client(connect_three, url(server))
    assert (status, retry_after) == (429, str(int(1 / NEVER)))
    assert app.metrics.refused == {429: 1}


async def test_behind_a_trusted_proxy_the_forwarded_client_is_limited_not_the_proxy() -> None:
    app = echo_app(
        rate_limit_handshakes=NEVER,
        rate_limit_handshake_burst=1,
        trusted_proxies=["127.0.0.1"],
    )

    def forwarded_for(address: str) -> bytes:
        return handshake(extra=f"X-Forwarded-For: {address}\r\n")

    async with running(app) as server:
        at = port(server)
        first = await http_exchange(at, forwarded_for("203.0.113.7") + close_frame(1000))
        assert first.startswith(b"HTTP/1.1 101")
        again = await http_exchange(at, forwarded_for("203.0.113.7"))
        assert again.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
        other = await http_exchange(at, forwarded_for("203.0.113.8") + close_frame(1000))
        assert other.startswith(b"HTTP/1.1 101")  # the same proxy, another client
