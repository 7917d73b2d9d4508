"""Speak the subprotocol the client picks: `python -m wsapp examples.subprotocols:app`.

The server supports `json.v2` and `json.v1`; the first one the client offers wins. A client
that offers neither is refused in `on_connect`, rather than left guessing.
"""

import json

import wsapp

app = wsapp.App(subprotocols=["json.v2", "json.v1"])


@app.on_connect
async def require_subprotocol(conn: wsapp.Connection, request: wsapp.Request) -> None:
    if conn.subprotocol is None and request.subprotocols:
        raise wsapp.Reject(400, f"supported subprotocols: {', '.join(app.settings.subprotocols)}")


@app.on_message
async def reply(conn: wsapp.Connection, message: str | bytes) -> None:
    if conn.subprotocol == "json.v2":
        await conn.send(json.dumps({"version": 2, "echo": json.loads(message)}))
    else:
        await conn.send(message)
