"""Rooms and broadcast benchmark: one room of N members, 64-byte text messages.

    pip install -e ".[bench]"
    python bench/broadcast.py [--connections 10000] [--seconds 2] [--rounds 3]
                              [--backend asyncio|uvloop|trio] [--scenario rooms,stalled,redis]
                              [--contenders wsapp,websockets,...] [--json FILE]

Contenders, each a server process of its own, restarted every round (rounds alternate
between them): wsapp's built-in server (`python -m wsapp bench.broadcast_wsapp:app`), also on
Trio; the `websockets` package's asyncio server with `websockets.broadcast`; python-socketio
(default in-memory manager) under uvicorn; and, for the Redis scenario, wsapp with two
worker processes and `--broker redis://...`. The publisher runs inside each server: a
control connection asks for N broadcasts and the server sends them in bursts of B back to
back, yielding to the event loop after each burst (`bench/broadcast_wsapp.py`,
`bench/broadcast_peers.py`).

The receiving load generator (`bench/broadcast_load.py`) is several processes, each holding
thousands of raw connections that count the bytes they read and parse nothing, so that it
costs far less than the servers; it opens its connections in batches (the accept backlog)
and raises its file descriptor limit, as the servers do.

Scenarios:

- `rooms`: every member reads; for each burst size B (`--bursts`, default 1 and 10):
  deliveries per second and server CPU time (user + system, /proc) per delivery, over the
  broadcast phase only. Goals: wsapp's CPU per delivery at most 0.45x websockets' (issue 28)
  and 0.1x python-socketio's, on asyncio.
- `stalled`: 1% of the members stop reading (their TCP windows fill); the healthy members'
  throughput as a fraction of the unstalled run (goal: at least 95%), what happened to the
  stalled members (wsapp closes them with 1008), and the server's resident memory.
- `redis`: wsapp with `--workers 2 --broker redis://...` (members spread over both workers
  by SO_REUSEPORT, the publisher on one of them): CPU per delivery summed over the
  supervisor and both workers (redis-server's reported apart), against the single-process
  run; goal: at most 1.15x.

Keepalive is off in every server: the load generator counts bytes and answers no pings.

`--contenders` keeps only the named ones (wsapp, websockets, socketio, wsapp/trio, wsapp
2w+redis); `--json FILE` also writes every round's figures of each contender and burst there,
as `{"phases": {name: {burst: [{"rate": deliveries/s, "cpu": µs per delivery, "complete":
bool}, ...]}}}`, rounds in order (bench/suite.py reads it for its broadcast target).
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from broadcast_load import Control, serve_pipe
from broadcast_peers import raise_nofile
from echo import cpu_seconds, free_port, load_parser, wait_listening
from memory import rss

from wsapp.server.workers import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("rooms", "stalled", "redis")
#: The burst size of the stalled scenario (and of the run it is compared with).
STALL_BURST = 10
MIB = 1 << 20
#: wsapp's default outbound_budget.
DEFAULT_BUDGET = MIB
#: The size of the messages that fill the stalled members' buffers.
FILL_SIZE = 32 * 1024


# --- the contenders ----------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    kind: str  # the members' protocol: "ws" (plain WebSocket) or "eio" (Engine.IO v4)
    command: Callable[[int], list[str]]  # the server's command line, for a port
    workers: int = 1


def wsapp_contender(
    name: str, backend: str, budget: int | None, *extra: str, workers: int = 1
) -> Contender:
    flags = [*extra] + (["--outbound-budget", str(budget)] if budget is not None else [])

    def command(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "wsapp",
            "bench.broadcast_wsapp:app",
            "--port",
            str(port),
            "--log-level",
            "error",
            "--backend",
            backend,
            *flags,
        ]

    return Contender(name, "ws", command, workers)


def contenders(args: Any, redis_url: str | None) -> list[Contender]:
    backend = args.backend
    peer_loop = "uvloop" if backend == "uvloop" else "asyncio"
    chosen = [
        wsapp_contender("wsapp", backend, args.outbound_budget),
        Contender(
            "websockets",
            "ws",
            lambda port: (
                [
                    sys.executable,
                    str(ROOT / "bench" / "broadcast_peers.py"),
                    "websockets",
                    str(port),
                ]
                + (["uvloop"] if peer_loop == "uvloop" else [])
            ),
        ),
        Contender(
            "socketio",
            "eio",
            lambda port: [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "bench.broadcast_peers:socketio_app",
                "--port",
                str(port),
                "--log-level",
                "error",
                "--ws",
                args.socketio_ws,
                "--ws-ping-interval",
                "0",
                "--backlog",
                "4096",
                "--lifespan",
                "off",
                "--loop",
                peer_loop,
            ],
        ),
    ]
    if backend != "trio" and args.trio:
        chosen.append(wsapp_contender("wsapp/trio", "trio", args.outbound_budget))
    if redis_url is not None:
        chosen.append(
            wsapp_contender(
                "wsapp 2w+redis",
                backend,
                args.outbound_budget,
                "--workers",
                "2",
                "--broker",
                redis_url,
                workers=2,
            )
        )
    return chosen


# --- processes ---------------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a supervisor and its workers)."""
    pids, index = [pid], 0
    while index < len(pids):
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{pids[index]}/task/{pids[index]}/children").read_text()
            pids += [int(child) for child in children.split()]
        index += 1
    return pids


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its descendants."""
    total = 0.0
    for each in process_tree(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(each)
    return total


def tree_rss(pid: int) -> int:
    total = 0
    for each in process_tree(pid):
        with contextlib.suppress(OSError, RuntimeError):
            total += rss(each)
    return total


def listening_sockets(port: int) -> int:
    """How many sockets listen on ``port`` (IPv4): the workers that are serving."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            count += 1
    return count


