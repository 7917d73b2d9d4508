"""Where every message a transport reads enters: counted, judged by the rate limits, queued.

A transport's reader hands each message it reads to its connection's
[Intake][wsapp.intake.Intake], and does nothing else with it: the one place all messages
pass is where the metrics count them and the rate limits judge them, before the
[Inbox][wsapp.inbox.Inbox] (a queue, nothing else) takes them for the callbacks.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol

from wsapp.inbox import Inbox
from wsapp.protocol import Message
from wsapp.protocol.frames import payload_size
from wsapp.ratelimit import MessageLimiter, RateLimited, RateLimitPolicy

if TYPE_CHECKING:
    from wsapp.operations.metrics import Metrics
    from wsapp.settings import Settings

__all__ = ["Handlers", "Inbound", "Intake"]

Inbound = Message | RateLimited
"""What the inbox holds for the callbacks: a message, or the marker of the messages a rate
limit turned away, in their place."""


class Handlers(Protocol):
    """What handles the inbox's messages: the connection's
    [Dispatcher][wsapp.dispatcher.Dispatcher]."""

    async def catch_up(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the callbacks to handle what the closed inbox
        holds (and the message they are handling, if any), then cancel them."""
        ...


class Intake:
    """The way in to one connection's ``inbox``: `offer` each message read, `close` at the
    close, or `drain` it first when the close must come after the replies of the
    ``handlers`` to what was read before.

    Every message is counted in ``metrics`` as it arrives, and judged by the rate limits of
    ``settings`` (read live): one over a limit is not queued, and takes no turn to wait; a
    [RateLimited][wsapp.ratelimit.RateLimited] takes its place at the start of a run of
    them, to be answered by the ``on_rate_limit`` policy in order with the messages before
    it. Queued messages are bounded by the connection's `read_buffer_size` and
    `max_message_size`.
    """

    __slots__ = ("_handlers", "_inbox", "_limiter", "_metrics", "_on_rate_limit", "_settings")

    def __init__(
        self,
        inbox: Inbox[Inbound],
        metrics: Metrics,
        settings: Settings,
        on_rate_limit: RateLimitPolicy,
        handlers: Handlers,
    ) -> None:
        self._inbox = inbox
        self._metrics = metrics
        self._settings = settings
        self._on_rate_limit: RateLimitPolicy = on_rate_limit
        # Made when a limit is first set: most connections never have one.
        self._limiter: MessageLimiter | None = None
        self._handlers: Handlers | None = handlers  # until closed: no reference cycle left

    def offer(self, message: Message) -> Awaitable[None] | None:
        """Take ``message``: count it, judge it by the rate limits, and queue it if the inbox
        has room. None once done; when the inbox is full, what to await until it is queued
        (or the inbox closed).

        Not a coroutine, for the readers' sake (see `Inbox.offer`).
        """
        # The per-message path: no call unless a message needs one (text that is not ASCII,
        # a rate limit set).
        length = len(message)
        payload = length if type(message) is bytes or message.isascii() else payload_size(message)
        metrics = self._metrics
        metrics.messages_received += 1
        metrics.bytes_received += payload
        settings = self._settings
        if settings.rate_limit_messages is not None or settings.rate_limit_bytes is not None:
            limited = self._judge(payload)
            if limited is not None:
                metrics.rate_limited += 1
                if limited.dropped == 1:  # a run begins: its later messages only count in it
                    self._inbox.insert(limited)
                return None
        return self._inbox.offer(message, settings.read_buffer_size, settings.max_message_size)

    def _judge(self, payload: int) -> RateLimited | None:
        limiter = self._limiter
        if limiter is None:
            limiter = self._limiter = MessageLimiter(self._settings, self._on_rate_limit)
        return limiter.judge(payload)

    def close(self) -> None:
        """No more messages: the inbox closes, and the callbacks drain what it holds."""
        self._inbox.close()
        self._handlers = None

    async def drain(self, grace: float) -> None:
        """`close`, then wait until the callbacks have handled what the inbox held, up to
        ``grace`` seconds (then they are cancelled): for a close that must come after their
        replies."""
        handlers = self._handlers
        self.close()
        if handlers is not None:
            await handlers.catch_up(grace)
