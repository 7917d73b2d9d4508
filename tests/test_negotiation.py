"""permessage-deflate negotiation (RFC 7692 section 7) and request-head parsing, sans I/O."""

from __future__ import annotations

from typing import Any

import pytest

from wsapp.protocol.handshake import Refusal, negotiate_deflate, parse_request_head
from wsapp.settings import Settings


def negotiate(offers: list[str], **settings: Any) -> str | None:
    result = negotiate_deflate(offers, Settings(compression=True, **settings))
    return None if result is None else result[1]


@pytest.mark.parametrize(
    ("offers", "settings", "response"),
    [
        (["permessage-deflate"], {}, "permessage-deflate"),
        (["permessage-deflate; client_max_window_bits"], {}, "permessage-deflate"),
        # The client asks us to limit our window: we must, and must say so.
        (
            ["permessage-deflate; server_max_window_bits=10"],
            {},
            "permessage-deflate; server_max_window_bits=10",
        ),
        (
            ['permessage-deflate; server_max_window_bits="12"'],
            {},
            "permessage-deflate; server_max_window_bits=12",
        ),
        # Our own, smaller, limit wins over the client's larger one.
        (
            ["permessage-deflate; server_max_window_bits=12"],
            {"compression_server_max_window_bits": 9},
            "permessage-deflate; server_max_window_bits=9",
        ),
        (
            ["permessage-deflate; server_no_context_takeover"],
            {},
            "permessage-deflate; server_no_context_takeover",
        ),
        (
            ["permessage-deflate; client_max_window_bits"],
            {
                "compression_client_max_window_bits": 10,
                "compression_client_no_context_takeover": True,
            },
            "permessage-deflate; client_no_context_takeover; client_max_window_bits=10",
        ),
        # A client that cannot limit its window cannot meet our limit: no compression.
        (["permessage-deflate"], {"compression_client_max_window_bits": 10}, None),
        # Invalid offers are declined, and the next acceptable one is taken.
        (
            ["permessage-deflate; server_max_window_bits=16", "permessage-deflate"],
            {},
            "permessage-deflate",
        ),
        (
            ["permessage-deflate; unknown_param", "permessage-deflate; server_no_context_takeover"],
            {},
            "permessage-deflate; server_no_context_takeover",
        ),
        (["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], {}, None),
        (["permessage-deflate; server_no_context_takeover=1"], {}, None),
        (["permessage-deflate; server_max_window_bits"], {}, None),  # a value is required
        (["x-webkit-deflate-frame"], {}, None),
    ],
)
def test_deflate_negotiation(
    offers: list[str], settings: dict[str, Any], response: str | None
) -> None:
    assert negotiate(offers, **settings) == response


def test_deflate_is_not_negotiated_when_off() -> None:
    assert negotiate_deflate(["permessage-deflate"], Settings()) is None


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\n folded: x", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b", 400),
        (b"GET http://a/ HTTP/1.1\r\nHost: a", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: \x01", 400),
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"Host: a", 431),
    ],
)
def test_malformed_request_heads_are_refused(head: bytes, status: int) -> None:
    with pytest.raises(Refusal) as caught:
        parse_request_head(head)
    assert caught.value.status == status


def test_request_head_keeps_repeated_headers_in_order() -> None:
    head = parse_request_head(b"GET /p?q=1 HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a:  2 ")
    assert (head.method, head.target, head.headers.getlist("X-A")) == ("GET", "/p?q=1", ["1", "2"])
