"""The health path: how a load balancer learns whether to send this process new clients.

Answered over plain HTTP by the built-in server and under ASGI alike: 200 while the server
serves, 503 from the moment it starts shutting down. A balancer (or a Kubernetes readiness
probe) that polls the path takes the process out of rotation before its listeners close,
provided the shutdown waits long enough first: that wait is the `drain_delay` setting.
"""

from __future__ import annotations

__all__ = ["HealthAnswer", "health_answer"]

HealthAnswer = tuple[int, list[tuple[str, str]], bytes]
"""Status, headers and body of a response to the health path."""

_HEADERS = [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")]


def health_answer(method: str, serving: bool) -> HealthAnswer:
    """The response to ``method`` on the health path: 200 ``ok`` while ``serving``, else 503;
    HEAD gets the same status without the body, any other method 405."""
    if method not in ("GET", "HEAD"):
        return 405, [*_HEADERS, ("Allow", "GET, HEAD")], b"the health path answers GET and HEAD\n"
    status, body = (200, b"ok\n") if serving else (503, b"shutting down\n")
    return status, _HEADERS, b"" if method == "HEAD" else body
