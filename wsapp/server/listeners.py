"""Listening sockets (TCP, unix, TLS) and the accept loop that must never die."""

from __future__ import annotations

import errno
import logging
import os
import ssl
import stat
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketListener, TaskGroup

from wsapp.log import RateLimitedLog

__all__ = ["accept_forever", "open_listeners", "ssl_context_from_files"]

#: accept() failures that mean "out of a resource for now", not "this listener is broken".
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: accept() failures that concern one client only (it left before it was accepted).
CLIENT_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ECONNRESET})
#: Seconds the accept loop pauses after a failure: the first pause, and the longest.
BACKOFF_FIRST = 0.01
BACKOFF_MAX = 1.0


def ssl_context_from_files(certfile: str, keyfile: str | None = None) -> ssl.SSLContext:
    """A server TLS context from PEM files (``keyfile`` may be inside ``certfile``)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


def _local_url(listener: SocketListener, scheme: str) -> str:
    bound_host, bound_port = listener.extra(SocketAttribute.local_address)[:2]  # type: ignore[str-unpack]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    return f"{scheme}://{shown}:{bound_port}"


async def open_listeners(
    host: str | None, port: int, uds: str | None, ssl_context: ssl.SSLContext | None
) -> tuple[list[SocketListener], list[str]]:
    """Listening sockets (one per address the host resolves to) and the URL of each."""
    scheme = "wss" if ssl_context else "ws"
    if uds is not None:
        if await anyio.Path(uds).exists():
            if not stat.S_ISSOCK((await anyio.Path(uds).stat()).st_mode):
                raise OSError(f"{uds} exists and is not a socket; refusing to replace it")
            os.unlink(uds)  # a stale socket from a previous run
        listener = await anyio.create_unix_listener(uds)
        return [listener], [f"{scheme}+unix://{uds}"]
    multi = await anyio.create_tcp_listener(local_host=host, local_port=port)
    # anyio types them as Listener; they are its socket listeners, which can accept().
    listeners = [listener for listener in multi.listeners if isinstance(listener, SocketListener)]
    assert len(listeners) == len(multi.listeners)
    return listeners, [_local_url(listener, scheme) for listener in listeners]


def _errno(exc: BaseException) -> int | None:
    """The errno of an accept() failure, which anyio may wrap in a BrokenResourceError."""
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, OSError) and candidate.errno is not None:
            return candidate.errno
    return None


async def accept_forever(
    listener: SocketListener,
    handle: Callable[[ByteStream], Coroutine[Any, Any, None]],
    task_group: TaskGroup,
) -> None:
    """Accept connections and start ``handle`` for each in ``task_group``, until cancelled
    or the listener is closed.

    Nothing that accept() raises ends the loop: running out of file descriptors (or
    memory) is the normal state of a server under a burst of clients, and the open
    connections must go on being served. The loop logs (at most every few seconds), pauses
    a little longer after each consecutive failure, and accepts again as soon as it can.
    """
    resource_log = RateLimitedLog()
    error_log = RateLimitedLog()
    backoff = BACKOFF_FIRST
    while True:
        try:
            stream = await listener.accept()
        except anyio.ClosedResourceError:
            return  # the server closed its listener: shutting down
        except Exception as exc:
            code = _errno(exc)
            if code in CLIENT_ERRNOS:
                continue  # that client is gone; the next one is waiting
            if code in RESOURCE_ERRNOS:
                resource_log.warning(
                    "cannot accept connections: %s (%s); open connections are still served, "
                    "and accepting resumes as soon as descriptors are free. Raise the limit "
                    "(ulimit -n) or lower max_connections",
                    os.strerror(code),
                    errno.errorcode[code],
                )
            else:
                error_log.log(logging.ERROR, "accept() failed; retrying", exc_info=True)
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            continue
        backoff = BACKOFF_FIRST
        task_group.start_soon(handle, stream)
