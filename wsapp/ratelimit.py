"""Rate limits: how many messages and bytes a connection may send, and how many handshakes a
client address may make, per second, with a burst.

Each limit is a token bucket: it holds up to `burst` tokens, refills at `rate` per second,
and each message (or byte, or handshake) takes one. A message larger than the whole burst
of bytes is let through when the bucket is full and leaves it in debt, so the average rate
holds for messages of any size without a burst as large as `max_message_size`.

Messages are judged as they arrive, before they are queued: a message over the limit never
reaches a handler. What happens to it is the endpoint's `on_rate_limit` policy, applied in
order with the messages before it (see [RateLimited][wsapp.ratelimit.RateLimited]).
"""

from __future__ import annotations

import math
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic_core import to_json

from wsapp.exceptions import ConnectionClosed
from wsapp.protocol import CloseCode, Refusal
from wsapp.settings import Settings

__all__ = [
    "MAX_CLIENTS",
    "Answerable",
    "HandshakeLimiter",
    "MessageLimiter",
    "RateLimitPolicy",
    "RateLimited",
    "TokenBucket",
    "enforce",
]

RateLimitPolicy = Literal["close", "drop"]

#: Client addresses whose handshake buckets are kept; past it, the idle ones are forgotten.
MAX_CLIENTS = 10_000


class TokenBucket:
    """Up to ``burst`` tokens, refilled at ``rate`` per second (full to begin with)."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, amount: float, now: float) -> bool:
        """Take ``amount`` tokens if there are enough (or, for more than the burst, if the
        bucket is full); False, taking nothing, if not."""
        # Called per message: the refill is written out here rather than in a helper.
        burst = self.burst
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > burst:
            tokens = burst
        self.stamp = now
        if tokens < (amount if amount < burst else burst):
            self.tokens = tokens
            return False
        self.tokens = tokens - amount
        return True

    def wait(self, amount: float) -> float:
        """Seconds until ``amount`` tokens can be taken (as of the last `take`)."""
        missing = min(amount, self.burst) - self.tokens
        return max(0.0, missing / self.rate) if self.rate > 0 else math.inf

    def full(self, now: float) -> bool:
        """Whether it has refilled completely (it then holds nothing worth keeping)."""
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


@dataclass(slots=True)
class RateLimited:
    """Stands in the inbox for the messages a rate limit turned away, in their place.

    Consecutive messages over the limit (a run: until a message is let through again) share
    one, so a flooding client gets one answer per run of dropped messages, not one per
    message, however fast the callbacks take it.

    Attributes:
        policy: What to do about them: `"close"` with 1008, or `"drop"` them with an error
            reply.
        limit: Which limit, in words (`"10 messages per second"`).
        dropped: How many messages it stands for (when it is answered: the run may go on
            after, silently, counted in the metrics).
        retry_after: Seconds until the client may send again.
    """

    policy: RateLimitPolicy
    limit: str
    dropped: int = 1
    retry_after: float = 0.0

    def __len__(self) -> int:
        return 0  # it takes no room in the inbox's size bound

    def reply(self) -> str:
        """The error reply of the `"drop"` policy, in the shape of typed messages' errors."""
        return to_json(
            {
                "type": "error",
                "error": "rate_limited",
                "detail": f"more than {self.limit}",
                "dropped": self.dropped,
                "retry_after": round(self.retry_after, 3),
            }
        ).decode()


