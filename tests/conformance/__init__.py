"""Wire-level conformance tests against RFC 6455 (WebSocket) and RFC 7692 (permessage-deflate)."""
