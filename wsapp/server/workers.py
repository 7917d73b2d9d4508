"""`python -m wsapp module:app --workers N`: N worker processes on one port, supervised.

Why processes: one Python process uses one core. Why a supervisor: a worker that dies is
replaced, a signal reaches every worker (so every connection gets its graceful 1001), and the
exit status says how it went.

On Linux each worker listens on its own `SO_REUSEPORT` socket, so the kernel spreads new
connections evenly across them; elsewhere (and for unix sockets) the supervisor opens one
listening socket and every worker accepts from it. Rooms span the workers: with a broker
(`--broker redis://...`) through it, without one through the supervisor's hub (see
`wsapp.rooms.brokers.hub`), which workers reach over a unix socket.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
from anyio.abc import Process

from wsapp.log import logger
from wsapp.rooms.brokers.hub import Hub
from wsapp.server.listeners import listen_error, remove_stale_socket

__all__ = ["Supervisor", "die_with_parent", "reuse_port_supported"]

#: A worker that exits sooner than this after starting counts as failing to start.
RESTART_WINDOW = 5.0
#: Seconds between restarts of a worker that keeps dying right after start.
RESTART_BACKOFF = 1.0


def reuse_port_supported() -> bool:
    """Whether each worker can have its own listening socket on the shared port."""
    if os.environ.get("_WSAPP_SHARED_SOCKET"):  # lets the tests take the portable path
        return False
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def die_with_parent() -> None:
    """Have the kernel send this worker SIGTERM if its supervisor dies (Linux), so that an
    orphaned worker shuts down gracefully instead of serving on alone."""
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class _Worker:
    index: int
    process: Process | None = None
    started: float = 0.0
    ready: bool = False
    failures: int = 0
    status: int | None = None
    done: anyio.Event = field(default_factory=anyio.Event)


class Supervisor:
    """Starts, watches and stops the workers.

    Args:
        command: The command line of one worker, without the options the supervisor adds
            (`--port`, the listening socket, the hub, the readiness pipe).
        workers: How many.
        host: The address the workers listen on (TCP).
        port: The port (0 picks a free one, the same for every worker).
        uds: A unix socket path instead of TCP.
        broker: Whether a broker is configured (else the supervisor's hub relays).
    """

    def __init__(
        self,
        command: Sequence[str],
        workers: int,
        *,
        host: str,
        port: int,
        uds: str | None,
        broker: bool,
    ) -> None:
        self.command = list(command)
        self.workers = [_Worker(index) for index in range(1, workers + 1)]
        self.host = host
        self.port = port
        self.uds = uds
        self.broker = broker
        self.stopping = False
        self._extra: list[str] = []
        self._pass_fds: list[int] = []
        self._sockets: list[socket.socket] = []

    async def run(self) -> int:
        """Serve until SIGINT/SIGTERM; the exit status (0: every worker stopped gracefully)."""
        with tempfile.TemporaryDirectory(prefix="wsapp-") as directory:
            try:
                self._bind()
            except OSError as exc:  # the CLI's one line, as for a single process
                raise listen_error(exc, self.host, self.port, self.uds) from None
            # The workers' metrics snapshots, summed by whichever worker is scraped.
            self._extra += ["--_metrics-dir", directory]
            async with anyio.create_task_group() as tg:
                if not self.broker:
                    hub_path = os.path.join(directory, "hub.sock")
                    listener = await anyio.create_unix_listener(hub_path)
                    tg.start_soon(Hub().serve, listener)
                    self._extra += ["--broker", f"hub+unix://{hub_path}"]
                tg.start_soon(self._watch_signals, tg.cancel_scope)
                logger.info(
                    "wsapp supervisor (pid %d): %d workers on %s",
                    os.getpid(),
                    len(self.workers),
                    self._address(),
                )
                async with anyio.create_task_group() as running:
                    for worker in self.workers:
                        running.start_soon(self._keep_running, worker)
                tg.cancel_scope.cancel()
        for sock in self._sockets:
            sock.close()
        statuses = [worker.status for worker in self.workers]
        failed = [status for status in statuses if status not in (0, None)]
        if failed and not self.stopping:
            return failed[0] if failed[0] > 0 else 1  # a worker could not start
        return 1 if failed else 0

    def _address(self) -> str:
        if self.uds is not None:
            return f"unix:{self.uds}"
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{shown}:{self.port}"

    def _bind(self) -> None:
        """Fix the address every worker will serve: reserve the port (SO_REUSEPORT), or
        open the one listening socket they all accept from."""
        if self.uds is None and reuse_port_supported():
            family = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)[0][0]
            reserved = socket.socket(family, socket.SOCK_STREAM)
            # SO_REUSEADDR too, as every listener has: the connections of a server that just
            # stopped linger in TIME-WAIT on this port, and would refuse the bind for a minute.
            reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            reserved.bind((self.host, self.port))  # bound, never listening: takes no clients
            self.port = reserved.getsockname()[1]
            self._sockets.append(reserved)
            self._extra += ["--port", str(self.port), "--_reuse-port"]
            return
        if self.uds is not None:
            remove_stale_socket(self.uds)
            shared = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            shared.bind(self.uds)
        else:
            family = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)[0][0]
            shared = socket.socket(family, socket.SOCK_STREAM)
            shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            shared.bind((self.host, self.port))
            self.port = shared.getsockname()[1]
        shared.listen(socket.SOMAXCONN)
        shared.set_inheritable(True)
        self._sockets.append(shared)
        self._pass_fds.append(shared.fileno())
        self._extra += ["--_fd", str(shared.fileno())]

    async def _keep_running(self, worker: _Worker) -> None:
        """Run one worker; replace it when it dies, until the supervisor stops."""
        while not self.stopping:
            status = await self._run_once(worker)
            worker.status = status
            if self.stopping:
                return
            lived = time.monotonic() - worker.started
            if not worker.ready:
                # It never served: a configuration or start-up error, the same for all.
                logger.error("worker %d exited with status %s before serving", worker.index, status)
                self._stop_all()
                return
            how = f"signal {-status}" if status < 0 else f"status {status}"
            logger.warning(
                "worker %d (pid %s) died with %s after %.1fs; starting a new one",
                worker.index,
                worker.process.pid if worker.process else "?",
                how,
                lived,
            )
            if lived < RESTART_WINDOW:
                worker.failures += 1
                await anyio.sleep(min(RESTART_BACKOFF * worker.failures, 10))
            else:
                worker.failures = 0

    async def _run_once(self, worker: _Worker) -> int:
        ready_read, ready_write = os.pipe()
        command = [*self.command, *self._extra, "--_ready-fd", str(ready_write)]
        worker.ready = False
        worker.started = time.monotonic()
        try:
            process = await anyio.open_process(
                command,
                stdin=None,
                stdout=None,
                stderr=None,
                pass_fds=[*self._pass_fds, ready_write],
                # Its own session: a Ctrl-C reaches the supervisor alone, which forwards one
                # SIGTERM (a worker takes a second signal as "force").
                start_new_session=True,
            )
        finally:
            os.close(ready_write)
        worker.process = process
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._await_ready, worker, ready_read)
            status = await process.wait()
            tg.cancel_scope.cancel()
        os.close(ready_read)
        return status

    async def _await_ready(self, worker: _Worker, ready_read: int) -> None:
        await anyio.wait_readable(ready_read)  # the worker writes once it serves (or exits)
        if os.read(ready_read, 1):
            worker.ready = True

    def _stop_all(self, sig: signal.Signals = signal.SIGTERM) -> None:
        self.stopping = True
        for worker in self.workers:
            process = worker.process
            if process is not None and process.returncode is None:
                process.send_signal(sig)

    async def _watch_signals(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if self.stopping:
                    logger.warning("second %s: forcing the workers to exit", name)
                    self._stop_all(signal.SIGTERM)  # a worker's second signal forces it
                    continue
                logger.info("%s received: stopping %d workers gracefully", name, len(self.workers))
                self._stop_all()
