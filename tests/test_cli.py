"""`python -m wsapp`: start-up, error messages, settings precedence, signals, backends."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream
from websockets.asyncio.client import connect

from tests.conftest import TIMEOUT, client
from tests.rawclient import RawClient

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion (for start-up failures, which exit at once)."""
    return subprocess.run(
        [sys.executable, "-m", "wsapp", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuchmodule:app"], "cannot import 'nosuchmodule': no module named 'nosuchmodule'"),
        (["examples.echo:ap"], "module 'examples.echo' has no attribute 'ap'"),
        (
            ["tests.apps.report:not_an_app"],
            "'tests.apps.report:not_an_app' is not a wsapp.App but a int",
        ),
        (
            ["tests.apps.report:make_app"],
            "'tests.apps.report:make_app' is not a wsapp.App but a function"
            " (is it a factory? pass --factory)",
        ),
        (["examples.echo"], "expected module:app (like 'chat:app'), got 'examples.echo'"),
        (
            ["examples.echo:app", "--ping-interval", "-1"],
            "invalid setting from the command line: --ping-interval:"
            " Input should be greater than 0",
        ),
        (
            ["examples.echo:app", "--compression-server-max-window-bits", "20"],
            "--compression-server-max-window-bits: Input should be less than or equal to 15",
        ),
    ],
)
def test_start_up_errors_are_one_clear_line_and_exit_2(args: list[str], message: str) -> None:
    result = run_cli(*args, "--port", "0")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("wsapp: error: ") and message in line


def test_bad_environment_variable_names_the_variable() -> None:
    result = run_cli("examples.echo:app", env={"WSAPP_MAX_MESSAGE_SIZE": "big"})
    assert result.returncode == 2
    assert "invalid setting from the environment: WSAPP_MAX_MESSAGE_SIZE:" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("examples.echo:app", env={"WSAPP_PINGINTERVAL": "1"})
    assert "unknown environment variable WSAPP_PINGINTERVAL" in result.stderr


@dataclass
class Served:
    process: Process
    url: str
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    changed: anyio.Event = field(default_factory=anyio.Event)

    async def collect(self, stream: Any, lines: list[str]) -> None:
        buffer = ""
        async for chunk in TextReceiveStream(stream):
            buffer += chunk
            *complete, buffer = buffer.split("\n")
            lines.extend(complete)
            self.changed.set()
            self.changed = anyio.Event()

    async def wait_for(self, lines: list[str], text: str, count: int = 1) -> None:
        while sum(text in line for line in lines) < count:
            await self.changed.wait()


@asynccontextmanager
async def serving(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[Served]:
    """Start the CLI on a free port; yields once it logs the URL it serves."""
    process = await anyio.open_process(
        [sys.executable, "-m", "wsapp", *args, "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    served = Served(process, "")
    try:
        async with anyio.create_task_group() as tg:
            assert process.stdout and process.stderr
            tg.start_soon(served.collect, process.stdout, served.stdout)
            tg.start_soon(served.collect, process.stderr, served.stderr)
            await served.wait_for(served.stderr, "wsapp serving ")
            line = next(line for line in served.stderr if "wsapp serving " in line)
            served.url = line.split("wsapp serving ")[1].strip()
            yield served
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


pytestmark_async = pytest.mark.anyio


@pytestmark_async
async def test_settings_precedence_defaults_app_env_flags() -> None:
    async def settings_seen(address: str) -> dict[str, Any]:
        async with connect(address) as ws:
            return dict(json.loads(await ws.recv()))

    env = {"WSAPP_MAX_MESSAGE_SIZE": "222", "WSAPP_WRITE_TIMEOUT": "8", "WSAPP_DEBUG": "true"}
    with anyio.fail_after(TIMEOUT):
        async with serving(
            "tests.apps.report:app",
            "--write-timeout",
            "9",
            "--allowed-origins",
            "https://a.example,https://b.example",
            "--no-debug",
            env=env,
        ) as served:
            seen = await client(settings_seen, served.url)
            served.process.send_signal(signal.SIGTERM)
    assert seen["pong_timeout"] == 30.0  # default
    assert seen["ping_interval"] == 5.0  # App(settings=...)
    assert seen["max_message_size"] == 222  # environment over App
    assert seen["write_timeout"] == 9.0  # flag over environment
    assert seen["debug"] is False  # flag over environment
    assert seen["allowed_origins"] == ["https://a.example", "https://b.example"]


@pytestmark_async
async def test_factory_and_start_line() -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving("tests.apps.report:make_app", "--factory") as served:
            assert served.url.startswith("ws://127.0.0.1:")
            served.process.send_signal(signal.SIGINT)
    assert served.process.returncode == 0


@pytestmark_async
@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
async def test_backends(backend: str) -> None:
    async def echo(address: str) -> Any:
        async with connect(address) as ws:
            await ws.send(backend)
            return await ws.recv()

    with anyio.fail_after(TIMEOUT):
        async with serving("examples.echo:app", "--backend", backend) as served:
            assert await client(echo, served.url) == backend
            served.process.send_signal(signal.SIGTERM)
    assert served.process.returncode == 0


@pytestmark_async
async def test_sigterm_closes_100_connections_with_1001_runs_every_on_close_and_exits_0() -> None:
    async def hundred(address: str) -> list[int | None]:
        sockets = [await connect(address) for _ in range(100)]
        await asyncio.gather(*(ws.recv() for ws in sockets))  # each one's settings report
        await asyncio.gather(*(ws.wait_closed() for ws in sockets))
        return [ws.close_code for ws in sockets]

    with anyio.fail_after(TIMEOUT * 2):
        async with serving("tests.apps.report:app") as served, anyio.create_task_group() as tg:
            codes: list[int | None] = []

            async def run_clients() -> None:
                codes.extend(await client(hundred, served.url))

            tg.start_soon(run_clients)
            await served.wait_for(served.stderr, "INFO wsapp: open ", 100)
            served.process.send_signal(signal.SIGTERM)
    assert codes == [1001] * 100
    assert served.process.returncode == 0
    assert served.stdout.count("on_close 1001 True") == 100
    assert any("shutting down gracefully" in line for line in served.stderr)


@pytestmark_async
async def test_second_signal_forces_exit_at_once() -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving("examples.echo:app", "--close-timeout", "60") as served:
            port = int(served.url.rsplit(":", 1)[1])
            async with RawClient.connect(port) as raw:  # will never answer the close frame
                served.process.send_signal(signal.SIGTERM)
                assert (await raw.read_close())[0] == 1001
                served.process.send_signal(signal.SIGINT)
                with anyio.fail_after(5):  # not the 60 s close_timeout
                    await served.process.wait()
    assert served.process.returncode == 1
    assert any("forcing exit" in line for line in served.stderr)
