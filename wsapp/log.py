"""The `wsapp` logger, its text and JSON line formats, and a log for problems that can recur
many times a second."""

from __future__ import annotations

import json
import logging
import math
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
    "TextFormatter",
    "client_text",
    "configure_logging",
    "connection_fields",
    "log_close",
    "log_open",
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


def log_open(conn: Logged) -> None:
    """The `open` line of a connection accepted (101 sent): its id, path and client."""
    if logger.isEnabledFor(logging.INFO):  # else nothing is made, not even the fields
        client = client_text(conn.request.client)
        logger.info(
            "open %s %s client=%s",
            conn.id,
            conn.request.path,
            client,
            extra=connection_fields(conn),
            stacklevel=2,  # the record names the caller of log_open, as if it logged
        )


def log_close(conn: Logged, code: int, clean: bool, duration: float) -> None:
    """The `close` line of a connection that ended: its close code, whether both close
    frames were exchanged, and ``duration``, the seconds it was open."""
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            "close %s %s code=%s clean=%s duration=%.3fs",
            conn.id,
            conn.request.path,
            code,
            clean,
            duration,
            extra=connection_fields(conn, code=code, clean=clean, duration=duration),
            stacklevel=2,
        )


class TextFormatter(logging.Formatter):
    """`time level logger: message`, a worker's with its process id (`wsapp[4242]:`), and
    the traceback of a line that has one below it.

    The time is logging's own `asctime` (local time, `2026-12-04 18:00:00,123`), its part
    before the milliseconds formatted once per second rather than for every line."""

    def __init__(self, worker: bool = False) -> None:
        pid = "[%(process)d]" if worker else ""
        super().__init__(f"%(asctime)s %(levelname)s %(name)s{pid}: %(message)s")
        self._second: tuple[int | None, object, str, str] = (None, None, "", "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt:
            return super().formatTime(record, datefmt)
        # What the second looks like depends on the converter and the format too: both are
        # class attributes a program may set (`logging.Formatter.converter = time.gmtime`).
        second, converter, layout = (
            math.floor(record.created),
            self.converter,
            self.default_time_format,
        )
        cached, cached_converter, cached_layout, shown = self._second
        if second != cached or converter != cached_converter or layout != cached_layout:
            shown = time.strftime(layout, converter(record.created))
            self._second = (second, converter, layout, shown)
        if self.default_msec_format:
            return self.default_msec_format % (shown, record.msecs)
        return shown


class JSONFormatter(logging.Formatter):
    """One JSON object per line: `time` (UTC, ISO 8601), `level`, `logger`, `message`,
    `pid`, then whichever of `FIELDS` the line has, and `exception` with the traceback."""

    #: What `json.dumps(entry, ensure_ascii=False, default=str)` builds for every call.
    encoder = json.JSONEncoder(ensure_ascii=False, default=str)

    def __init__(self) -> None:
        super().__init__()
        self._second: tuple[float | None, str] = (None, "")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.utc_time(record.created),
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
        return self.encoder.encode(entry)

    def utc_time(self, created: float) -> str:
        """``created`` (seconds since the epoch) as `datetime.fromtimestamp(created,
        UTC).isoformat(timespec="milliseconds")` shows it, with `Z` for `+00:00`; the
        part before the milliseconds is formatted once per second."""
        # fromtimestamp's own rounding: to the microsecond, half to even, carried into the
        # second; isoformat then truncates to the millisecond.
        fraction, second = math.modf(created)
        micro = round(fraction * 1e6)
        if micro >= 1_000_000:
            micro, second = micro - 1_000_000, second + 1
        elif micro < 0:
            micro, second = micro + 1_000_000, second - 1
        cached, shown = self._second
        if second != cached:
            shown = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")[:-6]
            self._second = (second, shown)
        return f"{shown}.{micro // 1000:03d}Z"


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
        handler.setFormatter(TextFormatter(worker))
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
