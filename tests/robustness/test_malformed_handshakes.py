"""Malformed opening handshakes: each gets a 4xx status line, then a closed socket."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from tests.helpers import port, running
from tests.robustness.helpers import MiB, Tally, exchange, status_of, tally_app

pytestmark = pytest.mark.anyio

MAX_HEADER_SIZE = 16 * 1024
HANDSHAKE_TIMEOUT = 10
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # 16 bytes in base64 (RFC 6455's example)
FLOOD = 16 * MiB  # what a never-ending request offers; the server must stop reading long before


def request(
    method: str = "GET",
    version: str = "1.1",
    key: str | None = KEY,
    ws_version: str | None = "13",
    extra: str = "",
) -> bytes:
    lines = [
        f"{method} /chat HTTP/{version}",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
    ]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if ws_version is not None:
        lines.append(f"Sec-WebSocket-Version: {ws_version}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode("latin-1")


def endless(filler: bytes) -> Iterator[bytes]:
    """``filler`` repeated up to FLOOD bytes: the rest of a request head that never ends."""
    for _ in range(FLOOD // len(filler)):
        yield filler


NO_BLANK_LINE = b"".join(f"X-More-{i}: {'v' * 100}\r\n".encode() for i in range(500))  # 57 KB
HUGE_LINE = b"a" * 65536

# (request head, endless filler sent after it or b"", expected status)
CASES = [
    pytest.param(
        request(extra="".join(f"X-Pad-{i}: {'v' * 400}\r\n" for i in range(60))),  # 25 KB
        b"",
        431,
        id="header-block-over-max-header-size",
    ),
    pytest.param(b"GET / HTTP/1.1\r\nX-Huge: ", HUGE_LINE, 431, id="one-enormous-header-line"),
    pytest.param(request()[:-2], NO_BLANK_LINE, 431, id="headers-that-never-end"),
    pytest.param(request("POST"), b"", 405, id="POST-upgrade"),
    pytest.param(request("PUT"), b"", 405, id="PUT-upgrade"),
    pytest.param(request(version="1.0"), b"", 400, id="HTTP/1.0-upgrade"),
    pytest.param(request(key=None), b"", 400, id="missing-key"),
    pytest.param(request(key="!!!!not-base64!!!!!!!=="), b"", 400, id="key-not-base64"),
    pytest.param(request(key="AAAAAAAAAAAAAAAAAAAA"), b"", 400, id="key-of-15-bytes"),
    pytest.param(request(key="AAAAAAAAAAAAAAAAAAAAAAA="), b"", 400, id="key-of-17-bytes"),
    pytest.param(request(extra=f"Sec-WebSocket-Key: {KEY}\r\n"), b"", 400, id="two-keys"),
    pytest.param(request(ws_version=None), b"", 426, id="missing-version"),
    pytest.param(request(ws_version="12"), b"", 426, id="version-12"),
    pytest.param(request(ws_version="13, 8"), b"", 426, id="two-versions"),
    pytest.param(
        b"\x16\x03\x01\x02\x00\x01\x00\xff\xfe\x00garbage\r\n\r\n", b"", 400, id="binary-garbage"
    ),
    pytest.param(request(extra="X-Evil: a\x00b\r\n"), b"", 400, id="NUL-in-a-header-value"),
    pytest.param(request(extra="X-Folded: a\r\n continued\r\n"), b"", 400, id="folded-header-line"),
    pytest.param(request(extra="X-Bad : value\r\n"), b"", 400, id="space-before-colon"),
    pytest.param(
        request(key="\xa0" + KEY),  # found by test_fuzz: a no-break space before the key
        b"",
        400,
        id="non-ASCII-key",
    ),
]


@pytest.mark.parametrize(("head", "filler", "status"), CASES)
async def test_malformed_handshake_gets_a_4xx_then_a_closed_socket(
    head: bytes, filler: bytes, status: int
) -> None:
    tally = Tally()
    app = tally_app(tally, max_header_size=MAX_HEADER_SIZE, handshake_timeout=HANDSHAKE_TIMEOUT)
    chunks = [head, *endless(filler)] if filler else [head]
    async with running(app) as server:
        # exchange() returns only once the server has closed the socket: the bad head must end
        # the connection, not the handshake timer.
        with anyio.fail_after(HANDSHAKE_TIMEOUT):
            response, sent = await exchange(port(server), chunks)
    assert status_of(response) == status, response[:200]
    assert response.endswith(b"\n")  # the whole response arrived before the close
    assert sent < FLOOD  # a never-ending head was cut off, not read to the end
    if status == 426:
        assert b"\r\nSec-WebSocket-Version: 13\r\n" in response
    if status == 405:
        assert b"\r\nAllow: GET\r\n" in response
    assert tally.opened == 0 and tally.closed == 0
