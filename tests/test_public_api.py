"""The public API, pinned: internal modules may move, what users import may not (silently)."""

from __future__ import annotations

import wsapp
import wsapp.testing

#: Everything `import wsapp` offers. A change here is a change users see: say so in the docs.
PUBLIC = [
    "Address",
    "App",
    "CloseCode",
    "ConfigError",
    "Connection",
    "ConnectionClosed",
    "Connector",
    "Headers",
    "InvalidMessage",
    "JoinRefused",
    "LifespanError",
    "Message",
    "MutableHeaders",
    "Publisher",
    "QueryParams",
    "Reject",
    "Request",
    "RouteHandlers",
    "Server",
    "Settings",
    "WriteTimeout",
]

TESTING = [
    "HandshakeRefused",
    "SecondRunWarning",
    "SyncWebSocket",
    "TestClient",
    "WebSocket",
    "connect",
]


def test_the_public_names_are_exactly_these() -> None:
    assert sorted(wsapp.__all__) == PUBLIC
    assert all(getattr(wsapp, name) is not None for name in PUBLIC)
    assert sorted(wsapp.testing.__all__) == TESTING
    assert all(getattr(wsapp.testing, name) is not None for name in TESTING)


def test_the_app_decorators_are_there_on_the_app_and_on_routes() -> None:
    decorators = ["on_connect", "on_open", "on_message", "on_invalid", "on_close"]
    app = wsapp.App()
    route = app.route("/r")
    for name in decorators:
        assert callable(getattr(app, name)) and callable(getattr(route, name))
    for name in ["on_startup", "on_shutdown", "lifespan", "route", "allow_any_origin"]:
        assert callable(getattr(app, name))
    for name in ["create_server", "serve", "run"]:
        assert callable(getattr(app, name))
    assert [code.value for code in wsapp.CloseCode][:3] == [1000, 1001, 1002]
