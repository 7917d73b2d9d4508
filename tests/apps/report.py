"""An app for CLI tests: reports its effective settings and prints each on_close."""

import json

import wsapp

app = wsapp.App(settings=wsapp.Settings(max_message_size=111, write_timeout=7.0, ping_interval=5))
not_an_app = 42


def make_app() -> wsapp.App:
    return app


@app.on_open
async def report(conn: wsapp.Connection) -> None:
    await conn.send(json.dumps(conn.settings.model_dump()))


@app.on_message
async def echo(conn: wsapp.Connection, message: str | bytes) -> None:
    await conn.send(message)


@app.on_close
async def closed(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
    print(f"on_close {code} {was_clean}", flush=True)
