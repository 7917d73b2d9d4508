"""Typed-dispatch benchmark: the cost per message of typed handlers against a raw `str` one.

    python bench/typed.py [--seconds 5] [--rounds 3] [--backend asyncio|uvloop|trio]
    python bench/typed.py --micro [--number 20000] [--repeat 15]

Two wsapp apps (`bench/typed_echo.py`) echo the same 41-byte JSON text message,
`{"type":"echo","text":"xxxxxxxxxxxxxxxx"}`: `raw` with one handler taking `message: str`
and sending it back; `typed` with three handlers taking the models `Echo`, `Join` and
`Leave` (dispatched by their `type` field), the `echo` one returning its `Echo` as the
reply. So `typed` pays for JSON decoding, validation, dispatch and encoding the reply.

By default each app is served by `python -m wsapp` in its own process and driven by
`bench/echo.py`'s load generator (50 connections, 10 messages in flight each), rounds
alternating between them. Reported per app: echoed messages per second and server CPU time
per message (medians over the rounds), then the ratios typed / raw.

`--micro` times, in this process and without sockets, what the typed path adds per message:
each endpoint's `MessageDecoder.decode` (plus `model_dump_json` of the typed reply), the same
work done by pydantic alone (the discriminated union's `validate_json`), and the whole
`on_message` callback (decode, handler, reply) bound to a stub connection. That separates
wsapp's own overhead from pydantic's cost.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, cast

from pydantic import BaseModel, Field, TypeAdapter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from echo import (
    Contender,
    free_port,
    load_parser,
    print_medians,
    print_ratio,
    run_rounds,
    wsapp_command,
)
from typed_echo import MESSAGE, Echo, Join, Leave, raw_app, typed_app

import wsapp
from wsapp.messages import MessageDecoder

#: The contenders and the apps they serve (imported from the repository root).
APPS = {"raw": "bench.typed_echo:raw_app", "typed": "bench.typed_echo:typed_app"}


def check_replies() -> None:
    """Both apps echo MESSAGE byte for byte: the load generator counts echoes by their size."""
    from wsapp.testing import connect

    for name, app in (("raw", raw_app), ("typed", typed_app)):
        with connect(app) as ws:
            ws.send(MESSAGE)
            reply = ws.receive()
        if reply != MESSAGE:
            raise SystemExit(f"the {name} app replies {reply!r}, not {MESSAGE!r}")


def sockets(seconds: float, rounds: int, backend: str) -> None:
    check_replies()
    ports = {name: free_port() for name in APPS}
    chosen = [
        (Contender(name, wsapp_command(ports[name], "--backend", backend, app=target)), ports[name])
        for name, target in APPS.items()
    ]
    message = MESSAGE.encode()
    medians = print_medians(run_rounds(chosen, rounds, seconds, message), backend, message)
    print_ratio(medians, "typed", "raw")
    extra = medians["typed"][1] - medians["raw"][1]
    print(f"  typed dispatch adds {extra * 1e6:.2f} us of server CPU per message")


def decoder(app: wsapp.App) -> MessageDecoder:
    """The decoder of ``app``'s decorated handlers (its fallback endpoint)."""
    endpoint = app.router.fallback
    assert endpoint is not None
    assert endpoint.decoder is not None
    return endpoint.decoder


class StubConnection:
    """Just enough of a Connection for a bound `on_message`: `send` does to its argument
    what `Connection.send` does before the transport, and sends nothing."""

    async def send(self, item: str | bytes | BaseModel) -> None:
        if isinstance(item, BaseModel):
            item = item.model_dump_json()


def on_message_call(app: wsapp.App) -> Callable[[], None]:
    """One call of ``app``'s whole `on_message` with MESSAGE, run to its end synchronously."""
    endpoint = app.router.fallback
    assert endpoint is not None
    on_message = endpoint.bind(StubConnection()).on_message  # type: ignore[arg-type]
    assert on_message is not None

    def call() -> None:
        coroutine = cast(Coroutine[Any, Any, None], on_message(MESSAGE))
        try:
            coroutine.send(None)
        except StopIteration:
            return
        raise RuntimeError("on_message suspended: the stub connection never blocks")

    return call


