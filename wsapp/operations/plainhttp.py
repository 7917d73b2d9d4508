"""Plain HTTP requests, answered by the built-in server and under ASGI alike: the paths
operators configure (the health path and the metrics path), and the refusal of every other.

The health path is how a load balancer learns whether to send this process new clients: 200
while the server serves, 503 from the moment it starts shutting down. A balancer (or a
Kubernetes readiness probe) that polls it takes the process out of rotation before its
listeners close, provided the shutdown waits long enough first: that wait is the
`drain_delay` setting. The metrics path answers with the Prometheus exposition of
[wsapp.operations.prometheus][].
"""

from __future__ import annotations

from typing import Any

from wsapp.operations.metrics import Metrics
from wsapp.protocol.handshake import Refusal, no_endpoint, upgrade_required
from wsapp.routing import Router
from wsapp.settings import Settings

__all__ = ["PlainAnswer", "plain_answer", "plain_refusal"]

PlainAnswer = tuple[int, list[tuple[str, str]], bytes]
"""Status, headers and body of a response to a plain HTTP request."""

_TEXT = "text/plain; charset=utf-8"
# A cached 200 would hide the drain; cached metrics would hide the traffic.
_NO_STORE = ("Cache-Control", "no-store")


def plain_answer(
    settings: Settings,
    metrics: Metrics,
    path: str,
    method: str,
    *,
    serving: bool,
    accept: str = "",
) -> PlainAnswer | None:
    """The response to a plain (not WebSocket) ``method`` request for ``path``, if ``path``
    is the health or the metrics path; None for any other path.

    Each answers GET, and HEAD with the same status and no body; any other method gets 405.
    The health path answers 200 ``ok`` while ``serving``, else 503; the metrics path answers
    in the format the request's ``accept`` header prefers (Prometheus' text format, or
    OpenMetrics).
    """
    if path not in (settings.health_path, settings.metrics_path):
        return None
    if method not in ("GET", "HEAD"):
        headers = [("Content-Type", _TEXT), _NO_STORE, ("Allow", "GET, HEAD")]
        return 405, headers, b"this path answers GET and HEAD\n"
    if path == settings.health_path:
        status, body, content_type = (
            (200, b"ok\n", _TEXT) if serving else (503, b"shutting down\n", _TEXT)
        )
    else:
        from wsapp.operations.prometheus import exposition  # prometheus_client is an optional extra

        status = 200
        body, content_type = exposition(metrics, accept)
    return status, [("Content-Type", content_type), _NO_STORE], b"" if method == "HEAD" else body


def plain_refusal(router: Router[Any], path: str) -> Refusal:
    """The answer to a plain HTTP request for any other path: 426 where an endpoint serves
    ``path`` (it takes a handshake there), else the 404 a handshake there gets too.

    Routed first, so that a browser or curl pointed at a mistyped path learns the path is
    wrong, not that it spoke the wrong protocol.
    """
    if router.resolve(path) is None:
        return no_endpoint(path)
    return upgrade_required()
