"""Path patterns matched to endpoints, without a server."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from wsapp.endpoint import Endpoint, FunctionEndpoint
from wsapp.routing import Router


def router(*patterns: str, fallback: bool = False) -> tuple[Router[Endpoint], dict[str, Endpoint]]:
    """A router with one endpoint per pattern, in this order, and the endpoints by pattern."""
    endpoints: dict[str, Endpoint] = {pattern: FunctionEndpoint() for pattern in patterns}
    routes: Router[Endpoint] = Router(FunctionEndpoint() if fallback else None)
    for pattern, endpoint in endpoints.items():
        routes.add(pattern, endpoint)
    return routes, endpoints


def resolved(routes: Router[Endpoint], path: str) -> tuple[Endpoint, dict[str, Any]]:
    found = routes.resolve(path)
    assert found is not None, f"{path} did not resolve"
    return found


def params(pattern: str, path: str) -> dict[str, Any] | None:
    """The converted parameters ``path`` yields under ``pattern``, or None if it does not match."""
    found = router(pattern)[0].resolve(path)
    return None if found is None else found[1]


def test_a_static_pattern_matches_that_path_exactly() -> None:
    routes, endpoints = router("/chat")
    assert resolved(routes, "/chat") == (endpoints["/chat"], {})
    for other in ["/chat/", "/chat/x", "/chatroom", "/", "", "chat", "/CHAT"]:
        assert routes.resolve(other) is None, other


def test_the_pattern_outside_its_parameters_is_literal_not_a_regular_expression() -> None:
    assert params("/v1.0/a+b/(x)", "/v1.0/a+b/(x)") == {}
    assert params("/v1.0/a+b/(x)", "/v1x0/aab/x") is None


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/rooms/{room}", "/rooms/blue", {"room": "blue"}),
        ("/rooms/{room:str}", "/rooms/a b.c", {"room": "a b.c"}),
        ("/rooms/{room}", "/rooms/a/b", None),  # str stops at a slash
        ("/rooms/{room}", "/rooms/", None),  # and is never empty
        ("/users/{id:int}", "/users/42", {"id": 42}),
        ("/users/{id:int}", "/users/007", {"id": 7}),
        ("/users/{id:int}", "/users/-1", None),
        ("/users/{id:int}", "/users/4.2", None),
        ("/at/{x:float}", "/at/2.5", {"x": 2.5}),
        ("/at/{x:float}", "/at/3", {"x": 3.0}),
        ("/at/{x:float}", "/at/3.", None),
        ("/at/{x:float}", "/at/1e3", None),
        (
            "/s/{id:uuid}",
            "/s/12345678-ABCD-1234-abcd-1234567890ab",
            {"id": uuid.UUID("12345678-abcd-1234-abcd-1234567890ab")},
        ),
        ("/s/{id:uuid}", "/s/12345678-abcd-1234-abcd-1234567890a", None),
        ("/files/{rest:path}", "/files/a/b/c.txt", {"rest": "a/b/c.txt"}),
        ("/files/{rest:path}", "/files/", {"rest": ""}),
        (
            "/rooms/{room}/seats/{seat:int}",
            "/rooms/red/seats/3",
            {"room": "red", "seat": 3},
        ),
        ("/p/{a}-{b}", "/p/x-y", {"a": "x", "b": "y"}),
    ],
)
def test_parameters_match_their_type_and_come_out_converted(
    pattern: str, path: str, expected: dict[str, Any] | None
) -> None:
    got = params(pattern, path)
    assert got == expected
    if got is not None and expected is not None:  # 3 == 3.0: the types must match too
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in expected.items()}


def test_routes_are_tried_in_declaration_order() -> None:
    routes, endpoints = router("/users/me", "/users/{name}")
    assert resolved(routes, "/users/me") == (endpoints["/users/me"], {})
    assert resolved(routes, "/users/ann") == (endpoints["/users/{name}"], {"name": "ann"})
    routes, endpoints = router("/users/{name}", "/users/me")
    assert resolved(routes, "/users/me") == (endpoints["/users/{name}"], {"name": "me"})


def test_an_unmatched_path_goes_to_the_fallback_if_there_is_one_else_nowhere() -> None:
    routes, _ = router("/a", fallback=True)
    assert resolved(routes, "/elsewhere") == (routes.fallback, {})
    assert router("/a")[0].resolve("/elsewhere") is None  # the server answers 404


def test_replace_serves_a_pattern_with_another_endpoint_in_the_same_place() -> None:
    routes, _ = router("/a/{x}", "/a/b")
    replacement = FunctionEndpoint()
    routes.replace("/a/{x}", replacement)
    assert resolved(routes, "/a/b") == (replacement, {"x": "b"})  # still tried first
    assert [route.pattern for route in routes.routes] == ["/a/{x}", "/a/b"]
    with pytest.raises(KeyError):
        routes.replace("/never/declared", replacement)


def test_a_route_address_drops_the_converter_names() -> None:
    routes, _ = router("/users/{id:int}/files/{rest:path}")
    assert routes.routes[0].address == "/users/{id}/files/{rest}"


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("rooms/{room}", "must start with '/'"),
        ("", "must start with '/'"),
        ("/x/{n:number}", "unknown type 'number' for {n} in route '/x/{n:number}'; use one of str"),
        ("/x/{a}/{a:int}", "{a} appears twice"),
        ("/x/{a", "malformed parameter"),
        ("/x/a}", "malformed parameter"),
        ("/x/{1a}", "malformed parameter"),
        ("/x/{}", "malformed parameter"),
    ],
)
def test_a_malformed_pattern_is_refused_when_declared(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        router(pattern)


def test_a_pattern_declared_twice_is_refused() -> None:
    routes, _ = router("/a/{x}")
    with pytest.raises(ValueError, match=r"route '/a/\{x\}' is already declared"):
        routes.add("/a/{x}", FunctionEndpoint())
