"""Broadcasting from a process that serves no connections: a worker, a cron job, a script."""

from __future__ import annotations

from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_json

from wsapp.protocol import PreparedMessage
from wsapp.protocol.frames import OPCODE_TEXT
from wsapp.rooms import prepare
from wsapp.rooms.brokers import Member, pack
from wsapp.rooms.brokers.redis import RedisBroker
from wsapp.tasks import tasks_for_block

__all__ = ["Publisher"]


class Publisher:
    """Sends messages to the rooms of apps served elsewhere, through their Redis broker.

    ```python
    async with wsapp.Publisher("redis://localhost:6379/0") as publisher:
        await publisher.broadcast("room:42", "the report is ready")
    ```

    Messages are encoded here, once, exactly as `App.broadcast` encodes them, and reach
    every member of the room in every process serving it. Leaving the block waits (a few
    seconds at most) until what was broadcast is on its way.

    Args:
        broker: The `redis://` URL the serving processes use as their `broker`.
    """

    def __init__(self, broker: str) -> None:
        scheme = broker.partition("://")[0].lower()
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                f"a Publisher reaches the servers through their Redis broker: give its "
                f"redis:// URL, not {broker!r}"
            )
        self._broker = RedisBroker(broker)
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Publisher:
        async with AsyncExitStack() as stack:
            tasks = await stack.enter_async_context(tasks_for_block())
            await self._broker.start(_ignore, tasks)
            stack.push_async_callback(self._broker.stop)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def broadcast(self, room: str, message: str | bytes | BaseModel) -> None:
        """Send ``message`` to every member of ``room``: `str` as text, `bytes` as binary, a
        pydantic model as its JSON."""
        await self._broker.publish(room, pack(prepare(message), None))

    async def broadcast_json(self, room: str, data: Any) -> None:
        """Send ``data`` (dicts, lists, models, datetimes...) as JSON text."""
        await self._broker.publish(room, pack(PreparedMessage(OPCODE_TEXT, to_json(data)), None))

    async def presence(self, room: str) -> list[Member]:
        """The members of ``room`` in every serving process."""
        return await self._broker.presence(room)


def _ignore(room: str, envelope: bytes) -> None:
    """A publisher subscribes to nothing, so it is handed nothing."""
