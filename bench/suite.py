"""The benchmark suite: wsapp against its peers on workloads W1-W4 and under ASGI.

    python bench/suite.py [--rounds 3] [--seconds 3] [--only W1,W2,W3,W4,ASGI]
                          [--connections 5000] [--markdown]

Every server runs in its own process and echoes each message back; the load generator is
this process: raw asyncio Protocols writing pre-built masked frames, far cheaper than any
server. Each workload runs ``--rounds`` rounds that alternate between its servers, so that
drift on a noisy machine hits them all alike; the figures reported are medians over rounds.

W1  50 connections x 10 messages in flight x 32-byte text: server CPU time (user + system,
    from /proc) per echoed message, and messages per second. Servers: wsapp (asyncio, uvloop
    and trio backends), websockets, uvicorn+sansio (uvicorn's websockets-sansio serving a
    raw ASGI echo app, bench/asgi_echo.py).
W2  one connection, one 32-byte message in flight: round-trip latency seen by the client,
    p50 and p99 over ``--latency-count`` messages after 1,000 of warm-up.
W3  4 connections x 2 in flight x 1 MiB binary, masked with a random nonzero key: echoed
    payload throughput (MB/s, 10^6 bytes) and server CPU per MiB.
W4  memory: ``--connections`` idle connections (handshake done, then silent), server RSS
    growth per connection (VmRSS from /proc), without compression and with
    permessage-deflate offered by the client (the 101 must accept it); each round starts
    fresh servers. Handshakes: 20 client loops, each connecting, upgrading, closing
    (masked close frame, the server's close frame, the server's FIN) over and over:
    handshakes per second and server CPU per handshake.
ASGI  W1 under uvicorn (websockets-sansio): wsapp's echo example as an ASGI app against the
    same endpoint written with Starlette (bench/starlette_echo.py).

Then the targets (ratios of medians, or absolute bounds), each "met" or "not met". With
``--markdown`` the results are printed again as markdown tables for docs/performance. Round
by round progress goes to stderr, results to stdout. The exit status is 1 when a server
failed a workload (its cells read "failed"), whether or not targets were met.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import resource
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from echo import (
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
MIB = 1 << 20
SMALL = b"x" * 32  # W1, W2 and ASGI messages
LARGE_SIZE = MIB  # W3 messages
LARGE_LIMIT = 4 * MIB  # the servers' message size limit in W3
LARGE_CONNECTIONS, LARGE_IN_FLIGHT = 4, 2
LATENCY_WARMUP = 1000
HANDSHAKE_LOOPS = 20
BATCH = 100  # W4: connections opened concurrently (below every server's listen backlog)
WARMUP = 0.5  # seconds of load before a measurement starts
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"

WSAPP_BACKENDS = {"wsapp": "asyncio", "wsapp-uvloop": "uvloop", "wsapp-trio": "trio"}
UVICORN_APPS = {
    "uvicorn+sansio": "bench.asgi_echo:app",
    "wsapp+uvicorn": "examples.echo:app",
    "starlette+uvicorn": "bench.starlette_echo:app",
}
SERVERS = [*WSAPP_BACKENDS, "websockets", *UVICORN_APPS]  # the order of columns


# --- the servers ------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerOptions:
    """How a workload configures every server it runs."""

    max_size: int | None = None  # message size limit, when the default (1 MiB) is too low
    deflate: bool = False  # negotiate permessage-deflate when offered
    max_connections: int | None = None  # wsapp's connection limit, when W4 needs a high one


def make_server(name: str, options: ServerOptions) -> tuple[Contender, int]:
    """The command serving the echo endpoint as ``name`` on a free port: (contender, port)."""
    port = free_port()
    if name in WSAPP_BACKENDS:
        flags = ["--backend", WSAPP_BACKENDS[name]]
        flags.append("--compression" if options.deflate else "--no-compression")
        if options.max_size:
            flags += ["--max-message-size", str(options.max_size)]
        if options.max_connections:
            flags += ["--max-connections", str(options.max_connections)]
        command = wsapp_command(port, *flags)
    elif name == "websockets":
        command = [sys.executable, str(SUITE), "--serve-websockets", str(port),
                   "--ws-max-size", str(options.max_size or MIB),
                   "--ws-compression", "deflate" if options.deflate else "none"]  # fmt: skip
    else:
        command = uvicorn_command(UVICORN_APPS[name], port, "asyncio")
        if options.max_size:
            command += ["--ws-max-size", str(options.max_size)]
    return Contender(name, command), port


def spawn(contender: Contender, port: int) -> subprocess.Popen[bytes]:
    """Start a server and wait (20 s at most) until it listens; its output goes to stderr."""
    process = subprocess.Popen(contender.command, cwd=ROOT, stdout=sys.stderr)
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


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A final frame from client to server, masked with a fresh random key."""
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    key = mask_key()
    mask = (key * (length // 4 + 1))[:length]
    masked = int.from_bytes(payload, "little") ^ int.from_bytes(mask, "little")
    return head + key + masked.to_bytes(length, "little")


@cache
def large_frame() -> bytes:
    """W3's masked 1 MiB binary frame, built once and sent by every connection."""
    return client_frame(0x2, os.urandom(LARGE_SIZE))


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
    """Keeps ``in_flight`` copies of ``frame`` outstanding; counts the bytes echoed back."""

    def __init__(self, request: bytes, frame: bytes, in_flight: int, expected: int) -> None:
        super().__init__(request)
        self.frame, self.in_flight, self.expected = frame, in_flight, expected
        self.echoed = 0
        self.wrong: int | None = None

    def start(self) -> None:
        assert self.transport is not None
        for _ in range(self.in_flight):
            self.transport.write(self.frame)

    def message(self, size: int) -> None:
        if size != self.expected:
            self.wrong = size
        self.echoed += size
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


async def echo_load(port: int, pid: int, seconds: float) -> Figures:
    """W1 and ASGI: bench/echo.py's load, 50 connections x 10 x 32 bytes."""
    rate, cpu = await drive(port, seconds, pid, SMALL)
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


async def throughput(port: int, pid: int, seconds: float) -> Figures:
    """W3: 4 connections x 2 messages of 1 MiB in flight."""
    request, frame = upgrade_request(), large_frame()
    factory = partial(Stream, request, frame, LARGE_IN_FLIGHT, LARGE_SIZE)
    clients = [await connect(port, factory) for _ in range(LARGE_CONNECTIONS)]
    try:
        for client in clients:
            client.start()
        await asyncio.sleep(WARMUP)
        start_bytes, start_cpu = sum(c.echoed for c in clients), cpu_seconds(pid)
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        echoed = sum(c.echoed for c in clients) - start_bytes
        cpu, elapsed = cpu_seconds(pid) - start_cpu, time.perf_counter() - start
        check_open(clients)
    finally:
        await close_all(clients)
    wrong = next((c.wrong for c in clients if c.wrong is not None), None)
    if wrong is not None:
        raise RuntimeError(f"echo of {wrong} bytes instead of {LARGE_SIZE}")
    if not echoed:
        raise RuntimeError("no message echoed")
    return {"mbps": echoed / elapsed / 1e6, "cpu": cpu / (echoed / MIB) * 1e3}


def extensions(head: bytes) -> str:
    """The Sec-WebSocket-Extensions of a response head ('' if none)."""
    values = []
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-extensions":
            values.append(value.strip())
    return ", ".join(values)


async def idle_memory(port: int, pid: int, count: int, deflate: bool) -> Figures:
    """W4 memory: RSS growth of the server per idle connection."""
    request = upgrade_request(deflate)

    def check(head: bytes) -> None:
        negotiated = "permessage-deflate" in extensions(head)
        if negotiated != deflate:
            raise RuntimeError(
                "the 101 response does not carry permessage-deflate"
                if deflate
                else f"extension negotiated without an offer: {extensions(head)}"
            )

    warm = await connect(port, partial(Client, request))  # first-use imports, not measured
    check(await warm.upgraded)
    await close_all([warm])
    await asyncio.sleep(WARMUP)
    before = rss(pid)
    clients: list[Client] = []
    try:
        while len(clients) < count:
            batch = min(BATCH, count - len(clients))
            clients += await asyncio.gather(
                *(connect(port, partial(Client, request)) for _ in range(batch))
            )
        for client in clients:
            check(client.upgraded.result())
        await asyncio.sleep(1)
        after = rss(pid)
        check_open(clients)
    finally:
        await close_all(clients)
    return {"kib": (after - before) / count / 1024}


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
    measure: Measure
    budget: float  # seconds a measurement may take before it fails
    options: ServerOptions = field(default_factory=ServerOptions)
    fresh: bool = False  # a new server process for every measurement
    rounds: dict[str, list[Figures]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def median(self, server: str, figure: str) -> float | None:
        rounds = self.rounds.get(server)
        if server in self.failed or not rounds:
            return None
        return statistics.median(r[figure] for r in rounds)

    @property
    def short(self) -> str:
        """The title's part before the colon, for tables."""
        return self.title.partition(":")[0]

    def describe(self, figures: Figures) -> str:
        return ", ".join(f"{figures[f.key]:{f.spec}} {f.label}" for f in self.figures)


def workloads(args: argparse.Namespace) -> list[Workload]:
    seconds, connections = args.seconds, args.connections
    w1 = ["wsapp", "wsapp-uvloop", "wsapp-trio", "websockets", "uvicorn+sansio"]
    peers = ["wsapp", "websockets", "uvicorn+sansio"]
    cpu_msg = Figure("cpu", "µs CPU/msg", ".2f")
    rate_msg = Figure("rate", "msg/s", ",.0f")
    idle = Figure("kib", "KiB/conn", ".1f")
    memory_budget = 60 + connections / 50
    many = ServerOptions(max_connections=connections + 1000)
    deflate = ServerOptions(deflate=True, max_connections=connections + 1000)
    return [
        Workload("W1", "W1", "W1 echo: 50 connections x 10 in flight x 32-byte text", w1,
                 [cpu_msg, rate_msg], partial(echo_load, seconds=seconds), seconds + 60),
        Workload("W2", "W2", f"W2 latency: 1 connection, 1 x 32 bytes in flight, "
                 f"{args.latency_count:,} round trips", peers,
                 [Figure("p50", "µs p50", ".1f"), Figure("p99", "µs p99", ".1f")],
                 partial(latency, count=args.latency_count), 60 + args.latency_count / 100),
        Workload("W3", "W3", "W3 large: 4 connections x 2 in flight x 1 MiB binary", peers,
                 [Figure("mbps", "MB/s", ",.0f"), Figure("cpu", "ms CPU/MiB", ".2f")],
                 partial(throughput, seconds=seconds), seconds + 60,
                 ServerOptions(max_size=LARGE_LIMIT)),
        Workload("W4-idle", "W4", f"W4 memory: {connections:,} idle connections",
                 ["wsapp", "wsapp-trio", "websockets"], [idle],
                 partial(idle_memory, count=connections, deflate=False), memory_budget,
                 many, fresh=True),
        Workload("W4-deflate", "W4",
                 f"W4 memory, deflate: {connections:,} idle connections, permessage-deflate",
                 ["wsapp", "wsapp-trio", "websockets"], [idle],
                 partial(idle_memory, count=connections, deflate=True), memory_budget,
                 deflate, fresh=True),
        Workload("W4-handshake", "W4", f"W4 handshakes: {HANDSHAKE_LOOPS} client loops", peers,
                 [Figure("rate", "handshakes/s", ",.0f"), Figure("cpu", "µs CPU/handshake",
                                                                  ".0f")],
                 partial(handshakes, seconds=seconds), seconds + 60),
        Workload("ASGI", "ASGI", "ASGI: W1 under uvicorn (websockets-sansio)",
                 ["wsapp+uvicorn", "starlette+uvicorn"], [cpu_msg, rate_msg],
                 partial(echo_load, seconds=seconds), seconds + 60),
    ]  # fmt: skip


def measure_once(workload: Workload, port: int, process: subprocess.Popen[bytes]) -> Figures:
    """One measurement, bounded by the workload's budget; fails if the server died."""

    async def bounded() -> Figures:
        return await asyncio.wait_for(workload.measure(port, process.pid), workload.budget)

    try:
        figures = asyncio.run(bounded())
    except TimeoutError:
        raise RuntimeError(f"no result within {workload.budget:.0f} s") from None
    if process.poll() is not None:
        raise RuntimeError(f"server exited with {process.returncode}")
    return figures


def run_workload(workload: Workload, rounds: int) -> None:
    """Run ``rounds`` rounds, each measuring every server in turn; record medians' inputs."""
    workload.rounds = {name: [] for name in workload.servers}
    running: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    progress(f"{workload.title}")
    try:
        if not workload.fresh:
            for name in workload.servers:
                try:
                    contender, port = make_server(name, workload.options)
                    running[name] = port, spawn(contender, port)
                except Exception as exc:
                    fail(workload, name, exc)
        for number in range(1, rounds + 1):
            for name in workload.servers:
                if name in workload.failed:
                    continue
                process = None
                try:
                    if workload.fresh:
                        contender, port = make_server(name, workload.options)
                        process = spawn(contender, port)
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
                progress(f"  round {number}/{rounds} {name:>17}: {workload.describe(figures)}")
    finally:
        for _, process in running.values():
            stop(process)


def fail(workload: Workload, name: str, exc: Exception) -> None:
    workload.failed[name] = f"{type(exc).__name__}: {exc}"
    progress(f"  {name} FAILED {workload.key}: {workload.failed[name]}")


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- targets and reports ----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    number: int
    workload: str
    figure: str
    ours: str
    theirs: str | None  # None: ``ours``'s own figure against an absolute bound
    bound: float
    at_most: bool
    label: str

    def value(self, done: dict[str, Workload]) -> float | None:
        workload = done[self.workload]
        ours = workload.median(self.ours, self.figure)
        if self.theirs is None or ours is None:
            return ours
        theirs = workload.median(self.theirs, self.figure)
        return None if theirs is None or theirs == 0 else ours / theirs

    def goal(self) -> str:
        unit = "" if self.theirs is None else "x"
        return f"{'<=' if self.at_most else '>='} {self.bound:.2f}{unit}"

    def status(self, value: float | None) -> str:
        if value is None:
            return "not measured"
        met = value <= self.bound if self.at_most else value >= self.bound
        return "met" if met else "not met"


TARGETS = [
    Target(1, "W1", "cpu", "wsapp", "websockets", 0.80, True,
           "W1 CPU/msg wsapp / websockets"),
    Target(1, "W1", "cpu", "wsapp", "uvicorn+sansio", 1.00, True,
           "W1 CPU/msg wsapp / uvicorn+sansio"),
    Target(1, "W1", "cpu", "wsapp-uvloop", "websockets", 1.00, True,
           "W1 CPU/msg wsapp-uvloop / websockets"),
    Target(1, "W1", "cpu", "wsapp-trio", "websockets", 1.00, True,
           "W1 CPU/msg wsapp-trio / websockets"),
    Target(2, "W3", "mbps", "wsapp", "websockets", 1.00, False,
           "W3 throughput wsapp / websockets"),
    Target(3, "W4-idle", "kib", "wsapp", None, 12.0, True, "W4 KiB per idle connection, wsapp"),
    Target(3, "W4-idle", "kib", "wsapp-trio", None, 12.0, True,
           "W4 KiB per idle connection, wsapp-trio"),
    Target(3, "W4-deflate", "kib", "wsapp", None, 32.0, True,
           "W4 KiB per idle connection with deflate, wsapp"),
    Target(3, "W4-handshake", "rate", "wsapp", "websockets", 1.50, False,
           "W4 handshakes/s wsapp / websockets"),
    Target(4, "W2", "p99", "wsapp", "websockets", 1.00, True, "W2 p99 latency wsapp / websockets"),
    Target(5, "ASGI", "cpu", "wsapp+uvicorn", "starlette+uvicorn", 1.00, True,
           "ASGI CPU/msg wsapp+uvicorn / starlette+uvicorn"),
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
    return (
        f"median of {args.rounds} rounds ({args.seconds:g} s of load each), {version}, "
        f"Python {platform.python_version()}, {os.cpu_count()} x {cpu}"
    )


def report(done: list[Workload], env: str) -> None:
    print(f"\n{env}")
    for workload in done:
        print(f"\n{workload.title}")
        for name in workload.servers:
            if name in workload.failed:
                print(f"  {name:>17}: failed ({workload.failed[name]})")
                continue
            medians = {f.key: workload.median(name, f.key) or 0.0 for f in workload.figures}
            print(f"  {name:>17}: {workload.describe(medians)}")
    targets = measured_targets(done)
    if targets:
        print("\ntargets:")
    for target, value in targets:
        shown = "-" if value is None else f"{value:.2f}"
        print(f"  {target.number}. {target.label:<50} {shown:>7}  "
              f"(goal {target.goal()}): {target.status(value)}")  # fmt: skip


def measured_targets(done: list[Workload]) -> list[tuple[Target, float | None]]:
    """The targets of the workloads that ran, each with its measured value."""
    by_key = {w.key: w for w in done}
    return [(t, t.value(by_key)) for t in TARGETS if t.workload in by_key]


def markdown(done: list[Workload], env: str) -> None:
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
    targets = measured_targets(done)
    if targets:
        print("\n| # | Target | Goal | Measured | |")
        print("|---|---|---|---:|---|")
    for target, value in targets:
        shown = "" if value is None else f"{value:.2f}"
        print(f"| {target.number} | {target.label} | {target.goal()} | {shown} | "
              f"{target.status(value)} |")  # fmt: skip
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="of load per measurement")
    parser.add_argument("--only", help="comma-separated: W1,W2,W3,W4,ASGI (default all)")
    parser.add_argument("--connections", type=int, default=5000, help="idle, for W4 memory")
    parser.add_argument("--latency-count", type=int, default=20_000, help="W2 round trips")
    parser.add_argument("--markdown", action="store_true", help="also print markdown tables")
    parser.add_argument("--serve-websockets", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ws-max-size", type=int, default=MIB, help=argparse.SUPPRESS)
    parser.add_argument("--ws-compression", default="deflate", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_websockets:
        run_websockets(args)
        return
    if args.rounds < 1 or args.seconds <= 0 or args.connections < 1 or args.latency_count < 1:
        parser.error("--rounds, --seconds, --connections and --latency-count must be positive")
    chosen = workloads(args)
    if args.only:
        groups = {item.strip().upper() for item in args.only.split(",") if item.strip()}
        known = {w.group.upper() for w in chosen} | {w.key.upper() for w in chosen}
        if groups - known:
            parser.error(f"--only: unknown {', '.join(sorted(groups - known))}")
        chosen = [w for w in chosen if {w.group.upper(), w.key.upper()} & groups]
    # each process (this one, the server) holds one file per connection, plus a few dozen
    needed = (args.connections if any(w.group == "W4" for w in chosen) else 0) + 64
    limit = raise_fd_limit(needed)
    if limit < needed:
        parser.error(f"RLIMIT_NOFILE is {limit}, below the {needed} files W4 needs (and this "
                     f"process may not raise it): lower --connections or raise the hard limit "
                     f"(ulimit -Hn, as root)")  # fmt: skip
    env = environment(args)
    progress(env)
    for workload in chosen:
        run_workload(workload, args.rounds)
    report(chosen, env)
    if args.markdown:
        markdown(chosen, env)
    if any(w.failed for w in chosen):
        sys.exit(1)


if __name__ == "__main__":
    main()
