"""Echo benchmark: wsapp's echo example against an equivalent `websockets` server.

    python bench/echo.py [--seconds 5] [--rounds 3] [--backend asyncio|uvloop|trio] [--asgi]
                         [--metrics] [--against REV]

With `--asgi`, two more contenders run under uvicorn (its websockets-sansio implementation):
the same wsapp app as an ASGI app, and the echo endpoint as written with Starlette
(`bench/starlette_echo.py`); their ratio is the cost of wsapp's ASGI adapter against the
framework users run there today. With `--metrics`, one more: wsapp serving a metrics path
(which also times every `on_message`), against wsapp without one: the cost of the metrics.
With `--against REV`, one more (two with `--asgi`: under uvicorn too): wsapp as it was at
the git revision REV (served from a temporary worktree of it), to measure what the commits
since then cost or saved.

Each server runs in its own process; one load generator (this process) drives both with the
same load: 50 connections, each keeping 10 messages of 32 bytes in flight. Rounds alternate
between the servers so that drift on a noisy machine hits both alike. Reported per server:
echoed messages per second and server CPU time (user + system, from /proc) per message;
then the ratios wsapp / websockets (CPU below 1.0 and throughput above 1.0 favour wsapp).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 50
IN_FLIGHT = 10
MESSAGE = b"x" * 32
TICKS = os.sysconf("SC_CLK_TCK")


def masked_text_frame(payload: bytes) -> bytes:
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + key + masked


class EchoLoad(asyncio.Protocol):
    """One connection: handshake, then keep ``in_flight`` messages outstanding, count echoes."""

    def __init__(
        self,
        ready: asyncio.Future[None],
        counter: list[int],
        message: bytes = MESSAGE,
        in_flight: int = IN_FLIGHT,
    ) -> None:
        self.ready = ready
        self.in_flight = in_flight
        self.counter = counter
        self.buffer = b""
        self.upgraded = False
        self.frame = masked_text_frame(message)
        self.echo_size = 2 + len(message)  # the echo must be the same size (and < 126 bytes)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(RuntimeError(head.decode(errors="replace")))
                return
            self.upgraded, self.buffer = True, rest
            self.ready.set_result(None)
        echoed = len(self.buffer) // self.echo_size
        if echoed:
            self.buffer = self.buffer[echoed * self.echo_size :]
            self.counter[0] += echoed
            assert self.transport is not None
            self.transport.write(self.frame * echoed)

    def start(self) -> None:
        assert self.transport is not None
        self.transport.write(self.frame * self.in_flight)


async def drive(
    port: int, seconds: float, pid: int, message: bytes = MESSAGE, in_flight: int = IN_FLIGHT
) -> tuple[float, float]:
    """(messages per second, server CPU seconds per message) over ``seconds`` of load, with
    ``in_flight`` messages outstanding on each of the CONNECTIONS."""
    loop = asyncio.get_running_loop()
    counter = [0]
    protocols = []
    for _ in range(CONNECTIONS):
        ready: asyncio.Future[None] = loop.create_future()
        _, protocol = await loop.create_connection(
            lambda ready=ready: EchoLoad(ready, counter, message, in_flight), "127.0.0.1", port
        )
        await ready
        protocols.append(protocol)
    for protocol in protocols:
        protocol.start()
    await asyncio.sleep(0.5)  # warm-up, not measured
    start_count, start_cpu, start = counter[0], cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(seconds)
    count, cpu, elapsed = (
        counter[0] - start_count,
        cpu_seconds(pid) - start_cpu,
        time.perf_counter() - start,
    )
    for protocol in protocols:
        assert protocol.transport is not None
        protocol.transport.close()
    return count / elapsed, cpu / max(count, 1)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("server did not start listening")


@dataclass
class Contender:
    name: str
    command: list[str]
    cwd: Path = ROOT  # `python -m` imports wsapp from here: another tree serves another wsapp


def wsapp_command(
    port: int, *flags: str, app: str = "examples.echo:app", log_level: str | None = "warning"
) -> list[str]:
    """The command serving ``app`` (the echo example by default) with wsapp on ``port``;
    ``log_level`` None keeps wsapp's default logging (info: a line per open and close)."""
    logging = [] if log_level is None else ["--log-level", log_level]
    return [sys.executable, "-m", "wsapp", app, "--port", str(port), *logging, *flags]


