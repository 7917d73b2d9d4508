"""Multi-valued mappings for HTTP headers and query parameters."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import ClassVar

__all__ = ["Headers", "MutableHeaders", "QueryParams"]


class _MultiMapping(Mapping[str, str]):
    """Ordered ``(key, value)`` pairs; ``m[key]`` is the first value, ``getlist`` all of them.

    Kept flat, keys and values alternating, in one tuple: a request's headers live as long as
    its connection, and a tuple per pair would cost an idle connection half a KiB.
    """

    __slots__ = ("_flat",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        normalize = self._normalize
        self._flat: tuple[str, ...] | list[str] = tuple(
            part for key, value in items for part in (normalize(key), value)
        )

    @staticmethod
    def _normalize(key: str) -> str:
        return key

    def _pairs(self) -> Iterator[tuple[str, str]]:
        flat = self._flat
        return zip(flat[::2], flat[1::2], strict=True)

    def __getitem__(self, key: str) -> str:
        key = self._normalize(key)
        for item_key, value in self._pairs():
            if item_key == key:
                return value
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        key = self._normalize(key)
        return key in self._flat[::2]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(self._flat[::2]))

    def __len__(self) -> int:
        return len(dict.fromkeys(self._flat[::2]))

    def getlist(self, key: str) -> list[str]:
        """Every value of ``key``, in the order received (empty if absent)."""
        key = self._normalize(key)
        return [value for item_key, value in self._pairs() if item_key == key]

    def get_tokens(self, key: str) -> list[str]:
        """The comma-separated items of every ``key`` value, stripped, empties dropped."""
        return [
            item.strip() for value in self.getlist(key) for item in value.split(",") if item.strip()
        ]

    def multi_items(self) -> list[tuple[str, str]]:
        """Every ``(key, value)`` pair, repeats included, in the order received."""
        return list(self._pairs())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.multi_items()!r})"


class QueryParams(_MultiMapping):
    """The parsed query string of the handshake request: keys are case-sensitive."""

    __slots__ = ()


class Headers(_MultiMapping):
    """Read-only HTTP headers: case-insensitive names, repeated names kept in order."""

    __slots__ = ()

    @staticmethod
    def _normalize(key: str) -> str:
        # Interned: every request has the same few names, which every open connection would
        # otherwise keep a copy of (an interned string is freed once no one uses it).
        return sys.intern(key.lower())


class MutableHeaders(Headers):
    """Headers a callback may add to a response.

    Names that the WebSocket handshake itself controls are refused, because setting them by
    hand would corrupt the handshake; each has a dedicated API instead.
    """

    __slots__ = ()

    _RESERVED: ClassVar[dict[str, str]] = {
        "upgrade": "it is always 'websocket'",
        "connection": "it is always 'Upgrade'",
        "sec-websocket-accept": "it is derived from the client's key",
        "sec-websocket-protocol": "set conn.subprotocol instead",
        "sec-websocket-extensions": "set conn.settings.compression instead",
        "content-length": "it is computed from the body",
    }

    def _check(self, key: str, value: str) -> str:
        key = self._normalize(key)
        if why := self._RESERVED.get(key):
            raise ValueError(f"response header {key!r} cannot be set by hand: {why}")
        if any(c in key or c in value for c in "\r\n\0") or not key:
            raise ValueError(f"invalid response header {key!r}: {value!r}")
        return key

    def __setitem__(self, key: str, value: str) -> None:
        """Set ``key`` to this one value, replacing any earlier values."""
        key = self._check(key, value)
        kept = [part for pair in self._pairs() if pair[0] != key for part in pair]
        self._flat = [*kept, key, value]

    def append(self, key: str, value: str) -> None:
        """Add a value for ``key``, keeping earlier ones (for repeatable headers)."""
        self._flat = [*self._flat, self._check(key, value), value]
