"""What the guides say a user can check (defaults, close codes, log lines, statuses,
transcripts), checked against the real server; grouped by page, each test named after the
claim. Claims other tests already back are not repeated here (issue 27)."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import re
import shlex
import signal
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed as WSConnectionClosed
from websockets.typing import Origin, Subprotocol

import wsapp
import wsapp.testing
from tests.asgi.hosts import hypercorn_server
from tests.helpers import (
    ROOT,
    Trace,
    client,
    echo_app,
    port,
    raw_peer,
    run_cli,
    running,
    serving,
    url,
)
from tests.rawclient import OP_TEXT, RawClient, close_frame, frame, handshake
from tests.test_handshake import http_exchange, refusal
from wsapp.rooms import TOO_SLOW

pytestmark = pytest.mark.anyio

DOCS = ROOT / "docs"
LOGGING_PAGE = (DOCS / "logging.md").read_text()
#: A text log line as `python -m wsapp` prints it: `time level logger: message`.
TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\w+) wsapp: (.*)")


def console_blocks(page: Path) -> list[str]:
    """The text of each ```console block of ``page``."""
    return re.findall(r"```console\n(.*?)```", page.read_text(), re.S)


def messages(lines: list[str], level: str = "INFO") -> list[str]:
    """The messages of the text log lines at ``level`` (other lines are not wsapp's)."""
    return [m[2] for line in lines if (m := TEXT_LINE.fullmatch(line)) and m[1] == level]


# --- index.md, getting-started.md, tutorial.md: the command line ---------------------------


async def test_ctrl_c_closes_with_1001_and_the_shutdown_is_logged_step_by_step() -> None:
    # index.md / getting-started.md: the start line; tutorial.md: Ctrl-C closes with 1001;
    # logging.md: a graceful shutdown, step by step, ending with "wsapp stopped".
    async with serving("examples.echo:app", "--drain-delay", "1") as served:
        async with RawClient.connect(int(served.url.rsplit(":", 1)[1])) as raw:
            await served.wait_for(served.stderr, "INFO wsapp: open ")
            served.process.send_signal(signal.SIGINT)
            assert await raw.read_close() == (1001, "server shutting down")
            await raw.send(close_frame(1001))
            await raw.read_eof()
    assert served.process.returncode == 0
    logged = messages(served.stderr)
    assert logged[0] == f"wsapp serving {served.url}"
    assert re.fullmatch(r"ws://127\.0\.0\.1:\d+", served.url)  # --host's default
    assert re.fullmatch(r"open [0-9a-f]{12} / client=127\.0\.0\.1:\d+", logged[1])
    assert logged[2:5] == [
        "SIGINT received: shutting down gracefully",
        "shutting down: draining for 1.0s (the health path answers 503)",
        "shutting down: closing 1 connection(s) with 1001",
    ]
    assert re.fullmatch(r"close [0-9a-f]{12} / code=1001 clean=True duration=1\.\d{3}s", logged[5])
    assert logged[6:] == ["wsapp stopped"]
    # The pages show these lines as printed (for --drain-delay 10, and 12 connections).
    for page in ("index.md", "getting-started.md", "tutorial.md"):
        (start,) = [
            line for line in (DOCS / page).read_text().splitlines() if "wsapp serving" in line
        ]
        assert messages([start]) == ["wsapp serving ws://127.0.0.1:8000"], page
    for line in [logged[2], *logged[3:5], logged[6]]:
        shown = line.replace("SIGINT", "SIGTERM").replace("1.0s", "10.0s").replace(" 1 ", " 12 ")
        assert f"`{shown}`" in LOGGING_PAGE, shown


def websockets_transcripts() -> list[Any]:
    """(app, path, [(">" or "<", text)...]) of each `python -m websockets` session the
    tutorial shows, with the app served by the `python -m wsapp` line of its block."""
    sessions = []
    for block in console_blocks(DOCS / "tutorial.md"):
        if "python -m websockets" not in block:
            continue
        target = re.search(r"\$ python -m wsapp (\S+)", block)
        address = re.search(r"\$ python -m websockets '?ws://127\.0\.0\.1:8000([^' \n]*)", block)
        assert target and address, block
        lines = [(line[0], line[2:]) for line in block.splitlines() if line[:2] in ("> ", "< ")]
        sessions.append(pytest.param(target[1], address[1], lines, id=address[1]))
    assert len(sessions) == 2
    return sessions


@pytest.mark.parametrize(("target", "path", "lines"), websockets_transcripts())
async def test_the_tutorials_transcripts_are_what_the_server_sends(
    target: str, path: str, lines: list[tuple[str, str]]
) -> None:
    module, _, name = target.partition(":")
    app = getattr(importlib.import_module(module), name)

    async def replay(address: str) -> list[tuple[str, str]]:
        seen = []
        async with ws_connect(address) as ws:
            for direction, text in lines:
                if direction == ">":
                    await ws.send(text)
                    seen.append((">", text))
                else:
                    seen.append(("<", str(await ws.recv())))
        return seen

    async with running(app) as server:
        assert await client(replay, url(server, path)) == lines


# --- lifecycle.md ----------------------------------------------------------------------------


async def test_refusals_are_checked_in_order_route_then_handshake_rate_then_origin() -> None:
    app = wsapp.App(rate_limit_handshakes=0.01, rate_limit_handshake_burst=1)
    chat = app.route("/chat")

    @chat.on_message
    async def echo(conn: wsapp.Connection, message: wsapp.Message) -> None:
        await conn.send(message)

    evil = "https://evil.example"
    async with running(app) as server:
        # An unserved path is refused first, and takes nothing of the handshake allowance...
        assert (await client(refusal, url(server, "/elsewhere"), origin=Origin(evil)))[0] == 404
        # ...which this one uses up: the origin is judged once the rate allows the handshake,
        assert (await client(refusal, url(server, "/chat"), origin=Origin(evil)))[0] == 403
        # and a client over the rate gets 429 whatever its origin.
        assert (await client(refusal, url(server, "/chat"), origin=Origin(evil)))[0] == 429
        assert (await client(refusal, url(server, "/chat")))[0] == 429
    # The page's table of refusals lists them in that order, then the one over capacity.
    section = (DOCS / "lifecycle.md").read_text().split("## Refusals", 1)[1].split("\n## ")[0]
    statuses = re.findall(r"^\| ([^|]+?) \| ", section, re.M)
    routed = statuses[statuses.index("404") :]  # after the malformed and plain requests'
    assert routed[:4] == ["404", "429", "403", "503"], statuses


async def test_the_origin_is_checked_before_max_connections() -> None:
    app = echo_app(max_connections=1)

    async with running(app) as server, RawClient.connect(port(server)):
        assert (await client(refusal, url(server), origin=Origin("https://evil.example")))[0] == 403
        assert (await client(refusal, url(server)))[0] == 503


async def test_nothing_else_is_called_for_a_refused_connection() -> None:
    trace = Trace()
    app = wsapp.App(handshake_timeout=0.3)

    @app.on_connect
    async def decide(conn: wsapp.Connection, request: wsapp.Request) -> None:
        trace.add("connect", request.path)
        if request.path == "/reject":
            raise wsapp.Reject(401, "no")
        if request.path == "/raise":
            raise RuntimeError("a bug in on_connect")
        if request.path == "/hang":
            await anyio.sleep_forever()

    @app.on_open
    async def opened(conn: wsapp.Connection) -> None:
        trace.add("open", conn.request.path)

    @app.on_message
    async def echo(conn: wsapp.Connection, message: wsapp.Message) -> None:
        trace.add("message", conn.request.path)
        await conn.send(message)

    @app.on_close
    async def closed(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
        trace.add("close", conn.request.path)

    async def talk(address: str) -> str | bytes:
        async with ws_connect(address) as ws:
            await ws.send("hi")
            return await ws.recv()

    async with running(app) as server:
        for path, status in [("/reject", 401), ("/raise", 500), ("/hang", 503)]:
            assert (await client(refusal, url(server, path)))[0] == status
        assert await client(talk, url(server, "/ok")) == "hi"
    # The server has stopped: every callback that was going to run has run.
    assert trace.events == [
        ("connect", "/reject"),
        ("connect", "/raise"),
        ("connect", "/hang"),
        ("connect", "/ok"),
        ("open", "/ok"),
        ("message", "/ok"),
        ("close", "/ok"),
    ]


async def test_a_connection_closed_escaping_a_callback_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wsapp")
    trace = Trace()
    app = wsapp.App()

    @app.on_message
    async def finish(conn: wsapp.Connection, message: wsapp.Message) -> None:
        await conn.close(4000, "done")
        await conn.send("too late")  # raises ConnectionClosed, which escapes

    @app.on_close
    async def closed(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
        trace.record_close(was_clean, code, reason)

    async with raw_peer(app) as raw:
        await raw.send(frame(OP_TEXT, b"bye"))
        assert await raw.read_close() == (4000, "done")  # not 1011
        await raw.send(close_frame(4000, "done"))
        await raw.read_eof()
        await trace.closed.wait()
    assert trace.close_args == (True, 4000, "done")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_on_close_is_bounded_by_close_timeout(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wsapp")
    trace = Trace()
    app = echo_app(close_timeout=0.3)

    @app.on_close
    async def stuck(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
        trace.add("on_close")
        try:
            await anyio.sleep_forever()
        finally:
            trace.add("cancelled")

    async with running(app) as server:
        async with RawClient.connect(port(server)) as raw:
            await raw.send(close_frame(1000, "bye"))
            assert await raw.read_close() == (1000, "bye")
        await trace.wait_for("cancelled")
    assert trace.names() == ["on_close", "cancelled"]
    closes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("close ")]
    assert len(closes) == 1 and " code=1000 clean=True " in closes[0]


async def test_the_on_connect_timeout_warning_gives_handshake_timeout_in_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # logging.md shows the default, 10, as "(10.0s)": a setting given as 1 prints "1.0s".
    app = wsapp.App(handshake_timeout=1)

    @app.on_connect
    async def stuck(conn: wsapp.Connection, request: wsapp.Request) -> None:
        await anyio.sleep_forever()

    async with running(app) as server:
        assert (await client(refusal, url(server, "/chat")))[0] == 503
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert re.fullmatch(
        r"on_connect for [0-9a-f]{12} /chat did not finish within handshake_timeout \(1\.0s\); "
        r"refused with 503",
        warning,
    ), warning
    shown = warning.split(" /chat ", 1)[1].replace("(1.0s)", "(10.0s)")  # the default, 10
    assert f"`on_connect for ... {shown}`" in LOGGING_PAGE


# --- logging.md ------------------------------------------------------------------------------


async def test_the_close_line_is_written_after_on_close(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    app = echo_app()

    @app.on_close
    async def closed(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
        logging.getLogger("myapp").info("on_close of %s", conn.id)

    async with raw_peer(app) as raw:
        await raw.send(close_frame(1000))
        assert await raw.read_close() == (1000, "")
        await raw.read_eof()
    lines = [r.getMessage() for r in caplog.records if r.name in ("myapp", "wsapp")]
    (index,) = [i for i, line in enumerate(lines) if line.startswith("on_close of ")]
    conn_id = lines[index].removeprefix("on_close of ")
    assert lines[index + 1].startswith(f"close {conn_id} / code=1000 clean=True duration=")


async def test_callback_errors_are_logged_at_error_with_the_connection_and_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wsapp")
    trace = Trace()
    app = wsapp.App()

    @app.on_connect
    async def check(conn: wsapp.Connection, request: wsapp.Request) -> None:
        if request.path == "/connect":
            raise LookupError("in on_connect")

    @app.on_message
    async def fail(conn: wsapp.Connection, message: wsapp.Message) -> None:
        raise ValueError("in on_message")

    @app.on_close
    async def closed(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
        trace.record_close(was_clean, code, reason)
        raise KeyError("in on_close")

    async def talk(address: str) -> int | None:
        async with ws_connect(address) as ws:
            await ws.send("boom")
            await ws.wait_closed()
            return ws.close_code

    async with running(app) as server:
        assert (await client(refusal, url(server, "/connect")))[0] == 500
        assert await client(talk, url(server, "/message")) == 1011
        await trace.closed.wait()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    shown = [(r.getMessage(), (r.exc_text or "").splitlines()[-1]) for r in errors]
    conn = r"[0-9a-f]{12}"
    expected = [
        (rf"on_connect failed for {conn} /connect", "LookupError: in on_connect"),
        (rf"callback failed on connection {conn}; closing with 1011", "ValueError: in on_message"),
        (rf"on_close failed on connection {conn}", "KeyError: 'in on_close'"),
    ]
    assert len(shown) == len(expected), shown
    for (message, last), (pattern, error) in zip(shown, expected, strict=True):
        assert re.fullmatch(pattern, message) and last == error, (message, last)


async def stalled_member(address: str, read_again: threading.Event) -> tuple[int, str]:
    """A member that reads nothing (its client stops reading the socket after one message
    queued) until ``read_again``; then the close code and reason it finds behind the backlog."""
    async with ws_connect(address, max_queue=1, max_size=None) as ws:
        await asyncio.to_thread(read_again.wait)
        with pytest.raises(WSConnectionClosed) as closed:
            while True:
                await ws.recv()
        received = closed.value.rcvd
        assert received is not None
        return received.code, received.reason


async def test_slow_room_members_closed_together_are_one_warning_line() -> None:
    # logging.md's slow-member line, and "recurring problems are logged at most once every
    # ten seconds": two members that stopped reading, judged one after the other.
    app = wsapp.App(outbound_budget=64 * 1024)
    warnings: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno == logging.WARNING:
                warnings.append(record.getMessage())

    both_joined, both_closed = anyio.Event(), anyio.Event()

    @app.on_open
    async def enter(conn: wsapp.Connection) -> None:
        if conn.request.path == "/member":
            await conn.join("lobby")
            if app.rooms.count("lobby") == 2:
                both_joined.set()

    @app.on_message
    async def flood(conn: wsapp.Connection, message: wsapp.Message) -> None:
        # One tick's burst is never judged, so yield between broadcasts until the members'
        # socket buffers, then their budgets, are full (a bounded number of them).
        for _ in range(2000):
            if app.rooms.count("lobby") == 0:
                both_closed.set()
                return
            await app.broadcast("lobby", "x" * 16 * 1024)
            await anyio.lowlevel.checkpoint()

    catch = Catch()
    logging.getLogger("wsapp").addHandler(catch)
    read_again = threading.Event()
    closes: list[tuple[int, str]] = []

    async def member(address: str) -> None:
        closes.append(await client(stalled_member, address, read_again))

    try:
        async with running(app) as server, anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(member, url(server, "/member"))
            await both_joined.wait()
            async with RawClient.connect(port(server), "/sender") as sender:
                await sender.send(frame(OP_TEXT, b"go"))
                await both_closed.wait()
            read_again.set()
    finally:
        read_again.set()
        logging.getLogger("wsapp").removeHandler(catch)
    assert closes == [(1008, TOO_SLOW)] * 2
    assert len(warnings) == 1, warnings
    assert re.fullmatch(
        r"closing [0-9a-f]{12} \(in lobby\) with 1008: more than 65536 bytes waiting "
        r"\(outbound_budget\)",
        warnings[0],
    ), warnings
    shown = re.search(r"`(closing \w+ \(in lobby\) with 1008: .*?) \.\.\.`", LOGGING_PAGE)
    assert shown and warnings[0].startswith(
        re.sub(r"closing \w+", warnings[0].split(" (")[0], shown[1]).replace("1048576", "65536")
    )


async def test_json_refused_lines_carry_the_status_path_and_client() -> None:
    ready = "wsapp serving "
    async with serving(
        "examples.echo:app", "--log-format", "json", ready=ready, stop=True
    ) as served:
        started = json.loads(next(line for line in served.stderr if ready in line))
        server_port = int(started["message"].rsplit(":", 1)[1])
        foreign = handshake("/chat", extra="Origin: https://evil.example\r\n")
        answer = await http_exchange(server_port, foreign)
        assert answer.startswith(b"HTTP/1.1 403 ")
        await served.wait_for(served.stderr, '"message": "refused 403 ')
    (entry,) = [json.loads(line) for line in served.stderr if '"message": "refused' in line]
    assert (entry["level"], entry["status"], entry["path"]) == ("INFO", 403, "/chat")
    assert re.fullmatch(r"127\.0\.0\.1:\d+", entry["client"]), entry
    assert entry["message"].startswith(
        f"refused 403 /chat client={entry['client']}: cross-origin request refused: "
    )
    assert "connection" not in entry  # a refused handshake never became a connection


async def test_log_level_debug_shows_abandoned_and_timed_out_handshakes() -> None:
    async with serving(
        "examples.echo:app", "--log-level", "debug", "--handshake-timeout", "0.3", stop=True
    ) as served:
        server_port = int(served.url.rsplit(":", 1)[1])
        left = await anyio.connect_tcp("127.0.0.1", server_port)
        await left.send(b"GET / HTTP/1.1\r\n")
        await left.aclose()  # a client that left mid-handshake
        await served.wait_for(served.stderr, "handshake abandoned")
        async with await anyio.connect_tcp("127.0.0.1", server_port) as slow:
            await slow.send(b"GET / HTTP/1.1\r\n")  # ...and never the rest
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await slow.receive()
        await served.wait_for(served.stderr, "handshake timed out")
    debug = messages(served.stderr, "DEBUG")
    assert any(line.startswith("handshake abandoned: ") for line in debug), debug
    assert "handshake timed out after 0.3s" in debug


# --- testing.md ------------------------------------------------------------------------------


async def test_the_environment_applies_to_the_test_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSAPP_MAX_MESSAGE_SIZE", "10")
    app = echo_app()

    async with wsapp.testing.connect(app) as ws:
        await ws.send("x" * 10)
        assert await ws.receive() == "x" * 10
        await ws.send("x" * 11)
        await ws.wait_closed()
    assert (ws.close_code, ws.close_reason) == (1009, "message over 10 bytes")


def test_each_wait_of_the_test_client_times_out_after_5_seconds_by_default() -> None:
    # A plain test, run once: the wait it checks is what bounds it.
    app = wsapp.App()

    @app.on_message
    async def silent(conn: wsapp.Connection, message: wsapp.Message) -> None:
        pass

    with wsapp.testing.connect(app) as ws:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"within 5\.0s"):
            ws.receive()
        assert 4.5 < time.monotonic() - started < 15


# --- settings.md -----------------------------------------------------------------------------


def settings_transcripts() -> list[Any]:
    """(environment, arguments, stderr) of each command the settings page shows."""
    shown = []
    for block in console_blocks(DOCS / "settings.md"):
        command, *output = block.strip().splitlines()
        words = shlex.split(command.removeprefix("$ "))
        env = dict(word.split("=", 1) for word in words if "=" in word and word[0] != "-")
        args = [word for word in words if word not in {f"{k}={v}" for k, v in env.items()}]
        assert args[:3] == ["python", "-m", "wsapp"], command
        shown.append(pytest.param(env, args[3:], "\n".join(output) + "\n", id=command))
    assert len(shown) == 2
    return shown


@pytest.mark.parametrize(("env", "args", "stderr"), settings_transcripts())
def test_the_settings_pages_commands_print_what_it_shows(
    env: dict[str, str], args: list[str], stderr: str
) -> None:
    result = run_cli(*args, "--port", "0", env=env)
    assert (result.stderr, result.returncode) == (stderr, 2)


# --- conformance.md --------------------------------------------------------------------------

UNITS = {"s": 1, "KiB": 1024, "MiB": 1024 * 1024, "": 1}


def documented_defaults() -> dict[str, Any]:
    """Each setting of the Limits table with its Default column as a value."""
    page = (DOCS / "conformance.md").read_text()
    table = page.split("## Limits", 1)[1].split("\n## ", 1)[0]
    defaults: dict[str, Any] = {}
    rows = re.findall(r"^\| (.+) \|$", table, re.M)  # not the rule, which has no spaces
    for row in rows[1:]:  # after the head
        _, setting, default, _ = (cell.strip() for cell in row.split(" | "))
        names = re.findall(r"`(\w+)`", setting.split("(")[0])
        if not names:
            continue  # a fixed limit, not a setting
        found = re.findall(r"(\d+) ?(s|KiB|MiB)?\b|\bnone\b", default.split(" and ")[0])
        values = [None if not n else int(n) * UNITS[unit] for n, unit in found]
        values = values * len(names) if len(values) == 1 else values
        assert len(values) == len(names), row
        defaults.update(zip(names, values, strict=True))
    return defaults


def test_the_limits_table_gives_the_defaults_of_the_settings() -> None:
    documented = documented_defaults()
    assert len(documented) >= 12
    defaults = wsapp.Settings()
    assert {name: getattr(defaults, name) for name in documented} == documented


async def test_by_default_a_1_mib_message_passes_and_one_byte_more_closes_with_1009() -> None:
    limit = 1024 * 1024

    async def talk(address: str) -> tuple[bool, int | None, str | None]:
        async with ws_connect(address, max_size=None) as ws:
            await ws.send("x" * limit)
            echoed = await ws.recv() == "x" * limit
            await ws.send("x" * (limit + 1))
            with pytest.raises(WSConnectionClosed):
                await ws.recv()
            return echoed, ws.close_code, ws.close_reason

    app = echo_app()

    async with running(app) as server:
        assert await client(talk, url(server)) == (True, 1009, "message over 1048576 bytes")


def padding(head_size: int) -> str:
    """A header that makes a handshake's head, its closing blank line included,
    ``head_size`` bytes."""
    base = len(handshake(extra="X-Pad: \r\n"))
    extra = f"X-Pad: {'a' * (head_size - base)}\r\n"
    assert len(handshake(extra=extra)) == head_size
    return extra


async def test_by_default_a_16_kib_request_head_passes_and_a_larger_one_gets_431() -> None:
    app = echo_app()
    async with running(app) as server:
        async with RawClient.connect(port(server), extra=padding(16 * 1024)) as raw:
            assert raw.response_head.startswith(b"HTTP/1.1 101 ")
        answer = await http_exchange(port(server), handshake(extra=padding(16 * 1024 + 8)))
        assert answer.startswith(b"HTTP/1.1 431 ")


async def test_100_header_lines_pass_and_101_get_431() -> None:
    base_lines = handshake().count(b"\r\n") - 2  # minus the request line and the blank line
    app = echo_app()
    async with running(app) as server:
        fits = "".join(f"X-{i}: v\r\n" for i in range(100 - base_lines))
        async with RawClient.connect(port(server), extra=fits) as raw:
            assert raw.response_head.startswith(b"HTTP/1.1 101 ")
        answer = await http_exchange(port(server), handshake(extra=fits + "X-One-More: v\r\n"))
        assert answer.startswith(b"HTTP/1.1 431 ")
        assert answer.endswith(b"\r\n\r\nmore than 100 header lines\n")


# --- authentication.md -----------------------------------------------------------------------


async def test_a_token_offered_as_a_subprotocol_is_read_and_not_echoed() -> None:
    app = wsapp.App()

    @app.on_connect
    async def authenticate(conn: wsapp.Connection, request: wsapp.Request) -> None:
        if "t0ken" not in request.subprotocols:
            raise wsapp.Reject(401, "token required")
        conn.subprotocol = "chat"

    @app.on_open
    async def greet(conn: wsapp.Connection) -> None:
        await conn.send("hello")

    async def talk(address: str) -> tuple[str | None, list[str], str | bytes]:
        offer = [Subprotocol("chat"), Subprotocol("t0ken")]
        async with ws_connect(address, subprotocols=offer) as ws:
            assert ws.response is not None
            answered = ws.response.headers.get_all("Sec-WebSocket-Protocol")
            return ws.subprotocol, answered, await ws.recv()

    async with running(app) as server:
        assert await client(talk, url(server)) == ("chat", ["chat"], "hello")
        assert (await client(refusal, url(server)))[0] == 401


# --- faq.md ----------------------------------------------------------------------------------


async def test_a_page_opened_from_a_file_gets_403_unless_null_is_allowed() -> None:
    async def echo_from_a_file(address: str) -> str | bytes:
        async with ws_connect(address, origin=Origin("null")) as ws:
            await ws.send("from file://")
            return await ws.recv()

    async with running(echo_app()) as server:
        status, _, body = await client(refusal, url(server), origin=Origin("null"))
        assert (status, body) == (403, b"cross-origin request refused\n")
    async with running(echo_app(allowed_origins=["null"])) as server:
        assert await client(echo_from_a_file, url(server)) == "from file://"


# --- asgi.md ---------------------------------------------------------------------------------


async def test_under_asgi_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WSAPP_MAX_MESSAGE_SIZE", "10")
    app = echo_app()

    async def talk(address: str) -> tuple[str | bytes, int | None]:
        async with ws_connect(address) as ws:
            await ws.send("x" * 10)
            echoed = await ws.recv()
            await ws.send("x" * 11)
            await ws.wait_closed()
            return echoed, ws.close_code

    async with hypercorn_server(app) as listening:
        assert await client(talk, listening.url()) == ("x" * 10, 1009)
