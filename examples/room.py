"""Chat rooms in class form: `python -m wsapp examples.room:app`, then connect to /rooms/<name>.

A new Room instance serves each connection; the room itself is one of wsapp's rooms, so a
message is encoded once for every member, a member that stops reading never holds up the
others, and the same code spans processes with `--workers` or `--broker`.
"""

import wsapp

app = wsapp.App()


@app.route("/rooms/{room}")
class Room(wsapp.Connector):
    async def on_open(self) -> None:
        self.room = self.conn.request.path_params["room"]
        await self.conn.join(self.room)  # left by itself when the connection ends
        await self.conn.send(f"joined {self.room} ({app.rooms.count(self.room)} here)")

    async def on_message(self, message: str | bytes) -> None:
        await app.broadcast(self.room, f"{self.conn.id}: {message!s}", exclude=self.conn)
