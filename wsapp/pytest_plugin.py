"""The pytest plugin (registered by the `pytest11` entry point): a `wsapp_client` fixture.

Define a fixture named `app` that returns your [App][wsapp.App]; `wsapp_client` is then a
[TestClient][wsapp.testing.TestClient] for it, with the timeout from the `wsapp_timeout`
ini option (5 seconds by default).
"""

from __future__ import annotations

import pytest

from wsapp.app import App
from wsapp.testing import DEFAULT_TIMEOUT, TestClient

__all__ = ["wsapp_client"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "wsapp_timeout",
        "seconds the wsapp_client fixture waits for a message, a close or a handshake",
        default=str(DEFAULT_TIMEOUT),
    )


@pytest.fixture
def wsapp_client(request: pytest.FixtureRequest) -> TestClient:
    """A TestClient for the app your `app` fixture returns."""
    missing = object()
    try:
        app = request.getfixturevalue("app")
    except pytest.FixtureLookupError:
        app = missing  # failing here would print pytest's lookup error before ours
    if app is missing:
        pytest.fail(
            "the wsapp_client fixture needs a fixture named `app` returning your wsapp.App",
            pytrace=False,
        )
    if not isinstance(app, App):
        pytest.fail(
            f"the `app` fixture returned a {type(app).__name__}, not a wsapp.App", pytrace=False
        )
    raw = request.config.getini("wsapp_timeout")
    try:
        timeout = float(raw)
    except ValueError:
        pytest.fail(f"wsapp_timeout must be a number of seconds, not {raw!r}", pytrace=False)
    return TestClient(app, timeout=timeout)
