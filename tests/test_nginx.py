"""The nginx guide of docs/deployment.md, followed literally: its own block, with only its
ports and certificate files replaced, passes `nginx -t`; a real nginx (Debian's package) run
from it in front of the tutorial's chat server (started as the guide says) lets a handshake
with a browser's Origin through, and proxies the health path."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
import trustme
from websockets.asyncio.client import connect
from websockets.typing import Origin

from tests.helpers import ROOT, TIMEOUT, Served, client, serving
from tests.test_browser import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

#: The first line of the block the guide says this test runs.
MARKER = "# Tested as written by tests/test_nginx.py"
NGINX_BLOCKS = re.compile(r"^```nginx[^\n]*\n(.*?)^```$", re.S | re.M)
#: Where the guide's certificate and key are (certbot's folder).
LIVE = "/etc/letsencrypt/live/chat.example.com"
#: What nginx logs (at notice level) once its listening sockets are open.
STARTED = "start worker processes"

#: The main configuration around the guide's fragment: everything nginx would otherwise
#: write under /var (pid, logs, temporary files) goes to the test's own directory.
MAIN = """\
pid {prefix}/nginx.pid;
error_log stderr notice;
events {{}}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/chat.conf;
}}
"""


def nginx() -> str:
    """nginx's path, or a skip (a failure in CI) naming what to install."""
    executable = shutil.which("nginx")
    if executable is None:
        message = "needs nginx on PATH: apt-get install nginx (.ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return executable


def guide_fragment() -> str:
    """The guide's nginx block that says this test runs it."""
    page = (ROOT / "docs" / "deployment.md").read_text()
    blocks = [block for block in NGINX_BLOCKS.findall(page) if block.startswith(MARKER)]
    assert len(blocks) == 1, f"docs/deployment.md: one nginx block starting {MARKER!r}"
    return str(blocks[0])


def render(fragment: str, replacements: dict[str, str]) -> str:
    """``fragment`` with each text replaced, each found exactly once: the guide changed
    under this test if not."""
    for old, new in replacements.items():
        assert fragment.count(old) == 1, f"the guide's nginx block no longer says {old!r}"
        fragment = fragment.replace(old, new)
    return fragment


def nginx_command(executable: str, prefix: Path) -> list[str]:
    # -e: the error log until the configuration is read, instead of /var/log/nginx's.
    return [executable, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"]


@asynccontextmanager
async def running_nginx(executable: str, prefix: Path) -> AsyncIterator[Served]:
    """nginx in the foreground until the block ends, then stopped by its PID (SIGTERM)."""
    command = [*nginx_command(executable, prefix), "-g", "daemon off;"]
    process = await anyio.open_process(command, stdin=subprocess.DEVNULL)
    served = Served(process, "")
    try:
        async with anyio.create_task_group() as tg:
            assert process.stdout is not None and process.stderr is not None
            tg.start_soon(served.collect, process.stdout, served.stdout)
            tg.start_soon(served.collect, process.stderr, served.stderr)
            try:
                await served.wait_for(served.stderr, STARTED)
                yield served
            finally:
                process.terminate()  # its fast shutdown: the readers end when it has exited
    except BaseException as exc:  # a failing test shows what nginx said
        exc.add_note("nginx's stderr:\n" + "\n".join(served.stderr[-40:]))
        raise
    finally:
        # Shielded: a test that failed or timed out must not leave nginx running.
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()
            await process.aclose()


async def chat_through(url: str, origin: str, context: ssl.SSLContext) -> tuple[str, str]:
    """Join a room with a browser's ``origin``, say something: what the chat answered."""
    async with connect(url, origin=Origin(origin), ssl=context) as ws:
        welcome = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "say", "text": "hello through nginx"}))
        said = json.loads(await ws.recv())
    return welcome["type"], said["text"]


def https_get(port: int, path: str, context: ssl.SSLContext) -> tuple[int, bytes]:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=TIMEOUT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


async def test_the_nginx_guide_proxies_a_browsers_handshake_and_the_health_path(
    tmp_path: Path,
) -> None:
    executable = nginx()
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(tmp_path / "fullchain.pem")
    issued.private_key_pem.write_to_path(tmp_path / "privkey.pem")
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    port = free_port()
    args = ("examples.chat_rooms:app", "--trusted-proxies", "127.0.0.1")
    async with serving(*args, "--health-path", "/healthz", stop=True) as chat:
        upstream = chat.url.removeprefix("ws://")
        fragment = render(
            guide_fragment(),
            {
                "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
                "server 127.0.0.1:8000;": f"server {upstream};",
                f"{LIVE}/fullchain.pem": str(tmp_path / "fullchain.pem"),
                f"{LIVE}/privkey.pem": str(tmp_path / "privkey.pem"),
            },
        )
        (tmp_path / "chat.conf").write_text(fragment)
        (tmp_path / "nginx.conf").write_text(MAIN.format(prefix=tmp_path))
        checked = await anyio.run_process([*nginx_command(executable, tmp_path), "-t"], check=False)
        assert checked.returncode == 0, checked.stderr.decode()
        async with running_nginx(executable, tmp_path):
            # What a page served by this nginx sends: its own scheme, host and port.
            origin = f"https://127.0.0.1:{port}"
            url = f"wss://127.0.0.1:{port}/rooms/lobby?name=ada"
            assert await client(chat_through, url, origin, trusting) == (
                "here",
                "hello through nginx",
            )
            health = await anyio.to_thread.run_sync(https_get, port, "/healthz", trusting)
            assert health == (200, b"ok\n")