@contextmanager
def serving_echo(*flags: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """The echo example served by wsapp in its own process: (port, process)."""
    port = free_port()
    process = subprocess.Popen(wsapp_command(port, *flags), cwd=ROOT)
    try:
        wait_listening(port, process)
        yield port, process
    finally:
        process.terminate()
        process.wait(timeout=15)


def uvicorn_command(
    app: str, port: int, backend: str, log_level: str | None = "warning"
) -> list[str]:
    """The command serving the ASGI ``app`` with uvicorn (websockets-sansio) on ``port``;
    ``log_level`` None keeps uvicorn's default logging."""
    logging = [] if log_level is None else ["--log-level", log_level]
    return [sys.executable, "-m", "uvicorn", app, "--port", str(port), *logging,
            "--ws", "websockets-sansio", "--loop", "uvloop" if backend == "uvloop" else "asyncio",
            "--lifespan", "on"]  # fmt: skip


def contenders(backend: str, asgi: bool, metrics: bool = False) -> list[tuple[Contender, int]]:
    ports = [free_port() for _ in range(5)]
    wsapp_cmd = wsapp_command(ports[0], "--backend", backend)
    ws_cmd = [sys.executable, __file__, "--serve-websockets", str(ports[1]),
              "--backend", "uvloop" if backend == "uvloop" else "asyncio"]  # fmt: skip
    chosen = [
        (Contender("wsapp", wsapp_cmd), ports[0]),
        (Contender("websockets", ws_cmd), ports[1]),
    ]
    if asgi:
        if backend == "trio":
            raise SystemExit("--asgi runs uvicorn, which has no Trio support")
        chosen += [
            (Contender("wsapp+uvicorn", uvicorn_command("examples.echo:app", ports[2], backend)),
             ports[2]),
            (Contender("starlette+uvicorn",
                       uvicorn_command("bench.starlette_echo:app", ports[3], backend)), ports[3]),
        ]  # fmt: skip
    if metrics:
        metered = wsapp_command(ports[4], "--backend", backend, "--metrics-path", "/metrics")
        chosen.append((Contender("wsapp+metrics", metered), ports[4]))
    return chosen


def serve_websockets(
    port: int, backend: str, *, max_size: int | None = 2**20, compression: str | None = "deflate"
) -> None:
    """The equivalent echo server written with the websockets package.

    ``max_size`` and ``compression`` are passed to `serve` (their defaults are its own).
    """
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    async def echo(ws) -> None:  # type: ignore[no-untyped-def]
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass  # the load generator drops its connections at the end of a round

    async def main() -> None:
        async with serve(
            echo, "127.0.0.1", port, max_size=max_size, compression=compression
        ) as server:
            await server.serve_forever()

    if backend == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


Results = dict[str, list[tuple[float, float]]]  # name -> per round (msg/s, CPU s/msg)


def run_rounds(
    chosen: list[tuple[Contender, int]],
    rounds: int,
    seconds: float,
    message: bytes = MESSAGE,
    in_flight: int = IN_FLIGHT,
) -> Results:
    """Start every contender, then drive each in turn, ``rounds`` times; stop them all."""
    results: Results = {c.name: [] for c, _ in chosen}
    servers = []
    try:
        for contender, port in chosen:
            process = subprocess.Popen(contender.command, cwd=contender.cwd)
            servers.append((contender, port, process))
            wait_listening(port, process)
        for round_number in range(rounds):
            for contender, port, process in servers:
                rate, cpu = asyncio.run(drive(port, seconds, process.pid, message, in_flight))
                results[contender.name].append((rate, cpu))
                print(
                    f"round {round_number + 1} {contender.name:>10}: {rate:9.0f} msg/s  "
                    f"{cpu * 1e6:6.2f} us CPU/msg",
                    flush=True,
                )
    finally:
        for _, _, process in servers:
            process.terminate()
            process.wait(timeout=15)
    return results


def print_medians(
    results: Results, backend: str, message: bytes = MESSAGE, in_flight: int = IN_FLIGHT
) -> dict[str, tuple[float, float]]:
    """Print, and return, each contender's median (msg/s, CPU s/msg) over the rounds."""
    rounds = len(next(iter(results.values())))
    print(
        f"\nmedian of {rounds} rounds, {CONNECTIONS} connections x {in_flight} in flight, "
        f"{len(message)}-byte messages, backend {backend}:"
    )
    medians = {}
    for name, per_round in results.items():
        rate = statistics.median(r for r, _ in per_round)
        cpu = statistics.median(c for _, c in per_round)
        medians[name] = (rate, cpu)
        print(f"  {name:>10}: {rate:9.0f} msg/s  {cpu * 1e6:6.2f} us server CPU per message")
    return medians


def print_ratio(
    medians: dict[str, tuple[float, float]], ours: str, theirs: str, goal: str = ""
) -> None:
    """Print ``ours`` against ``theirs``: CPU below 1.0 and throughput above 1.0 favour ours."""
    (w_rate, w_cpu), (o_rate, o_cpu) = medians[ours], medians[theirs]
    print(
        f"  ratio {ours}/{theirs}: throughput {w_rate / o_rate:.2f}x, "
        f"CPU per message {w_cpu / o_cpu:.2f}x{goal}"
    )


def load_parser(description: str) -> argparse.ArgumentParser:
    """The options every socket benchmark takes: --seconds, --rounds, --backend."""
    parser = argparse.ArgumentParser(description=description.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "uvloop", "trio"])
    return parser


