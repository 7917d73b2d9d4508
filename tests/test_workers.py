"""`python -m wsapp app --workers 2`: connections spread over both workers, rooms span them
(through the supervisor's hub, or Redis), a killed worker is replaced, SIGTERM closes every
connection with 1001 and the supervisor exits 0."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

from tests.helpers import RedisServer, Served, poll_until, run_cli, serving
from tests.rawclient import OP_TEXT, RawClient, close_frame, frame
from tests.test_metrics import Samples, scrape, value

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(40)]

OPEN = re.compile(r"wsapp\[(\d+)\]: open ")


@asynccontextmanager
async def workers(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[Served]:
    """A supervisor with two workers, once both serve; stopped gracefully at the end."""
    async with serving(*args, "--workers", "2", env=env, stop=True) as served:
        await served.wait_for(served.stderr, "wsapp serving ", 2)
        yield served


def port_of(served: Served) -> int:
    return int(served.url.rsplit(":", 1)[1])


def worker_pids(served: Served) -> set[str]:
    """The workers that opened connections, from their log lines."""
    return {match[1] for line in served.stderr if (match := OPEN.search(line))}


async def say(raw: RawClient, text: str) -> None:
    await raw.send(frame(OP_TEXT, json.dumps({"type": "say", "text": text}).encode()))


async def next_of(raw: RawClient, kind: str) -> dict[str, Any]:
    while True:
        _, opcode, payload = await raw.read_frame()
        assert opcode == OP_TEXT
        message = dict(json.loads(payload))
        if message["type"] == kind:
            return message


#: Connections after which one worker taking every one of them is taken for a fault: the
#: kernel spreads the accepts of a shared listening socket by who wakes first, so a run of a
#: dozen to one worker happens (on a busy machine), a run of this many does not.
MOST_IN_A_ROW = 100


async def everyone_hears_everyone(served: Served, members: int = 12) -> None:
    """Members spread over the workers (at least ``members``, more until both workers have
    some); what one says reaches all of them, in one order."""
    async with AsyncExitStack() as stack:
        raws: list[RawClient] = []
        while len(raws) < members or len(worker_pids(served)) < 2:
            assert len(raws) < MOST_IN_A_ROW, "one worker took every connection"
            raw = await stack.enter_async_context(
                RawClient.connect(port_of(served), f"/rooms/lobby?name=m{len(raws)}")
            )
            raws.append(raw)
            await next_of(raw, "here")
            await served.wait_for(served.stderr, " open ", len(raws))
        await say(raws[0], "first")
        await say(raws[-1], "second")
        heard = [[(await next_of(raw, "said"))["text"] for _ in range(2)] for raw in raws]
        assert all(order == heard[0] for order in heard)
        assert sorted(heard[0]) == ["first", "second"]
        for raw in raws:
            await raw.send(close_frame(1000))


async def test_rooms_span_the_workers_through_the_supervisor() -> None:
    async with workers("examples.chat_rooms:app") as served:
        await everyone_hears_everyone(served)


async def test_rooms_span_the_workers_through_redis() -> None:
    async with RedisServer() as redis:
        async with workers("examples.chat_rooms:app", "--broker", redis.url) as served:
            await everyone_hears_everyone(served)
        assert not any("hub" in line for line in served.stderr)


async def test_metrics_are_summed_over_the_workers_whichever_is_scraped() -> None:
    async with workers("examples.chat_rooms:app", "--metrics-path", "/metrics") as served:
        await everyone_hears_everyone(served)
        samples: Samples = {}

        async def all_counted() -> bool:  # each worker shares its figures every second
            nonlocal samples
            samples = await scrape(port_of(served))
            closed = value(samples, "wsapp_connections_closed_total", code="1000")
            return value(samples, "wsapp_processes") == 2 and closed == 12

        await poll_until(all_counted, within=10)
    assert value(samples, "wsapp_connections_opened_total") == 12
    assert value(samples, "wsapp_connections_open") == 0
    assert value(samples, "wsapp_messages_received_total") == 2  # "first" and "second"
    # Every room message came through the supervisor's hub, and its lag was measured.
    relayed = value(samples, "wsapp_room_messages_received_total")
    assert relayed >= 2 * 2  # both messages reached both workers (and so did the joins)
    assert value(samples, "wsapp_broker_lag_seconds_count") == relayed


async def test_the_portable_path_shares_one_listening_socket() -> None:
    async with workers("examples.chat_rooms:app", env={"_WSAPP_SHARED_SOCKET": "1"}) as served:
        await everyone_hears_everyone(served)


async def test_a_killed_worker_is_replaced_and_sigterm_closes_everything_with_1001() -> None:
    async with workers("examples.echo:app") as served:
        async with RawClient.connect(port_of(served)) as first:
            await served.wait_for(served.stderr, " open ")
            (victim,) = worker_pids(served)
            os.kill(int(victim), signal.SIGKILL)
            await first.read_eof()  # its connection died with it
            await served.wait_for(served.stderr, f"(pid {victim}) died with signal 9 after")
            await served.wait_for(served.stderr, "wsapp serving ", 3)
        async with AsyncExitStack() as stack:
            raws = [
                await stack.enter_async_context(RawClient.connect(port_of(served)))
                for _ in range(8)
            ]
            await served.wait_for(served.stderr, " open ", 9)
            served.process.send_signal(signal.SIGTERM)
            for raw in raws:
                assert await raw.read_close() == (1001, "server shutting down")
                await raw.send(close_frame(1001))
            await served.process.wait()
    assert served.process.returncode == 0


def test_a_worker_that_cannot_start_stops_the_supervisor_with_its_status() -> None:
    result = run_cli("tests.apps.hooks:app", "--workers", "2", "--port", "0",
                     env={"HOOKS_FAIL": "startup"})  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "exited with status 1 before serving" in result.stderr
    result = run_cli("examples.echo:app", "--workers", "0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "wsapp: error: argument --workers: expected a number of processes (1 or more), got '0'"
        " (see python -m wsapp --help)"
    ]


def test_workers_on_a_busy_port_say_so_in_the_clis_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("examples.echo:app", "--workers", "2", "--port", str(port))
    assert result.stderr == (
        f"wsapp: error: cannot listen on 127.0.0.1:{port}: "
        "address already in use (is another server running?)\n"
    )
    assert result.returncode == 2


async def test_a_graceful_shutdown_of_the_workers_logs_no_error() -> None:
    async with workers("examples.chat_rooms:app") as served:
        async with RawClient.connect(port_of(served), "/rooms/lobby?name=ada") as raw:
            await raw.read_frame()  # joined: the worker uses the hub
            served.process.send_signal(signal.SIGTERM)
            assert await raw.read_close() == (1001, "server shutting down")
            await raw.send(close_frame(1001))
        await served.process.wait()
    assert served.process.returncode == 0
    assert [line for line in served.stderr if " ERROR " in line] == []
