"""The benchmark suite: wsapp against its peers on workloads W1-W4, under ASGI, and in a
broadcast, then issue 28's targets, each "met" or "not met".

    python bench/suite.py [--rounds N] [--seconds 3] [--connections 5000,19000]
                          [--only W1,W1-sparse,W1-deflate,W2,W3,W4,ASGI,BROADCAST]
                          [--members 10000] [--markdown]

Every server runs in its own process and echoes each message back; the load generator is
this process: raw asyncio Protocols writing pre-built masked frames, far cheaper than any
server. Each workload runs rounds (``--rounds``; by default 3, and 5 for W1 sparse), each
measuring every server in turn, in reverse order every other round, so that drift on a noisy
machine hits them all alike. A server's figures are medians over rounds; a target that
compares two servers takes their ratio within each round, then the median of those ratios
(its range is printed beside it), because on a loaded machine every server's figure swings
from round to round (with the sparse loads, with how many sockets each loop iteration finds
ready) and the servers of one round swing together.

The servers: wsapp's echo example (examples/echo.py) on its asyncio, uvloop and trio
backends; websockets (its asyncio server, bench/echo.py); aiohttp 3.x with its C frame
reader (bench/aiohttp_echo.py); picows, Cython, on uvloop (bench/picows_echo.py); uvicorn's
websockets-sansio under a raw ASGI echo app (uvicorn+sansio, bench/asgi_echo.py). Every one
with a 1 MiB message limit (W3: 4 MiB) and no compression, except in the deflate workloads.

W1  50 connections x 10 messages in flight x 32-byte text: server CPU time (user + system,
    from /proc) per echoed message, and messages per second.
W1 sparse  the same with 1 message in flight per connection: nothing to batch, as on most
    connections of a chat or a dashboard. 5 rounds by default.
W1 deflate  W1 with permessage-deflate negotiated (the client offers it, the 101 must accept
    it) and every message compressed both ways: wsapp against websockets.
W2  one connection, one 32-byte message in flight: round-trip latency seen by the client,
    p50 and p99 over ``--latency-count`` messages after 1,000 of warm-up.
W3  4 connections x 2 in flight x 1 MiB binary, masked with a random nonzero key: echoed
    payload throughput (MB/s, 10^6 bytes) and server CPU per MiB.
W4  memory: idle connections (handshake done, then silent) opened in one ramp, the server's
    RSS growth per connection (VmRSS from /proc) read when the ramp reaches each of
    ``--connections`` (5,000 then 19,000 by default: "flat" is the figure at the last count
    within 10 % of the first's); with permessage-deflate at the first count only; each round
    starts fresh servers. This process and each server hold a file per connection: the
    suite raises RLIMIT_NOFILE's soft limit to the hard one, which the servers inherit (as
    root, the hard one too when it is below the last count), or refuses to start.
    Handshakes: 20 client loops, each connecting, upgrading, closing (masked close frame,
    the server's close frame, the server's FIN) over and over, every server logging as it
    does by default (wsapp: a line per open and per close, into a file): handshakes per
    second and server CPU per handshake.
ASGI  W1 under uvicorn (websockets-sansio): wsapp's echo example as an ASGI app against the
    same endpoint written with Starlette (bench/starlette_echo.py).
BROADCAST  bench/broadcast.py's rooms scenario, wsapp against websockets.broadcast, one room
    of ``--members`` members, bursts of 1 and 10: run as its own process (its servers and
    load processes are its own), which writes every round's figures as JSON for the suite to
    read (``--json``): CPU per delivery and deliveries per second.

With ``--markdown`` the results are printed again as markdown tables for docs/performance.
Round by round progress goes to stderr, results to stdout. The exit status is 1 when a server
failed a workload (its cells read "failed"), whether or not targets were met.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import IO, Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from echo import (
    CONNECTIONS,
    IN_FLIGHT,
    ROOT,
    Contender,
    cpu_seconds,
    drive,
    free_port,
    serve_websockets,
    uvicorn_command,
    wait_listening,
    wsapp_command,
)
from memory import rss

SUITE = Path(__file__).resolve()
BENCH = SUITE.parent
MIB = 1 << 20
SMALL = b"x" * 32  # W1, W2 and ASGI messages
SPARSE_IN_FLIGHT = 1  # W1 sparse: what most connections of a chat or a dashboard have
LARGE_SIZE = MIB  # W3 messages
LARGE_LIMIT = 4 * MIB  # the servers' message size limit in W3
LARGE_CONNECTIONS, LARGE_IN_FLIGHT = 4, 2
LATENCY_WARMUP = 1000
HANDSHAKE_LOOPS = 20
BATCH = 100  # W4: connections opened concurrently (below every server's listen backlog)
WARMUP = 0.5  # seconds of load before a measurement starts
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"
IDLE_COUNTS = "5000,19000"  # W4 memory: RSS is read at each count, on one ramp of connections
IDLE_LIMIT_KIB = 8.0  # W4: the bound per idle connection (issue 28)
FLAT = 1.10  # W4: "flat" read as KiB/conn at the last count within 10 % of the first's
BROADCAST_MEMBERS = 10_000
BROADCAST_BURSTS = (1, 10)

WSAPP_BACKENDS = {"wsapp": "asyncio", "wsapp-uvloop": "uvloop", "wsapp-trio": "trio"}
UVICORN_APPS = {
    "uvicorn+sansio": "bench.asgi_echo:app",
    "wsapp+uvicorn": "examples.echo:app",
    "starlette+uvicorn": "bench.starlette_echo:app",
}
#: peers in a script of their own: bench/NAME_echo.py PORT [--max-size N] [--deflate]
PEER_SCRIPTS = {"aiohttp": BENCH / "aiohttp_echo.py", "picows": BENCH / "picows_echo.py"}
SERVERS = [*WSAPP_BACKENDS, "websockets", *PEER_SCRIPTS, *UVICORN_APPS]  # the order of columns


# --- the servers ------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerOptions:
    """How a workload configures every server it runs."""

    max_size: int | None = None  # message size limit, when the default (1 MiB) is too low
    deflate: bool = False  # negotiate permessage-deflate when offered
    max_connections: int | None = None  # wsapp's connection limit, when W4 needs a high one
    # each server logs as it does by default (wsapp: a line per open and close) into a file,
    # instead of being told to log warnings only
    default_logging: bool = False


def make_server(name: str, options: ServerOptions) -> tuple[Contender, int]:
    """The command serving the echo endpoint as ``name`` on a free port: (contender, port)."""
    port = free_port()
    log_level = None if options.default_logging else "warning"
    if name in WSAPP_BACKENDS:
        flags = ["--backend", WSAPP_BACKENDS[name]]
        flags.append("--compression" if options.deflate else "--no-compression")
        if options.max_size:
            flags += ["--max-message-size", str(options.max_size)]
        if options.max_connections:
            flags += ["--max-connections", str(options.max_connections)]
        command = wsapp_command(port, *flags, log_level=log_level)
    elif name == "websockets":
        command = [sys.executable, str(SUITE), "--serve-websockets", str(port),
                   "--ws-max-size", str(options.max_size or MIB),
                   "--ws-compression", "deflate" if options.deflate else "none"]  # fmt: skip
    elif name in PEER_SCRIPTS:
        command = [sys.executable, str(PEER_SCRIPTS[name]), str(port),
                   "--max-size", str(options.max_size or MIB)]  # fmt: skip
        if options.deflate:
            command.append("--deflate")
    else:
        command = uvicorn_command(UVICORN_APPS[name], port, "asyncio", log_level)
        if options.max_size:
            command += ["--ws-max-size", str(options.max_size)]
    return Contender(name, command), port


def spawn(contender: Contender, port: int, log: IO[bytes] | None = None) -> subprocess.Popen[bytes]:
    """Start a server and wait (20 s at most) until it listens; its output goes to ``log``,
    or to stderr."""
    output: IO[Any] = log if log is not None else sys.stderr
    process = subprocess.Popen(contender.command, cwd=ROOT, stdout=output, stderr=output)
    try:
        wait_listening(port, process)
    except BaseException:
        stop(process)
        raise
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a server (SIGTERM, then SIGKILL after 15 s) and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def run_websockets(args: argparse.Namespace) -> None:
    """The hidden ``--serve-websockets PORT`` mode: bench/echo.py's websockets server."""
    compression = None if args.ws_compression == "none" else args.ws_compression
    serve_websockets(
        args.serve_websockets, "asyncio", max_size=args.ws_max_size, compression=compression
    )


