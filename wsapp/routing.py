"""Path patterns like ``/rooms/{room}`` or ``/users/{id:int}``, matched to endpoints."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Route", "Router"]

_CONVERTERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "str": (r"[^/]+", str),
    "int": (r"[0-9]+", int),
    "float": (r"[0-9]+(?:\.[0-9]+)?", float),
    "uuid": (r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", uuid.UUID),
    "path": (r".*", str),
}
_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?}")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Route(Generic[T]):
    """One pattern and what it leads to: the endpoint serving a path, or (for room patterns,
    which share the syntax) the callback deciding who may join."""

    pattern: str
    target: T
    regex: re.Pattern[str]
    converters: Mapping[str, Callable[[str], Any]]
    #: The converter name of each parameter (`str`, `int`, `float`, `uuid`, `path`).
    kinds: Mapping[str, str]

    @property
    def address(self) -> str:
        """The pattern without converter names: ``/users/{id}`` for ``/users/{id:int}``."""
        return _PARAM.sub(r"{\1}", self.pattern)

    @classmethod
    def compile(cls, pattern: str, target: T) -> Route[T]:
        regex, converters, kinds, position = "", {}, {}, 0
        for match in _PARAM.finditer(pattern):
            name, kind = match.group(1), match.group(2) or "str"
            kinds[name] = kind
            if kind not in _CONVERTERS:
                raise ValueError(
                    f"unknown type {kind!r} for {{{name}}} in route {pattern!r}; "
                    f"use one of {', '.join(_CONVERTERS)}"
                )
            if name in converters:
                raise ValueError(f"{{{name}}} appears twice in route {pattern!r}")
            regex += re.escape(pattern[position : match.start()])
            regex += f"(?P<{name}>{_CONVERTERS[kind][0]})"
            converters[name] = _CONVERTERS[kind][1]
            position = match.end()
        if "{" in pattern[position:] or "}" in pattern[position:]:
            raise ValueError(f"malformed parameter in route {pattern!r}")
        regex += re.escape(pattern[position:])
        return cls(pattern, target, re.compile(regex), converters, kinds)

    def match(self, path: str) -> dict[str, Any] | None:
        found = self.regex.fullmatch(path)
        if found is None:
            return None
        return {name: convert(found[name]) for name, convert in self.converters.items()}


class Router(Generic[T]):
    """Routes in declaration order, then the fallback for every other path; each leads to a
    ``T`` (an app's endpoint: routing knows nothing of what it routes to)."""

    def __init__(self, fallback: T | None = None) -> None:
        self.routes: list[Route[T]] = []
        self.fallback = fallback

    def add(self, pattern: str, endpoint: T) -> None:
        if not pattern.startswith("/"):
            raise ValueError(f"route pattern {pattern!r} must start with '/'")
        if any(route.pattern == pattern for route in self.routes):
            raise ValueError(f"route {pattern!r} is already declared")
        self.routes.append(Route.compile(pattern, endpoint))

    def replace(self, pattern: str, endpoint: T) -> None:
        """Serve the declared ``pattern`` with another endpoint, keeping its place."""
        for index, route in enumerate(self.routes):
            if route.pattern == pattern:
                self.routes[index] = Route.compile(pattern, endpoint)
                return
        raise KeyError(pattern)

    def resolve(self, path: str) -> tuple[T, dict[str, Any]] | None:
        """The endpoint for ``path`` and its converted parameters, or None (404)."""
        for route in self.routes:
            params = route.match(path)
            if params is not None:
                return route.target, params
        if self.fallback is not None:
            return self.fallback, {}
        return None
