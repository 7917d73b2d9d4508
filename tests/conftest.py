"""Fixtures and hooks: every async test runs on asyncio and on Trio, within a deadline.

Helpers the tests import (servers, clients, traces) live in tests/helpers.py.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Generator
from typing import Any

import anyio
import pytest
from hypothesis import settings

from tests.helpers import TIMEOUT

pytest_plugins = ["pytester"]  # tests of wsapp's own pytest plugin

# The property tests are bounded by their number of examples, not by a time per example: on a
# loaded 2-core CI machine one example of a few hundred frames can take more than hypothesis'
# default 200 ms, which would fail a test whose answers were all right.
settings.register_profile("wsapp", deadline=None)
settings.load_profile("wsapp")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """Bound every async test by a deadline, in its own event loop: a test that hangs fails
    (its tasks cancelled, its servers shut down) instead of stalling the suite."""
    test = pyfuncitem.obj
    if not inspect.iscoroutinefunction(test):
        return (yield)
    marker = pyfuncitem.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker is not None else TIMEOUT

    @functools.wraps(test)
    async def bounded(*args: Any, **kwargs: Any) -> Any:
        with anyio.CancelScope(deadline=anyio.current_time() + limit) as scope:
            return await test(*args, **kwargs)
        if scope.cancelled_caught:
            pytest.fail(f"timed out after {limit}s (mark the test @pytest.mark.timeout(...))")

    pyfuncitem.obj = bounded
    try:
        return (yield)
    finally:
        pyfuncitem.obj = test


@pytest.fixture
def wsapp_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="wsapp")
    return caplog
