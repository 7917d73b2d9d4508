"""The `wsapp` logger, its text and JSON line formats, and a log for problems that can recur
many times a second."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from wsapp.request import Address, Request

__all__ = [
    "FIELDS",
    "JSONFormatter",
    "LogFormat",
    "Logged",
    "RateLimitedLog",
    "client_text",
    "configure_logging",
    "connection_fields",
    "logger",
]

logger = logging.getLogger("wsapp")

LogFormat = Literal["text", "json"]

#: What a line about one connection or handshake carries besides its text (logging's
#: `extra`): JSON lines show each as a key of its own.
FIELDS = ("connection", "path", "client", "status", "code", "clean", "duration")


def client_text(address: Address | None) -> str:
    """A client address as log lines show it: ``host:port``, or ``-`` if none (unix socket)."""
    return f"{address.host}:{address.port}" if address else "-"


class Logged(Protocol):
    """What a log line about a connection shows of it (a [Connection][wsapp.Connection] is one)."""

    @property
    def id(self) -> str: ...

    @property
    def request(self) -> Request: ...


def connection_fields(conn: Logged, **more: Any) -> dict[str, Any]:
    """The fields of a log line about ``conn``, for JSON logs (see `FIELDS`)."""
    client = client_text(conn.request.client)
    return {"connection": conn.id, "path": conn.request.path, "client": client, **more}


class JSONFormatter(logging.Formatter):
    """One JSON object per line: `time` (UTC, ISO 8601), `level`, `logger`, `message`,
    `pid`, then whichever of `FIELDS` the line has, and `exception` with the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str = "info", worker: bool = False, style: LogFormat = "text") -> None:
    """Log wsapp's lines to stderr at ``level``, as `python -m wsapp` and `app.run()` do,
    as text or (``style="json"``) one JSON object per line, unless the program already
    configured logging (a handler on the root logger or on `wsapp`'s): then its
    configuration stands, and no line is printed twice. A worker's text lines carry its
    process id (JSON lines always do)."""
    if logging.getLogger().handlers or logger.handlers:
        return
    handler = logging.StreamHandler()
    if style == "json":
        handler.setFormatter(JSONFormatter())
    else:
        pid = "[%(process)d]" if worker else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s %(name)s{pid}: %(message)s")
        )
    logging.basicConfig(level=level.upper(), handlers=[handler])


class RateLimitedLog:
    """Logs a recurring problem at most once per ``interval`` seconds.

    A server out of file descriptors fails every `accept()`; a log line per failure would
    flood the log (and the disk) at exactly the moment an operator needs to read it. The
    lines skipped in between are counted and the count is reported with the next line.
    """

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._next = float("-inf")
        self._suppressed = 0

    def log(self, level: int, message: str, *args: Any, exc_info: bool = False) -> bool:
        """Log ``message`` unless one was logged less than ``interval`` ago; True if logged."""
        now = self._clock()
        if now < self._next:
            self._suppressed += 1
            return False
        if self._suppressed:
            message += f" ({self._suppressed} more like it since the last report)"
        self._suppressed = 0
        self._next = now + self.interval
        logger.log(level, message, *args, exc_info=exc_info)
        return True

    def warning(self, message: str, *args: Any) -> bool:
        return self.log(logging.WARNING, message, *args)
