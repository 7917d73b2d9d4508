"""In a real browser (Debian's headless Chromium, driven by Playwright): the tutorial's chat
page against the tutorial's server, across a server restart, and against a server refusing
every handshake (it gives up and says so); and the documentation site (every page loads
without console errors, search finds things)."""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

import wsapp
from examples import chat_rooms
from tests.helpers import ROOT, port, running, serving

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

CHROMIUM = "/usr/bin/chromium"
#: What Chromium logs on its own when a WebSocket cannot connect (the server restarting).
EXPECTED_ERRORS = re.compile(r"WebSocket connection to .* failed")
#: How many attempts in a row that never open the chat page makes before it gives up.
FAILED_OPENS = 5


def need_browser() -> Any:
    """Playwright's sync API, or a skip (a failure in CI) naming what to install."""
    try:
        from playwright import sync_api
    except ImportError:
        installed = False
    else:
        installed = True
    if not installed or not os.path.exists(CHROMIUM):
        message = "needs Chromium and Playwright: apt-get install chromium (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return sync_api


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def static_files(directory: Path) -> Iterator[int]:
    """Serve ``directory`` over plain HTTP on a free port of 127.0.0.1: the port."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def chromium(sync_api: Any) -> Iterator[tuple[Any, list[str]]]:
    """A headless Chromium, and the console errors of every page it opens."""
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context()
        context.set_default_timeout(20_000)

        def watch(page: Any) -> None:
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))

        context.on("page", watch)
        try:
            yield context, errors
        finally:
            browser.close()


def lines(page: Any) -> list[str]:
    return list(page.locator("#log li").all_inner_texts())


def unexpected(errors: list[str]) -> list[str]:
    return [error for error in errors if not EXPECTED_ERRORS.search(error)]


def chat_page(page_port: int, server_port: int) -> str:
    """The chat page of examples/, served on ``page_port``, for the server on ``server_port``."""
    return f"http://127.0.0.1:{page_port}/chat.html?server=ws://127.0.0.1:{server_port}&room=lobby"


def chat_across_a_restart(sync_api: Any, page_url: str, restart: Path) -> list[str]:
    """Two people chat, the server restarts (``restart`` touched: --reload), both pages
    reconnect by themselves and chat on. The console errors seen."""
    with chromium(sync_api) as (context, errors):
        ada = context.new_page()
        ada.goto(page_url + "&name=ada")
        ada.wait_for_selector('#status[data-state="connected"]')
        ada.wait_for_function("document.querySelector('#log').innerText.includes('here: ada')")
        bob = context.new_page()
        bob.goto(page_url + "&name=bob")
        bob.wait_for_selector('#status[data-state="connected"]')
        ada.wait_for_function("document.querySelector('#log').innerText.includes('bob arrived')")
        ada.fill("#text", "hello, bob")
        ada.click("text=Send")
        bob.wait_for_function(
            "document.querySelector('#log').innerText.includes('ada: hello, bob')"
        )
        later = restart.stat().st_mtime_ns + 1_000_000_000
        os.utime(restart, ns=(later, later))  # --reload restarts the server: 1012
        for page in (ada, bob):  # a second "here" is the reconnect's welcome
            page.wait_for_function(
                "[...document.querySelectorAll('#log li')]"
                ".filter(li => li.innerText.startsWith('here:')).length >= 2"
            )
            page.wait_for_selector('#status[data-state="connected"]')
        bob.fill("#text", "back again")
        bob.press("#text", "Enter")
        ada.wait_for_function(
            "document.querySelector('#log').innerText.includes('bob: back again')"
        )
        assert lines(bob)[0] == "here: ada, bob"
        return unexpected(errors)


async def test_the_tutorial_chat_page_chats_and_reconnects_after_a_restart(
    tmp_path: Path,
) -> None:
    sync_api = need_browser()
    restart = tmp_path / "restart.py"
    restart.write_text("# touched to restart the server\n")
    server_port = free_port()
    with static_files(ROOT / "examples") as page_port:
        origin = f"http://127.0.0.1:{page_port}"
        args = ("examples.chat_rooms:app", "--reload", "--reload-dir", str(tmp_path))
        async with serving(
            *args, "--allowed-origins", origin, port=server_port, stop=True
        ) as served:
            page_url = chat_page(page_port, server_port)
            errors = await anyio.to_thread.run_sync(
                chat_across_a_restart, sync_api, page_url, restart
            )
        assert errors == []
        assert sum("wsapp serving " in line for line in served.stderr) == 2
        assert any(" code=1012 " in line for line in served.stderr)  # closed by the restart


def refused_until_giving_up(sync_api: Any, page_url: str) -> tuple[bool, str, list[str], list[str]]:
    """Open the chat page against a server refusing every handshake, its clock run forward
    past each wait between attempts, then an hour past giving up: whether that hour started
    no attempt, the page's status and log, and the console errors."""
    with chromium(sync_api) as (context, errors):
        page = context.new_page()
        page.clock.install()
        page.goto(page_url)
        for failed in range(1, FAILED_OPENS):
            page.wait_for_function(f"failures >= {failed}")  # the next attempt is scheduled
            page.clock.run_for(60_000)  # longer than the longest wait between attempts
        page.wait_for_selector('#status[data-state="failed"]')
        # An attempt is a new WebSocket in `socket`, made by a timer run_for fires: checked
        # in the page, not by counting handshakes, which would race with run_for's return.
        last = page.evaluate_handle("socket")
        page.clock.run_for(3_600_000)
        stopped = bool(page.evaluate("last => socket === last", last))
        status = page.locator("#status").inner_text()
        return stopped, status, lines(page), unexpected(errors)


