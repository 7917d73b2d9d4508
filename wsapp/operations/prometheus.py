"""The Prometheus exposition of [wsapp.operations.metrics][]: the `[metrics]` extra.

prometheus_client writes the format; wsapp hands it the families below through a custom
collector, built from a [Snapshot][wsapp.operations.metrics.Snapshot] at each scrape, so nothing is
counted twice and the counting itself stays plain integer additions.

An app that already serves Prometheus metrics (a FastAPI app with its own `/metrics`, say)
registers the collector in its registry instead of setting `metrics_path`:

    prometheus_client.REGISTRY.register(WsappCollector(app.metrics))
"""

from __future__ import annotations

from collections.abc import Iterator

try:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.registry import Collector
except ImportError:  # pragma: no cover - the settings say so first, at start-up
    raise ImportError(
        "wsapp's metrics need prometheus_client: pip install 'wsapp[metrics]'"
    ) from None

from wsapp.operations.metrics import BUCKETS, Metrics, Snapshot

__all__ = ["FAMILIES", "WsappCollector", "exposition"]

PREFIX = "wsapp_"

#: Every family: name (without the prefix) → (help, label name or None).
FAMILIES: dict[str, tuple[str, str | None]] = {
    "connections_open": ("WebSocket connections open now.", None),
    "connections_opened": ("WebSocket connections accepted (101 sent).", None),
    "connections_closed": (
        "WebSocket connections ended, by close code (1006: no close frame exchanged).",
        "code",
    ),
    "handshakes_refused": ("Handshakes refused, by HTTP status.", "status"),
    "messages_received": ("Messages received from clients.", None),
    "received_bytes": ("Payload bytes of the messages received (UTF-8 for text).", None),
    "messages_sent": ("Messages sent to clients, broadcast deliveries included.", None),
    "sent_bytes": ("Payload bytes of the messages sent.", None),
    "handler_errors": ("Callbacks that raised (on_connect, on_open, on_message, on_close).", None),
    "invalid_messages": ("Messages that did not decode into the declared models.", None),
    "rate_limited_messages": ("Messages turned away by a rate limit.", None),
    "handler_duration_seconds": (
        "Time on_message took, for each connection's first message and one in 16 after it.",
        None,
    ),
    "outbound_queued_bytes": ("Bytes queued for clients and not yet written.", None),
    "slow_consumers": (
        "Broadcasts a slow member could not take, by what was done (close or drop).",
        "action",
    ),
    "rooms": ("Rooms with members, counted in each process and summed.", None),
    "room_members": ("Room memberships (a connection in two rooms counts twice).", None),
    "broadcasts": ("Broadcasts made (published to the broker, if there is one).", None),
    "room_messages_received": ("Room messages delivered to this server's members.", None),
    "broker_lag_seconds": ("Time from a broadcast's publish to its delivery here.", None),
    "event_loop_lag_seconds": ("How late the event loop woke a 250 ms timer.", None),
    "processes": ("Server processes whose metrics are summed here (workers).", None),
}


def _families(snapshot: Snapshot) -> Iterator[Metric]:
    for name, values in snapshot.counters.items():
        help_text, label = FAMILIES[name]
        counter = CounterMetricFamily(PREFIX + name, help_text, labels=[label] if label else None)
        for value_label, value in sorted(values.items()):
            counter.add_metric([value_label] if label else [], value)
        yield counter
    for name, value in [*snapshot.gauges.items(), ("processes", snapshot.processes)]:
        yield GaugeMetricFamily(PREFIX + name, FAMILIES[name][0], value=value)
    for name, histogram in snapshot.histograms.items():
        cumulative, buckets = 0, []
        for bound, count in zip([*BUCKETS[name], float("inf")], histogram.counts, strict=True):
            cumulative += count
            buckets.append((_bound(bound), cumulative))
        yield HistogramMetricFamily(
            PREFIX + name, FAMILIES[name][0], buckets=buckets, sum_value=histogram.total
        )


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class WsappCollector(Collector):
    """A prometheus_client collector of an app's metrics (`app.metrics`), summed over the
    workers with `--workers`. Making one starts timing `on_message`."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        metrics.timing = True

    def collect(self) -> Iterator[Metric]:
        return _families(self._metrics.collect())


def exposition(metrics: Metrics, accept: str = "") -> tuple[bytes, str]:
    """The metrics in the format an `Accept` header prefers (Prometheus' text format unless
    it asks for OpenMetrics), and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WsappCollector(metrics))
    encode, content_type = choose_encoder(accept)
    return encode(registry), content_type
