"""Echo every message back: `python -m wsapp examples.echo:app`."""

import wsapp

app = wsapp.App()


@app.on_message
async def echo(conn: wsapp.Connection, message: str | bytes) -> None:
    await conn.send(message)
