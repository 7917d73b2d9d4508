"""The first example of the Testing page, as it appears there: `python -m pytest
examples/test_echo.py`."""

import pytest

from examples.echo import app
from wsapp.testing import connect


@pytest.mark.anyio
async def test_echo() -> None:
    async with connect(app, "/", headers={"Authorization": "Bearer s3cret"}) as ws:
        await ws.send("hi")
        assert await ws.receive() == "hi"


def test_echo_sync() -> None:
    with connect(app, "/") as ws:
        ws.send("hi")
        assert ws.receive() == "hi"
