"""The in-memory broker: one process, nothing to connect to."""

from __future__ import annotations

from wsapp.rooms.brokers import Broker, Deliver, Member

__all__ = ["MemoryBroker"]


class MemoryBroker(Broker):
    """Delivers each message at once, in this process; presence is this process's members."""

    local = True

    def __init__(self) -> None:
        self._deliver: Deliver | None = None
        self._members: dict[str, dict[str, Member]] = {}

    async def start(self, deliver: Deliver, task_group: object) -> None:
        self._deliver = deliver

    async def publish(self, room: str, envelope: bytes) -> None:
        if self._deliver is not None:
            self._deliver(room, envelope)

    async def add_member(self, room: str, member: Member) -> None:
        self._members.setdefault(room, {})[member.id] = member

    async def remove_member(self, room: str, member_id: str) -> None:
        members = self._members.get(room)
        if members is not None:
            members.pop(member_id, None)
            if not members:
                del self._members[room]

    async def presence(self, room: str) -> list[Member]:
        return list(self._members.get(room, {}).values())
