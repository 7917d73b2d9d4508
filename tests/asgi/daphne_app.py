"""What tests/asgi/test_daphne.py serves: `python -m daphne tests.asgi.daphne_app:app`.

Daphne runs it in its own process, so on_close prints what it was called with, as one JSON
line on stdout, for the test to read. Otherwise it is `tests.helpers.traced_app`: it echoes,
"close-me" closes with 4000, "fail" raises; and it shapes the accept like a real app would.
"""

import json

import wsapp

app = wsapp.App(max_message_size=1000, subprotocols=["chat"])


@app.on_connect
async def shape(conn: wsapp.Connection, request: wsapp.Request) -> None:
    conn.response_headers["X-Session"] = "session-1"


@app.on_message
async def message(conn: wsapp.Connection, data: wsapp.Message) -> None:
    if data == "fail":
        raise RuntimeError("boom")
    if data == "close-me":
        await conn.close(4000, "as you wish")
        return
    await conn.send(data)


@app.on_close
async def closed(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
    print("on_close " + json.dumps([was_clean, code, reason]), flush=True)