def server_setup() -> None:
    """In a server process before it starts: the file descriptor limit raised, and
    SIGTERM when the benchmark dies (no orphaned servers holding 10,000 sockets)."""
    raise_nofile()
    die_with_parent()


@contextlib.contextmanager
def serving(contender: Contender, port: int, log: IO[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """The contender's server, listening (every worker of it) on ``port``."""
    process = subprocess.Popen(
        contender.command(port),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=server_setup,
    )
    try:
        wait_listening(port, process)
        deadline = time.monotonic() + 20
        while listening_sockets(port) < contender.workers:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{contender.name}: its workers did not all start")
            time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            for pid in reversed(process_tree(process.pid)):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A throwaway redis-server on a free port, without persistence: (url, process)."""
    executable = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    process = subprocess.Popen(
        [
            executable,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, process)
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        process.terminate()
        process.wait(timeout=10)


class Load:
    """The load generator's processes, each driven through a pipe."""

    def __init__(self, processes: int) -> None:
        context = multiprocessing.get_context("fork")
        self.pipes: list[multiprocessing.connection.Connection] = []
        self.processes = []
        for _ in range(processes):
            ours, theirs = context.Pipe()
            process = context.Process(target=serve_pipe, args=(theirs,), daemon=True)
            process.start()
            theirs.close()
            self.pipes.append(ours)
            self.processes.append(process)
        self.reached: dict[int, float] = {}

    def receive(self, index: int) -> tuple[Any, ...]:
        """The next reply of process ``index`` (recording the "reached" notices in between)."""
        while True:
            message: tuple[Any, ...] = self.pipes[index].recv()
            if message[0] != "reached":
                return message
            self.reached[index] = message[1]

    def call(self, *command: Any, timeout: float = 120) -> list[tuple[Any, ...]]:
        """Send ``command`` to every process; their replies."""
        for pipe in self.pipes:
            pipe.send(command)
        replies = []
        for index, pipe in enumerate(self.pipes):
            if not pipe.poll(timeout):
                raise RuntimeError(f"load process {index} did not answer {command[0]!r}")
            replies.append(self.receive(index))
        return replies

    def connect(self, port: int, kind: str, members: int, stalled: int) -> tuple[int, int, float]:
        """Open ``members`` connections (``stalled`` of them stall candidates), spread over
        the processes: (members, stall candidates, seconds)."""
        count = len(self.pipes)
        started = time.monotonic()
        for index, pipe in enumerate(self.pipes):
            share = members // count + (index < members % count)
            stall = stalled // count + (index < stalled % count)
            pipe.send(("connect", port, kind, share, stall, max(1, 256 // count)))
        replies = [self.receive(index) for index in range(count)]
        failures = sum(reply[3] for reply in replies)
        if failures:
            print(f"  ({failures} connection attempts failed and were retried)")
        return (sum(r[1] for r in replies), sum(r[2] for r in replies), time.monotonic() - started)

    def cpu(self) -> float:
        return sum(cpu_seconds(process.pid) for process in self.processes if process.pid)

    def stop(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("exit",))
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


# --- phases ------------------------------------------------------------------------------------


@dataclass
class Phase:
    """One measured broadcast phase."""

    messages: int
    burst: int
    members: int  # the members that read, each of which should receive every message
    seconds: float
    cpu: float  # server CPU seconds (every process of it)
    load_cpu: float
    rss_before: int
    rss_peak: int
    complete: bool
    delivered: int
    extra_cpu: float = 0.0  # redis-server's

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds

    @property
    def cpu_per_delivery(self) -> float:
        return self.cpu / max(self.delivered, 1)


@dataclass
class Session:
    """A contender's server with its members connected, for one round."""

    contender: Contender
    process: subprocess.Popen[bytes]
    load: Load
    control: Control
    members: int
    frame: int = 0
    extra_pid: int | None = None  # redis-server

    def command(self, timeout: float, *words: Any) -> int:
        """Send a control command and wait for its reply; the server's peak RSS meanwhile."""
        pid = self.process.pid
        peak = tree_rss(pid)
        self.control.send(*words)
        deadline = time.monotonic() + timeout
        while True:
            ready = multiprocessing.connection.wait([self.control], timeout=0.05)
            if ready and self.control.poll() is not None:
                return max(peak, tree_rss(pid))
            peak = max(peak, tree_rss(pid))
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.contender.name}: no answer to {words[0]!r}")

    def phase(self, messages: int, burst: int, timeout: float) -> Phase:
        """Have the server broadcast ``messages`` in bursts of ``burst``; wait until every
        reading member has all of them (or ``timeout``)."""
        load, pid = self.load, self.process.pid
        load.call("reset")
        expecting = sum(reply[1] for reply in load.call("expect", messages * self.frame))
        load.reached.clear()
        rss_before = rss_peak = tree_rss(pid)
        extra0 = cpu_seconds(self.extra_pid) if self.extra_pid else 0.0
        load_cpu0, cpu0, started = load.cpu(), tree_cpu(pid), time.monotonic()
        self.control.send("run", messages, burst)
        done = False
        deadline = started + timeout
        waiting: list[Any] = [*load.pipes, self.control]
        while not (done and len(load.reached) == len(load.pipes)):
            if time.monotonic() > deadline:
                break
            for ready in multiprocessing.connection.wait(waiting, timeout=0.05):
                if ready is self.control:
                    if self.control.poll() is not None:
                        done = True
                        waiting.remove(self.control)
                else:
                    index = load.pipes.index(ready)  # type: ignore[arg-type]
                    message = ready.recv()  # type: ignore[union-attr]
                    assert message[0] == "reached", message
                    load.reached[index] = message[1]
            rss_peak = max(rss_peak, tree_rss(pid))
        cpu, load_cpu = tree_cpu(pid) - cpu0, load.cpu() - load_cpu0
        extra = (cpu_seconds(self.extra_pid) - extra0) if self.extra_pid else 0.0
        complete = done and len(load.reached) == len(load.pipes)
        if complete:
            ended = max(load.reached.values())
            delivered = messages * expecting
        else:
            ended = time.monotonic()
            if not done:  # the publisher may still be going: wait for it, not counted
                with contextlib.suppress(ConnectionError, OSError):
                    self.control.sock.settimeout(timeout)
                    self.control.receive()
                    self.control.sock.settimeout(30)
            delivered = sum(reply[3] for reply in load.call("sizes")) // self.frame
        return Phase(
            messages,
            burst,
            expecting,
            ended - started,
            cpu,
            load_cpu,
            rss_before,
            rss_peak,
            complete,
            delivered,
            extra,
        )

    def probe(self) -> int:
        """The size of one broadcast's frame, as the members receive it."""
        self.load.call("reset")
        self.command(60, "run", 1, 1)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            sizes = self.load.call("sizes")
            low, high = min(s[1] for s in sizes), max(s[2] for s in sizes)
            if low == high > 0:
                self.frame = low
                return low
            time.sleep(0.05)
        raise RuntimeError(f"{self.contender.name}: the probe broadcast did not reach everyone")


@contextlib.contextmanager
def session(
    contender: Contender,
    load: Load,
    members: int,
    stalled: int,
    log: IO[bytes],
    extra_pid: int | None,
) -> Iterator[Session]:
    port = free_port()
    with serving(contender, port, log) as process:
        opened, candidates, seconds = load.connect(port, contender.kind, members, stalled)
        if opened < members:
            print(f"  {contender.name}: only {opened} of {members} members connected")
        control = Control(port, contender.kind)
        try:
            run = Session(contender, process, load, control, opened, extra_pid=extra_pid)
            run.probe()
            print(
                f"  {contender.name}: {opened} members ({candidates} stall candidates) in "
                f"{seconds:.1f}s, frame {run.frame} bytes, server RSS "
                f"{tree_rss(process.pid) / MIB:.0f} MiB",
                flush=True,
            )
            yield run
        finally:
            control.close()
            load.call("close")


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Stalled:
    """What one stalled run showed."""

    phase: Phase
    stalled: int
    rss_base: int  # before the stall
    rss_peak: int  # over the fills and the phase
    rss_end: int  # after the closes and the stalled members' reading again
    slow_closes: int
    closes: dict[str, int]
    scan: dict[str, int]


@dataclass
class Results:
    phases: dict[tuple[str, int], list[Phase]] = field(default_factory=lambda: defaultdict(list))
    stalled: dict[str, list[Stalled]] = field(default_factory=lambda: defaultdict(list))
    plan: dict[tuple[str, int], int] = field(default_factory=dict)  # messages per phase
    notes: dict[str, Any] = field(default_factory=dict)


def measure(run: Session, burst: int, seconds: float, results: Results) -> Phase:
    """A phase of about ``seconds``. The first round finds how many broadcasts that takes
    with growing phases (the last of them is the measurement if it is long enough); later
    rounds send as many, after a short warm-up."""
    key = (run.contender.name, burst)
    timeout = 60 + 30 * seconds
    if key in results.plan:
        planned = results.plan[key]
        if planned >= 10 * burst:
            run.phase(planned // 10 // burst * burst, burst, timeout)
        return run.phase(planned, burst, timeout)
    messages = burst
    while True:
        trial = run.phase(messages, burst, timeout)
        if trial.seconds >= 0.75 * seconds:
            results.plan[key] = messages
            return trial
        if trial.seconds >= 0.2 * seconds or messages >= 1_000_000:
            break
        messages *= 4
    planned = max(burst, round(messages * seconds / trial.seconds / burst) * burst)
    results.plan[key] = planned
    return run.phase(planned, burst, timeout)


def show(name: str, phase: Phase, label: str = "") -> None:
    mark = "" if phase.complete else "  INCOMPLETE (timed out)"
    print(
        f"    {name:>15} B={phase.burst:<3}{label} {phase.messages:5d} msgs x {phase.members:5d}: "
        f"{phase.rate:9.0f} deliveries/s {phase.cpu_per_delivery * 1e6:7.2f} us CPU/delivery"
        f"  (load {phase.load_cpu / max(phase.delivered, 1) * 1e6:.2f} us){mark}",
        flush=True,
    )


def stalled_run(run: Session, budget: int, results: Results) -> None:
    """Stop the stall candidates reading and fill their buffers (`budget` bytes of large
    messages to them alone: their kernel buffers are then full, wsapp's own buffer for them
    below its budget); broadcast as in the unstalled run; then as much again to them alone,
    which takes them over wsapp's budget; then see what they received."""
    name, pid = run.contender.name, run.process.pid
    rss_base = tree_rss(pid)
    stalled = sum(reply[1] for reply in run.load.call("stall"))
    before = run.control.stats()
    fills = max(1, budget // FILL_SIZE)
    peak = run.command(120, "fill", fills, FILL_SIZE)
    phase = run.phase(results.plan[(name, STALL_BURST)], STALL_BURST, 120 + 60 * 30)
    peak = max(peak, phase.rss_peak, run.command(120, "fill", fills, FILL_SIZE))
    time.sleep(0.5)  # the closes are under way
    after = run.control.stats()
    peak = max(peak, tree_rss(pid))
    show(name, phase, " stalled")
    scan: dict[str, int] = {}
    for reply in run.load.call("scan", 5.0):
        for key, value in json.loads(reply[1]).items():
            scan[key] = scan.get(key, 0) + value
    closes = {
        code: count - before.get("closes", {}).get(code, 0)
        for code, count in after.get("closes", {}).items()
    }
    record = Stalled(
        phase,
        stalled,
        rss_base,
        peak,
        tree_rss(pid),
        after.get("slow_closes", 0) - before.get("slow_closes", 0),
        {code: n for code, n in closes.items() if n},
        scan,
    )
    results.stalled[name].append(record)
    print(
        f"    {'':>15} {stalled} stalled: {record.slow_closes} closed as too slow, closes seen "
        f"by the server so far {record.closes or '{}'}; they saw "
        f"{scan['closed_1008']} x 1008, {scan['lost_without_close']} dropped without a close, "
        f"{scan['still_open']} still open; RSS {rss_base / MIB:.0f} -> peak {peak / MIB:.0f}"
        f" -> {record.rss_end / MIB:.0f} MiB",
        flush=True,
    )


def run_rounds(args: Any, scenarios: set[str], log: IO[bytes]) -> Results:
    results = Results()
    load = Load(args.clients)
    stalled = max(1, args.connections // 100) if "stalled" in scenarios else 0
    stalled_names = {"wsapp", "websockets", "socketio"}
    with contextlib.ExitStack() as stack:
        redis_url, redis_pid = None, None
        if "redis" in scenarios:
            redis_url, redis = stack.enter_context(redis_server())
            redis_pid = redis.pid
        chosen = contenders(args, redis_url)
        if args.contenders:
            chosen = [c for c in chosen if c.name in args.contenders]
        if "rooms" not in scenarios:  # the other scenarios compare with wsapp's own run
            chosen = [
                c
                for c in chosen
                if c.name in ("wsapp", "wsapp 2w+redis")
                or ("stalled" in scenarios and c.name in stalled_names)
            ]
        stack.callback(load.stop)
        for number in range(args.rounds):
            order = chosen if number % 2 == 0 else chosen[::-1]
            print(f"round {number + 1}", flush=True)
            for contender in order:
                is_redis = contender.workers > 1
                stalls = stalled if contender.name in stalled_names else 0
                extra = redis_pid if is_redis else None
                with session(contender, load, args.connections, stalls, log, extra) as run:
                    if is_redis:
                        results.notes["redis_split"] = run.control.stats()["members"]
                    for burst in args.bursts:
                        phase = measure(run, burst, args.seconds, results)
                        results.phases[(contender.name, burst)].append(phase)
                        show(contender.name, phase)
                    if stalls:
                        stalled_run(run, args.budget, results)
    return results


# --- the report --------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def report(args: Any, results: Results, scenarios: set[str]) -> None:
    rounds = args.rounds
    print(
        f"\nmedians of {rounds} rounds; {args.connections} members, 64-byte text messages, "
        f"no compression; backend {args.backend}; {args.clients} load processes"
    )
    print(
        f"{'contender':>16} {'B':>3} {'deliveries/s':>13} {'CPU us/deliv':>13} "
        f"{'load us/deliv':>14} {'msgs':>6}"
    )
    medians: dict[tuple[str, int], tuple[float, float]] = {}
    for (name, burst), phases in results.phases.items():
        rate = median([p.rate for p in phases])
        cpu = median([p.cpu_per_delivery for p in phases])
        load_cpu = median([p.load_cpu / max(p.delivered, 1) for p in phases])
        medians[(name, burst)] = (rate, cpu)
        flag = "" if all(p.complete for p in phases) else "  (incomplete phases)"
        print(
            f"{name:>16} {burst:>3} {rate:13.0f} {cpu * 1e6:13.2f} {load_cpu * 1e6:14.2f} "
            f"{phases[0].messages:6d}{flag}"
        )
    if "rooms" in scenarios:
        print("\nratios (CPU per delivery below 1.0 and throughput above 1.0 favour wsapp):")
        for burst in args.bursts:
            for peer, goal in (("websockets", 0.45), ("socketio", 0.1)):
                ours, theirs = medians.get(("wsapp", burst)), medians.get((peer, burst))
                if ours is None or theirs is None:
                    continue
                cpu_ratio = ours[1] / theirs[1]
                verdict = "met" if cpu_ratio <= goal else "NOT met"
                print(
                    f"  B={burst:<3} wsapp/{peer:<10}: CPU per delivery {cpu_ratio:5.2f}x "
                    f"(goal <= {goal}x: {verdict}), throughput {ours[0] / theirs[0]:5.2f}x"
                )
        for burst in args.bursts:
            ours, trio = medians.get(("wsapp", burst)), medians.get(("wsapp/trio", burst))
            if ours and trio:
                print(
                    f"  B={burst:<3} wsapp/trio vs asyncio: CPU per delivery "
                    f"{trio[1] / ours[1]:5.2f}x, throughput {trio[0] / ours[0]:5.2f}x"
                )
    if "stalled" in scenarios and results.stalled:
        budget = args.budget
        print(
            f"\nstalled: 1% of the members stop reading, B={STALL_BURST}; wsapp's "
            f"outbound_budget {budget // 1024} KiB"
        )
        for name, records in results.stalled.items():
            unstalled = medians.get((name, STALL_BURST))
            rate = median([r.phase.rate for r in records])
            fraction = rate / unstalled[0] if unstalled else math.nan
            growth = median([(r.rss_peak - r.rss_base) / MIB for r in records])
            end = median([(r.rss_end - r.rss_base) / MIB for r in records])
            stalled = records[0].stalled
            line = (
                f"  {name:>12}: healthy members {rate:8.0f} deliveries/s = {fraction:6.1%} "
                f"of unstalled; RSS +{growth:.0f} MiB at the peak, +{end:.0f} MiB at the end"
            )
            if name.startswith("wsapp"):
                closed = median([r.slow_closes for r in records])
                seen = median([r.scan["closed_1008"] for r in records])
                bound = budget * stalled / MIB
                line += (
                    f" (budget x stalled: {bound:.0f} MiB); {closed:.0f} of {stalled} closed as "
                    f"too slow ({seen:.0f} read the 1008 close frame once they read again)"
                )
                verdict = "met" if fraction >= 0.95 else "NOT met"
                line += f"; goal >= 95%: {verdict}"
            else:
                still = median([r.scan["still_open"] for r in records])
                line += f"; {still:.0f} of {stalled} still open"
            print(line)
    if "redis" in scenarios:
        print("\nredis: wsapp --workers 2 --broker redis, CPU summed over supervisor + workers:")
        split = results.notes.get("redis_split")
        if split is not None:
            print(f"  members on the publisher's worker: {split} of {args.connections}")
        for burst in args.bursts:
            single, multi = medians.get(("wsapp", burst)), medians.get(("wsapp 2w+redis", burst))
            phases = results.phases.get(("wsapp 2w+redis", burst), [])
            if not (single and multi and phases):
                continue
            redis_cpu = median([p.extra_cpu / max(p.delivered, 1) for p in phases])
            redis_msg = median([p.extra_cpu / p.messages for p in phases])
            ratio = multi[1] / single[1]
            verdict = "met" if ratio <= 1.15 else "NOT met"
            print(
                f"  B={burst:<3} CPU per delivery {ratio:5.2f}x the single process (goal <= "
                f"1.15x: {verdict}); throughput {multi[0] / single[0]:5.2f}x; redis-server "
                f"{redis_cpu * 1e6:.3f} us/delivery ({redis_msg * 1e6:.0f} us/message)"
            )


def main() -> None:
    parser = load_parser(__doc__ or "")
    parser.set_defaults(seconds=2.0)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument(
        "--scenario",
        default=",".join(SCENARIOS),
        help="comma-separated: rooms, stalled, redis (default: all)",
    )
    parser.add_argument("--bursts", default="1,10", help="burst sizes B (default 1,10)")
    parser.add_argument("--clients", type=int, default=4, help="load generator processes")
    parser.add_argument(
        "--outbound-budget",
        type=int,
        default=None,
        help="wsapp's outbound_budget for the run (default: wsapp's, 1 MiB)",
    )
    parser.add_argument("--no-trio", dest="trio", action="store_false", help="no wsapp/trio row")
    parser.add_argument(
        "--socketio-ws", default="websockets-sansio", choices=["websockets-sansio", "wsproto"]
    )
    parser.add_argument("--contenders", help="comma-separated: run only these (default: all)")
    parser.add_argument("--json", help="also write every round's figures to this file")
    args = parser.parse_args()
    args.contenders = set(args.contenders.split(",")) if args.contenders else None
    args.bursts = [int(b) for b in args.bursts.split(",")]
    args.budget = args.outbound_budget or DEFAULT_BUDGET
    scenarios = set(args.scenario.split(","))
    if unknown := scenarios - set(SCENARIOS):
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if "stalled" in scenarios and STALL_BURST not in args.bursts:
        args.bursts.append(STALL_BURST)
    raise_nofile()
    started = time.monotonic()
    with tempfile.NamedTemporaryFile(prefix="wsapp-broadcast-", suffix=".log") as log:
        try:
            results = run_rounds(args, scenarios, log)
        except BaseException:
            log.flush()
            tail = Path(log.name).read_bytes()[-4000:].decode(errors="replace")
            if tail:
                print(f"--- the servers' output (tail) ---\n{tail}", file=sys.stderr)
            raise
    report(args, results, scenarios)
    if args.json:
        write_json(Path(args.json), results)
    print(f"\n(total {time.monotonic() - started:.0f}s)")


def write_json(path: Path, results: Results) -> None:
    """Every round's phases, by contender and burst (see the module's docstring)."""
    phases: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(dict)
    for (name, burst), runs in results.phases.items():
        phases[name][burst] = [
            {"rate": p.rate, "cpu": p.cpu_per_delivery * 1e6, "complete": p.complete} for p in runs
        ]
    path.write_text(json.dumps({"phases": phases}, indent=1))


if __name__ == "__main__":
    main()
