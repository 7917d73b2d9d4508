"""The `wsapp` logger, and a log for problems that can recur many times a second."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["RateLimitedLog", "configure_logging", "logger"]

logger = logging.getLogger("wsapp")


def configure_logging(level: str = "info", worker: bool = False) -> None:
    """Log wsapp's lines to stderr at ``level``, as `python -m wsapp` and `app.run()` do,
    unless the program already configured logging (a handler on the root logger or on
    `wsapp`'s): then its configuration stands, and no line is printed twice. A worker's
    lines carry its process id."""
    if logging.getLogger().handlers or logger.handlers:
        return
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s"
        + ("[%(process)d]" if worker else "")
        + ": %(message)s",
    )


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
