"""Running out of file descriptors is a state to wait out, not a reason to die.

The server runs as `python -m wsapp` with a low RLIMIT_NOFILE; a burst of clients takes every
descriptor it has. It must log that (once, not per failed accept()), go on serving the
connection it already had, and accept again once the burst has gone.
"""

from __future__ import annotations

import signal

import anyio
import pytest
from anyio.abc import SocketStream

from tests.helpers import serving
from tests.rawclient import OP_TEXT, RawClient, frame

pytestmark = pytest.mark.anyio

#: Enough for the interpreter, the event loop and a handful of connections.
MAX_FILES = 64
BURST = 150
EMFILE = "cannot accept connections: Too many open files (EMFILE)"


async def echoes(raw: RawClient, text: bytes) -> bool:
    await raw.send(frame(OP_TEXT, text))
    return await raw.read_frame() == (True, OP_TEXT, text)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.timeout(30)
async def test_the_server_survives_a_burst_above_its_descriptor_limit(backend: str) -> None:
    async with serving("examples.echo:app", "--backend", backend, max_files=MAX_FILES) as served:
        port = int(served.url.rsplit(":", 1)[1])
        async with RawClient.connect(port) as before:
            assert await echoes(before, b"before the burst")
            burst: list[SocketStream] = []
            try:
                for _ in range(BURST):  # the kernel queues what the server cannot accept
                    burst.append(await anyio.connect_tcp("127.0.0.1", port))
                await served.wait_for(served.stderr, EMFILE)
                assert await echoes(before, b"during the burst")
            finally:
                for stream in burst:
                    await stream.aclose()
            assert await echoes(before, b"after the burst")
        async with RawClient.connect(port) as newcomer:  # accepting again
            assert await echoes(newcomer, b"a new client")
        served.process.send_signal(signal.SIGTERM)
    assert served.process.returncode == 0
    # Every failed accept() in the burst was logged as one line, not one each.
    assert sum(EMFILE in line for line in served.stderr) == 1
