"""Server memory per connection: `python bench/memory.py [--connections 2000]`.

Starts the echo example in its own process, opens N WebSocket connections to it (each
completes the handshake, then stays open and idle) and reports the growth of the server's
resident memory per connection. The bounds for busy connections are derived from the
settings in docs/conformance.md, and checked by tests/robustness.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from echo import EchoLoad, serving_echo


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def idle_connections(port: int, count: int) -> list[asyncio.Transport]:
    loop = asyncio.get_running_loop()
    transports = []
    for _ in range(count):
        ready: asyncio.Future[None] = loop.create_future()
        transport, _ = await loop.create_connection(
            lambda ready=ready: EchoLoad(ready, [0]), "127.0.0.1", port
        )
        await ready
        transports.append(transport)
    return transports


async def measure(port: int, pid: int, count: int) -> None:
    await asyncio.sleep(0.5)
    before = rss(pid)
    transports = await idle_connections(port, count)
    await asyncio.sleep(1)
    after = rss(pid)
    print(
        f"{count} idle connections: server RSS +{(after - before) / 2**20:.1f} MiB, "
        f"{(after - before) / count / 1024:.1f} KiB per connection"
    )
    for transport in transports:
        transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "uvloop", "trio"])
    args = parser.parse_args()
    with serving_echo("--backend", args.backend) as (port, server):
        asyncio.run(measure(port, server.pid, args.connections))


if __name__ == "__main__":
    main()
