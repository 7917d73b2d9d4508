"""The HTTP side of the opening handshake (RFC 6455 section 4), without I/O.

Bytes of a request head go in; a parsed head, a validated key, or a :class:`Refusal`
carrying the HTTP response to send come out. Nothing here knows about sockets or callbacks.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus

from wsapp.datastructures import Headers
from wsapp.protocol.deflate import PerMessageDeflate
from wsapp.protocol.limits import CompressionOptions

__all__ = [
    "Refusal",
    "RequestHead",
    "http_response",
    "is_websocket_upgrade",
    "negotiate_deflate",
    "no_endpoint",
    "parse_request_head",
    "switching_protocols",
    "upgrade_required",
    "websocket_key",
]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEADER_COUNT = 100
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rf"({_TOKEN}) (\S+) HTTP/(\d\.\d)")
_HEADER_LINE = re.compile(rf"({_TOKEN}):[ \t]*(.*?)[ \t]*")
_FORBIDDEN_IN_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class Refusal(Exception):
    """A handshake refused with this HTTP response; every refusal, whoever decides it.

    Raised by the parsing and validation functions of this module and by the admission
    checks; `on_connect`'s [Reject][wsapp.Reject] becomes one too. Transports turn it into
    their host's form of an HTTP response.

    Attributes:
        status: The HTTP status code.
        reason: Why, for the log line (may say more than the client is told).
        headers: Extra response headers.
        body: The response body (by default the reason, as one line of text).
    """

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.headers = list(headers)
        self.body = reason.encode() + b"\n" if body is None else body

    def response(self) -> bytes:
        """The whole HTTP/1.1 response."""
        return http_response(self.status, self.headers, self.body)


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A parsed HTTP/1.1 request line and header block."""

    method: str
    target: str
    http_version: str
    headers: Headers


def parse_request_head(head: bytes) -> RequestHead:
    """Parse a request head (everything before the blank line that ends it).

    Strict on purpose: a WebSocket client is a program, not a hand-typed request, so
    anything unusual (obsolete line folding, bytes outside Latin-1 text, a missing Host)
    is far more likely an attack or a bug than a client worth accommodating.
    """
    lines = head.decode("latin-1").split("\r\n")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise Refusal(400, "malformed request line")
    method, target, version = match.groups()
    if version != "1.1":
        raise Refusal(400, "WebSocket handshakes need HTTP/1.1")
    if len(lines) - 1 > _MAX_HEADER_COUNT:
        raise Refusal(431, f"more than {_MAX_HEADER_COUNT} header lines")
    pairs: list[tuple[str, str]] = []
    for line in lines[1:]:
        header = _HEADER_LINE.fullmatch(line)
        if header is None or _FORBIDDEN_IN_VALUE.search(header[2]):
            raise Refusal(400, "malformed header line")
        pairs.append((header[1], header[2]))
    headers = Headers(pairs)
    if len(headers.getlist("host")) != 1:
        raise Refusal(400, "exactly one Host header is required")
    if not target.startswith("/"):
        raise Refusal(400, "request target must be a path")
    return RequestHead(method, target, version, headers)


def _has_token(headers: Headers, name: str, token: str) -> bool:
    return any(item.lower() == token for item in headers.get_tokens(name))


def is_websocket_upgrade(headers: Headers) -> bool:
    """True when the request asks for a WebSocket upgrade at all (else it is plain HTTP)."""
    return _has_token(headers, "upgrade", "websocket")


def upgrade_required() -> Refusal:
    """The answer to a plain HTTP request on a WebSocket endpoint."""
    return Refusal(
        426,
        "this is a WebSocket endpoint; send a WebSocket handshake",
        [("Upgrade", "websocket"), ("Connection", "Upgrade")],
    )


def no_endpoint(path: str) -> Refusal:
    """The answer to any request, handshake or plain HTTP, on a path no endpoint serves."""
    return Refusal(404, f"no WebSocket endpoint at {path}")


