"""The reading form: no on_message, so on_open reads the messages itself.

`python -m wsapp examples.reader:app` sums the numbers a client sends until it sends
`end`, then replies with the total and closes (returning from on_open closes with 1000).
"""

import wsapp

app = wsapp.App()


@app.on_open
async def add_up(conn: wsapp.Connection) -> None:
    total = 0
    async for message in conn:
        if message == "end":
            break
        total += int(message)
    await conn.send(f"total {total}")
