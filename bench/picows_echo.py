"""The echo server as users write it with picows (Cython, on uvloop), for bench/suite.py.

    python bench/picows_echo.py PORT [--max-size BYTES]

A `WSListener` that sends each text, binary or continuation frame back as it is (picows
works frame by frame; the FIN bit is kept, so a fragmented message is echoed fragmented) and
answers the client's close frame with its own, then disconnects. Frames larger than
``--max-size`` (1 MiB by default, wsapp's and websockets' message limit) close the
connection. picows answers pings itself (its default); it has no permessage-deflate. It runs
with picows' defaults otherwise, which include its own socket transport (aiofastnet, a
dependency of picows) on the uvloop event loop.
"""

from __future__ import annotations

import argparse

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

DATA = (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION)


class Echo(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type in DATA:
            transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()


def listener(request: WSUpgradeRequest) -> Echo:
    return Echo()


async def serve(port: int, max_size: int) -> None:
    server = await ws_create_server(
        listener, "127.0.0.1", port, max_frame_size=max_size, backlog=1024
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--max-size", type=int, default=1 << 20)
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.max_size))


if __name__ == "__main__":
    main()
