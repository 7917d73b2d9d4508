"""Large-message echo time: `python bench/large_messages.py`.

Echoes 1, 4 and 16 MiB binary messages through the echo example (max_message_size 16 MiB),
sent as one frame and as 4 KiB fragments, and prints seconds per MiB for each size. Linear
reassembly keeps seconds per MiB flat as the size grows; a quadratic one would multiply it
by 16 between 1 and 16 MiB.
"""

from __future__ import annotations

import asyncio
import os
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from echo import serving_echo

MIB = 1 << 20


def client_frame(opcode: int, payload: bytes, fin: bool) -> bytes:
    length = len(payload)
    if length < 126:
        head = bytes([(0x80 if fin else 0) | opcode, 0x80 | length])
    elif length < 1 << 16:
        head = bytes([(0x80 if fin else 0) | opcode, 0x80 | 126]) + struct.pack("!H", length)
    else:
        head = bytes([(0x80 if fin else 0) | opcode, 0x80 | 127]) + struct.pack("!Q", length)
    return head + b"\x00\x00\x00\x00" + payload  # a zero mask leaves the payload as is


async def echo_once(port: int, payload: bytes, fragment: int | None) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await reader.readuntil(b"\r\n\r\n")
    if fragment is None:
        data = client_frame(0x2, payload, True)
    else:
        chunks = [payload[i : i + fragment] for i in range(0, len(payload), fragment)]
        data = b"".join(
            client_frame(0x2 if i == 0 else 0x0, chunk, i == len(chunks) - 1)
            for i, chunk in enumerate(chunks)
        )
    start = time.perf_counter()
    writer.write(data)
    header = await reader.readexactly(10)
    (length,) = struct.unpack("!Q", header[2:])
    echoed = await reader.readexactly(length)
    elapsed = time.perf_counter() - start
    assert echoed == payload
    writer.close()
    return elapsed


async def run(port: int) -> None:
    for fragment in (None, 4096):
        shape = "one frame" if fragment is None else "4 KiB fragments"
        for size in (1, 4, 16):
            payload = os.urandom(size * MIB)
            elapsed = min([await echo_once(port, payload, fragment) for _ in range(3)])
            print(f"{shape:>16}, {size:2d} MiB: {elapsed:6.3f} s, {elapsed / size:.4f} s/MiB")


def main() -> None:
    with serving_echo("--max-message-size", str(16 * MIB)) as (port, _):
        asyncio.run(run(port))


if __name__ == "__main__":
    main()