def main() -> None:
    parser = load_parser(__doc__)
    parser.add_argument("--asgi", action="store_true", help="also compare under uvicorn")
    parser.add_argument("--metrics", action="store_true", help="also wsapp with a metrics path")
    parser.add_argument("--against", metavar="REV", help="also wsapp at this git revision")
    parser.add_argument(
        "--in-flight", type=int, default=IN_FLIGHT, help="messages outstanding per connection"
    )
    parser.add_argument("--serve-websockets", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_websockets:
        serve_websockets(args.serve_websockets, args.backend)
        return
    chosen = contenders(args.backend, args.asgi, args.metrics)
    with ExitStack() as stack:
        if args.against:
            tree = stack.enter_context(worktree(args.against))
            port = free_port()
            command = wsapp_command(port, "--backend", args.backend)
            chosen.append((Contender(f"wsapp@{args.against}", command, tree), port))
            if args.asgi:
                port = free_port()
                command = uvicorn_command("examples.echo:app", port, args.backend)
                chosen.append((Contender(f"wsapp+uvicorn@{args.against}", command, tree), port))
        results = run_rounds(chosen, args.rounds, args.seconds, in_flight=args.in_flight)
    medians = print_medians(results, args.backend, in_flight=args.in_flight)
    print_ratio(medians, "wsapp", "websockets", " (goal: at most 0.80x)")
    if args.asgi:
        print_ratio(medians, "wsapp+uvicorn", "starlette+uvicorn")
    if args.metrics:
        print_ratio(medians, "wsapp+metrics", "wsapp", " (goal: at most 1.05x)")
    if args.against:
        print_ratio(medians, "wsapp", f"wsapp@{args.against}")
        if args.asgi:
            print_ratio(medians, "wsapp+uvicorn", f"wsapp+uvicorn@{args.against}")


@contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """A temporary git worktree of ``revision``, with its C speed-up built if it can be."""
    with tempfile.TemporaryDirectory(prefix="wsapp-at-") as parent:
        tree = Path(parent) / "tree"
        git = ["git", "-C", str(ROOT)]
        subprocess.run([*git, "worktree", "add", "--detach", str(tree), revision], check=True,
                       capture_output=True)  # fmt: skip
        try:
            subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                           cwd=tree, capture_output=True, check=False)  # fmt: skip
            yield tree
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(tree)], check=False)


if __name__ == "__main__":
    main()
