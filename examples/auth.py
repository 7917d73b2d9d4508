"""Refuse connections without a valid token: `python -m wsapp examples.auth:app`.

Browsers cannot set headers on a WebSocket, so the token may also come in the query
string (`?token=...`); a real app would verify a signed token instead of a fixed set.
"""

import wsapp

TOKENS = {"s3cret": "alice"}

app = wsapp.App()


@app.on_connect
async def authenticate(conn: wsapp.Connection, request: wsapp.Request) -> None:
    header = request.headers.get("authorization", "")
    token = header.removeprefix("Bearer ") or request.query_params.get("token", "")
    user = TOKENS.get(token)
    if user is None:
        raise wsapp.Reject(401, "a valid token is required", {"WWW-Authenticate": "Bearer"})
    conn.state.user = user


@app.on_open
async def greet(conn: wsapp.Connection) -> None:
    await conn.send(f"hello {conn.state.user}")


@app.on_message
async def echo(conn: wsapp.Connection, message: str | bytes) -> None:
    await conn.send(message)
