"""A wsapp app mounted under /ws of a Starlette site: `uvicorn examples.starlette_mount:site`.

`GET /` is an ordinary Starlette page; `ws://.../ws/rooms/<name>` is served by wsapp. Starlette
does not pass the ASGI lifespan to mounted apps, so the site runs wsapp's hooks itself with
`lifespan=ws.lifespan`. (FastAPI is Starlette underneath: `FastAPI(lifespan=ws.lifespan)` and
`fastapi_app.mount("/ws", ws)` do the same.)
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

import wsapp

ws = wsapp.App()


@ws.on_startup
async def open_rooms() -> None:
    ws.state.visits = 0


@ws.route("/rooms/{room}")
class Room(wsapp.Connector):
    async def on_open(self) -> None:
        ws.state.visits += 1
        request = self.conn.request  # its path is relative to the mount: /rooms/<name>
        await self.conn.send(f"{request.path} visit {ws.state.visits}")

    async def on_message(self, message: str | bytes) -> None:
        await self.conn.send(message)


async def homepage(request: Request) -> PlainTextResponse:
    return PlainTextResponse("an HTTP page next to the WebSocket endpoints")


site = Starlette(routes=[Route("/", homepage), Mount("/ws", app=ws)], lifespan=ws.lifespan)
