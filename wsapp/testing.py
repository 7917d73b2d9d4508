"""Test your app in-process: a client that drives it through wsapp's real code path.

`connect(app, "/path")` hands the app an in-memory byte stream, exactly as if a socket had been
accepted, and talks to it with an independent client (wsproto's client side): the handshake
bytes, the frames, the lifecycle and the callbacks are the production ones; only the network
is missing. Every wait has a timeout, so a test that expects a message that never comes fails
instead of hanging.

Use it with `async with` in async tests (asyncio or Trio) and with `with` in plain tests:

    async with connect(app, "/rooms/a") as ws:
        await ws.send("hi")
        assert await ws.receive() == "hi"

    with connect(app, "/rooms/a") as ws:
        ws.send("hi")
        assert ws.receive() == "hi"
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.from_thread import BlockingPortal, start_blocking_portal
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from pydantic import BaseModel
from pydantic_core import to_json
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    TextMessage,
)
from wsproto.events import Request as HandshakeRequest

from wsapp.datastructures import Headers
from wsapp.exceptions import ConnectionClosed
from wsapp.lifecycle import serving
from wsapp.protocol import CloseCode, Message
from wsapp.request import Address
from wsapp.server.handler import StreamHandler
from wsapp.server.streams import STREAM_ERRORS
from wsapp.settings import resolve_settings

if TYPE_CHECKING:
    from wsapp.app import App

__all__ = [
    "HandshakeRefused",
    "SecondRunWarning",
    "SyncWebSocket",
    "TestClient",
    "WebSocket",
    "connect",
]

ABNORMAL = CloseCode.ABNORMAL_CLOSURE
#: Seconds any single wait of the test client may take unless told otherwise.
DEFAULT_TIMEOUT = 5.0

HeadersLike = Mapping[str, str] | Iterable[tuple[str, str]]


class HandshakeRefused(Exception):
    """The app refused the handshake (`Reject`, a 404, a 403 for a foreign origin...).

    Attributes:
        status: The HTTP status code.
        headers: The response headers.
        body: The response body.
    """

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        super().__init__(f"the handshake was refused with {status}: {body[:200]!r}")
        self.status: int = status
        self.headers: Headers = headers
        self.body: bytes = body


class _Pipe(anyio.abc.ByteStream):
    """One end of an in-memory byte stream pair (what a socket would be)."""

    def __init__(
        self,
        outgoing: MemoryObjectSendStream[bytes],
        incoming: MemoryObjectReceiveStream[bytes],
        peer: Address | None,
    ) -> None:
        self._outgoing = outgoing
        self._incoming = incoming
        self._peer = peer
        self._pending = b""

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self._pending:
            self._pending = await self._incoming.receive()
        data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data

    async def send(self, item: bytes) -> None:
        await self._outgoing.send(bytes(item))

    async def send_eof(self) -> None:
        await self._outgoing.aclose()

    async def aclose(self) -> None:
        await self._outgoing.aclose()
        await self._incoming.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Any]:
        peer = self._peer
        return {} if peer is None else {SocketAttribute.remote_address: lambda: tuple(peer)}


def _pipe_pair(client: Address | None) -> tuple[_Pipe, _Pipe]:
    """(client end, server end); the server end reports ``client`` as its peer."""
    # A few chunks in flight at most: a reader that stops slows the writer, as TCP would.
    to_server, from_client = anyio.create_memory_object_stream[bytes](16)
    to_client, from_server = anyio.create_memory_object_stream[bytes](16)
    return _Pipe(to_server, from_server, None), _Pipe(to_client, from_client, client)


def _header_items(headers: HeadersLike | None) -> list[tuple[str, str]]:
    if headers is None:
        return []
    return list(headers.items()) if isinstance(headers, Mapping) else list(headers)


class WebSocket:
    """The client side of one test connection (async form).

    Attributes:
        subprotocol: The subprotocol the app chose, or None.
        response_headers: The headers of the app's `101 Switching Protocols` response.
        close_code: Once closed: the code of the close frame the app sent (1006 if none).
        close_reason: Once closed: the reason that came with it.
    """

    def __init__(self, stream: _Pipe, timeout: float) -> None:
        self.subprotocol: str | None = None
        self.response_headers: Headers = Headers()
        self.close_code: int | None = None
        self.close_reason: str = ""
        self._stream = stream
        self._timeout = timeout
        self._protocol = WSConnection(ConnectionType.CLIENT)
        self._to_test, self._messages = anyio.create_memory_object_stream[Message](math.inf)
        self._closed = anyio.Event()

    def _wait(self, timeout: float | None) -> float:
        return self._timeout if timeout is None else timeout

    async def _handshake(self, path: str, headers: list[tuple[str, str]], offer: list[str]) -> None:
        request = HandshakeRequest(
            host="testserver",
            target=path,
            extra_headers=[(name.encode(), value.encode()) for name, value in headers],
            subprotocols=offer,
        )
        await self._stream.send(self._protocol.send(request))
        refused: RejectConnection | None = None
        body = bytearray()
        while True:
            try:
                data = await self._stream.receive()
            except STREAM_ERRORS:
                raise ConnectionClosed(ABNORMAL, "the app dropped the handshake") from None
            self._protocol.receive_data(data)
            for event in self._protocol.events():
                if isinstance(event, AcceptConnection):
                    self.subprotocol = event.subprotocol
                    self.response_headers = Headers(
                        (name.decode("latin-1"), value.decode("latin-1"))
                        for name, value in event.extra_headers
                    )
                    return
                if isinstance(event, RejectConnection):
                    refused = event
                elif isinstance(event, RejectData):
                    body += event.data
                if refused is not None and (
                    not refused.has_body or (isinstance(event, RejectData) and event.body_finished)
                ):
                    response_headers = Headers(
                        (name.decode("latin-1"), value.decode("latin-1"))
                        for name, value in refused.headers
                    )
                    raise HandshakeRefused(refused.status_code, response_headers, bytes(body))

    async def _pump(self) -> None:
        """Answer pings, collect messages, complete the closing handshake."""
        protocol = self._protocol
        parts: list[Any] = []
        try:
            while True:
                for event in protocol.events():
                    if isinstance(event, TextMessage | BytesMessage):
                        parts.append(event.data)
                        if event.message_finished:
                            message = (
                                "".join(parts)
                                if isinstance(event, TextMessage)
                                else b"".join(parts)
                            )
                            parts.clear()
                            self._to_test.send_nowait(message)
                    elif isinstance(event, Ping):
                        await self._stream.send(protocol.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        self.close_code, self.close_reason = event.code, event.reason or ""
                        if protocol.state is ConnectionState.REMOTE_CLOSING:
                            await self._stream.send(protocol.send(event.response()))
                        return
                protocol.receive_data(await self._stream.receive())
        except STREAM_ERRORS:
            pass
        finally:
            if self.close_code is None:
                self.close_code, self.close_reason = ABNORMAL, "connection lost"
            self._to_test.close()
            self._closed.set()

    async def _release(self) -> None:
        self._to_test.close()
        self._messages.close()
        await self._stream.aclose()

    async def send(self, message: Message | BaseModel) -> None:
        """Send `str` as a text message, `bytes` as a binary one, a model as its JSON."""
        if isinstance(message, BaseModel):
            message = message.model_dump_json()
        if isinstance(message, str):
            event: TextMessage | BytesMessage = TextMessage(data=message)
        elif isinstance(message, bytes | bytearray | memoryview):
            event = BytesMessage(data=bytes(message))
        else:
            raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")
        if self._protocol.state is not ConnectionState.OPEN:
            raise ConnectionClosed(self.close_code or ABNORMAL, self.close_reason)
        await self._stream.send(self._protocol.send(event))

    async def send_json(self, data: Any) -> None:
        """Send ``data`` as JSON in a text message (models inside are serialized too)."""
        await self.send(to_json(data).decode())

    async def receive(self, timeout: float | None = None) -> Message:
        """The next message from the app: `str` (text) or `bytes` (binary).

        Raises:
            TimeoutError: No message came within ``timeout`` seconds (default: the client's).
            ConnectionClosed: The connection closed; its `code` and `reason` are the app's.
        """
        wait = self._wait(timeout)
        with anyio.move_on_after(wait):
            try:
                return await self._messages.receive()
            except anyio.EndOfStream:
                raise ConnectionClosed(self.close_code or ABNORMAL, self.close_reason) from None
        raise TimeoutError(f"no message from the app within {wait}s")

    async def receive_text(self, timeout: float | None = None) -> str:
        """The next message, which must be a text message."""
        message = await self.receive(timeout)
        if not isinstance(message, str):
            raise TypeError(f"expected a text message, got a binary one: {message[:100]!r}")
        return message

    async def receive_bytes(self, timeout: float | None = None) -> bytes:
        """The next message, which must be a binary message."""
        message = await self.receive(timeout)
        if not isinstance(message, bytes):
            raise TypeError(f"expected a binary message, got a text one: {message[:100]!r}")
        return message

    async def receive_json(self, timeout: float | None = None) -> Any:
        """The next message, decoded from JSON."""
        return json.loads(await self.receive(timeout))

    async def close(self, code: int = 1000, reason: str = "", timeout: float | None = None) -> None:
        """Send a close frame and wait for the app's reply (``close_code`` is then set)."""
        if self._protocol.state is ConnectionState.OPEN:
            # If the app is gone already, wait_closed reports what was seen.
            with contextlib.suppress(*STREAM_ERRORS):
                await self._stream.send(self._protocol.send(CloseConnection(code, reason)))
        await self.wait_closed(timeout)

    async def wait_closed(self, timeout: float | None = None) -> None:
        """Wait until the connection is closed (messages not yet received stay readable)."""
        wait = self._wait(timeout)
        with anyio.move_on_after(wait):
            await self._closed.wait()
            return
        raise TimeoutError(f"the connection did not close within {wait}s")


class SyncWebSocket:
    """The client side of one test connection, for plain (sync) tests.

    The same methods and attributes as [WebSocket][wsapp.testing.WebSocket], blocking.
    """

    def __init__(self, ws: WebSocket, portal: BlockingPortal) -> None:
        self._ws = ws
        self._portal = portal

    @property
    def subprotocol(self) -> str | None:
        return self._ws.subprotocol

    @property
    def response_headers(self) -> Headers:
        return self._ws.response_headers

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    @property
    def close_reason(self) -> str:
        return self._ws.close_reason

    def send(self, message: Message | BaseModel) -> None:
        self._portal.call(self._ws.send, message)

    def send_json(self, data: Any) -> None:
        self._portal.call(self._ws.send_json, data)

    def receive(self, timeout: float | None = None) -> Message:
        return self._portal.call(self._ws.receive, timeout)

    def receive_text(self, timeout: float | None = None) -> str:
        return self._portal.call(self._ws.receive_text, timeout)

    def receive_bytes(self, timeout: float | None = None) -> bytes:
        return self._portal.call(self._ws.receive_bytes, timeout)

    def receive_json(self, timeout: float | None = None) -> Any:
        return self._portal.call(self._ws.receive_json, timeout)

    def close(self, code: int = 1000, reason: str = "", timeout: float | None = None) -> None:
        self._portal.call(self._ws.close, code, reason, timeout)

    def wait_closed(self, timeout: float | None = None) -> None:
        self._portal.call(self._ws.wait_closed, timeout)


class SecondRunWarning(UserWarning):
    """A test connected to an app that it was already running in-process (a `connect(app)`
    inside another), which runs the app a second time beside the first."""


#: The apps this context runs in-process (entered TestClients), to notice a second run.
_running_apps: ContextVar[tuple[App, ...]] = ContextVar("wsapp_running_apps", default=())


class TestClient:
    """Runs an app in-process for tests: start-up hooks, connections, shutdown hooks.

    Enter it (`async with TestClient(app) as client:` or `with ...`) to share one run, and
    so one `app.state`, between several connections; `client.connect(...)` on a client that
    is not entered makes that one connection a whole run of its own.

    Args:
        app: The app under test.
        timeout: Default seconds for every wait (receive, close, the handshake).
        client: The address the app sees as `request.client`.
        backend: The event loop for sync use (`with`): `asyncio` or `trio`. Async use runs in
            the test's own loop.
        **settings: Setting overrides for this client, as command line flags would give.
    """

    __test__ = False  # not a test class, despite the name

    def __init__(
        self,
        app: App,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        client: tuple[str, int] | None = ("127.0.0.1", 50000),
        backend: Literal["asyncio", "trio"] = "asyncio",
        **settings: Any,
    ) -> None:
        self.app = app
        self.timeout = timeout
        self.client = Address(*client) if client is not None else None
        self.backend = backend
        self._overrides = settings
        self._handler: StreamHandler | None = None
        self._serving = AsyncExitStack()
        self._portal: BlockingPortal | None = None
        self._sync = ExitStack()

    def _copy(self) -> TestClient:
        return TestClient(
            self.app,
            timeout=self.timeout,
            client=self.client,  # an Address is a (host, port) tuple
            backend=self.backend,
            **self._overrides,
        )

    async def __aenter__(self) -> TestClient:
        if self._handler is not None:
            raise RuntimeError("this TestClient is already running")
        running = _running_apps.get()
        if any(app is self.app for app in running):
            warnings.warn(
                "this app is already running in this test (an outer connect(app) or "
                "TestClient): this connection starts a second run of it, with its start-up "
                "hooks and background tasks again; to share one run, open the connections from "
                "one TestClient: `async with TestClient(app) as client:`, then "
                "`client.connect(...)` for each",
                SecondRunWarning,
                stacklevel=3,
            )
        settings = resolve_settings(self.app.settings, flags=self._overrides)
        handler = StreamHandler(self.app, settings)
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(serving(self.app, settings))
            await stack.enter_async_context(handler.running())
            token = _running_apps.set((*running, self.app))
            stack.callback(_running_apps.reset, token)
            self._serving = stack.pop_all()
        self._handler = handler
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._handler = None
        await self._serving.aclose()

    def __enter__(self) -> TestClient:
        with ExitStack() as stack:
            portal = stack.enter_context(start_blocking_portal(self.backend))
            # One task of the portal runs the whole async block: the rooms' task group must
            # be entered and exited by the same task.
            stack.enter_context(portal.wrap_async_context_manager(self))
            self._sync = stack.pop_all()
        self._portal = portal
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._sync.__exit__(exc_type, exc, traceback)
        finally:
            self._portal = None

    def connect(
        self,
        path: str = "/",
        *,
        headers: HeadersLike | None = None,
        subprotocols: Iterable[str] = (),
    ) -> Connecting:
        """Open a connection to ``path`` (which may carry a query string).

        Use the result with `async with` (a [WebSocket][wsapp.testing.WebSocket]) or `with`
        (a [SyncWebSocket][wsapp.testing.SyncWebSocket]). Raises
        [HandshakeRefused][wsapp.testing.HandshakeRefused] if the app refuses.
        """
        return Connecting(self, path, _header_items(headers), list(subprotocols))

    @asynccontextmanager
    async def _connection(
        self, path: str, headers: list[tuple[str, str]], offer: list[str]
    ) -> AsyncIterator[WebSocket]:
        handler = self._handler
        assert handler is not None
        client_end, server_end = _pipe_pair(self.client)
        ws = WebSocket(client_end, self.timeout)
        # Exceptions from the test body come out as themselves, not in an ExceptionGroup.
        failure: BaseException | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(handler.handle, server_end)
            try:
                with anyio.fail_after(self.timeout):
                    await ws._handshake(path, headers, offer)
                tg.start_soon(ws._pump)
                yield ws
                await ws.close()
            except BaseException as exc:
                failure = exc
                tg.cancel_scope.cancel()
            finally:
                await ws._release()
        if failure is not None:
            raise failure

    @asynccontextmanager
    async def _run_and_connect(
        self, path: str, headers: list[tuple[str, str]], offer: list[str]
    ) -> AsyncIterator[WebSocket]:
        if self._handler is not None:
            async with self._connection(path, headers, offer) as ws:
                yield ws
        else:
            async with self._copy() as run, run._connection(path, headers, offer) as ws:
                yield ws


class Connecting:
    """A connection about to open: `async with` it in async tests, `with` it in sync ones."""

    def __init__(
        self, client: TestClient, path: str, headers: list[tuple[str, str]], offer: list[str]
    ) -> None:
        self._client = client
        self._args = (path, headers, offer)
        self._async: Any = None
        self._sync = ExitStack()

    async def __aenter__(self) -> WebSocket:
        if self._client._portal is not None:
            raise RuntimeError(
                "this TestClient was entered with `with`: use `with client.connect()`"
            )
        self._async = self._client._run_and_connect(*self._args)
        ws: WebSocket = await self._async.__aenter__()
        return ws

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        result: bool | None = await self._async.__aexit__(exc_type, exc, traceback)
        return result

    def __enter__(self) -> SyncWebSocket:
        client = self._client
        if client._handler is not None and client._portal is None:
            raise RuntimeError(
                "this TestClient was entered with `async with`: use `async with client.connect()`"
            )
        with self._sync as stack:
            portal = client._portal or stack.enter_context(start_blocking_portal(client.backend))
            ws = stack.enter_context(
                portal.wrap_async_context_manager(client._run_and_connect(*self._args))
            )
            self._sync = stack.pop_all()
        return SyncWebSocket(ws, portal)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        return self._sync.__exit__(exc_type, exc, traceback)


def connect(
    app: App,
    path: str = "/",
    *,
    headers: HeadersLike | None = None,
    subprotocols: Iterable[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
    **settings: Any,
) -> Connecting:
    """Connect to ``app`` in-process: one whole run (start-up hooks, the connection, shutdown).

    Shorthand for `TestClient(app, timeout=timeout, **settings).connect(path, ...)`.
    """
    return TestClient(app, timeout=timeout, **settings).connect(
        path, headers=headers, subprotocols=subprotocols
    )