async def test_the_chat_page_gives_up_on_a_server_refusing_every_handshake() -> None:
    sync_api = need_browser()
    attempts: list[str] = []
    with static_files(ROOT / "examples") as page_port:
        app = wsapp.App(allowed_origins=[f"http://127.0.0.1:{page_port}"])

        @app.on_connect
        async def refuse(conn: wsapp.Connection, request: wsapp.Request) -> None:
            attempts.append(request.path)
            raise wsapp.Reject(403, "not you")  # reaches the page as a close with 1006

        async with running(app) as server:
            page_url = chat_page(page_port, port(server))
            stopped, status, log, errors = await anyio.to_thread.run_sync(
                refused_until_giving_up, sync_api, page_url
            )
    assert stopped
    assert len(attempts) == FAILED_OPENS
    assert status == "not connected"
    assert len(log) == 1 and log[0].startswith(
        "Could not connect to the chat server (5 attempts failed): it refused the connection,"
    )
    assert errors == []


def connects(sync_api: Any, page_url: str) -> tuple[list[str], list[str]]:
    """Open the chat page: its log once connected, and the console errors."""
    with chromium(sync_api) as (context, errors):
        page = context.new_page()
        page.goto(page_url + "&name=ada")
        page.wait_for_selector('#status[data-state="connected"]')
        page.wait_for_selector("#log li")
        return lines(page), errors


async def test_the_chat_page_connects_to_a_server_that_accepts() -> None:
    sync_api = need_browser()
    with static_files(ROOT / "examples") as page_port:
        origin = {"allowed_origins": [f"http://127.0.0.1:{page_port}"]}
        async with running(chat_rooms.app, overrides=origin) as server:
            page_url = chat_page(page_port, port(server))
            log, errors = await anyio.to_thread.run_sync(connects, sync_api, page_url)
    assert log == ["here: ada"]
    assert errors == []


def check_site(sync_api: Any, base: str, pages: list[str]) -> list[str]:
    """Load every page; search from the home page. The console errors seen."""
    with chromium(sync_api) as (context, errors):
        page = context.new_page()
        failed: list[str] = []
        # A load cut short by the next navigation (net::ERR_ABORTED) is not a failure.
        page.on(
            "requestfailed",
            lambda request: (
                None
                if "ERR_ABORTED" in (request.failure or "")
                else failed.append(f"{request.url} ({request.failure})")
            ),
        )
        page.on(
            "response",
            lambda response: failed.append(response.url) if response.status >= 400 else None,
        )
        for path in pages:
            page.goto(base + path)
            assert page.locator("article h1").first.inner_text()
        page.goto(base + "/lifecycle/")
        # The diagram was drawn (by the site's own Mermaid, into a closed shadow root: an
        # empty placeholder has no height).
        page.wait_for_function(
            "document.querySelector('.mermaid').getBoundingClientRect().height > 100"
        )
        page.goto(base + "/")
        page.keyboard.press("/")  # Material's shortcut to the search box
        page.fill("input.md-search__input", "broadcast")
        page.wait_for_selector(".md-search-result__item")
        found = page.locator(".md-search-result__item").all_inner_texts()
        assert any("Rooms" in text for text in found), found
        return errors + [f"failed to load {url}" for url in failed]


async def test_the_documentation_site_loads_without_errors_and_search_works(
    tmp_path: Path,
) -> None:
    sync_api = need_browser()
    site = tmp_path / "site"
    built = await anyio.run_process(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        check=False,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert built.returncode == 0, built.stderr.decode()
    pages = sorted(
        "/"
        + path.parent.relative_to(site).as_posix().strip(".")
        + ("/" if path.parent != site else "")
        for path in site.rglob("index.html")
        if "assets" not in path.parts
    )
    assert len(pages) >= 15
    with static_files(site) as port:
        errors = await anyio.to_thread.run_sync(
            check_site, sync_api, f"http://127.0.0.1:{port}", pages
        )
    assert errors == []
    shutil.rmtree(site)
