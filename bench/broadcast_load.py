"""The receiving load generator of `bench/broadcast.py`: one process holding thousands of raw
WebSocket connections, and the control connection the benchmark drives the publisher with.

Each member is an asyncio Protocol (on uvloop when it is installed) whose handshake is written
by hand: plain WebSocket (`ws`: wait for the server's `ok`), or Engine.IO v4 over WebSocket
(`eio`: `0{...}`, send `40`, `40{...}`, emit `join` with an ack id, wait for the ack). From
then on a member parses nothing: it adds the length of each read to its count, and the
benchmark divides by the frame size, measured once by a probe broadcast. A member reaches its
target exactly when its last byte arrives, so the process reports the moment the last of its
members has everything.

A process is driven through a pipe by `bench/broadcast.py` (`serve_pipe`); `stall` stops
reading on the members chosen as stall candidates, whose sockets have a 4 KiB receive buffer
and a 1460-byte MSS (a small-window client, so that their buffers fill in seconds, not in
the minutes loopback's 64 KiB MSS and multi-megabyte autotuned buffers would take).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))
from broadcast_peers import raise_nofile
from echo import masked_text_frame

EIO_PATH = "/socket.io/?EIO=4&transport=websocket"
OPCODE_TEXT, OPCODE_CLOSE = 0x1, 0x8
#: The receive buffer and MSS of the members that will stall.
STALL_RCVBUF = 4096
STALL_MSS = 1460
#: The target of a process that expects nothing.
NO_TARGET = 1 << 62


def handshake_request(path: str, port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def split_frames(buffer: bytearray) -> list[tuple[int, bytes]]:
    """Take the complete (unmasked, server-sent) frames off the front of ``buffer``."""
    frames = []
    while len(buffer) >= 2:
        length, start = buffer[1] & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                break
            length, start = int.from_bytes(buffer[2:4], "big"), 4
        elif length == 127:
            if len(buffer) < 10:
                break
            length, start = int.from_bytes(buffer[2:10], "big"), 10
        if len(buffer) < start + length:
            break
        frames.append((buffer[0] & 0x0F, bytes(buffer[start : start + length])))
        del buffer[: start + length]
    return frames


class Tally:
    """What one load process counts, across its members."""

    def __init__(self) -> None:
        self.total = 0
        self.target = NO_TARGET  # bytes over all reading members
        self.reached: float | None = None
        self.notify: Connection | None = None

    def hit(self) -> None:
        self.reached = time.monotonic()
        self.target = NO_TARGET
        if self.notify is not None:
            self.notify.send(("reached", self.reached))


class Member(asyncio.Protocol):
    """One member connection: the handshake by hand, then bytes counted, not parsed."""

    def __init__(self, tally: Tally, kind: str, request: bytes, ready: asyncio.Future[None]):
        self.tally = tally
        self.kind = kind
        self.request = request
        self.ready = ready
        self.buffer = bytearray()
        self.upgraded = False
        self.counting = False
        self.received = 0
        self.stalled = False
        self.scanning = False
        self.scan: dict[str, Any] = {}
        self.lost = False
        self.gone = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.gone.set()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("lost during the handshake"))

    def data_received(self, data: bytes) -> None:
        if self.counting:  # the hot path: one addition per read
            n = len(data)
            self.received += n
            tally = self.tally
            tally.total += n
            if tally.total >= tally.target:
                tally.hit()
            return
        self.buffer += data
        if self.scanning:
            self._scan()
        elif not self.upgraded:
            self._upgrade()
        else:
            self._setup()

    def _upgrade(self) -> None:
        head, sep, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        if not sep:
            return
        if not head.startswith(b"HTTP/1.1 101"):
            self.ready.set_exception(ConnectionError(head.decode(errors="replace")[:200]))
            return
        self.upgraded = True
        self.buffer = bytearray(rest)
        self._setup()

    def _setup(self) -> None:
        assert self.transport is not None
        for opcode, payload in split_frames(self.buffer):
            if opcode != OPCODE_TEXT:
                self.ready.set_exception(ConnectionError(f"frame {opcode} during setup"))
                return
            if self.kind == "ws" and payload == b"ok":
                self._joined()
            elif self.kind == "eio" and payload.startswith(b"0{"):
                self.transport.write(masked_text_frame(b"40"))
            elif self.kind == "eio" and payload.startswith(b"40"):
                join = b'421["join","stall"]' if self.stalled else b'421["join"]'
                self.transport.write(masked_text_frame(join))
            elif self.kind == "eio" and payload.startswith(b"431"):
                self._joined()

    def _joined(self) -> None:
        if self.buffer:
            self.ready.set_exception(ConnectionError("unexpected bytes after joining"))
            return
        self.counting = True
        if not self.ready.done():
            self.ready.set_result(None)

    def start_scan(self) -> None:
        """Read again, parsing: how many messages were still on their way, and the close."""
        assert self.transport is not None
        self.counting, self.scanning = False, True
        self.scan = {"frames": 0, "close": None}
        self.transport.resume_reading()

    def _scan(self) -> None:
        for opcode, payload in split_frames(self.buffer):
            if opcode == OPCODE_CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.scan["close"] = code
                assert self.transport is not None  # answer it (a zero mask is a mask too)
                self.transport.write(bytes((0x88, 0x82, 0, 0, 0, 0)) + payload[:2])
            else:
                self.scan["frames"] += 1


class LoadProcess:
    """The members of one process, driven by the commands of its pipe."""

    def __init__(self, pipe: Connection) -> None:
        self.pipe = pipe
        self.tally = Tally()
        self.tally.notify = pipe
        self.members: list[Member] = []
        self.done = asyncio.Event()

    async def connect(
        self, port: int, kind: str, count: int, stall: int, inflight: int
    ) -> tuple[int, int, int]:
        """Open ``count`` members (the first ``stall`` of them stall candidates), at most
        ``inflight`` handshakes at a time; (members, stall candidates, failures)."""
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(inflight)
        failures = 0

        async def open_one(index: int) -> None:
            nonlocal failures
            async with gate:
                for _attempt in range(3):
                    ready: asyncio.Future[None] = loop.create_future()
                    path = EIO_PATH if kind == "eio" else "/stall" if index < stall else "/"
                    member = Member(self.tally, kind, handshake_request(path, port), ready)
                    member.stalled = index < stall
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    if member.stalled:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALL_RCVBUF)
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, STALL_MSS)
                    sock.setblocking(False)
                    try:
                        async with asyncio.timeout(30):
                            await loop.sock_connect(sock, ("127.0.0.1", port))
                            await loop.create_connection(lambda m=member: m, sock=sock)
                            await ready
                    except (OSError, TimeoutError):
                        sock.close()
                        if member.transport is not None:
                            member.transport.abort()
                        failures += 1
                        await asyncio.sleep(0.2)
                        continue
                    self.members.append(member)
                    return

        await asyncio.gather(*(open_one(index) for index in range(count)))
        stalled = sum(member.stalled for member in self.members)
        return len(self.members), stalled, failures

    def reading(self) -> list[Member]:
        return [m for m in self.members if m.counting and not m.lost]

    def handle(self, command: tuple[Any, ...]) -> None:
        name, args = command[0], command[1:]
        if name == "connect":

            async def connect() -> None:
                started = time.monotonic()
                opened, stalled, failures = await self.connect(*args)
                self.pipe.send(("connected", opened, stalled, failures, time.monotonic() - started))

            asyncio.get_running_loop().create_task(connect())
            return
        if name == "reset":
            for member in self.members:
                member.received = 0
            self.tally.total, self.tally.target, self.tally.reached = 0, NO_TARGET, None
            self.pipe.send(("ok",))
        elif name == "expect":  # (bytes per reading member): report when all have them
            self.tally.target = self.tally.total + args[0] * len(self.reading())
            self.tally.reached = None
            self.pipe.send(("ok", len(self.reading())))
            if self.tally.total >= self.tally.target:
                self.tally.hit()
        elif name == "sizes":
            counts = [m.received for m in self.reading()]
            lost = sum(m.lost for m in self.members)
            self.pipe.send(
                (
                    "sizes",
                    min(counts, default=0),
                    max(counts, default=0),
                    sum(counts),
                    len(counts),
                    lost,
                )
            )
        elif name == "stall":
            stalled = [m for m in self.members if m.stalled and not m.lost]
            for member in stalled:
                assert member.transport is not None
                member.counting = False
                member.transport.pause_reading()
            self.pipe.send(("ok", len(stalled)))
        elif name == "scan":  # resume the stalled members; report what reached them
            asyncio.get_running_loop().create_task(self.scan(args[0]))
            return
        elif name == "close":
            for member in self.members:
                if member.transport is not None:
                    member.transport.abort()
            self.members.clear()
            self.tally = Tally()
            self.tally.notify = self.pipe
            self.pipe.send(("ok",))
        elif name == "exit":
            self.done.set()

    async def scan(self, seconds: float) -> None:
        stalled = [m for m in self.members if m.stalled and not m.counting]
        for member in stalled:
            member.start_scan()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                for member in stalled:
                    await member.gone.wait()
        result = {
            "stalled": len(stalled),
            "closed_1008": sum(m.scan.get("close") == 1008 for m in stalled),
            "closed_other": sum(m.scan.get("close") not in (None, 1008) for m in stalled),
            "lost_without_close": sum(m.lost and m.scan.get("close") is None for m in stalled),
            "still_open": sum(not m.lost for m in stalled),
            "frames_after_stall": sum(m.scan.get("frames", 0) for m in stalled),
        }
        self.pipe.send(("scanned", json.dumps(result)))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()

        def readable() -> None:
            try:
                command = self.pipe.recv()
            except EOFError:
                self.done.set()
                return
            self.handle(command)

        loop.add_reader(self.pipe.fileno(), readable)
        await self.done.wait()
        loop.remove_reader(self.pipe.fileno())
        for member in self.members:
            if member.transport is not None:
                member.transport.abort()


def serve_pipe(pipe: Connection) -> None:
    """The body of one load process."""
    raise_nofile()
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    with contextlib.closing(loop):
        loop.run_until_complete(LoadProcess(pipe).run())


class Control:
    """The benchmark's control connection (blocking): asks the server's publisher for
    broadcasts, and for its statistics."""

    def __init__(self, port: int, kind: str) -> None:
        self.kind = kind
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        path = EIO_PATH if kind == "eio" else "/control"
        self.sock.sendall(handshake_request(path, port))
        self.buffer = bytearray()
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.decode(errors="replace"))
        self.buffer = bytearray(rest)
        self.acks = 0
        if kind == "eio":
            self.receive()  # 0{...}
            self.sock.sendall(masked_text_frame(b"40"))
            self.receive()  # 40{...}

    def fileno(self) -> int:
        return self.sock.fileno()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the control connection closed")
        self.buffer += data

    def poll(self) -> str | None:
        """A reply already received, if any (call when the socket is readable)."""
        self._fill()
        frames = split_frames(self.buffer)
        assert len(frames) <= 1, frames
        return frames[0][1].decode() if frames else None

    def receive(self) -> str:
        while True:
            frames = split_frames(self.buffer)
            if frames:
                assert len(frames) == 1, frames
                return frames[0][1].decode()
            self._fill()

    def send(self, command: str, *args: int) -> None:
        """``run N B`` or ``stats``; the reply comes with `receive` (or `poll`)."""
        if self.kind == "eio":
            self.acks += 1
            text = f"42{self.acks}" + json.dumps([command, *args])
        else:
            text = " ".join([command, *map(str, args)])
        self.sock.sendall(masked_text_frame(text.encode()))

    def reply(self, text: str) -> Any:
        """The content of a reply: `done`, or the statistics as a dict."""
        if self.kind == "eio":
            return json.loads(text[2 + len(str(self.acks)) :])[0]  # 43<id>[value]
        return text if text == "done" else json.loads(text)

    def stats(self) -> dict[str, Any]:
        self.send("stats")
        result: dict[str, Any] = self.reply(self.receive())
        return result

    def close(self) -> None:
        self.sock.close()
