"""The way into a connection's inbox, without sockets: every message counted, the rate limits
judged before anything is queued."""

from __future__ import annotations

import pytest

from wsapp.inbox import Inbox
from wsapp.intake import Inbound, Intake
from wsapp.operations.metrics import Metrics
from wsapp.ratelimit import RateLimited
from wsapp.rooms import Rooms
from wsapp.settings import Settings
from wsapp.transport import OpenConnections

pytestmark = pytest.mark.anyio


class Handlers:
    """Stands for the callbacks: `catch_up` takes what the inbox holds, as they would."""

    def __init__(self, inbox: Inbox[Inbound]) -> None:
        self.inbox = inbox
        self.handled: list[Inbound] = []
        self.graces: list[float] = []

    async def catch_up(self, grace: float) -> None:
        assert self.inbox.closed  # nothing more can arrive while they catch up
        self.graces.append(grace)
        while (message := self.inbox.take_nowait()) is not None:
            self.handled.append(message)


def new_intake(
    settings: Settings | None = None,
) -> tuple[Intake, Inbox[Inbound], Metrics, Handlers]:
    inbox: Inbox[Inbound] = Inbox()
    metrics = Metrics(Rooms(), OpenConnections())
    handlers = Handlers(inbox)
    return (
        Intake(inbox, metrics, settings or Settings(), "drop", handlers),
        inbox,
        metrics,
        handlers,
    )


async def test_every_message_offered_is_counted_with_its_payload_bytes() -> None:
    intake, inbox, metrics, _ = new_intake()
    messages: list[str | bytes] = ["ascii", "héllo ✓", b"\x00\x01"]
    for message in messages:
        assert intake.offer(message) is None
    assert metrics.messages_received == 3
    assert metrics.bytes_received == 5 + len("héllo ✓".encode()) + 2
    assert [inbox.take_nowait() for _ in messages] == messages


async def test_the_connections_limits_bound_the_inbox_and_a_waited_message_counts_once() -> None:
    intake, inbox, metrics, _ = new_intake(Settings(read_buffer_size=1))
    assert intake.offer("a") is None
    waiting = intake.offer("b")
    assert waiting is not None and len(inbox) == 1  # full: not queued until there is room
    assert inbox.take_nowait() == "a"
    await waiting
    assert inbox.take_nowait() == "b"
    assert metrics.messages_received == 2


async def test_messages_over_a_rate_limit_are_replaced_by_one_marker_per_run() -> None:
    intake, inbox, metrics, _ = new_intake(
        Settings(rate_limit_messages=1e-6, rate_limit_message_burst=1, read_buffer_size=1)
    )
    for message in ["kept", "over", "over too"]:
        # Full after the first: a message turned away takes no turn to wait, and its
        # marker is queued all the same.
        assert intake.offer(message) is None
    assert inbox.take_nowait() == "kept"
    limited = inbox.take_nowait()
    assert isinstance(limited, RateLimited)
    assert (limited.policy, limited.dropped, len(inbox)) == ("drop", 2, 0)
    assert metrics.rate_limited == 2
    assert metrics.messages_received == 3


async def test_a_rate_limit_set_later_applies_from_the_next_message() -> None:
    settings = Settings()
    intake, inbox, _, _ = new_intake(settings)
    assert intake.offer("before") is None
    settings.rate_limit_messages = 1e-6
    settings.rate_limit_message_burst = 1
    assert intake.offer("first under the limit") is None
    assert intake.offer("over") is None
    assert [inbox.take_nowait(), inbox.take_nowait()] == ["before", "first under the limit"]
    assert isinstance(inbox.take_nowait(), RateLimited)


async def test_close_closes_the_inbox() -> None:
    intake, inbox, metrics, _ = new_intake()
    assert intake.offer("queued") is None
    intake.close()
    assert intake.offer("late") is None  # counted, but nobody will handle it
    assert (inbox.closed, inbox.take_nowait(), inbox.take_nowait()) == (True, "queued", None)
    assert metrics.messages_received == 2


async def test_drain_closes_then_waits_for_the_callbacks_to_handle_what_was_queued() -> None:
    intake, inbox, _, handlers = new_intake()
    for message in ["one", "two"]:
        assert intake.offer(message) is None
    await intake.drain(2.5)
    assert (handlers.handled, handlers.graces, inbox.closed) == (["one", "two"], [2.5], True)
    await intake.drain(2.5)  # closed already: nothing more to wait for
    assert handlers.graces == [2.5]
