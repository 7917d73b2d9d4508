"""The callbacks of one connection, in a task that exists only while they have work to do.

Callbacks run beside the connection's reader, so that pongs and the close keep flowing while
one of them works. But a task costs an idle connection about 4 KiB, and most connections of
a server are idle most of the time. So on the built-in server the callbacks' task starts
when there is work (`on_open`; later, a message arriving while none runs), in the server's
group of shared tasks, and ends once its connection has been quiet for a while
([Parking][wsapp.dispatcher.Parking] decides when): an idle connection is its reader alone.
The task does not end as soon as the inbox is empty because starting one costs about 15 µs:
a connection under load keeps its task, and pays nothing per message. That coming and going
is [OnDemand][wsapp.dispatcher.OnDemand]'s; the inbox only tells it that a message arrived.

What callbacks observe does not change with the task they run in: `on_open` first, then one
`on_message` at a time in order (or `concurrency` at once), the context variables one
callback set seen by the next ones and by `on_close`, and callbacks still running
`close_timeout` after the close cancelled.
"""

from __future__ import annotations

import contextvars
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import TYPE_CHECKING, NoReturn, Protocol

import anyio
from anyio.abc import TaskGroup

from wsapp.concurrency import Signal, signal_factory
from wsapp.exceptions import ConnectionClosed, JoinRefused
from wsapp.inbox import Inbox
from wsapp.intake import Inbound
from wsapp.log import connection_fields, logger
from wsapp.operations.metrics import HANDLER_SAMPLING, Metrics
from wsapp.protocol import CloseCode, Message
from wsapp.ratelimit import RateLimited, enforce
from wsapp.transport import Transport

if TYPE_CHECKING:
    from wsapp.connection import Connection
    from wsapp.endpoint import Callbacks

__all__ = ["LINGER", "Dispatcher", "OnDemand", "Parking"]

#: Seconds a callback task with no message to handle waits for one (at least; at most twice
#: as long) before it ends; the next message starts another.
LINGER = 5.0


class Parking:
    """The callback tasks waiting for a message, sent away once they waited a whole
    `LINGER` period.

    Made in the event loop that serves the connections; `run` is a task of the server's,
    started before its connections and ended after them.
    """

    def __init__(self) -> None:
        self._since_sweep: set[OnDemand] = set()  # began waiting after the last sweep
        self._before_sweep: set[OnDemand] = set()  # were waiting at the last sweep
        self._new_signal = signal_factory()

    def park(self, waiting: OnDemand) -> Signal:
        """``waiting``'s task waits for a message from now on: on the signal returned."""
        self._since_sweep.add(waiting)
        return self._new_signal()

    def discard(self, waiting: OnDemand) -> None:
        """``waiting``'s connection is closed: forget it."""
        self._since_sweep.discard(waiting)
        self._before_sweep.discard(waiting)

    def sweep(self) -> None:
        """Send away the tasks that have waited since before the last sweep."""
        for waiting in self._before_sweep:
            waiting.expire()
        self._before_sweep, self._since_sweep = self._since_sweep, set()

    async def run(self) -> NoReturn:
        while True:
            await anyio.sleep(LINGER)
            self.sweep()


class Resumable(Protocol):
    """What [OnDemand][wsapp.dispatcher.OnDemand] starts the callbacks' task with."""

    def resume(self) -> None:
        """Start the callbacks' task, to handle the messages queued: none runs."""
        ...


class OnDemand:
    """The coming and going of one connection's callbacks' task.

    The task takes the messages queued at once, and asks `next` for the one after: that
    waits for it at ``parking`` (or returns None at once, when it may not linger), and
    returns None once the parking sends the task away; the task then leaves. The next
    message the ``inbox`` queues starts another with ``owner.resume()`` (the first message
    does too, unless a task is ``running`` already). The inbox only tells this object
    that a message arrived (it is the inbox's [Waiter][wsapp.inbox.Waiter]).
    """

    __slots__ = ("_expired", "_idle", "_inbox", "_owner", "_parking", "_waiting")

    def __init__(
        self, inbox: Inbox[Inbound], parking: Parking, owner: Resumable, running: bool
    ) -> None:
        self._inbox = inbox
        self._parking = parking
        self._owner: Resumable | None = owner  # until closed: no reference cycle left
        self._waiting: Signal | None = None  # the task waits for a message on it
        self._expired = False  # the parking sent the waiting task away
        self._idle = False  # no task runs: the next message starts one
        if not running:
            self._leave()

    def _leave(self) -> None:
        self._idle = True
        self._inbox.notify(self)

    def wake(self) -> None:
        """A message arrived, or the inbox closed: wake the task waiting for it, or start
        one if none runs (the inbox's call)."""
        waiting = self._waiting
        if waiting is not None:
            self._waiting = None
            waiting.set()
        elif self._idle and self._owner is not None and not self._inbox.closed:
            self._idle = False
            self._owner.resume()

    def expire(self) -> None:
        """Send the task away if it is still waiting (`next` returns None; the parking's
        call)."""
        waiting = self._waiting
        if waiting is not None:
            self._waiting = None
            self._expired = True
            waiting.set()

    async def next(self, linger: bool) -> Inbound | None:
        """The next message, once the inbox has none queued: waited for as long as the
        parking lets the task ``linger``; None when the task must leave (not ``linger``, or
        the parking sent it away). EndOfStream once the inbox is closed and empty."""
        inbox = self._inbox
        while not inbox.closed:
            if not linger or self._expired:
                self._expired = False
                self._leave()
                return None
            waiting = self._waiting = self._parking.park(self)
            inbox.notify(self)
            await waiting.wait()
            message = inbox.take_nowait()
            if message is not None:
                return message
        raise anyio.EndOfStream

    def close(self) -> None:
        """The connection is over: nothing more to start, nor to send away."""
        self._parking.discard(self)
        self._owner = None


