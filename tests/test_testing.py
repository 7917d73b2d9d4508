"""wsapp.testing: the in-process test client, in the ways a user's tests would use it."""

from __future__ import annotations

import textwrap
from typing import Literal

import anyio
import pytest

import wsapp
from examples import auth, chat_typed, echo, subprotocols
from tests.helpers import ONE_CONNECTION_RUN, TIMEOUT, Trace, hooked_app, traced_app
from wsapp.testing import HandshakeRefused, SecondRunWarning, TestClient, connect

pytestmark = pytest.mark.anyio


async def test_messages_both_ways_and_a_clean_close() -> None:
    trace = Trace()
    async with connect(traced_app(trace), "/chat?x=1") as ws:
        await ws.send("text")
        assert await ws.receive() == "text"
        await ws.send(b"\x00binary")
        assert await ws.receive_bytes() == b"\x00binary"
        await ws.send_json({"n": 1})
        assert await ws.receive_json() == {"n": 1}
    # Leaving the block closes with 1000 and waits for the app's on_close.
    assert ws.close_code == 1000
    assert trace.close_args == (True, 1000, "")
    assert trace.names() == ["connect", "open", "message", "message", "message", "close"]
    assert trace.events[0] == ("connect", "/chat")


async def test_receive_times_out_instead_of_hanging() -> None:
    # Long enough for the handshake and the close on a loaded machine, which it also bounds.
    async with connect(echo.app, timeout=0.5) as ws:
        with pytest.raises(TimeoutError, match=r"no message from the app within 0.5s"):
            await ws.receive()
        await ws.send("still open")
        assert await ws.receive(timeout=TIMEOUT) == "still open"


async def test_close_codes_and_reasons_both_ways() -> None:
    trace = Trace()
    app = traced_app(trace)
    async with connect(app) as ws:
        await ws.send("close-me")
        with pytest.raises(wsapp.ConnectionClosed) as closed:
            await ws.receive()
        assert (closed.value.code, closed.value.reason) == (4000, "as you wish")
        assert (ws.close_code, ws.close_reason) == (4000, "as you wish")
    assert trace.close_args == (True, 4000, "as you wish")

    async with connect(app) as ws:
        await ws.close(4001, "test done")
    assert trace.close_args == (True, 4001, "test done")

    async with connect(app) as ws:
        await ws.send("fail")  # the handler raises
        await ws.wait_closed()
        assert ws.close_code == 1011
    assert trace.close_args == (True, 1011, "internal error")


async def test_refusals_carry_status_headers_and_body() -> None:
    with pytest.raises(HandshakeRefused) as refused:
        async with connect(auth.app, "/"):
            pass
    assert refused.value.status == 401
    assert refused.value.headers["www-authenticate"] == "Bearer"
    assert refused.value.body == b"a valid token is required"
    assert "refused with 401" in str(refused.value)

    with pytest.raises(HandshakeRefused) as refused:
        async with connect(auth.app, "/", headers={"Origin": "https://evil.example"}):
            pass
    assert refused.value.status == 403

    async with connect(auth.app, "/", headers=[("Authorization", "Bearer s3cret")]) as ws:
        assert await ws.receive() == "hello alice"


async def test_subprotocol_response_headers_path_params_and_client_address() -> None:
    app = wsapp.App(subprotocols=["v2"])

    @app.route("/rooms/{room}/{seat:int}")
    class Room(wsapp.Connector):
        async def on_connect(self, request: wsapp.Request) -> None:
            self.conn.response_headers["X-Room"] = request.path_params["room"]

        async def on_open(self) -> None:
            request = self.conn.request
            await self.conn.send(f"{request.path_params['seat'] + 1} {request.client}")

    async with connect(app, "/rooms/blue/41", subprotocols=["v1", "v2"]) as ws:
        assert ws.subprotocol == "v2"
        assert ws.response_headers["x-room"] == "blue"
        assert await ws.receive() == "42 Address(host='127.0.0.1', port=50000)"
    with pytest.raises(HandshakeRefused) as refused:
        async with connect(app, "/rooms/blue/not-a-number"):
            pass
    assert refused.value.status == 404


async def test_settings_overrides_apply_to_the_client_run() -> None:
    async with connect(echo.app, max_message_size=10) as ws:
        await ws.send("x" * 11)
        await ws.wait_closed()
    assert (ws.close_code, ws.close_reason) == (1009, "message over 10 bytes")


async def test_an_exception_in_the_test_body_comes_out_as_itself() -> None:
    with pytest.raises(LookupError, match="from the test"):
        async with connect(echo.app):
            raise LookupError("from the test")


async def test_connect_alone_is_one_whole_run_with_the_hooks() -> None:
    trace = Trace()
    async with connect(hooked_app(trace)) as ws:
        assert await ws.receive() == "hello from startup"  # app.state, set by a hook
    assert trace.names() == ONE_CONNECTION_RUN