class Answerable(Protocol):
    """What `enforce` needs of a connection (a [Connection][wsapp.Connection] is one)."""

    async def send(self, item: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


async def enforce(conn: Answerable, limited: RateLimited) -> None:
    """Apply the policy: close the connection with 1008, or answer with the error reply."""
    if limited.policy == "close":
        await conn.close(CloseCode.POLICY_VIOLATION, f"rate limit: more than {limited.limit}")
        return
    with suppress(ConnectionClosed):  # it closed meanwhile: nothing left to answer
        await conn.send(limited.reply())


class MessageLimiter:
    """The message and byte limits of one connection, read live from its settings (a limit
    set or changed in a callback applies from the next message)."""

    __slots__ = ("_bytes", "_messages", "_run", "_settings", "policy")

    def __init__(self, settings: Settings, policy: RateLimitPolicy) -> None:
        self._settings = settings
        self.policy: RateLimitPolicy = policy
        self._messages: TokenBucket | None = None
        self._bytes: TokenBucket | None = None
        self._run: RateLimited | None = None  # the messages turned away since the last let in

    def judge(self, size: int) -> RateLimited | None:
        """None if a message of ``size`` payload bytes is within the limits; else the run of
        turned-away messages it joins: a new one (to be answered) when its `dropped` is 1.

        The caller skips it while no limit is set."""
        settings = self._settings
        message_rate, byte_rate = settings.rate_limit_messages, settings.rate_limit_bytes
        now = time.monotonic()
        if message_rate is not None:
            burst = settings.rate_limit_message_burst
            self._messages = bucket = _current(self._messages, message_rate, burst, now)
            if not bucket.take(1, now):
                return self._limited(bucket, 1, "messages")
        if byte_rate is not None:
            burst = settings.rate_limit_byte_burst
            self._bytes = bucket = _current(self._bytes, byte_rate, burst, now)
            if not bucket.take(size, now):
                return self._limited(bucket, size, "bytes")
        self._run = None
        return None

    def _limited(self, bucket: TokenBucket, amount: float, unit: str) -> RateLimited:
        limit = f"{bucket.rate:g} {unit} per second"
        run = self._run
        if run is not None and run.limit == limit:
            run.dropped += 1
            run.retry_after = bucket.wait(amount)
        else:
            self._run = run = RateLimited(self.policy, limit, retry_after=bucket.wait(amount))
        return run


def _current(
    bucket: TokenBucket | None, rate: float, burst: float | None, now: float
) -> TokenBucket:
    """``bucket``, made or updated to the limit the settings give now (the burst is one
    second's worth unless set)."""
    burst = burst or rate
    if bucket is None:
        return TokenBucket(rate, burst, now)
    if bucket.rate != rate or bucket.burst != burst:
        bucket.rate, bucket.burst = rate, burst
    return bucket


class HandshakeLimiter:
    """The handshake limit of one server: a bucket per client address, bounded in number."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}

    def refusal(self, client: str | None, settings: Settings) -> Refusal | None:
        """None if ``client`` may make one more handshake now; else the 429 to answer it
        with. A client without an address (a unix socket peer) is not limited."""
        rate = settings.rate_limit_handshakes
        if rate is None or client is None:
            return None
        now = time.monotonic()
        bucket = _current(self._buckets.get(client), rate, settings.rate_limit_handshake_burst, now)
        if client not in self._buckets:
            self._forget_idle(now)
            self._buckets[client] = bucket
        if bucket.take(1, now):
            return None
        retry_after = max(1, math.ceil(bucket.wait(1)))
        return Refusal(
            429,
            f"more than {rate:g} handshakes per second from {client} (rate_limit_handshakes)",
            [("Retry-After", str(retry_after))],
            body=b"too many handshakes; retry later\n",
        )

    def _forget_idle(self, now: float) -> None:
        """Past `MAX_CLIENTS` addresses, forget those whose bucket has refilled (forgetting
        them changes nothing), and if that is not enough, the oldest half."""
        buckets = self._buckets
        if len(buckets) < MAX_CLIENTS:
            return
        for client in [client for client, bucket in buckets.items() if bucket.full(now)]:
            del buckets[client]
        if len(buckets) >= MAX_CLIENTS:
            for client in list(buckets)[: len(buckets) // 2]:
                del buckets[client]

    def __len__(self) -> int:
        return len(self._buckets)
