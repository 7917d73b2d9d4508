"""Chat rooms in class form: `python -m wsapp examples.room:app`, then connect to /rooms/<name>.

A new Room instance serves each connection; the class-level dict holds who is in which room.
"""

import contextlib
from collections import defaultdict
from typing import ClassVar

import anyio

import wsapp

app = wsapp.App()


@app.route("/rooms/{room}")
class Room(wsapp.Connector):
    members: ClassVar[defaultdict[str, set[wsapp.Connection]]] = defaultdict(set)

    async def on_open(self) -> None:
        self.room = self.conn.request.path_params["room"]
        self.members[self.room].add(self.conn)
        await self.conn.send(f"joined {self.room} ({len(self.members[self.room])} here)")

    async def on_message(self, message: str | bytes) -> None:
        async with anyio.create_task_group() as tg:
            for member in self.members[self.room]:
                if member is not self.conn:
                    tg.start_soon(self._deliver, member, f"{self.conn.id}: {message!s}")

    async def on_close(self, was_clean: bool, code: int, reason: str) -> None:
        self.members[self.room].discard(self.conn)

    @staticmethod
    async def _deliver(member: wsapp.Connection, text: str) -> None:
        # That member may have left while we were sending; its on_close cleans up.
        with contextlib.suppress(wsapp.ConnectionClosed):
            await member.send(text)