# --- the client -------------------------------------------------------------------------


def mask_key() -> bytes:
    """A random masking key none of whose bytes is zero (a zero key would hide masking)."""
    while True:
        key = os.urandom(4)
        if all(key):
            return key


def client_frame(opcode: int, payload: bytes, compressed: bool = False) -> bytes:
    """A final frame from client to server, masked with a fresh random key; ``compressed``
    sets RSV1 (permessage-deflate)."""
    length = len(payload)
    first = 0x80 | (0x40 if compressed else 0) | opcode
    if length < 126:
        head = struct.pack("!BB", first, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, length)
    key = mask_key()
    mask = (key * (length // 4 + 1))[:length]
    masked = int.from_bytes(payload, "little") ^ int.from_bytes(mask, "little")
    return head + key + masked.to_bytes(length, "little")


@cache
def large_frame() -> bytes:
    """W3's masked 1 MiB binary frame, built once and sent by every connection."""
    return client_frame(0x2, os.urandom(LARGE_SIZE))


@cache
def deflated_frame() -> bytes:
    """W1 deflate's masked text frame: SMALL compressed on its own (a fresh compressor, sync
    flushed, so no final block: it inflates alike with or without the server's context)."""
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    data = compressor.compress(SMALL) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return client_frame(0x1, data.removesuffix(b"\x00\x00\xff\xff"), compressed=True)


CLOSE_FRAME = client_frame(0x8, struct.pack("!H", 1000))


def upgrade_request(deflate: bool = False) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    offer = f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n" if deflate else ""
    return (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    ).encode()


def parse_header(data: bytes) -> tuple[int, int, bool, int] | None:
    """(payload length, opcode, FIN, header length) of the frame ``data`` starts with, or
    None while the header is incomplete (it takes at most 14 bytes)."""
    if len(data) < 2:
        return None
    length, size = data[1] & 0x7F, 2
    if length == 126:
        size = 4
        if len(data) < size:
            return None
        length = int.from_bytes(data[2:4], "big")
    elif length == 127:
        size = 10
        if len(data) < size:
            return None
        length = int.from_bytes(data[2:10], "big")
    if data[1] & 0x80:
        size += 4  # a server must not mask; its key is skipped over, like its payload
    if len(data) < size:
        return None
    return length, data[0] & 0x0F, bool(data[0] & 0x80), size


class Client(asyncio.Protocol):
    """One client connection: sends the upgrade request, checks the 101 response, then counts
    the payload of the server's frames (without copying it) and calls `message` with the
    size of each complete message. Answers pings, and a close frame with a close frame.

    ``upgraded`` resolves to the response head; ``closed`` when the connection is lost."""

    def __init__(self, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.upgraded: asyncio.Future[bytes] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.pending = b""  # the response head, then a frame header, while incomplete
        self.remaining = -1  # payload bytes left of the current frame; -1: a header is next
        self.opcode = 0
        self.fin = False
        self.control = b""
        self.size = 0  # of the message being received
        self.close_sent = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.upgraded.done():
            head, sep, rest = (self.pending + data).partition(b"\r\n\r\n")
            if not sep:
                self.pending = head
                return
            self.pending = b""
            if not head.startswith(b"HTTP/1.1 101"):
                line = head.split(b"\r\n", 1)[0].decode(errors="replace")
                self.upgraded.set_exception(RuntimeError(f"upgrade refused: {line}"))
                assert self.transport is not None
                self.transport.close()
                return
            self.upgraded.set_result(head)
            self.opened()
            data = rest
        self.feed(data)

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self.remaining < 0:
                known = len(self.pending)
                self.pending += data[pos : pos + 14]
                header = parse_header(self.pending)
                if header is None:
                    return  # every byte left is in self.pending
                self.remaining, self.opcode, self.fin, size = header
                pos += size - known
                self.pending = self.control = b""
            take = min(self.remaining, end - pos)
            if self.opcode >= 8:
                self.control += data[pos : pos + take]
            else:
                self.size += take
            pos += take
            self.remaining -= take
            if self.remaining == 0:
                self.remaining = -1
                if self.opcode >= 8:
                    self.control_frame(self.opcode, self.control)
                elif self.fin:
                    size, self.size = self.size, 0
                    self.message(size)

    def control_frame(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        if opcode == 0x9:  # ping
            self.transport.write(client_frame(0xA, payload))
        elif opcode == 0x8:
            self.closing()

    def send_close(self) -> None:
        assert self.transport is not None
        if not self.close_sent:
            self.close_sent = True
            self.transport.write(CLOSE_FRAME)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("connection lost before the 101"))
        if not self.closed.done():
            self.closed.set_result(None)

    def opened(self) -> None:
        """The 101 response has arrived."""

    def message(self, size: int) -> None:
        """A message of ``size`` bytes has arrived."""

    def closing(self) -> None:
        """The server's close frame has arrived: answer it (the server then closes TCP)."""
        self.send_close()


C = TypeVar("C", bound=Client)


async def connect(port: int, factory: Callable[[], C]) -> C:
    """A client connection to 127.0.0.1:``port``, once its handshake has succeeded."""
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(factory, "127.0.0.1", port)
    await client.upgraded
    return client


def check_open(clients: Iterable[Client]) -> None:
    if any(client.closed.done() for client in clients):
        raise RuntimeError("the server closed a connection during the measurement")


class Stream(Client):
    """Keeps ``in_flight`` copies of ``frame`` outstanding; counts the messages and the bytes
    echoed back, each of which should be ``expected`` bytes long (None: any length, as a
    compressed echo is)."""

    def __init__(self, request: bytes, frame: bytes, in_flight: int, expected: int | None) -> None:
        super().__init__(request)
        self.frame, self.in_flight, self.expected = frame, in_flight, expected
        self.echoed = self.messages = 0
        self.wrong: int | None = None

    def start(self) -> None:
        assert self.transport is not None
        for _ in range(self.in_flight):
            self.transport.write(self.frame)

    def message(self, size: int) -> None:
        if self.expected is not None and size != self.expected:
            self.wrong = size
        self.echoed += size
        self.messages += 1
        assert self.transport is not None
        self.transport.write(self.frame)


class PingPong(Client):
    """Sends ``frame``, waits for its echo, ``count`` times; keeps each round trip in ns."""

    def __init__(self, request: bytes, frame: bytes, count: int) -> None:
        super().__init__(request)
        self.frame, self.count = frame, count
        self.samples: list[int] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent = 0

    def start(self) -> None:
        assert self.transport is not None
        self.sent = time.perf_counter_ns()
        self.transport.write(self.frame)

    def message(self, size: int) -> None:
        self.samples.append(time.perf_counter_ns() - self.sent)
        if len(self.samples) < self.count:
            self.start()
        elif not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.done.done():
            self.done.set_exception(ConnectionError("the server closed the connection"))


class Handshake(Client):
    """Upgrades, sends a close frame at once, and ends when the server closes TCP (or, at
    the latest, one second after the server's close frame)."""

    def __init__(self, request: bytes) -> None:
        super().__init__(request)
        self.close_received = False
        self.fallback: asyncio.TimerHandle | None = None

    def opened(self) -> None:
        self.send_close()

    def closing(self) -> None:
        self.close_received = True
        assert self.transport is not None
        self.fallback = asyncio.get_running_loop().call_later(1.0, self.transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.fallback is not None:
            self.fallback.cancel()


async def close_all(clients: Iterable[Client]) -> None:
    """Close the connections and wait (10 s at most) until the loop has seen them closed."""
    waiters = []
    for client in clients:
        if client.transport is not None:
            client.transport.close()
        waiters.append(client.closed)
    if waiters:
        await asyncio.wait(waiters, timeout=10)


# --- the measurements -------------------------------------------------------------------

Figures = dict[str, float]
Measure = Callable[[int, int], Awaitable[Figures]]  # (port, server pid) -> figures


async def echo_load(port: int, pid: int, seconds: float, in_flight: int) -> Figures:
    """W1, W1 sparse and ASGI: bench/echo.py's load, 50 connections x ``in_flight`` x 32 B."""
    rate, cpu = await drive(port, seconds, pid, SMALL, in_flight)
    if rate == 0:
        raise RuntimeError("no message echoed")
    return {"cpu": cpu * 1e6, "rate": rate}


async def latency(port: int, pid: int, count: int) -> Figures:
    """W2: round trips of one message at a time on one connection."""
    frame = client_frame(0x1, SMALL)
    client = await connect(
        port, partial(PingPong, upgrade_request(), frame, count + LATENCY_WARMUP)
    )
    try:
        client.start()
        await client.done
    finally:
        await close_all([client])
    samples = sorted(client.samples[LATENCY_WARMUP:])
    return {"p50": percentile(samples, 50) / 1e3, "p99": percentile(samples, 99) / 1e3}


def percentile(ordered: list[int], percent: float) -> float:
    """The nearest-rank percentile of an ordered, non-empty list."""
    rank = max(1, -(-len(ordered) * percent // 100))  # ceiling
    return ordered[int(rank) - 1]


@dataclass(frozen=True)
class Echoed:
    """What ``seconds`` of a streams load echoed, and the server CPU seconds it took."""

    messages: int
    payload: int  # bytes, as the server sent them (compressed, under permessage-deflate)
    cpu: float
    elapsed: float


async def streams(
    port: int, pid: int, seconds: float, connections: int, factory: Callable[[], Stream],
    deflate: bool = False,
) -> Echoed:  # fmt: skip
    """``connections`` Streams, started together, measured after the warm-up; each 101 must
    have negotiated permessage-deflate exactly when ``deflate``."""
    clients = [await connect(port, factory) for _ in range(connections)]
    try:
        for client in clients:
            check_deflate(client.upgraded.result(), deflate)
            client.start()
        await asyncio.sleep(WARMUP)
        start_messages, start_bytes = (
            sum(c.messages for c in clients),
            sum(c.echoed for c in clients),
        )
        start_cpu, start = cpu_seconds(pid), time.perf_counter()
        await asyncio.sleep(seconds)
        messages = sum(c.messages for c in clients) - start_messages
        payload = sum(c.echoed for c in clients) - start_bytes
        cpu, elapsed = cpu_seconds(pid) - start_cpu, time.perf_counter() - start
        check_open(clients)
    finally:
        await close_all(clients)
    wrong = next((c.wrong for c in clients if c.wrong is not None), None)
    if wrong is not None:
        raise RuntimeError(f"echo of {wrong} bytes instead of {clients[0].expected}")
    if not messages:
        raise RuntimeError("no message echoed")
    return Echoed(messages, payload, cpu, elapsed)


async def throughput(port: int, pid: int, seconds: float) -> Figures:
    """W3: 4 connections x 2 messages of 1 MiB in flight."""
    factory = partial(Stream, upgrade_request(), large_frame(), LARGE_IN_FLIGHT, LARGE_SIZE)
    echoed = await streams(port, pid, seconds, LARGE_CONNECTIONS, factory)
    return {"mbps": echoed.payload / echoed.elapsed / 1e6,
            "cpu": echoed.cpu / (echoed.payload / MIB) * 1e3}  # fmt: skip


async def deflate_echo(port: int, pid: int, seconds: float) -> Figures:
    """W1 deflate: W1's 50 connections x 10 in flight, each message compressed both ways."""
    factory = partial(Stream, upgrade_request(True), deflated_frame(), IN_FLIGHT, None)
    echoed = await streams(port, pid, seconds, CONNECTIONS, factory, deflate=True)
    return {"cpu": echoed.cpu / echoed.messages * 1e6, "rate": echoed.messages / echoed.elapsed}


def extensions(head: bytes) -> str:
    """The Sec-WebSocket-Extensions of a response head ('' if none)."""
    values = []
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-extensions":
            values.append(value.strip())
    return ", ".join(values)


def check_deflate(head: bytes, deflate: bool) -> None:
    """Raise unless the 101 ``head`` negotiated permessage-deflate exactly when offered."""
    if ("permessage-deflate" in extensions(head)) != deflate:
        raise RuntimeError(
            "the 101 response does not carry permessage-deflate"
            if deflate
            else f"extension negotiated without an offer: {extensions(head)}"
        )


def idle_key(count: int) -> str:
    return f"kib{count}"


async def idle_memory(port: int, pid: int, counts: list[int], deflate: bool) -> Figures:
    """W4 memory: RSS growth of the server per idle connection, read once the ramp of
    connections reaches each of ``counts`` (ascending)."""
    request = upgrade_request(deflate)
    warm = await connect(port, partial(Client, request))  # first-use imports, not measured
    check_deflate(await warm.upgraded, deflate)
    await close_all([warm])
    await asyncio.sleep(WARMUP)
    before = rss(pid)
    clients: list[Client] = []
    figures: Figures = {}
    try:
        for count in counts:
            while len(clients) < count:
                batch = min(BATCH, count - len(clients))
                clients += await asyncio.gather(
                    *(connect(port, partial(Client, request)) for _ in range(batch))
                )
            for client in clients:
                check_deflate(client.upgraded.result(), deflate)
            await asyncio.sleep(1)
            figures[idle_key(count)] = (rss(pid) - before) / count / 1024
            check_open(clients)
    finally:
        await close_all(clients)
    return figures


async def handshakes(port: int, pid: int, seconds: float) -> Figures:
    """W4 handshakes: 20 loops of connect, upgrade, close."""
    request = upgrade_request()
    completed = [0]
    stopping = asyncio.Event()

    async def cycle() -> None:
        while not stopping.is_set():
            client = await connect(port, partial(Handshake, request))
            await client.closed
            if not client.close_received:
                raise RuntimeError("connection lost without the server's close frame")
            completed[0] += 1

    tasks = [asyncio.create_task(cycle()) for _ in range(HANDSHAKE_LOOPS)]
    try:
        await watch(tasks, WARMUP)
        start_count, start_cpu, start = completed[0], cpu_seconds(pid), time.perf_counter()
        await watch(tasks, seconds)
        count = completed[0] - start_count
        cpu, elapsed = cpu_seconds(pid) - start_cpu, time.perf_counter() - start
        stopping.set()
        _, pending = await asyncio.wait(tasks, timeout=5)
        if pending:
            raise RuntimeError("a handshake took over 5 s")
        for task in tasks:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
    if not count:
        raise RuntimeError("no handshake completed")
    return {"rate": count / elapsed, "cpu": cpu / count * 1e6}


async def watch(tasks: list[asyncio.Task[None]], seconds: float) -> None:
    """Sleep ``seconds``, but raise at once the exception of a task that fails meanwhile."""
    done, _ = await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_EXCEPTION)
    for task in done:
        task.result()


# --- workloads, rounds, results ---------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    spec: str  # format spec of its values


@dataclass
class Workload:
    key: str
    group: str  # what --only selects
    title: str
    servers: list[str]
    figures: list[Figure]
    measure: Measure | None  # None: ``runner`` measures all the servers itself
    budget: float  # seconds a measurement (a round, for a runner) may take before it fails
    options: ServerOptions = field(default_factory=ServerOptions)
    fresh: bool = False  # a new server process for every measurement
    default_rounds: int = 3  # when --rounds is not given
    runner: Callable[[Workload, int], None] | None = None  # fills ``rounds`` for N rounds
    rounds: dict[str, list[Figures]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def series(self, server: str, figure: str) -> list[float] | None:
        """The server's figure in every round, in order (None if it failed or did not run)."""
        rounds = self.rounds.get(server)
        if server in self.failed or not rounds:
            return None
        return [r[figure] for r in rounds]

    def median(self, server: str, figure: str) -> float | None:
        values = self.series(server, figure)
        return None if values is None else statistics.median(values)

    @property
    def short(self) -> str:
        """The title's part before the colon, for tables."""
        return self.title.partition(":")[0]

    def describe(self, figures: Figures) -> str:
        return ", ".join(f"{figures[f.key]:{f.spec}} {f.label}" for f in self.figures)


def workloads(args: argparse.Namespace) -> list[Workload]:
    seconds, counts = args.seconds, args.connections
    w1 = ["wsapp", "wsapp-uvloop", "wsapp-trio", "websockets", "aiohttp", "picows",
          "uvicorn+sansio"]  # fmt: skip
    sparse = ["wsapp", "wsapp-uvloop", "wsapp-trio", "websockets", "aiohttp", "picows"]
    named = ["wsapp", "websockets", "aiohttp", "picows", "uvicorn+sansio"]  # the peers
    peers = ["wsapp", "websockets", "uvicorn+sansio"]
    cpu_msg = Figure("cpu", "µs CPU/msg", ".2f")
    rate_msg = Figure("rate", "msg/s", ",.0f")
    memory_budget = 60 + counts[-1] / 50
    many = ServerOptions(max_connections=counts[-1] + 1000)
    deflate = ServerOptions(deflate=True, max_connections=counts[0] + 1000)
    broadcast = [Figure(f"{key}{burst}", f"{label} B={burst}", spec) for burst in BROADCAST_BURSTS
                 for key, label, spec in (("cpu", "µs CPU/delivery", ".3f"),
                                          ("rate", "deliveries/s", ",.0f"))]  # fmt: skip
    return [
        Workload("W1", "W1", "W1 echo: 50 connections x 10 in flight x 32-byte text", w1,
                 [cpu_msg, rate_msg], partial(echo_load, seconds=seconds, in_flight=IN_FLIGHT),
                 seconds + 60),
        Workload("W1-sparse", "W1", "W1 sparse: 50 connections x 1 in flight x 32-byte text",
                 sparse, [cpu_msg, rate_msg],
                 partial(echo_load, seconds=seconds, in_flight=SPARSE_IN_FLIGHT), seconds + 60,
                 default_rounds=5),
        Workload("W1-deflate", "W1", "W1 deflate: 50 connections x 10 in flight x 32-byte "
                 "text, permessage-deflate", ["wsapp", "websockets"], [cpu_msg, rate_msg],
                 partial(deflate_echo, seconds=seconds), seconds + 60, ServerOptions(deflate=True)),
        Workload("W2", "W2", f"W2 latency: 1 connection, 1 x 32 bytes in flight, "
                 f"{args.latency_count:,} round trips", named,
                 [Figure("p50", "µs p50", ".1f"), Figure("p99", "µs p99", ".1f")],
                 partial(latency, count=args.latency_count), 60 + args.latency_count / 100),
        Workload("W3", "W3", "W3 large: 4 connections x 2 in flight x 1 MiB binary", peers,
                 [Figure("mbps", "MB/s", ",.0f"), Figure("cpu", "ms CPU/MiB", ".2f")],
                 partial(throughput, seconds=seconds), seconds + 60,
                 ServerOptions(max_size=LARGE_LIMIT)),
        Workload("W4-idle", "W4", f"W4 memory: {', then '.join(f'{c:,}' for c in counts)} "
                 f"idle connections", ["wsapp", "wsapp-trio", "websockets"],
                 [Figure(idle_key(c), f"KiB/conn at {c:,}", ".1f") for c in counts],
                 partial(idle_memory, counts=counts, deflate=False), memory_budget,
                 many, fresh=True),
        Workload("W4-deflate", "W4",
                 f"W4 memory, deflate: {counts[0]:,} idle connections, permessage-deflate",
                 ["wsapp", "wsapp-trio", "websockets"],
                 [Figure(idle_key(counts[0]), f"KiB/conn at {counts[0]:,}", ".1f")],
                 partial(idle_memory, counts=counts[:1], deflate=True),
                 60 + counts[0] / 50, deflate, fresh=True),
        Workload("W4-handshake", "W4", f"W4 handshakes: {HANDSHAKE_LOOPS} client loops, "
                 f"every server logging as it does by default", named,
                 [Figure("rate", "handshakes/s", ",.0f"),
                  Figure("cpu", "µs CPU/handshake", ".0f")],
                 partial(handshakes, seconds=seconds), seconds + 60,
                 ServerOptions(default_logging=True)),
        Workload("ASGI", "ASGI", "ASGI: W1 under uvicorn (websockets-sansio)",
                 ["wsapp+uvicorn", "starlette+uvicorn"], [cpu_msg, rate_msg],
                 partial(echo_load, seconds=seconds, in_flight=IN_FLIGHT), seconds + 60),
        Workload("broadcast", "BROADCAST", f"broadcast: one room of {args.members:,} members, "
                 f"64-byte text (bench/broadcast.py's rooms scenario)", ["wsapp", "websockets"],
                 broadcast, None, 120 + args.members / 50,
                 runner=partial(run_broadcast, seconds=seconds, members=args.members)),
    ]  # fmt: skip


def measure_once(workload: Workload, port: int, process: subprocess.Popen[bytes]) -> Figures:
    """One measurement, bounded by the workload's budget; fails if the server died."""
    measure = workload.measure
    assert measure is not None

    async def bounded() -> Figures:
        return await asyncio.wait_for(measure(port, process.pid), workload.budget)

    try:
        figures = asyncio.run(bounded())
    except TimeoutError:
        raise RuntimeError(f"no result within {workload.budget:.0f} s") from None
    if process.poll() is not None:
        raise RuntimeError(f"server exited with {process.returncode}")
    return figures


def run_workload(workload: Workload, rounds: int) -> None:
    """Run ``rounds`` rounds, each measuring every server in turn (in reverse order every
    other round, so that no server always follows the same one); record each round."""
    workload.rounds = {name: [] for name in workload.servers}
    progress(f"{workload.title} ({rounds} rounds)")
    if workload.runner is not None:
        workload.runner(workload, rounds)
        return
    running: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    with tempfile.TemporaryFile(prefix="wsapp-suite-") as file:
        log = file if workload.options.default_logging else None
        try:
            if not workload.fresh:
                for name in workload.servers:
                    try:
                        contender, port = make_server(name, workload.options)
                        running[name] = port, spawn(contender, port, log)
                    except Exception as exc:
                        fail(workload, name, exc)
            for number in range(1, rounds + 1):
                order = workload.servers if number % 2 else workload.servers[::-1]
                for name in order:
                    if name in workload.failed:
                        continue
                    process = None
                    try:
                        if workload.fresh:
                            contender, port = make_server(name, workload.options)
                            process = spawn(contender, port, log)
                        else:
                            port, process = running[name]
                        figures = measure_once(workload, port, process)
                    except Exception as exc:
                        fail(workload, name, exc)
                        continue
                    finally:
                        if workload.fresh and process is not None:
                            stop(process)
                    workload.rounds[name].append(figures)
                    progress(f"  round {number}/{rounds} {name:>17}: "
                             f"{workload.describe(figures)}")  # fmt: skip
        finally:
            for _, process in running.values():
                stop(process)


def run_broadcast(workload: Workload, rounds: int, seconds: float, members: int) -> None:
    """The broadcast workload's runner: bench/broadcast.py's rooms scenario, in a process of
    its own (it starts its servers and load generator processes, fresh every round, the
    contenders alternating), which writes every round's figures as JSON for this one to
    read: the same measurement as its own report, not a second one."""
    with tempfile.TemporaryDirectory(prefix="wsapp-suite-") as folder:
        output = Path(folder) / "broadcast.json"
        command = [sys.executable, str(BENCH / "broadcast.py"), "--scenario", "rooms",
                   "--rounds", str(rounds), "--seconds", f"{seconds:g}",
                   "--connections", str(members),
                   "--bursts", ",".join(str(b) for b in BROADCAST_BURSTS),
                   "--contenders", ",".join(workload.servers), "--json", str(output)]  # fmt: skip
        # it imports wsapp: this tree's, not whichever one is installed
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        try:
            subprocess.run(command, cwd=ROOT, stdout=sys.stderr, check=True,
                           env={**os.environ, "PYTHONPATH": path},
                           timeout=workload.budget * rounds)  # fmt: skip
            phases = json.loads(output.read_text())["phases"]
        except (OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
            for name in workload.servers:
                fail(workload, name, exc)
            return
    for name in workload.servers:
        runs = {int(burst): rounds for burst, rounds in phases.get(name, {}).items()}
        if any(len(runs.get(burst, [])) != rounds for burst in BROADCAST_BURSTS):
            fail(workload, name, RuntimeError("bench/broadcast.py reported no such rounds"))
            continue
        for number in range(rounds):
            figures: Figures = {}
            for burst in BROADCAST_BURSTS:
                phase = runs[burst][number]
                figures[f"cpu{burst}"], figures[f"rate{burst}"] = phase["cpu"], phase["rate"]
                if not phase["complete"]:
                    progress(f"  round {number + 1} {name} B={burst}: an incomplete phase")
            workload.rounds[name].append(figures)


def fail(workload: Workload, name: str, exc: Exception) -> None:
    workload.failed[name] = f"{type(exc).__name__}: {exc}"
    progress(f"  {name} FAILED {workload.key}: {workload.failed[name]}")


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- targets and reports ----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    number: int  # the bullet of issue 28's section 6 it belongs to
    workload: str
    figure: str
    ours: str
    theirs: str | None  # None: ``ours``'s own figure against an absolute bound
    bound: float
    at_most: bool
    label: str
    theirs_figure: str | None = None  # ``theirs``'s figure, when not ``figure``

    def values(self, done: dict[str, Workload]) -> list[float] | None:
        """Round by round: our figure, or its ratio to theirs within that round (every
        server swings with the machine's load and with how many sockets each loop iteration
        finds ready, and the servers of a round ran close together)."""
        workload = done[self.workload]
        ours = workload.series(self.ours, self.figure)
        if self.theirs is None or ours is None:
            return ours
        theirs = workload.series(self.theirs, self.theirs_figure or self.figure)
        if theirs is None or len(theirs) != len(ours) or not all(theirs):
            return None
        return [a / b for a, b in zip(ours, theirs, strict=True)]

    def goal(self) -> str:
        unit = "" if self.theirs is None else "x"
        return f"{'<=' if self.at_most else '>='} {self.bound:.2f}{unit}"

    def status(self, value: float | None) -> str:
        if value is None:
            return "not measured"
        met = value <= self.bound if self.at_most else value >= self.bound
        return "met" if met else "not met"


def targets(counts: list[int]) -> list[Target]:
    """Issue 28's targets (section 6, numbered by its bullets), and those of issue 11 that
    still hold (W1 against uvicorn+sansio, uvloop and Trio against websockets, W4 with
    deflate); ``counts`` are W4's numbers of idle connections."""
    first, last = counts[0], counts[-1]
    both = ("wsapp", "wsapp-trio")
    T = Target
    return [
        T(1, "W1-sparse", "cpu", "wsapp", "websockets", 0.50, True,
          "W1 sparse CPU/msg wsapp / websockets"),
        T(1, "W1-sparse", "cpu", "wsapp", "aiohttp", 1.00, True,
          "W1 sparse CPU/msg wsapp / aiohttp"),
        T(1, "W1-sparse", "cpu", "wsapp-uvloop", "picows", 1.50, True,
          "W1 sparse CPU/msg wsapp-uvloop / picows"),
        T(1, "W1-sparse", "cpu", "wsapp-trio", "websockets", 1.00, True,
          "W1 sparse CPU/msg wsapp-trio / websockets (asyncio)"),
        T(2, "W4-handshake", "rate", "wsapp", "websockets", 1.50, False,
          "W4 handshakes/s wsapp / websockets, default logging"),
        # the same bound read from CPU: the rate swings with the CPU the servers get on a
        # loaded machine, their CPU per handshake far less (rate = 1/CPU when CPU-bound)
        T(2, "W4-handshake", "cpu", "wsapp", "websockets", 1 / 1.50, True,
          "W4 CPU/handshake wsapp / websockets, default logging"),
        T(3, "W2", "p99", "wsapp", "websockets", 1.00, True, "W2 p99 latency wsapp / websockets"),
        *(T(4, "W4-idle", idle_key(count), server, None, IDLE_LIMIT_KIB, True,
            f"W4 KiB per idle connection at {count:,}, {server}")
          for server in both for count in counts),
        *(T(4, "W4-idle", idle_key(last), server, server, FLAT, True,
            f"W4 KiB/conn at {last:,} / at {first:,}, {server}", idle_key(first))
          for server in both if last != first),
        T(4, "W4-deflate", idle_key(first), "wsapp", None, 32.0, True,
          f"W4 KiB per idle connection, deflate, at {first:,}, wsapp"),
        T(5, "W1-deflate", "cpu", "wsapp", "websockets", 0.80, True,
          "W1 deflate CPU/msg wsapp / websockets"),
        T(6, "ASGI", "cpu", "wsapp+uvicorn", "starlette+uvicorn", 1.00, True,
          "ASGI CPU/msg wsapp+uvicorn / starlette+uvicorn"),
        T(7, "W1", "cpu", "wsapp", "websockets", 0.40, True, "W1 CPU/msg wsapp / websockets"),
        T(7, "W1", "cpu", "wsapp", "uvicorn+sansio", 1.00, True,
          "W1 CPU/msg wsapp / uvicorn+sansio"),
        T(7, "W1", "cpu", "wsapp-uvloop", "websockets", 1.00, True,
          "W1 CPU/msg wsapp-uvloop / websockets"),
        T(7, "W1", "cpu", "wsapp-trio", "websockets", 1.00, True,
          "W1 CPU/msg wsapp-trio / websockets"),
        T(7, "W3", "mbps", "wsapp", "websockets", 1.15, False, "W3 throughput wsapp / websockets"),
        *(T(7, "broadcast", f"cpu{burst}", "wsapp", "websockets", 0.45, True,
            f"broadcast CPU/delivery B={burst} wsapp / websockets.broadcast")
          for burst in BROADCAST_BURSTS),
    ]  # fmt: skip


def environment(args: argparse.Namespace) -> str:
    try:
        commit = subprocess.run(
            ["git", "log", "-1", "--format=%h"], cwd=ROOT, capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "wsapp"], cwd=ROOT, capture_output=True,
            text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        version = f"wsapp {commit}{' + uncommitted changes' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        version = "wsapp (no git)"
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as cpuinfo:
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo
                    if line.startswith("model name")), cpu)  # fmt: skip
    rounds = f"{args.rounds} rounds" if args.rounds else "3 rounds (W1 sparse: 5)"
    return (
        f"medians of {rounds}, {args.seconds:g} s of load each, ratios taken within each "
        f"round; {version}, Python {platform.python_version()}, {os.cpu_count()} x {cpu}, "
        f"load average {os.getloadavg()[0]:.2f} at the end"
    )


def report(done: list[Workload], env: str, listing: list[Target]) -> None:
    print(f"\n{env}")
    for workload in done:
        print(f"\n{workload.title}")
        for name in workload.servers:
            if name in workload.failed:
                print(f"  {name:>17}: failed ({workload.failed[name]})")
                continue
            medians = {f.key: workload.median(name, f.key) or 0.0 for f in workload.figures}
            print(f"  {name:>17}: {workload.describe(medians)}")
    measured = measured_targets(done, listing)
    if measured:
        print("\ntargets (the median of the per-round values, their range in brackets):")
    width = max((len(t.label) for t, _ in measured), default=0)
    for target, values in measured:
        value = median_of(values)
        shown = "-" if value is None else f"{value:.2f}"
        print(f"  {target.number}. {target.label:<{width}} {shown:>7} {spread(values):<13} "
              f"(goal {target.goal()}): {target.status(value)}")  # fmt: skip


def measured_targets(
    done: list[Workload], listing: list[Target]
) -> list[tuple[Target, list[float] | None]]:
    """The targets of the workloads that ran, each with its per-round values."""
    by_key = {w.key: w for w in done}
    return [(t, t.values(by_key)) for t in listing if t.workload in by_key]


def median_of(values: list[float] | None) -> float | None:
    return None if not values else statistics.median(values)


def spread(values: list[float] | None) -> str:
    """The range of per-round values, '' for fewer than two."""
    if not values or len(values) < 2:
        return ""
    return f"({min(values):.2f}-{max(values):.2f})"


def markdown(done: list[Workload], env: str, listing: list[Target]) -> None:
    columns = [s for s in SERVERS if any(s in w.servers for w in done)]
    print("\n| Workload | Figure | " + " | ".join(columns) + " |")
    print("|---|---|" + "---:|" * len(columns))
    for workload in done:
        for figure in workload.figures:
            cells = []
            for name in columns:
                value = workload.median(name, figure.key)
                if name in workload.failed:
                    cells.append("failed")
                elif value is None:
                    cells.append("")
                else:
                    cells.append(f"{value:{figure.spec}}")
            print(f"| {workload.short} | {figure.label} | " + " | ".join(cells) + " |")
    measured = measured_targets(done, listing)
    if measured:
        print("\n| # | Target | Goal | Measured | Rounds | |")
        print("|---|---|---|---:|---|---|")
    for target, values in measured:
        value = median_of(values)
        shown = "" if value is None else f"{value:.2f}"
        print(f"| {target.number} | {target.label} | {target.goal()} | {shown} | "
              f"{spread(values)} | {target.status(value)} |")  # fmt: skip
    print(f"\n{env[0].upper()}{env[1:]}.\n")
    for workload in done:
        print(f"- {workload.title}")


def raise_fd_limit(needed: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard one (children inherit it), or both to
    ``needed`` when the hard one is lower and we may (root); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return needed
        except (ValueError, OSError):
            pass
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    except (ValueError, OSError):
        return soft


def connection_counts(text: str) -> list[int]:
    """--connections: comma-separated positive counts, measured in ascending order."""
    try:
        counts = sorted({int(item) for item in text.split(",") if item.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of counts: {text!r}") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError("counts must be positive")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, help="per workload (default 3, W1 sparse 5)")
    parser.add_argument("--seconds", type=float, default=3.0, help="of load per measurement")
    parser.add_argument("--only", help="comma-separated groups or workloads: W1, W1-sparse, "
                        "W1-deflate, W2, W3, W4, ASGI, BROADCAST (default all)")  # fmt: skip
    parser.add_argument("--connections", type=connection_counts, default=IDLE_COUNTS,
                        help=f"idle, for W4 memory (default {IDLE_COUNTS})")  # fmt: skip
    parser.add_argument("--members", type=int, default=BROADCAST_MEMBERS,
                        help="of the broadcast room")  # fmt: skip
    parser.add_argument("--latency-count", type=int, default=20_000, help="W2 round trips")
    parser.add_argument("--markdown", action="store_true", help="also print markdown tables")
    parser.add_argument("--serve-websockets", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ws-max-size", type=int, default=MIB, help=argparse.SUPPRESS)
    parser.add_argument("--ws-compression", default="deflate", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_websockets:
        run_websockets(args)
        return
    if (args.rounds is not None and args.rounds < 1) or args.seconds <= 0 or args.members < 1 \
            or args.latency_count < 1:  # fmt: skip
        parser.error("--rounds, --seconds, --members and --latency-count must be positive")
    chosen = workloads(args)
    if args.only:
        groups = {item.strip().upper() for item in args.only.split(",") if item.strip()}
        known = {w.group.upper() for w in chosen} | {w.key.upper() for w in chosen}
        if groups - known:
            parser.error(f"--only: unknown {', '.join(sorted(groups - known))}")
        chosen = [w for w in chosen if {w.group.upper(), w.key.upper()} & groups]
    # each process (this one, the server) holds one file per connection, plus a few dozen;
    # the servers inherit this process's limit (bench/broadcast.py raises its own)
    needed = (args.connections[-1] if any(w.group == "W4" for w in chosen) else 0) + 64
    limit = raise_fd_limit(needed)
    if limit < needed:
        parser.error(f"RLIMIT_NOFILE is {limit}, below the {needed} files W4 needs (and this "
                     f"process may not raise it): lower --connections or raise the hard limit "
                     f"(ulimit -Hn, as root)")  # fmt: skip
    progress(environment(args))
    for workload in chosen:
        run_workload(workload, args.rounds or workload.default_rounds)
    env = environment(args)
    listing = targets(args.connections)
    report(chosen, env, listing)
    if args.markdown:
        markdown(chosen, env, listing)
    if any(w.failed for w in chosen):
        sys.exit(1)


if __name__ == "__main__":
    main()
