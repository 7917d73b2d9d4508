"""`--workers` starts, or fails, as one process does: on a port a server that had clients
has just left (its connections in TIME-WAIT), and with the same one line for a host that does
not resolve and for a unix socket path holding another file (which it must not destroy)."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest

from tests.helpers import run_cli, serving
from tests.rawclient import OP_TEXT, RawClient, close_frame, frame
from tests.test_cli import assert_one_line_error
from tests.test_workers import port_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(40)]


def bind_refused(port: int) -> bool:
    """Whether a plain bind (no SO_REUSEADDR) of ``port`` is refused, as TIME-WAIT does."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
        return False


async def test_workers_start_where_a_stopped_server_left_connections_in_time_wait() -> None:
    async with serving("examples.echo:app", stop=True) as single:
        port = port_of(single)
        async with RawClient.connect(port) as raw:
            await raw.send(frame(OP_TEXT, b"hi"))
            assert await raw.read_frame() == (True, OP_TEXT, b"hi")
            single.process.terminate()
            assert (await raw.read_close())[0] == 1001
            await raw.send(close_frame(1001))
            # The server closes the TCP connection first, so TIME-WAIT is on its end (the
            # port), not on this client's: only then is the port left as the issue found it.
            await raw.read_eof()
    assert bind_refused(port), "the stopped server's end did not linger in TIME-WAIT"
    async with (
        serving("examples.echo:app", "--workers", "2", port=port, stop=True) as served,
        RawClient.connect(port) as raw,
    ):
        await served.wait_for(served.stderr, "wsapp serving ", 2)
        await raw.send(frame(OP_TEXT, b"again"))
        assert await raw.read_frame() == (True, OP_TEXT, b"again")


def test_workers_name_a_host_that_does_not_resolve_as_one_process_does() -> None:
    # The same line as tests/test_cli.py's test_unresolvable_host_names_the_host.
    host = "no.such.host.invalid"
    with pytest.raises(socket.gaierror) as failed:
        socket.getaddrinfo(host, 8000)
    reason = str(failed.value.strerror)
    result = run_cli("examples.echo:app", "--host", host, "--workers", "2")
    assert_one_line_error(
        result,
        f"cannot listen on {host}:8000: the host name does not resolve"
        f" ({reason[:1].lower()}{reason[1:]})",
    )


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one process", "workers"])
def test_a_unix_socket_path_holding_another_file_is_refused_and_kept(
    tmp_path: Path, workers: list[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    result = run_cli("examples.echo:app", "--uds", str(notes), *workers)
    assert_one_line_error(
        result,
        f"cannot listen on unix socket {notes}: the file exists and is not a socket;"
        " refusing to replace it (remove it or choose another path)",
    )
    assert notes.read_text() == "mine\n"
