"""Shared helpers for the robustness tests: process accounting, close tallies, raw exchanges."""

from __future__ import annotations

import os
import resource
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream

import wsapp

MiB = 1 << 20

#: What a socket raises once the peer has closed or reset it.
PEER_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


def _status_field(name: str) -> int:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(name)


def rss() -> int:
    """Resident memory of this process (the server under test runs in it), in bytes."""
    return _status_field("VmRSS")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def task_count() -> int:
    return len(anyio.get_running_tasks())


class PeakMemory:
    """How far resident memory rose above its level at the start of the block (peak, not end).

    Resets the kernel's high-water mark (``/proc/self/clear_refs``) so that a short spike
    between two samples is not missed.
    """

    def __init__(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")  # 5: reset VmHWM to the current RSS
        except OSError:
            pytest.skip("needs a writable /proc/self/clear_refs to measure peak memory")
        self.baseline = rss()

    @property
    def growth(self) -> int:
        return _status_field("VmHWM") - self.baseline

    def __str__(self) -> str:
        return f"peak RSS growth {self.growth / MiB:.1f} MiB"


@contextmanager
def raised_fd_limit(needed: int) -> Iterator[None]:
    """Raise the soft fd limit to the hard one for the block; skip if that is below ``needed``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} file descriptors; the hard RLIMIT_NOFILE is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def eventually(predicate: Callable[[], bool], within: float) -> bool:
    """Whether ``predicate`` holds within ``within`` seconds.

    For process state that offers nothing to await (task counts, open fds): it is polled.
    """
    with anyio.move_on_after(within):
        while not predicate():  # noqa: ASYNC110 (no event to wait for: it is process state)
            await anyio.sleep(0.01)
        return True
    return predicate()


class Tally:
    """Counts on_close calls by (was_clean, code); awaiting a count costs O(1) per close."""

    def __init__(self) -> None:
        self.opened = 0
        self.messages = 0
        self.closes: Counter[tuple[bool, int]] = Counter()
        self.reasons: Counter[str] = Counter()
        self._waiters: list[tuple[int, anyio.Event]] = []

    @property
    def closed(self) -> int:
        return self.closes.total()

    def record_close(self, was_clean: bool, code: int, reason: str) -> None:
        self.closes[was_clean, code] += 1
        self.reasons[reason] += 1
        for count, event in self._waiters:
            if self.closed >= count:
                event.set()

    async def wait_for_closes(self, count: int) -> None:
        if self.closed < count:
            event = anyio.Event()
            self._waiters.append((count, event))
            await event.wait()


def tally_app(tally: Tally, **settings: Any) -> wsapp.App:
    """An echo app counting its callbacks into ``tally``."""
    app = wsapp.App(**settings)

    @app.on_open
    async def opened(conn: wsapp.Connection) -> None:
        tally.opened += 1

    @app.on_message
    async def echo(conn: wsapp.Connection, message: wsapp.Message) -> None:
        tally.messages += 1
        await conn.send(message)

    @app.on_close
    async def closed(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
        tally.record_close(was_clean, code, reason)

    return app


async def read_until_closed(stream: ByteStream, keep: int = 1 << 16) -> bytes:
    """Read until the peer closes or resets the connection; the first ``keep`` bytes read."""
    received = bytearray()
    try:
        while True:
            data = await stream.receive()
            received += data[: max(0, keep - len(received))]
    except PEER_GONE:
        return bytes(received)


async def send_until_refused(stream: ByteStream, chunks: Iterable[bytes]) -> int:
    """Send ``chunks`` in order until the peer stops taking them; the bytes handed over."""
    sent = 0
    try:
        for chunk in chunks:
            await stream.send(chunk)
            sent += len(chunk)
    except PEER_GONE:
        pass
    return sent


async def exchange(server_port: int, chunks: Iterable[bytes]) -> tuple[bytes, int]:
    """Stream ``chunks`` to the server while reading its answer until it closes the socket.

    Returns what the server sent (its start) and how many bytes it let us send. Reading goes
    on while we send, so a response sent before the server stops reading is never lost.
    """
    sent = 0
    async with await anyio.connect_tcp("127.0.0.1", server_port) as stream:

        async def send() -> None:
            nonlocal sent
            sent = await send_until_refused(stream, chunks)

        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            response = await read_until_closed(stream)
            tg.cancel_scope.cancel()  # the server is gone: no point sending the rest
    return response, sent


def status_of(response: bytes) -> int | None:
    """The status code of an HTTP/1.1 response, None if it does not start like one."""
    head = response.split(b"\r\n", 1)[0].split(b" ")
    if len(head) < 2 or head[0] != b"HTTP/1.1" or not head[1].isdigit():
        return None
    return int(head[1])
