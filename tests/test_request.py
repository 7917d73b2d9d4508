"""The request callbacks see, without a server: the client behind proxies, parsed fields.

tests/test_handshake.py checks the same through a real server, once.
"""

from __future__ import annotations

import pytest

from wsapp import Address, Headers, Request
from wsapp.request import client_address

PROXY = Address("10.0.0.2", 50123)  # the peer of the connection, in most cases below
PROXIES = ["10.0.0.0/8"]


def client(
    headers: list[tuple[str, str]], trusted: list[str], peer: Address | None = PROXY
) -> Address | None:
    return client_address(peer, Headers(headers), trusted)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param([("X-Forwarded-For", "203.0.113.9")], Address("203.0.113.9", 0), id="xff"),
        pytest.param(
            [("X-Forwarded-For", "203.0.113.9:4711")], Address("203.0.113.9", 4711), id="xff-port"
        ),
        pytest.param(
            [("X-Forwarded-For", "2001:db8::1")], Address("2001:db8::1", 0), id="xff-ipv6"
        ),
        pytest.param(
            [("X-Forwarded-For", "[2001:db8::1]:4711")],
            Address("2001:db8::1", 4711),
            id="xff-ipv6-port",
        ),
        pytest.param(
            [("Forwarded", "for=192.0.2.60;proto=https;by=10.0.0.2")],
            Address("192.0.2.60", 0),
            id="forwarded",
        ),
        pytest.param(
            [("Forwarded", 'For="[2001:db8:cafe::17]:4711"')],
            Address("2001:db8:cafe::17", 4711),
            id="forwarded-ipv6-port",
        ),
        pytest.param(
            [("Forwarded", 'for="[2001:db8::2]"')], Address("2001:db8::2", 0), id="forwarded-ipv6"
        ),
        # RFC 7239 is the standard; X-Forwarded-For counts only without it.
        pytest.param(
            [("X-Forwarded-For", "198.51.100.1"), ("Forwarded", "for=192.0.2.60")],
            Address("192.0.2.60", 0),
            id="forwarded-wins",
        ),
        pytest.param(
            [("Forwarded", "proto=https"), ("X-Forwarded-For", "198.51.100.1")],
            Address("198.51.100.1", 0),
            id="forwarded-without-for",
        ),
        pytest.param([], PROXY, id="no-header"),
        pytest.param([("X-Forwarded-For", "")], PROXY, id="empty-header"),
    ],
)
def test_a_trusted_proxy_names_the_client(
    headers: list[tuple[str, str]], expected: Address
) -> None:
    assert client(headers, PROXIES) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # The client sent its own X-Forwarded-For; our proxy appended the address it saw.
        pytest.param(
            [("X-Forwarded-For", "6.6.6.6, 203.0.113.9")], "203.0.113.9", id="forged-first-hop"
        ),
        # Two of our proxies in a row: the first address that is not one of ours.
        pytest.param(
            [("X-Forwarded-For", "6.6.6.6, 203.0.113.9, 10.1.1.1")],
            "203.0.113.9",
            id="through-two-proxies",
        ),
        # The same chain over several header lines, in order.
        pytest.param(
            [("X-Forwarded-For", "6.6.6.6"), ("x-forwarded-for", "203.0.113.9, 10.1.1.1")],
            "203.0.113.9",
            id="several-lines",
        ),
        pytest.param(
            [("Forwarded", "for=6.6.6.6, for=203.0.113.9"), ("Forwarded", "for=10.1.1.1")],
            "203.0.113.9",
            id="forwarded-chain",
        ),
        # Every hop is one of ours: the farthest one is the best we know.
        pytest.param([("X-Forwarded-For", "10.9.9.9, 10.1.1.1")], "10.9.9.9", id="all-trusted"),
    ],
)
def test_a_forged_chain_cannot_hide_the_address_our_proxy_saw(
    headers: list[tuple[str, str]], expected: str
) -> None:
    found = client(headers, PROXIES)
    assert found is not None
    assert found.host == expected


@pytest.mark.parametrize(
    ("trusted", "peer"),
    [
        pytest.param([], PROXY, id="nobody-trusted"),
        pytest.param(["10.0.0.3", "192.168.0.0/16"], PROXY, id="peer-not-listed"),
        pytest.param(["unix"], PROXY, id="only-unix-trusted"),
        pytest.param(["::1"], Address("2001:db8::7", 1), id="ipv6-peer-not-listed"),
    ],
)
def test_an_untrusted_peer_is_the_client_whatever_it_claims(
    trusted: list[str], peer: Address
) -> None:
    assert client([("X-Forwarded-For", "203.0.113.9")], trusted, peer) == peer


def test_an_ipv6_proxy_is_trusted_by_its_network() -> None:
    peer = Address("2001:db8::7", 1)
    assert client([("Forwarded", "for=192.0.2.60")], ["2001:db8::/32"], peer) == Address(
        "192.0.2.60", 0
    )


def test_a_unix_socket_peer_is_trusted_only_as_unix() -> None:
    headers = [("X-Forwarded-For", "203.0.113.9")]
    assert client(headers, ["unix"], peer=None) == Address("203.0.113.9", 0)
    assert client(headers, ["unix", "10.0.0.0/8"], peer=None) == Address("203.0.113.9", 0)
    assert client(headers, ["127.0.0.1"], peer=None) is None  # no address to report
    assert client(headers, [], peer=None) is None


def test_the_query_string_is_parsed_with_repeated_and_blank_keys_kept() -> None:
    request = Request("GET", "/", "/", "q=1&q=2&empty=&plus=a+b&enc=%26%3D&flag", Headers(), None)
    assert request.query_params.getlist("q") == ["1", "2"]
    assert request.query_params["q"] in ("1", "2")
    assert request.query_params["empty"] == ""
    assert request.query_params["plus"] == "a b"  # form encoding, as browsers send it
    assert request.query_params["enc"] == "&="
    assert request.query_params["flag"] == ""
    assert "missing" not in request.query_params


def test_offered_subprotocols_and_extensions_are_listed_in_order() -> None:
    headers = Headers(
        [
            ("Sec-WebSocket-Protocol", "chat, superchat"),
            ("sec-websocket-protocol", "v3"),
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits, x-foo"),
            ("Origin", "https://app.example"),
        ]
    )
    request = Request("GET", "/", "/", "", headers, None)
    assert request.subprotocols == ("chat", "superchat", "v3")
    assert request.extensions == ("permessage-deflate; client_max_window_bits", "x-foo")
    assert request.origin == "https://app.example"
    bare = Request("GET", "/", "/", "", Headers(), None)
    assert (bare.subprotocols, bare.extensions, bare.origin) == ((), (), None)


@pytest.mark.parametrize(
    ("target", "parts"),
    [
        ("/", ("/", "/", "")),
        ("/rooms/a%20b?x=1", ("/rooms/a b", "/rooms/a%20b", "x=1")),
        ("/a?x=1?y=2", ("/a", "/a", "x=1?y=2")),  # only the first `?` starts the query
        ("/caf%C3%A9?", ("/café", "/caf%C3%A9", "")),
    ],
)
def test_a_request_target_splits_into_path_raw_path_and_query(
    target: str, parts: tuple[str, str, str]
) -> None:
    assert Request.split_target(target) == parts
