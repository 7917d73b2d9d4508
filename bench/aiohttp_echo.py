"""The echo server as users write it with aiohttp (3.x, its C frame reader), for bench/suite.py.

    python bench/aiohttp_echo.py PORT [--max-size BYTES] [--deflate]

One route, `/`, that upgrades with `web.WebSocketResponse` and sends each text or binary
message back until the client closes. Messages larger than ``--max-size`` (1 MiB by default,
wsapp's and websockets' limit) close the connection; permessage-deflate only with
``--deflate``. aiohttp answers pings itself; heartbeats are off, as by default.
"""

from __future__ import annotations

import argparse

from aiohttp import WSMsgType, web


def make_app(max_size: int, deflate: bool) -> web.Application:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=max_size, compress=deflate)
        await ws.prepare(request)
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    await ws.send_str(message.data)
                elif message.type is WSMsgType.BINARY:
                    await ws.send_bytes(message.data)
        except ConnectionResetError:
            pass  # the load generator drops its connections at the end of a round
        return ws

    app = web.Application()
    app.router.add_get("/", echo)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--max-size", type=int, default=1 << 20)
    parser.add_argument("--deflate", action="store_true")
    args = parser.parse_args()
    web.run_app(make_app(args.max_size, args.deflate), host="127.0.0.1", port=args.port,
                print=None, backlog=1024)  # fmt: skip


if __name__ == "__main__":
    main()