async def test_an_entered_client_shares_one_run_between_connections() -> None:
    trace = Trace()
    async with TestClient(hooked_app(trace)) as client:
        async with client.connect() as first, client.connect() as second:
            await first.send("1")
            await second.send("2")
            assert await first.receive_text() == await second.receive_text()  # greetings
            assert (await first.receive(), await second.receive()) == ("1", "2")
        assert trace.names().count("close") == 2
    assert trace.names()[:2] == ["startup 1", "startup 2"]
    assert trace.names()[-2:] == ["shutdown 1", "shutdown 2"]
    assert len(trace.names()) == 2 + 2 * 2 + 2  # one run: each hook once


async def test_a_failing_start_up_hook_fails_the_client_with_its_name() -> None:
    app = wsapp.App()

    @app.on_startup
    async def connect_database() -> None:
        raise ConnectionRefusedError("db is down")

    with pytest.raises(wsapp.LifespanError, match=r"'.*connect_database' failed: .*db is down"):
        async with connect(app):
            pass


async def test_mixing_sync_and_async_use_of_one_client_is_refused() -> None:
    async with TestClient(echo.app) as client:
        with pytest.raises(RuntimeError, match=r"use `async with client\.connect"):
            with client.connect():
                pass


# Plain tests: the sync form runs the app in a portal thread, on asyncio or Trio.


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_use(backend: Literal["asyncio", "trio"]) -> None:
    trace = Trace()
    with TestClient(hooked_app(trace), backend=backend) as client:
        with client.connect() as a, client.connect() as b:
            assert a.receive() == b.receive() == "hello from startup"
            a.send("a")
            b.send_json([1])
            assert a.receive() == "a"
            assert b.receive_json() == [1]
        with client.connect() as c:
            c.close(4002, "done")
            assert (c.close_code, c.close_reason) == (4002, "done")
    assert trace.events.count(("close", True, 4002, "done")) == 1
    assert trace.names().count("close") == 3
    assert trace.names()[-1] == "shutdown 2"


def test_sync_connect_shorthand_and_refusal() -> None:
    with connect(subprotocols.app, subprotocols=["json.v1"]) as ws:
        assert ws.subprotocol == "json.v1"
        ws.send('{"a": 1}')
        assert ws.receive_text() == '{"a": 1}'
        with pytest.raises(TimeoutError):
            ws.receive(timeout=0.01)
    with pytest.raises(HandshakeRefused) as refused, connect(subprotocols.app, subprotocols=["x"]):
        pass
    assert refused.value.status == 400


def test_the_pytest_fixture(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nwsapp_timeout = 0.2\n")
    pytester.makepyfile(
        textwrap.dedent(
            """
            import pytest
            import wsapp

            @pytest.fixture
            def app():
                app = wsapp.App()

                @app.on_message
                async def echo(conn, message):
                    await conn.send(message)

                return app

            def test_sync(wsapp_client):
                with wsapp_client.connect("/") as ws:
                    ws.send("hi")
                    assert ws.receive() == "hi"

            @pytest.mark.anyio
            @pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
            async def test_async(wsapp_client, anyio_backend):
                async with wsapp_client.connect("/") as ws:
                    with pytest.raises(TimeoutError, match="within 0.2s"):
                        await ws.receive()  # the ini option's timeout
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "anyio", timeout=TIMEOUT * 4)
    result.assert_outcomes(passed=3)


def test_the_fixture_explains_a_missing_app_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_it(wsapp_client):\n    pass\n")
    result = pytester.runpytest_subprocess(timeout=TIMEOUT * 4)
    result.assert_outcomes(errors=1)
    result.stdout.no_fnmatch_line("*During handling*")
    result.stdout.fnmatch_lines(["*wsapp_client fixture needs a fixture named `app`*"])


async def test_models_and_json_go_out_as_json_text() -> None:
    async with connect(chat_typed.app) as ws:
        await ws.send(chat_typed.Join(type="join", name="ann"))
        assert await ws.receive_json() == {
            "type": "said",
            "name": "server",
            "text": "ann joined",
        }
        assert await ws.receive_json() == {"type": "welcome", "members": ["ann"]}
        await ws.send_json({"type": "say", "text": chat_typed.Said(name="x", text="y")})
        assert (await ws.receive_json())["type"] == "error"  # text must be a string


async def test_a_connection_opened_inside_another_run_of_the_app_warns_of_the_second_run() -> None:
    app = wsapp.App()
    started: list[str] = []

    @app.on_message
    async def echo(conn: wsapp.Connection, message: str) -> None:
        await conn.send(message)

    @app.background
    async def ticker() -> None:
        started.append("ticker")
        await anyio.sleep_forever()

    with anyio.fail_after(10):
        async with connect(app, "/") as outer:
            with pytest.warns(SecondRunWarning, match="open the connections from one TestClient"):
                async with connect(app, "/"):
                    pass
            await outer.send("still here")
        assert started == ["ticker", "ticker"]  # what the warning is about
        started.clear()
        async with TestClient(app) as client, client.connect("/"), client.connect("/"):
            pass
        assert started == ["ticker"]  # one run, however many connections