def websocket_key(head: RequestHead) -> str:
    """Validate an upgrade request (RFC 6455 section 4.2.1) and return its key."""
    headers = head.headers
    if not is_websocket_upgrade(headers):
        raise upgrade_required()
    if head.method != "GET":
        raise Refusal(405, "WebSocket handshakes use GET", [("Allow", "GET")])
    if not _has_token(headers, "connection", "upgrade"):
        raise Refusal(400, "the Connection header must include 'Upgrade'")
    if headers.getlist("sec-websocket-version") != ["13"]:
        raise Refusal(
            426, "unsupported WebSocket version; use 13", [("Sec-WebSocket-Version", "13")]
        )
    if "content-length" in headers or "transfer-encoding" in headers:
        raise Refusal(400, "a WebSocket handshake has no body")
    keys = headers.getlist("sec-websocket-key")
    try:
        valid = len(keys) == 1 and len(base64.b64decode(keys[0], validate=True)) == 16
    except ValueError:  # binascii.Error, or non-ASCII characters
        valid = False
    if not valid:
        raise Refusal(400, "Sec-WebSocket-Key must be 16 random bytes in base64")
    return keys[0]


def http_response(status: int, headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> bytes:
    """A complete HTTP/1.1 response; the connection closes after it."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [f"HTTP/1.1 {status} {phrase}"]
    names = set()
    for name, value in headers:
        names.add(name.lower())
        lines.append(f"{name}: {value}")
    if "content-type" not in names and body:
        lines.append("Content-Type: text/plain; charset=utf-8")
    lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def switching_protocols(key: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """The ``101 Switching Protocols`` response accepting ``key``, with extra ``headers``."""
    digest = hashlib.sha1(key.encode("ascii") + _GUID).digest()
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {base64.b64encode(digest).decode('ascii')}",
    ]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


_DEFLATE_FLAGS = ("server_no_context_takeover", "client_no_context_takeover")
_DEFLATE_BITS = ("server_max_window_bits", "client_max_window_bits")
_WINDOW_BITS = re.compile(r"[89]|1[0-5]")


def _parse_deflate_params(params: list[str]) -> dict[str, int | None] | None:
    """The parameters of one permessage-deflate offer, or None when the offer is invalid."""
    parsed: dict[str, int | None] = {}
    for param in params:
        name, eq, raw = (part.strip() for part in param.partition("="))
        name = name.lower()
        if name in parsed or name not in _DEFLATE_FLAGS + _DEFLATE_BITS:
            return None
        if name in _DEFLATE_FLAGS:
            if eq:
                return None
            parsed[name] = None
            continue
        value = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
        if not eq and name == "client_max_window_bits":
            parsed[name] = None  # "I can honour a limit", without naming one
        elif _WINDOW_BITS.fullmatch(value):
            parsed[name] = int(value)
        else:
            return None
    return parsed


def negotiate_deflate(
    offers: list[str], settings: CompressionOptions
) -> tuple[PerMessageDeflate, str] | None:
    """Accept the first permessage-deflate offer we can honour (RFC 7692 section 7.1).

    Returns the configured extension and the ``Sec-WebSocket-Extensions`` response value,
    or None when compression is off or no offer is acceptable (the connection then runs
    uncompressed, which every client must accept). ``settings`` is the connection's own
    copy: its ``max_message_size`` bounds inflation.
    """
    if not settings.compression:
        return None
    for offer in offers:
        name, *raw_params = (part.strip() for part in offer.split(";"))
        if name.lower() != "permessage-deflate":
            continue
        params = _parse_deflate_params(raw_params)
        if params is None:
            continue
        server_bits = settings.compression_server_max_window_bits
        if (requested := params.get("server_max_window_bits")) is not None:
            server_bits = min(server_bits, requested)
        client_bits = settings.compression_client_max_window_bits
        if "client_max_window_bits" in params:
            client_bits = min(client_bits, params["client_max_window_bits"] or 15)
        elif client_bits < 15:
            continue  # this client cannot limit its window, and we require it to
        server_nct = (
            settings.compression_server_no_context_takeover
            or "server_no_context_takeover" in params
        )
        client_nct = settings.compression_client_no_context_takeover
        response = ["permessage-deflate"]
        if server_nct:
            response.append("server_no_context_takeover")
        if client_nct:
            response.append("client_no_context_takeover")
        if server_bits < 15 or "server_max_window_bits" in params:
            response.append(f"server_max_window_bits={server_bits}")
        if client_bits < 15:
            response.append(f"client_max_window_bits={client_bits}")
        extension = PerMessageDeflate(
            settings,
            server_max_window_bits=server_bits,
            server_no_context_takeover=server_nct,
            client_no_context_takeover=client_nct,
        )
        return extension, "; ".join(response)
    return None