class Dispatcher:
    """Runs one connection's callbacks in a task of ``tasks``: `start` it once open, and
    `finish` it once its inbox is closed (`catch_up` first, when the close must follow the
    replies to the messages queued: `finish` then has nothing left to wait for).

    With ``parking`` (and one `on_message` at a time, the default), the task ends while the
    connection is idle, and a message arriving starts another (see
    [OnDemand][wsapp.dispatcher.OnDemand]). Without, one task runs the callbacks from
    `on_open` to the close.
    """

    __slots__ = (
        "_callbacks",
        "_conn",
        "_context",
        "_done",
        "_inbox",
        "_metrics",
        "_on_demand",
        "_opening",
        "_scope",
        "_tasks",
        "_transport",
        "_untimed",
        "failure",
    )

    def __init__(
        self,
        callbacks: Callbacks,
        conn: Connection,
        transport: Transport,
        inbox: Inbox[Inbound],
        metrics: Metrics,
        tasks: TaskGroup,
        parking: Parking | None = None,
    ) -> None:
        self._callbacks = callbacks
        self._conn = conn
        self._transport = transport
        self._inbox = inbox
        self._metrics = metrics
        self._tasks = tasks
        self._scope: anyio.CancelScope | None = None  # of the running task
        self._done: anyio.Event | None = None  # made by `finish`, set when the task ends
        self._context: contextvars.Context | None = None  # as the last task left it
        self._opening = False  # the task runs on_open (in the reading form, the handler)
        #: What the transport raised beside the callbacks, if anything: the connection's
        #: `lifecycle.run` raises it once `on_close` has run.
        self.failure: Exception | None = None
        # Messages to let by before the first timed one: never, unless something reads them.
        timed = metrics.timing or conn.settings.metrics_path is not None
        self._untimed = 0 if timed else sys.maxsize
        self._on_demand: OnDemand | None = None
        if parking is not None and callbacks.on_message is not None and callbacks.concurrency == 1:
            self._on_demand = OnDemand(inbox, parking, self, running=callbacks.opens)

    def start(self) -> None:
        """Run `on_open`, then the messages (on demand, with no `on_open` to run: when the
        first message arrives)."""
        if self._callbacks.opens or self._on_demand is None:
            self._spawn(opening=True)

    def resume(self) -> None:
        """Start the task again to handle the messages queued (on demand, when none runs)."""
        self._spawn(opening=False)

    def _spawn(self, opening: bool) -> None:
        self._scope = anyio.CancelScope()
        self._tasks.start_soon(self._serve, self._scope, opening)

    async def catch_up(self, grace: float) -> None:
        """Before a close that must follow the replies: `finish` while the callbacks have
        messages to handle (queued, or one in hand). Not for an `on_open` that runs with
        nothing queued (it may run as long as the connection, which closes as usual)."""
        if self._scope is not None and (len(self._inbox) or not self._opening):
            await self.finish(grace)

    async def finish(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the callbacks to end (the inbox is closed: they are
        handling what is left), then cancel them; then take on the context variables they
        set, for `on_close`."""
        if self._scope is not None:
            done = self._done = anyio.Event()
            try:
                with anyio.move_on_after(grace) as waiting:
                    await done.wait()
            finally:
                if self._scope is not None:  # late, or this task is cancelled: cancel them
                    self._scope.cancel()
                    with anyio.CancelScope(shield=True):
                        await done.wait()
            if waiting.cancelled_caught:
                conn = self._conn
                logger.warning(
                    "callbacks of %s still ran after close; cancelled",
                    conn.id,
                    extra=connection_fields(conn),
                )
        if self._on_demand is not None:
            self._on_demand.close()
            self._on_demand = None
        if self._context is not None:
            _adopt(self._context)

    async def _serve(self, scope: anyio.CancelScope, opening: bool) -> None:
        if self._context is not None:
            _adopt(self._context)
        try:
            with scope:
                ended = await self._run_callbacks(opening)
                if ended is not None:
                    await self._transport.close(*ended)
        except Exception as exc:
            # Not a callback's (those close with 1011): the transport failed. This task may
            # run among the server's shared tasks, which nothing it raises may reach: the
            # connection is dropped, and its own task raises this once on_close has run.
            self.failure = exc
            self._transport.abort(f"internal error: {exc!r}")
        finally:
            self._context = contextvars.copy_context()
            self._scope = None
            if self._done is not None:
                self._done.set()

    async def _run_callbacks(self, opening: bool) -> tuple[int, str] | None:
        """The callbacks' turn: the close code to use when they end by themselves, or None
        when they left (the connection is idle: the next message starts them again) or the
        connection ended first."""
        callbacks, conn = self._callbacks, self._conn
        on_message = callbacks.on_message
        try:
            if opening:
                self._opening = True
                try:
                    await callbacks.on_open()
                except JoinRefused as refused:  # answered like one in on_message
                    await _answer(conn, refused)
                finally:
                    self._opening = False
            if on_message is None:
                return CloseCode.NORMAL_CLOSURE, ""  # the reading form: on_open was the handler
            if callbacks.concurrency != 1:
                await self._concurrently(on_message, callbacks.concurrency)
            else:
                on_demand = self._on_demand
                take = on_demand.next if on_demand is not None else self._get
                await self._one_at_a_time(take, on_message, linger=not opening)
        except (anyio.EndOfStream, ConnectionClosed):
            pass  # the connection ended first: not an error
        except Exception:
            self._metrics.handler_errors += 1
            logger.exception(
                "callback failed on connection %s; closing with 1011",
                conn.id,
                extra=connection_fields(conn),
            )
            return CloseCode.INTERNAL_ERROR, "internal error"
        return None

    def _get(self, linger: bool) -> Awaitable[Inbound]:
        """The next message, as the task takes it when it never leaves: waited for as long as
        it takes."""
        return self._inbox.get()

    async def _one_at_a_time(
        self,
        take: Callable[[bool], Awaitable[Inbound | None]],
        on_message: Callable[[Message], Awaitable[None]],
        linger: bool,
    ) -> None:
        """In order, each message of the inbox after the previous one's handler returned:
        taken at once while one is queued, else from ``take``, until it gives None (this task
        is to leave: see `OnDemand.next`).

        One handler run in `HANDLER_SAMPLING` is timed into the handler-duration histogram
        after ``_untimed`` messages: the per-message path pays a countdown, not two clock
        readings.
        """
        conn = self._conn
        durations = self._metrics.handler_duration
        clock = time.perf_counter
        untimed = self._untimed
        take_nowait = self._inbox.take_nowait
        try:
            while True:
                message = take_nowait()
                if message is None:
                    message = await take(linger)
                    if message is None:
                        return
                linger = True
                if isinstance(message, RateLimited):
                    await enforce(conn, message)
                    continue
                untimed -= 1
                started = clock() if untimed < 0 else 0.0
                # The per-message path: try costs nothing until something is raised.
                try:
                    await on_message(message)
                except ConnectionClosed:
                    pass  # a reply came too late; the messages still queued are handled
                except JoinRefused as refused:
                    await _answer(conn, refused)
                finally:
                    if untimed < 0:
                        durations.observe(clock() - started)
                        untimed = HANDLER_SAMPLING - 1
        finally:
            self._untimed = untimed

    async def _concurrently(
        self, on_message: Callable[[Message], Awaitable[None]], limit: int
    ) -> None:
        """``limit`` workers, each handling messages one at a time, take them in turn: up to
        that many handlers at once, and a message is taken only when a worker is free, so a
        busy connection still stops reading."""
        failure: list[Exception] = []

        async def worker() -> None:
            try:
                # A worker never leaves: it waits for the next message.
                await self._one_at_a_time(self._get, on_message, linger=True)
            except anyio.EndOfStream:
                return
            except Exception as exc:
                failure.append(exc)
                tg.cancel_scope.cancel()  # the connection closes with 1011: stop the others

        async with anyio.create_task_group() as tg:
            for _ in range(limit):
                tg.start_soon(worker)
        if failure:
            raise failure[0]


async def _answer(conn: Connection, refused: JoinRefused) -> None:
    """A join refused in a callback is answered, not an error: the client asked for it."""
    with suppress(ConnectionClosed):
        await conn.send(refused.reply())


def _adopt(context: contextvars.Context) -> None:
    """Set in the current context every variable ``context`` holds a different value of."""
    current = contextvars.copy_context()
    for variable, value in context.items():
        if variable not in current or current[variable] is not value:
            variable.set(value)
