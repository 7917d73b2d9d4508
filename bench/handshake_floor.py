"""The least a Python server can spend per WebSocket handshake, beside wsapp and websockets.

    python bench/handshake_floor.py [--rounds 3] [--seconds 3]

The floor is a bare asyncio `Protocol` that does nothing but what W4's handshake load needs:
find the request's key, write the 101, answer the client's close frame and close the socket,
all in the loop's callbacks, with no task, no timeout, no check of the request. No server
could do less in Python; it shows how far apart "1.5x websockets' handshake rate" (issue 11)
and the cost of serving each connection with a task of its own are. The load is
`bench/suite.py`'s W4 handshakes (20 loops of connect, upgrade, close); rounds alternate
between the servers; reported: medians of handshakes per second and server CPU (from /proc)
per handshake.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import socket
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from echo import Contender, free_port, wsapp_command
from suite import SUITE, handshakes, spawn, stop

ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: "
)


class FloorProtocol(asyncio.Protocol):
    """Upgrades, then echoes the client's close frame and closes: nothing else."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if not self.upgraded:
            self.head += data
            head, found, data = self.head.partition(b"\r\n\r\n")
            if not found:
                return
            key = next(
                line.partition(b":")[2].strip()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key + ACCEPT_GUID).digest())
            self.transport.write(RESPONSE + accept + b"\r\n\r\n")
            self.upgraded = True
        if len(data) >= 6 and data[0] & 0x0F == 0x8:  # the client's (masked) close frame
            size, mask = data[1] & 0x7F, data[2:6]
            payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(data[6 : 6 + size]))
            self.transport.write(bytes([0x88, len(payload)]) + payload)
            self.transport.close()


async def serve_floor(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(
        FloorProtocol, "127.0.0.1", port, backlog=1024
    )
    async with server:
        await server.serve_forever()


def contenders() -> list[tuple[Contender, int]]:
    ports = [free_port() for _ in range(3)]
    floor = [sys.executable, str(Path(__file__).resolve()), "--serve-floor", str(ports[2])]
    websockets = [sys.executable, str(SUITE), "--serve-websockets", str(ports[1]),
                  "--ws-max-size", str(1 << 20), "--ws-compression", "none"]  # fmt: skip
    return [
        (Contender("wsapp", wsapp_command(ports[0], "--no-compression")), ports[0]),
        (Contender("websockets", websockets), ports[1]),
        (Contender("asyncio Protocol floor", floor), ports[2]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--serve-floor", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor:
        asyncio.run(serve_floor(args.serve_floor))
        return
    chosen = contenders()
    results: dict[str, list[tuple[float, float]]] = {c.name: [] for c, _ in chosen}
    for round_number in range(1, args.rounds + 1):
        for contender, port in chosen:
            process = spawn(contender, port)
            try:
                figures = asyncio.run(handshakes(port, process.pid, args.seconds))
            finally:
                stop(process)
            results[contender.name].append((figures["rate"], figures["cpu"]))
            print(f"round {round_number} {contender.name}: {figures['rate']:,.0f}/s, "
                  f"{figures['cpu']:.0f} µs CPU", file=sys.stderr)  # fmt: skip
    print(f"median of {args.rounds} rounds, W4 handshakes (20 client loops):")
    medians = {
        name: (statistics.median(r for r, _ in runs), statistics.median(c for _, c in runs))
        for name, runs in results.items()
    }
    for name, (rate, cpu) in medians.items():
        print(f"  {name:>24}: {rate:8,.0f} handshakes/s, {cpu:4.0f} µs CPU per handshake")
    websockets_rate = medians["websockets"][0]
    for name in ("wsapp", "asyncio Protocol floor"):
        print(f"  {name} ÷ websockets, handshakes/s: {medians[name][0] / websockets_rate:.2f}x")


if __name__ == "__main__":
    main()
