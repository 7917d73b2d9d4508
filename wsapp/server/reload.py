"""`python -m wsapp module:app --reload`: restart the server whenever its source changes.

For development only. The server runs in a child process, so that a restart loads the new
code from scratch (re-importing modules in place leaves stale objects behind); this process
watches the `.py` files under the watched directories, and on a change stops the child
gracefully with SIGHUP, which closes every connection with 1012 (service restart: clients
should reconnect), then starts a new one. A child that exits by itself (a syntax error, a
failed start-up hook) is restarted at the next change instead of ending the session.

Watching is a poll of modification times twice a second: no dependency, and the same on
every platform and file system (inotify misses changes on some network and container
mounts); the cost of a few thousand `stat` calls a second only matters on trees far larger
than an app's.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path

import anyio
from anyio.abc import Process

from wsapp.log import logger

__all__ = ["INTERVAL", "Reloader", "source_files"]

#: Seconds between two looks at the watched files.
INTERVAL = 0.5

#: Directories never watched: caches, virtual environments, version control.
_SKIPPED = {"__pycache__", "node_modules", "site-packages", ".git", ".venv", "venv", ".tox"}


def source_files(directories: Sequence[Path]) -> dict[Path, int]:
    """The `.py` files under ``directories``, with their modification times (ns)."""
    found: dict[Path, int] = {}
    for path in _walk(directories):
        try:
            found[path] = path.stat().st_mtime_ns
        except OSError:
            continue  # removed while walking: the next look sees it gone
    return found


def _walk(directories: Sequence[Path]) -> Iterator[Path]:
    for directory in directories:
        for root, subdirectories, files in os.walk(directory):
            subdirectories[:] = [
                name for name in subdirectories if name not in _SKIPPED and not name.startswith(".")
            ]
            for name in files:
                if name.endswith(".py"):
                    yield Path(root, name)


def _changed(before: dict[Path, int], after: dict[Path, int]) -> Path | None:
    """One file that was added, removed or modified between two looks, if any."""
    for path in before.keys() | after.keys():
        if before.get(path) != after.get(path):
            return path
    return None


class Reloader:
    """Runs the server as a child process and restarts it on every change of the sources.

    Args:
        command: The child's command line (the same `python -m wsapp ...`, without
            `--reload`).
        directories: Where to watch for changes.
    """

    def __init__(self, command: Sequence[str], directories: Sequence[Path]) -> None:
        self.command = list(command)
        self.directories = list(directories)
        self._child: Process | None = None
        self._stopping = False
        self._idle: anyio.CancelScope | None = None  # the wait for a change, no child running

    async def run(self) -> int:
        """Serve and restart until SIGINT/SIGTERM; the last child's exit status."""
        shown = ", ".join(str(directory) for directory in self.directories)
        logger.info("wsapp reloader (pid %d): watching %s for changes", os.getpid(), shown)
        status = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_signals)
            while not self._stopping:
                files = source_files(self.directories)
                status, restarted = await self._serve_once(files)
                if not restarted and not self._stopping:
                    logger.warning(
                        "the server exited with status %s; waiting for a change to restart it",
                        status,
                    )
                    # A change since the child started counts: it may be the fix already.
                    with anyio.CancelScope() as self._idle:
                        await self._wait_for_change(files)
            tg.cancel_scope.cancel()
        return status

    async def _serve_once(self, files: dict[Path, int]) -> tuple[int, bool]:
        """Run one child until a source changes from ``files`` (then stop it) or it exits:
        its exit status, and whether it was stopped for a change."""
        process = await anyio.open_process(
            self.command,
            stdin=None,
            stdout=None,
            stderr=None,
            # Its own session: a Ctrl-C reaches the reloader alone, which stops the child once
            # (the child takes a second signal as "force").
            start_new_session=True,
        )
        self._child = process
        restarted = False

        async def restart_on_change() -> None:
            nonlocal restarted
            changed = await self._wait_for_change(files)
            logger.info("%s changed: restarting the server", changed)
            restarted = True
            process.send_signal(signal.SIGHUP)  # a graceful stop, closing with 1012

        async with anyio.create_task_group() as tg:
            tg.start_soon(restart_on_change)
            status = await process.wait()
            tg.cancel_scope.cancel()
        self._child = None
        return status, restarted

    async def _wait_for_change(self, files: dict[Path, int]) -> Path:
        while True:
            await anyio.sleep(INTERVAL)
            changed = _changed(files, source_files(self.directories))
            if changed is not None:
                return changed

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self._stopping:
                    logger.info("%s received: stopping the server", name)
                self._stopping = True
                if self._idle is not None:
                    self._idle.cancel()
                if self._child is not None and self._child.returncode is None:
                    self._child.send_signal(signal.SIGTERM)  # a second one forces it
