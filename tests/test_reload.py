"""`--reload`: a change to the app's source restarts the server, closing its connections with
1012 (service restart), and the next connection meets the new code; without a change
nothing restarts; the watched files are found without sockets."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.helpers import echo_app, run_cli, running, serving
from tests.helpers import port as port_of
from tests.rawclient import OP_TEXT, RawClient, close_frame, frame
from wsapp.server.reload import source_files

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(40)]

APP = """\
import wsapp

app = wsapp.App()


@app.on_message
async def answer(conn: wsapp.Connection, message: str) -> None:
    await conn.send({version!r})
"""


def write_app(directory: Path, version: str) -> Path:
    path = directory / "devapp.py"
    path.write_text(APP.format(version=version))
    return path


def test_the_watched_files_are_the_python_sources_outside_caches(tmp_path: Path) -> None:
    write_app(tmp_path, "one")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "models.py").write_text("")
    (tmp_path / "notes.txt").write_text("")
    for skipped in ("__pycache__", ".venv", ".git"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "cached.py").write_text("")
    assert sorted(path.relative_to(tmp_path).as_posix() for path in source_files([tmp_path])) == [
        "devapp.py",
        "pkg/models.py",
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def ask(port: int) -> bytes:
    async with RawClient.connect(port) as raw:
        await raw.send(frame(OP_TEXT, b"which version?"))
        _, _, answer = await raw.read_frame()
        await raw.send(close_frame(1000))
        await raw.read_close()
        return answer


async def test_a_change_restarts_the_server_closing_connections_with_1012(tmp_path: Path) -> None:
    source = write_app(tmp_path, "one")
    port = free_port()
    args = ("devapp:app", "--reload", "--reload-dir", str(tmp_path))
    env = {"PYTHONPATH": str(tmp_path)}
    async with serving(*args, env=env, port=port, stop=True) as served:
        assert await ask(port) == b"one"
        async with RawClient.connect(port) as waiting:
            write_app(tmp_path, "two")
            later = source.stat().st_mtime_ns + 1_000_000_000  # past any timestamp granularity
            os.utime(source, ns=(later, later))
            assert await waiting.read_close() == (1012, "server restarting")
            await waiting.send(close_frame(1012))
        await served.wait_for(served.stderr, "wsapp serving ", 2)
        assert await ask(port) == b"two"
    assert any("devapp.py changed: restarting the server" in line for line in served.stderr)
    assert served.process.returncode == 0  # SIGTERM stopped the server and the reloader


async def test_a_server_that_fails_to_start_waits_for_the_fix(tmp_path: Path) -> None:
    source = tmp_path / "devapp.py"
    source.write_text("this is not python\n")
    port = free_port()
    args = ("devapp:app", "--reload", "--reload-dir", str(tmp_path))
    env = {"PYTHONPATH": str(tmp_path)}
    ready = "waiting for a change to restart it"
    async with serving(*args, env=env, port=port, ready=ready, stop=True) as served:
        write_app(tmp_path, "fixed")
        later = source.stat().st_mtime_ns + 1_000_000_000
        os.utime(source, ns=(later, later))
        await served.wait_for(served.stderr, "wsapp serving ")
        assert await ask(port) == b"fixed"


async def test_a_restart_is_a_graceful_shutdown_closing_with_1012() -> None:
    async with running(echo_app()) as server, RawClient.connect(port_of(server)) as raw:
        await raw.send(frame(OP_TEXT, b"still here"))
        assert (await raw.read_frame())[2] == b"still here"
        server.shutdown(restart=True)
        assert await raw.read_close() == (1012, "server restarting")
        await raw.send(close_frame(1012))
    assert server.restarting and not server.forced


def test_reload_runs_one_process() -> None:
    result = run_cli("examples.echo:app", "--reload", "--workers", "2")
    assert result.returncode == 2
    assert "--reload runs one server process; drop --workers" in result.stderr
