"""What a process has served, counted where it happens, cheaply enough to stay on.

Counting is plain integer additions at the single place each event already passes (a message
into the inbox, a `send`, the open and the close of a connection, a refusal), so it costs a
few attribute additions per message and is never turned off. The one figure that costs
clock readings, handler latency, is sampled, and taken only when something reads the metrics
(a `metrics_path`, or a [collector][wsapp.operations.prometheus.WsappCollector] registered
by the app).

The numbers are read as a [Snapshot][wsapp.operations.metrics.Snapshot]: plain data that the
exposition ([wsapp.operations.prometheus][]) renders, and that the workers of one supervisor
write to its directory so that whichever worker is scraped reports the sum of all of them.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import anyio
from pydantic import TypeAdapter

__all__ = [
    "BUCKETS",
    "HANDLER_SAMPLING",
    "SHARE_INTERVAL",
    "Histogram",
    "HistogramCounts",
    "Metrics",
    "RoomStats",
    "Snapshot",
    "SnapshotFiles",
    "merge",
]

#: The upper bounds (seconds) of each histogram's buckets; a last one, +Inf, is implied.
BUCKETS: dict[str, tuple[float, ...]] = {
    "handler_duration_seconds": (
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ),
    "event_loop_lag_seconds": (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    "broker_lag_seconds": (
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ),
}  # fmt: skip

#: One message in this many, per connection (its first, then every 16th), has its handler
#: timed: two clock readings and a bucket search per message would cost several per cent of
#: the whole per-message path, and a sample of one in sixteen gives the same distribution.
HANDLER_SAMPLING = 16

#: Seconds between two snapshots a worker writes for the others to read.
SHARE_INTERVAL = 1.0


class Histogram:
    """Observations counted in fixed buckets (`le` semantics: a value equal to a bound falls
    in that bound's bucket), and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


@dataclass
class HistogramCounts:
    """One histogram in a snapshot: the count in each bucket (not cumulative) and the sum."""

    counts: list[int]
    total: float

    def add(self, other: HistogramCounts) -> None:
        self.counts = [
            mine + theirs for mine, theirs in zip(self.counts, other.counts, strict=True)
        ]
        self.total += other.total


@dataclass
class Snapshot:
    """The metrics of one process (or the sum over several), as plain data.

    Counters only grow; gauges are current values; both are keyed by metric name, then by
    label value ("" for a metric without labels).
    """

    counters: dict[str, dict[str, float]]
    gauges: dict[str, float]
    histograms: dict[str, HistogramCounts]
    processes: int = 1

    def without_gauges(self) -> Snapshot:
        """This snapshot as a process that has exited contributes: its counts stay in the
        totals, its current values (open connections...) are gone."""
        return Snapshot(self.counters, {}, self.histograms, processes=0)


@dataclass
class RoomStats:
    """What the rooms of this process have done since it started.

    Attributes:
        broadcasts: Messages broadcast from this process.
        received: Room messages delivered here (from this process or, through a broker,
            from others).
        deliveries: Frames queued for members.
        delivered_bytes: Their payload bytes.
        dropped: Messages skipped for a slow member (`on_slow="drop"`).
        slow_closes: Members closed for being too slow (`on_slow="close"`).
        broker_lag: Seconds from the publish to the delivery here, of the room messages that
            came through a broker.
    """

    broadcasts: int = 0
    received: int = 0
    deliveries: int = 0
    delivered_bytes: int = 0
    dropped: int = 0
    slow_closes: int = 0
    broker_lag: Histogram = field(default_factory=lambda: Histogram(BUCKETS["broker_lag_seconds"]))


class RoomGauges(Protocol):
    """What the metrics read of the rooms ([Rooms][wsapp.rooms.Rooms] is one): their
    counters, and who is in them now."""

    @property
    def stats(self) -> RoomStats: ...

    def names(self) -> list[str]: ...

    def count(self, room: str) -> int: ...


class OpenGauges(Protocol):
    """What the metrics read of the open connections
    ([OpenConnections][wsapp.transport.OpenConnections] is one): how many, and the bytes
    they have still to write."""

    def __len__(self) -> int: ...

    def unsent(self) -> int: ...


_SNAPSHOT_JSON = TypeAdapter(Snapshot)


def merge(snapshots: list[Snapshot]) -> Snapshot:
    """The sum of several processes' snapshots."""
    total = Snapshot({}, {}, {}, processes=0)
    for snapshot in snapshots:
        for name, values in snapshot.counters.items():
            into = total.counters.setdefault(name, {})
            for label, value in values.items():
                into[label] = into.get(label, 0) + value
        for name, value in snapshot.gauges.items():
            total.gauges[name] = total.gauges.get(name, 0) + value
        for name, histogram in snapshot.histograms.items():
            mine = total.histograms.get(name)
            if mine is None:
                total.histograms[name] = HistogramCounts(list(histogram.counts), histogram.total)
            else:
                mine.add(histogram)
        total.processes += snapshot.processes
    return total


class Metrics:
    """The counters of one app in this process (`app.metrics`).

    Attributes:
        opened: Connections accepted (the 101 sent).
        closed: Connections ended, by close code (1006 when no close frame was exchanged).
        refused: Handshakes refused, by HTTP status.
        messages_received: Messages received from clients.
        bytes_received: Their payload bytes (UTF-8 bytes for text).
        messages_sent: Messages sent with `send` (broadcasts are counted by the rooms).
        bytes_sent: Their payload bytes.
        handler_errors: Callbacks that raised (`on_connect`, `on_open`, `on_message`,
            `on_close`).
        invalid_messages: Messages that did not decode into the declared models.
        rate_limited: Messages turned away by a rate limit (`rate_limit_messages`,
            `rate_limit_bytes`).
        handler_duration: How long `on_message` took, for one message in
            `HANDLER_SAMPLING` of each connection (timed only while `timing`).
        event_loop_lag: How late the loop woke the lag watcher, four times a second.
        timing: Whether `on_message` is timed (set when something reads the metrics).
    """

    def __init__(self, rooms: RoomGauges, connections: OpenGauges) -> None:
        self.opened: int = 0
        self.closed: dict[int, int] = {}
        self.refused: dict[int, int] = {}
        self.messages_received: int = 0
        self.bytes_received: int = 0
        self.messages_sent: int = 0
        self.bytes_sent: int = 0
        self.handler_errors: int = 0
        self.invalid_messages: int = 0
        self.rate_limited: int = 0
        self.handler_duration: Histogram = Histogram(BUCKETS["handler_duration_seconds"])
        self.event_loop_lag: Histogram = Histogram(BUCKETS["event_loop_lag_seconds"])
        self.timing: bool = False
        self.shared: SnapshotFiles | None = None  # with --workers: the others' snapshots
        self._rooms = rooms
        self._connections = connections

    # --- counting (called by the lifecycle and the connection) ------------------------------

    def connection_opened(self) -> None:
        self.opened += 1

    def connection_closed(self, code: int) -> None:
        self.closed[code] = self.closed.get(code, 0) + 1

    def handshake_refused(self, status: int) -> None:
        self.refused[status] = self.refused.get(status, 0) + 1

    # --- reading ----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """This process's metrics now."""
        rooms = self._rooms
        stats = rooms.stats
        names = rooms.names()
        return Snapshot(
            counters={
                "connections_opened": {"": self.opened},
                "connections_closed": {str(code): n for code, n in self.closed.items()},
                "handshakes_refused": {str(status): n for status, n in self.refused.items()},
                "messages_received": {"": self.messages_received},
                "received_bytes": {"": self.bytes_received},
                "messages_sent": {"": self.messages_sent + stats.deliveries},
                "sent_bytes": {"": self.bytes_sent + stats.delivered_bytes},
                "handler_errors": {"": self.handler_errors},
                "invalid_messages": {"": self.invalid_messages},
                "rate_limited_messages": {"": self.rate_limited},
                "slow_consumers": {"close": stats.slow_closes, "drop": stats.dropped},
                "broadcasts": {"": stats.broadcasts},
                "room_messages_received": {"": stats.received},
            },
            gauges={
                "connections_open": len(self._connections),
                "outbound_queued_bytes": self._connections.unsent(),
                "rooms": len(names),
                "room_members": sum(rooms.count(name) for name in names),
            },
            histograms={
                "handler_duration_seconds": _counts(self.handler_duration),
                "event_loop_lag_seconds": _counts(self.event_loop_lag),
                "broker_lag_seconds": _counts(stats.broker_lag),
            },
        )

    def collect(self) -> Snapshot:
        """What to report: this process's snapshot, summed with the other workers' when this
        process is one of a supervisor's workers."""
        mine = self.snapshot()
        if self.shared is None:
            return mine
        return merge([mine, *self.shared.others()])

    async def share(self) -> None:
        """Write this process's snapshot for the other workers every `SHARE_INTERVAL`, and
        once more when cancelled (the process is stopping), until cancelled."""
        shared = self.shared
        if shared is None:
            return
        try:
            while True:
                shared.write(self.snapshot())
                await anyio.sleep(SHARE_INTERVAL)
        finally:
            shared.write(self.snapshot())


def _counts(histogram: Histogram) -> HistogramCounts:
    return HistogramCounts(list(histogram.counts), histogram.total)


class SnapshotFiles:
    """The snapshots of a supervisor's workers, one file each in its directory.

    A worker that exited leaves its file: its counts stay in the totals, so a counter never
    goes down when a worker is replaced; its gauges are dropped, since it holds nothing now.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.pid = os.getpid()
        # The start time tells apart two workers that had the same pid, one after the other.
        self._mine = self.directory / f"metrics-{self.pid}-{time.time_ns()}.json"

    def write(self, snapshot: Snapshot) -> None:
        """Replace this process's file with ``snapshot``, atomically (a reader never sees
        half of it)."""
        partial = self._mine.with_suffix(".tmp")
        partial.write_bytes(_SNAPSHOT_JSON.dump_json(snapshot))
        os.replace(partial, self._mine)

    def others(self) -> list[Snapshot]:
        """The other workers' last snapshots, without the gauges of those that exited."""
        found = []
        for path in self.directory.glob("metrics-*.json"):
            if path == self._mine:
                continue
            try:
                snapshot = _SNAPSHOT_JSON.validate_json(path.read_bytes())
            except (OSError, ValueError):
                continue  # gone or replaced between the listing and the read
            pid = int(path.name.split("-")[1])
            found.append(snapshot if _alive(pid) else snapshot.without_gauges())
        return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user's
    return True
