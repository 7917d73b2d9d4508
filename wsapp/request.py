"""The handshake request as callbacks see it: read-only and fully parsed."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

from wsapp.datastructures import Headers, QueryParams

__all__ = ["Address", "Request", "client_address", "is_origin_allowed"]


class Address(NamedTuple):
    """A peer's network address; ``port`` is 0 when a proxy did not report it."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Request:
    """The opening handshake of a connection.

    Attributes:
        method: The HTTP method (always `GET` once the handshake is accepted).
        path: The percent-decoded path, as routes match it.
        raw_path: The path exactly as sent.
        query_string: The raw query string, without the `?`.
        query_params: The parsed query string (repeated keys kept).
        headers: Case-insensitive, multi-valued request headers.
        client: The client's address (from a trusted proxy's header when configured),
            or None on a unix socket with no proxy information.
        path_params: Values captured by the route pattern, converted to their types.
        subprotocols: Subprotocols the client offered, in its order of preference.
        extensions: Extensions the client offered, as raw header items.
        origin: The `Origin` header, if the client is a browser.
        scheme: `ws` or `wss`.
        http_version: The HTTP version of the request, e.g. `1.1`.
    """

    method: str
    path: str
    raw_path: str
    query_string: str
    headers: Headers
    client: Address | None
    path_params: Mapping[str, Any] = field(default_factory=dict)
    scheme: str = "ws"
    http_version: str = "1.1"
    query_params: QueryParams = field(init=False)
    subprotocols: tuple[str, ...] = field(init=False)
    extensions: tuple[str, ...] = field(init=False)
    origin: str | None = field(init=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(
            self, "query_params", QueryParams(parse_qsl(self.query_string, keep_blank_values=True))
        )
        set_(self, "subprotocols", tuple(self.headers.get_tokens("sec-websocket-protocol")))
        set_(self, "extensions", tuple(self.headers.get_tokens("sec-websocket-extensions")))
        set_(self, "origin", self.headers.get("origin"))

    @staticmethod
    def split_target(target: str) -> tuple[str, str, str]:
        """``(path, raw_path, query_string)`` of a request target like ``/a%20b?x=1``."""
        raw_path, _, query = target.partition("?")
        return unquote(raw_path), raw_path, query


def _is_trusted(host: str | None, trusted: list[str]) -> bool:
    if host is None:
        return "unix" in trusted
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(
        item != "unix" and address in ipaddress.ip_network(item, strict=False) for item in trusted
    )


def _forwarded_hops(headers: Headers) -> list[str]:
    """Client addresses named by proxies, nearest proxy last (RFC 7239, else X-Forwarded-For)."""
    hops = []
    for element in headers.get_tokens("forwarded"):
        for pair in element.split(";"):
            key, _, value = pair.strip().partition("=")
            if key.strip().lower() == "for":
                hops.append(value.strip().strip('"'))
    return hops or headers.get_tokens("x-forwarded-for")


def _parse_hop(hop: str) -> Address:
    if hop.startswith("["):  # [v6]:port
        host, _, port = hop[1:].partition("]")
        port = port.lstrip(":")
    elif hop.count(":") == 1:
        host, port = hop.split(":")
    else:
        host, port = hop, ""
    return Address(host, int(port) if port.isdigit() else 0)


def client_address(peer: Address | None, headers: Headers, trusted: list[str]) -> Address | None:
    """The real client: the peer itself, unless it is a trusted proxy that names one.

    Walks the forwarded chain from the nearest hop outward and stops at the first address
    that is not itself a trusted proxy, so a client cannot forge its address by sending its
    own ``X-Forwarded-For``.
    """
    if not trusted or not _is_trusted(peer.host if peer else None, trusted):
        return peer
    client = peer
    for hop in reversed(_forwarded_hops(headers)):
        client = _parse_hop(hop)
        if not _is_trusted(client.host, trusted):
            break
    return client


def is_origin_allowed(request: Request, allowed_origins: list[str]) -> bool:
    """Same-origin requests, requests without Origin (non-browsers) and listed origins pass.

    `Origin: null` (sandboxed iframes, local files) passes only if `"null"` is listed, and
    only spelled exactly so, as browsers send it.
    """
    origin = request.origin
    if origin is None or "*" in allowed_origins:
        return True
    if origin == "null":
        return "null" in allowed_origins
    origin = origin.lower().rstrip("/")
    if origin != "null" and origin in allowed_origins:
        return True
    host = request.headers.get("host", "").lower()
    return urlsplit(origin).netloc == host != ""
