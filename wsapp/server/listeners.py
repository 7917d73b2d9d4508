"""Listening sockets (TCP, unix, TLS) and the accept loop that must never die."""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl
import stat
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketListener

from wsapp.concurrency import Nursery
from wsapp.log import RateLimitedLog
from wsapp.settings import ConfigError

__all__ = ["ListenError", "accept_forever", "open_listeners", "ssl_context_from_files"]

#: accept() failures that mean "out of a resource for now", not "this listener is broken".
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: accept() failures that concern one client only (it left before it was accepted).
CLIENT_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ECONNRESET})
#: Seconds the accept loop pauses after a failure: the first pause, and the longest.
BACKOFF_FIRST = 0.01
BACKOFF_MAX = 1.0


class ListenError(OSError):
    """The server cannot listen where it was asked to; the message names the address and why.

    An `OSError` (with the original `errno`), as the failure it explains.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(code, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _reason(exc: OSError) -> str:
    """``Permission denied`` as it reads inside a sentence: ``permission denied``."""
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def _read_pem(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {_reason(exc)}") from None


def ssl_context_from_files(certfile: str, keyfile: str | None = None) -> ssl.SSLContext:
    """A server TLS context from PEM files (``keyfile`` may be inside ``certfile``).

    Raises [ConfigError][wsapp.ConfigError] saying which file is wrong and how: missing or
    unreadable, no certificate, no private key, a key that is not the certificate's, or an
    encrypted key (which would otherwise make OpenSSL prompt on the terminal).
    """
    # OpenSSL's own errors ("[SSL] PEM lib") say none of this, so look at the files first.
    certificate = _read_pem(certfile, "certificate file")
    key = certificate if keyfile is None else _read_pem(keyfile, "key file")
    if b"-----BEGIN CERTIFICATE-----" not in certificate:
        raise ConfigError(
            f"certificate file {certfile} holds no PEM certificate "
            "(a '-----BEGIN CERTIFICATE-----' block); give the certificate (chain) in PEM form"
        )
    if b"PRIVATE KEY-----" not in key:
        if keyfile is None:
            raise ConfigError(
                f"certificate file {certfile} holds no private key: give the key file too "
                "(--keyfile, or keyfile= in code), or append the key to the certificate file"
            )
        raise ConfigError(
            f"key file {keyfile} holds no PEM private key (a '-----BEGIN ... PRIVATE KEY-----' "
            "block)"
        )
    key_path = keyfile or certfile

    def no_passphrase() -> NoReturn:
        raise ConfigError(
            f"the private key in {key_path} is encrypted and wsapp does not ask for passphrases: "
            f"decrypt it first (openssl pkey -in {key_path} -out decrypted-key.pem)"
        )

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile, password=no_passphrase)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                f"the private key in {key_path} does not match the certificate in {certfile}: "
                "give the key the certificate was issued for"
            ) from None
        files = certfile if keyfile is None else f"{certfile} with key {keyfile}"
        raise ConfigError(
            f"cannot load the TLS certificate {files}: {exc.reason or exc} "
            "(check that both are valid PEM)"
        ) from None
    return context


def _local_url(listener: SocketListener, scheme: str) -> str:
    bound_host, bound_port = listener.extra(SocketAttribute.local_address)[:2]  # type: ignore[str-unpack]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    return f"{scheme}://{shown}:{bound_port}"


async def open_listeners(
    host: str | None,
    port: int,
    uds: str | None,
    ssl_context: ssl.SSLContext | None,
    *,
    reuse_port: bool = False,
    fd: int | None = None,
) -> tuple[list[SocketListener], list[str]]:
    """Listening sockets (one per address the host resolves to) and the URL of each.

    ``reuse_port`` shares the port with other processes' sockets (`SO_REUSEPORT`: the
    kernel spreads connections over them); ``fd`` serves a listening socket inherited from
    the supervisor instead of opening one. Raises `ListenError` naming the address when it
    cannot be listened on, and [ConfigError][wsapp.ConfigError] for a port out of range.
    """
    scheme = "wss" if ssl_context else "ws"
    if fd is not None:
        inherited = await SocketListener.from_socket(socket.socket(fileno=fd))
        if uds is not None:
            return [inherited], [f"{scheme}+unix://{uds}"]
        return [inherited], [_local_url(inherited, scheme)]
    if uds is not None:
        return [await _unix_listener(uds)], [f"{scheme}+unix://{uds}"]
    if not 0 <= port <= 65535:
        raise ConfigError(f"port must be 0-65535, not {port}")
    try:
        multi = await anyio.create_tcp_listener(
            local_host=host, local_port=port, reuse_port=reuse_port
        )
    except OSError as exc:
        raise listen_error(exc, host, port) from None
    # anyio types them as Listener; they are its socket listeners, which can accept().
    listeners = [listener for listener in multi.listeners if isinstance(listener, SocketListener)]
    assert len(listeners) == len(multi.listeners)
    return listeners, [_local_url(listener, scheme) for listener in listeners]


def listen_error(exc: OSError, host: str | None, port: int, uds: str | None = None) -> ListenError:
    """What ``exc``, raised opening the listening socket, tells the user: the address and why
    (the built-in server and the `--workers` supervisor say it in the same words)."""
    if isinstance(exc, ListenError):
        return exc
    if uds is not None:
        return ListenError(f"cannot listen on unix socket {uds}: {_reason(exc)}", exc.errno)
    if host is None:
        where = f"port {port} of every interface"
    else:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return ListenError(f"cannot listen on {where}: {_listen_reason(exc, port)}", exc.errno)


def _listen_reason(exc: OSError, port: int) -> str:
    if isinstance(exc, socket.gaierror):
        return f"the host name does not resolve ({_reason(exc)})"
    if exc.errno == errno.EADDRINUSE:
        return "address already in use (is another server running?)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "no network interface of this machine has that address"
    if exc.errno == errno.EACCES and 0 < port < 1024:
        return "permission denied (ports below 1024 need privileges; use a higher one)"
    return _reason(exc)


def remove_stale_socket(path: str) -> None:
    """Remove the socket file a previous run left at ``path``; any other file is refused
    (`ListenError`), since replacing it would destroy what someone put there."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ListenError(
            f"cannot listen on unix socket {path}: the file exists and is not a socket; "
            "refusing to replace it (remove it or choose another path)",
            errno.EEXIST,
        )
    os.unlink(path)


async def _unix_listener(path: str) -> SocketListener:
    try:
        remove_stale_socket(path)  # one stat at start-up: not worth a worker thread
        return await anyio.create_unix_listener(path)
    except OSError as exc:
        raise listen_error(exc, None, 0, path) from None


def _errno(exc: BaseException) -> int | None:
    """The errno of an accept() failure, which anyio may wrap in a BrokenResourceError."""
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, OSError) and candidate.errno is not None:
            return candidate.errno
    return None


async def accept_forever(
    accept: Callable[[], Awaitable[ByteStream]],
    handle: Callable[[ByteStream], Coroutine[Any, Any, None]],
    task_group: Nursery,
) -> None:
    """Accept connections (``accept()`` returns the next one, see
    [acceptor][wsapp.server.streams.acceptor]) and start ``handle`` for each in
    ``task_group``, until cancelled or the listener is closed.

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
            stream = await accept()
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
