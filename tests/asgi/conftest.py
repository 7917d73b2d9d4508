"""The `host` fixture: every ASGI host of tests/asgi/hosts.py, on every event loop it runs on."""

from __future__ import annotations

import pytest

from tests.asgi.hosts import HOSTS, Host


@pytest.fixture(params=[pytest.param(host, id=host.name, marks=host.marks) for host in HOSTS])
def host(request: pytest.FixtureRequest, anyio_backend: str) -> Host:
    chosen: Host = request.param
    if anyio_backend == "trio" and not chosen.trio:
        pytest.skip(f"{chosen.name}: uvicorn has no Trio support (it runs on asyncio only)")
    return chosen
