"""Log lines: the text format the docs describe, and JSON lines with the connection's fields."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from tests.helpers import client, echo_app, running, serving
from wsapp.log import JSONFormatter, TextFormatter

pytestmark = pytest.mark.anyio


def test_a_json_line_has_the_fields_of_its_connection_and_its_traceback() -> None:
    try:
        raise RuntimeError("a bug ✗")
    except RuntimeError:
        failure = sys.exc_info()
    record = logging.LogRecord("wsapp", logging.ERROR, __file__, 1, "failed %s", ("c1",), failure)
    record.__dict__.update(connection="c1", path="/chat", client="10.0.0.7:5000", code=1011)
    line = JSONFormatter().format(record)
    assert "\n" not in line  # one line per record, the traceback included
    entry = json.loads(line)
    assert entry["time"].endswith("Z")
    assert {key: entry[key] for key in ("level", "logger", "message", "connection", "path")} == {
        "level": "ERROR",
        "logger": "wsapp",
        "message": "failed c1",
        "connection": "c1",
        "path": "/chat",
    }
    assert (entry["client"], entry["code"]) == ("10.0.0.7:5000", 1011)
    assert "clean" not in entry  # fields a line does not have are left out
    assert "RuntimeError: a bug ✗" in entry["exception"]


#: Seconds from the epoch (1843 to 2096), some a rounding step below a whole second.
TIMES = st.lists(
    st.floats(-4e9, 4e9) | st.integers(-4 * 10**9, 4 * 10**9).map(lambda second: second - 5e-7),
    min_size=1,
)


def at(created: float) -> logging.LogRecord:
    record = logging.LogRecord("wsapp", logging.INFO, __file__, 1, "line", (), None)
    record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
    return record


@given(TIMES)
@example([1765152627.9999995, 1765152627.1, 1765152628.0])
def test_the_time_formatted_once_per_second_is_the_time_logging_formats(
    times: list[float],
) -> None:
    text, json_lines = TextFormatter(), JSONFormatter()
    for created in times:  # in a row, as lines come: each after the one before
        assert text.formatTime(at(created)) == logging.Formatter().formatTime(at(created))
        shown = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
        assert json_lines.utc_time(created) == shown.replace("+00:00", "Z")


def test_the_text_time_follows_a_converter_set_for_every_formatter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    formatter, record = TextFormatter(), at(1765152627.25)
    monkeypatch.setattr(logging.Formatter, "converter", staticmethod(lambda _: time.gmtime(0)))
    assert formatter.formatTime(record) == "1970-01-01 00:00:00,250"
    monkeypatch.setattr(logging.Formatter, "converter", time.gmtime)  # as the logging docs show
    assert formatter.formatTime(record) == "2025-12-08 00:10:27,250"


async def talk(address: str) -> None:
    async with connect(address + "/chat?room=1") as ws:
        await ws.send("hello")
        await ws.recv()


async def test_json_logs_parse_line_by_line_and_name_the_connection() -> None:
    ready = "wsapp serving "
    async with serving(
        "examples.echo:app", "--log-format", "json", ready=ready, stop=True
    ) as served:
        started = json.loads(next(line for line in served.stderr if ready in line))
        address = started["message"].removeprefix(ready)
        await client(talk, address)
        await served.wait_for(served.stderr, '"message": "close ')
    entries = [json.loads(line) for line in served.stderr if line]
    assert all(entry["logger"] == "wsapp" and entry["pid"] for entry in entries)
    opened = next(entry for entry in entries if entry["message"].startswith("open "))
    closed = next(entry for entry in entries if entry["message"].startswith("close "))
    assert opened["path"] == closed["path"] == "/chat"
    assert opened["connection"] == closed["connection"]
    assert opened["client"].startswith("127.0.0.1:")
    assert (closed["code"], closed["clean"]) == (1000, True)
    assert closed["duration"] >= 0
    assert entries[-1]["message"] == "wsapp stopped"


async def test_text_logs_keep_their_format() -> None:
    async with serving("examples.echo:app", stop=True) as served:
        await client(talk, served.url)
        await served.wait_for(served.stderr, " close ")
    closed = next(line for line in served.stderr if " close " in line)
    # 2026-12-04 18:00:00,000 INFO wsapp: close 1a2b3c4d5e6f /chat code=1000 clean=True
    # duration=0.004s
    _date, _clock, level, name, verb, conn_id, path, code, clean, duration = closed.split()
    assert (level, name, verb, path, code, clean) == (
        "INFO", "wsapp:", "close", "/chat", "code=1000", "clean=True"
    )  # fmt: skip
    assert len(conn_id) == 12 and duration.startswith("duration=") and duration.endswith("s")


class Records(logging.Handler):
    """A program's own handler: it keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """The records a handler the program attached to the `wsapp` logger (logging.md) gets."""
    caplog.set_level(logging.INFO, logger="wsapp")
    handler = Records()
    logging.getLogger("wsapp").addHandler(handler)
    try:
        yield handler.records
    finally:
        logging.getLogger("wsapp").removeHandler(handler)


async def test_a_handler_of_the_program_gets_the_open_and_close_lines_as_records(
    records: list[logging.LogRecord],
) -> None:
    async with running(echo_app()) as server:
        await client(talk, server.urls[0])
    opened, closed = (r for r in records if r.msg.startswith(("open ", "close ")))
    assert isinstance(opened.args, tuple) and isinstance(closed.args, tuple)
    conn_id, path, client_address = opened.args
    assert (opened.msg, path) == ("open %s %s client=%s", "/chat")
    assert closed.msg == "close %s %s code=%s clean=%s duration=%.3fs"
    assert closed.args[:4] == (conn_id, "/chat", 1000, True)
    fields = {"connection": conn_id, "path": "/chat", "client": client_address}
    more = {"code": 1000, "clean": True, "duration": closed.args[4]}
    assert {name: opened.__dict__[name] for name in fields} == fields
    assert {name: closed.__dict__[name] for name in {**fields, **more}} == {**fields, **more}
    for record in (opened, closed):  # where they were logged from, as a handler may show it
        assert (record.name, record.levelno, record.funcName) == ("wsapp", logging.INFO, "run")
        assert record.pathname.endswith("lifecycle.py")
