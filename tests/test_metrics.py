"""Metrics: every figure moves with the traffic it counts, scraped over HTTP as Prometheus
reads it (prometheus_client's own parser), from the built-in server; summing over workers and
the exposition's shape are tested without sockets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel
from websockets.asyncio.client import connect

import wsapp
from tests.helpers import client, echo_app, poll_until, port, running, url
from tests.rawclient import OP_TEXT, RawClient, close_frame, frame, handshake
from tests.test_handshake import http_exchange
from wsapp.operations.metrics import (
    BUCKETS,
    HANDLER_SAMPLING,
    Histogram,
    HistogramCounts,
    Metrics,
    Snapshot,
    SnapshotFiles,
    merge,
)
from wsapp.operations.prometheus import FAMILIES, exposition
from wsapp.rooms import Rooms
from wsapp.server.outbox import HIGH_WATER
from wsapp.transport import OpenConnections

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(server_port: int, path: str = "/metrics") -> Samples:
    response = await http_exchange(
        server_port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    )
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
    assert b"content-type: text/plain; version=0.0.4" in head.lower()
    return parse(body.decode())


# Without sockets


def test_a_histogram_counts_a_value_equal_to_a_bound_in_that_bound() -> None:
    histogram = Histogram((0.1, 1.0))
    for seconds in (0.1, 0.5, 1.0, 3.0):
        histogram.observe(seconds)
    assert histogram.counts == [1, 2, 1]
    assert histogram.total == pytest.approx(4.6)


def snapshot(opened: int, open_now: int, lag_counts: list[int]) -> Snapshot:
    return Snapshot(
        counters={"connections_opened": {"": opened}, "connections_closed": {"1000": opened}},
        gauges={"connections_open": open_now},
        histograms={"broker_lag_seconds": HistogramCounts(lag_counts, float(sum(lag_counts)))},
    )


def test_merging_sums_counters_gauges_and_histograms() -> None:
    total = merge([snapshot(3, 1, [1, 0, 2]), snapshot(4, 2, [0, 1, 1])])
    assert total.counters == {"connections_opened": {"": 7}, "connections_closed": {"1000": 7}}
    assert total.gauges == {"connections_open": 3}
    assert total.histograms["broker_lag_seconds"].counts == [1, 1, 3]
    assert total.processes == 2


def test_an_exited_workers_counts_stay_in_the_totals_but_not_what_it_held(
    tmp_path: Path,
) -> None:
    files = SnapshotFiles(tmp_path)
    files.write(snapshot(5, 5, [0, 0, 0]))
    # A worker that has exited: its pid (of a process already reaped) no longer exists.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    exited = snapshot(2, 9, [0, 1, 0])
    dead_file = tmp_path / f"metrics-{gone.stdout.strip()}-1.json"
    dead_file.write_text(json.dumps({**exited.__dict__, "histograms": {
        "broker_lag_seconds": {"counts": [0, 1, 0], "total": 1.0}}}))  # fmt: skip
    (tmp_path / f"metrics-{os.getpid()}-2.json.tmp").write_text("{half a file")  # ignored
    mine = snapshot(1, 1, [1, 0, 0])
    total = merge([mine, *files.others()])
    assert total.counters["connections_opened"] == {"": 3}  # mine + the exited worker's
    assert total.gauges == {"connections_open": 1}  # mine only
    assert total.histograms["broker_lag_seconds"].counts == [1, 1, 0]
    assert total.processes == 1


def test_the_exposition_names_every_family_with_its_type() -> None:
    text, content_type = exposition(Metrics(Rooms(), OpenConnections()))
    assert content_type.startswith("text/plain; version=0.0.4")
    families = {
        family.name: family.type for family in text_string_to_metric_families(text.decode())
    }
    assert set(families) == {"wsapp_" + name for name in FAMILIES}
    assert families["wsapp_connections_opened"] == "counter"
    assert families["wsapp_connections_open"] == "gauge"
    assert families["wsapp_handler_duration_seconds"] == "histogram"
    assert set(BUCKETS) <= set(FAMILIES)


def test_openmetrics_is_answered_to_a_scraper_that_prefers_it() -> None:
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    text, content_type = exposition(Metrics(Rooms(), OpenConnections()), accept)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert text.endswith(b"# EOF\n")


@pytest.mark.parametrize("path", ["metrics", ""])
def test_a_metrics_path_must_be_a_path(path: str) -> None:
    with pytest.raises(wsapp.ConfigError, match="must start with '/', like '/metrics'"):
        wsapp.Settings(metrics_path=path)


def test_the_metrics_and_health_paths_must_differ() -> None:
    with pytest.raises(wsapp.ConfigError, match="give each its own path"):
        wsapp.Settings(metrics_path="/status", health_path="/status")


# The built-in server


class Greeting(BaseModel):
    name: str


def metered_app() -> wsapp.App:
    app = wsapp.App(metrics_path="/metrics")

    @app.on_message
    async def echo(conn: wsapp.Connection, message: str | bytes) -> None:
        await conn.send(message)

    typed = app.route("/typed")

    @typed.on_message
    async def greet(conn: wsapp.Connection, greeting: Greeting) -> str:
        return f"hello {greeting.name}"

    failing = app.route("/fail")

    @failing.on_message
    async def fail(conn: wsapp.Connection, message: str) -> None:
        raise RuntimeError("a bug in the handler")

    lobby = app.route("/lobby")
    app.state.both_joined = anyio.Event()

    @lobby.on_open
    async def enter(conn: wsapp.Connection) -> None:
        await conn.join("lobby")
        if app.rooms.count("lobby") == 2:
            app.state.both_joined.set()

    @lobby.on_message
    async def say(conn: wsapp.Connection, message: str) -> None:
        await app.broadcast("lobby", message)

    return app


async def exchange(raw: RawClient, message: str) -> bytes:
    await raw.send(frame(OP_TEXT, message.encode()))
    _, _, payload = await raw.read_frame()
    return payload


async def test_every_metric_moves_with_the_traffic_it_counts() -> None:
    app = metered_app()
    async with running(app) as server:
        at = port(server)
        before = await scrape(at)
        assert value(before, "wsapp_connections_opened_total") == 0
        assert value(before, "wsapp_processes") == 1

        async with RawClient.connect(at, "/") as raw:
            assert await exchange(raw, "hi") == b"hi"
            assert await exchange(raw, "héllo ✓") == "héllo ✓".encode()
            during = await scrape(at)
            assert value(during, "wsapp_connections_open") == 1
            await raw.send(close_frame(1000))
            await raw.read_close()
        async with RawClient.connect(at, "/typed") as raw:
            assert await exchange(raw, '{"name": "ada"}') == b"hello ada"
            invalid_reply = await exchange(raw, '{"nom": "ada"}')
            assert json.loads(invalid_reply)["error"] == "invalid_message"
            await raw.send(close_frame(1001))
            await raw.read_close()
        async with RawClient.connect(at, "/fail") as raw:
            await raw.send(frame(OP_TEXT, b"boom"))
            assert await raw.read_close() == (1011, "internal error")
            await raw.send(close_frame(1011))
        async with RawClient.connect(at, "/lobby") as first, RawClient.connect(at, "/lobby"):
            await app.state.both_joined.wait()
            in_lobby = await scrape(at)
            await first.send(frame(OP_TEXT, b"to all"))
            assert (await first.read_frame())[2] == b"to all"
        refused = await http_exchange(at, handshake(extra="Origin: http://elsewhere.example\r\n"))
        assert refused.startswith(b"HTTP/1.1 403")
        assert await client(echo_with_websockets, url(server)) == "from websockets"
    # The server has stopped, so every close is counted: read what the path would answer.
    after = parse(exposition(app.metrics)[0].decode())

    assert value(in_lobby, "wsapp_rooms") == 1
    assert value(in_lobby, "wsapp_room_members") == 2
    assert value(after, "wsapp_rooms") == 0
    assert value(after, "wsapp_connections_opened_total") == 6
    assert value(after, "wsapp_connections_open") == 0
    assert value(after, "wsapp_connections_closed_total", code="1000") == 2  # "/", websockets
    assert value(after, "wsapp_connections_closed_total", code="1001") == 1
    assert value(after, "wsapp_connections_closed_total", code="1011") == 1
    assert value(after, "wsapp_connections_closed_total", code="1006") == 2  # sockets dropped
    assert value(after, "wsapp_handshakes_refused_total", status="403") == 1
    received = ["hi", "héllo ✓", '{"name": "ada"}', '{"nom": "ada"}', "boom", "to all", "x"]
    assert value(after, "wsapp_messages_received_total") == len(received)
    assert value(after, "wsapp_received_bytes_total") == sum(len(m.encode()) for m in received)
    # hi, héllo, the greeting, the error reply, 2 lobby deliveries, the websockets echo
    assert value(after, "wsapp_messages_sent_total") == 7
    sent = ["hi", "héllo ✓", "hello ada", invalid_reply.decode(), "to all", "to all", "x"]
    assert value(after, "wsapp_sent_bytes_total") == sum(len(m.encode()) for m in sent)
    assert value(after, "wsapp_handler_errors_total") == 1
    assert value(after, "wsapp_invalid_messages_total") == 1
    assert value(after, "wsapp_broadcasts_total") == 1
    assert value(after, "wsapp_room_messages_received_total") == 1
    # The first message of each connection is timed (then one in 16), the invalid one's and
    # the failing one's too: five connections sent messages.
    assert value(after, "wsapp_handler_duration_seconds_count") == 5
    assert value(after, "wsapp_handler_duration_seconds_bucket", le="+Inf") == 5
    assert value(after, "wsapp_outbound_queued_bytes") == 0


async def echo_with_websockets(address: str) -> object:
    async with connect(address) as ws:
        await ws.send("x")
        await ws.recv()
        return "from websockets"


async def test_bytes_a_slow_client_has_not_read_are_reported_as_queued() -> None:
    app = wsapp.App(metrics_path="/metrics", write_timeout=30)

    @app.on_open
    async def flood(conn: wsapp.Connection) -> None:
        for _ in range(64):  # 16 MiB to a client that reads none of it
            await conn.send(b"x" * 256 * 1024)

    async with running(app) as server, RawClient.connect(port(server)):
        queued = 0.0

        async def backed_up() -> bool:  # once the kernel's buffers are full too
            nonlocal queued
            queued = value(await scrape(port(server)), "wsapp_outbound_queued_bytes")
            return queued > 0

        await poll_until(backed_up, within=5)
        # The sender waits past the high-water mark: what is queued stays bounded.
        assert queued <= HIGH_WATER + 256 * 1024 + 10


async def test_a_blocked_loop_shows_in_the_lag_histogram() -> None:
    app = wsapp.App(metrics_path="/metrics", loop_lag_warning=None)

    @app.on_message
    async def block(conn: wsapp.Connection, message: str) -> None:
        time.sleep(0.3)  # noqa: ASYNC251 - blocking in async def: what the histogram shows
        await conn.send("done")

    async with running(app) as server, RawClient.connect(port(server)) as raw:
        assert await exchange(raw, "block") == b"done"
        samples = await scrape(port(server))
    # The watcher was due within 0.25 s of the block's start, so it woke >= 0.05 s late:
    # one observation at least is above the 0.025 s bucket.
    assert 0.025 in BUCKETS["event_loop_lag_seconds"]
    at_most_25ms = value(samples, "wsapp_event_loop_lag_seconds_bucket", le="0.025")
    assert value(samples, "wsapp_event_loop_lag_seconds_count") > at_most_25ms


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_one_handler_run_in_16_is_timed(concurrency: int) -> None:
    app = echo_app(metrics_path="/metrics", concurrency=concurrency)

    async with running(app) as server, RawClient.connect(port(server)) as raw:
        for n in range(concurrency * HANDLER_SAMPLING + 1):
            assert await exchange(raw, f"m{n}") == f"m{n}".encode()
        await raw.send(close_frame(1000))
        await raw.read_close()
    timed = sum(app.metrics.handler_duration.counts)
    sent = concurrency * HANDLER_SAMPLING + 1
    if concurrency == 1:
        assert timed == sent // HANDLER_SAMPLING + 1  # the 1st, the 17th, the 33rd...
    else:  # each worker times the first message it takes, then one in 16 of its own
        assert sent // HANDLER_SAMPLING + 1 <= timed <= sent // HANDLER_SAMPLING + concurrency


async def test_handlers_are_not_timed_without_a_metrics_path() -> None:
    app = echo_app()

    async with running(app) as server, RawClient.connect(port(server)) as raw:
        assert await exchange(raw, "untimed") == b"untimed"
        plain = await http_exchange(port(server), b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert plain.startswith(b"HTTP/1.1 426 ")  # no metrics path: an endpoint's path, as before
    assert app.metrics.messages_received == 1  # still counted
    assert app.metrics.handler_duration.counts == [0] * len(app.metrics.handler_duration.counts)
