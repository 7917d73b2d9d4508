"""An app that tells each client which process serves it, and relays what anyone says to
everyone (for the multi-process tests: which worker took a connection, and whether rooms span
them)."""

import os

import wsapp

app = wsapp.App()


@app.on_open
async def hello(conn: wsapp.Connection) -> None:
    await conn.join("all")
    await conn.send(f"pid {os.getpid()}")


@app.on_message
async def relay(conn: wsapp.Connection, message: str) -> None:
    await app.broadcast("all", message)