def ns_per_call(cases: dict[str, Callable[[], Any]], number: int, repeat: int) -> dict[str, float]:
    """Each case's best of ``repeat`` timings of ``number`` calls, in ns per call (as timeit
    does); the repeats take turns between the cases so that drift hits them all alike."""
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(repeat):
        for name, function in cases.items():
            start = time.perf_counter_ns()
            for _ in itertools.repeat(None, number):
                function()
            best[name] = min(best[name], (time.perf_counter_ns() - start) / number)
    return best


def micro(number: int, repeat: int) -> None:
    raw, typed = decoder(raw_app), decoder(typed_app)
    union: TypeAdapter[Echo | Join | Leave] = TypeAdapter(
        Annotated[Echo | Join | Leave, Field(discriminator="type")]
    )
    index, value = typed.decode(MESSAGE)
    assert raw.decode(MESSAGE) == (0, MESSAGE)
    assert index == 0
    assert isinstance(value, Echo)
    assert value.model_dump_json() == MESSAGE == union.validate_json(MESSAGE).model_dump_json()
    cases: dict[str, Callable[[], Any]] = {
        "loop": lambda: None,  # the loop and the call of a lambda, taken off the others
        "raw": lambda: raw.decode(MESSAGE),
        "typed": lambda: typed.decode(MESSAGE)[1].model_dump_json(),
        "typed decode": lambda: typed.decode(MESSAGE),
        "typed encode": value.model_dump_json,
        "pydantic": lambda: union.validate_json(MESSAGE).model_dump_json(),
        "pydantic decode": lambda: union.validate_json(MESSAGE),
        "raw on_message": on_message_call(raw_app),
        "typed on_message": on_message_call(typed_app),
    }
    timings = ns_per_call(cases, number, repeat)
    loop = timings.pop("loop")
    ns = {name: timing - loop for name, timing in timings.items()}
    print(
        f"in-process, {len(MESSAGE)}-byte message, best of {repeat} x {number} calls, "
        f"ns per message net of the {loop:.0f} ns loop and call:"
    )
    rows = [
        ("raw", "raw: MessageDecoder.decode (str handler)"),
        ("typed", "typed: MessageDecoder.decode + model_dump_json"),
        ("typed decode", "    decode (validate + dispatch)"),
        ("typed encode", "    model_dump_json"),
        ("pydantic", "pydantic alone: union validate_json + model_dump_json"),
        ("pydantic decode", "    union validate_json"),
        ("raw on_message", "raw: whole on_message (decode, handler, send to a stub)"),
        ("typed on_message", "typed: whole on_message (decode, handler, reply to a stub)"),
    ]
    for key, label in rows:
        print(f"  {label:<60} {ns[key]:7.0f} ns")
    own = ns["typed decode"] - ns["pydantic decode"]
    print(f"  wsapp's own share of the typed decode: {own:.0f} ns (decode - union validate_json)")
    print(
        f"  ratio typed/raw: decode path {ns['typed'] / ns['raw']:.1f}x, "
        f"whole on_message {ns['typed on_message'] / ns['raw on_message']:.1f}x"
    )


def main() -> None:
    parser = load_parser(__doc__)
    parser.add_argument("--micro", action="store_true", help="in-process, without sockets")
    parser.add_argument("--number", type=int, default=20_000, help="calls per --micro timing")
    parser.add_argument("--repeat", type=int, default=15, help="timings per --micro case")
    args = parser.parse_args()
    if args.micro:
        micro(args.number, args.repeat)
    else:
        sockets(args.seconds, args.rounds, args.backend)


if __name__ == "__main__":
    main()
