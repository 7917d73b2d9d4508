"""An app for CLI tests of start-up and shutdown hooks; HOOKS_FAIL=startup|shutdown breaks one."""

import os

import wsapp

app = wsapp.App()


@app.on_startup
def open_pool() -> None:
    if os.environ.get("HOOKS_FAIL") == "startup":
        raise ConnectionRefusedError("database unreachable")
    print("startup", flush=True)


@app.on_shutdown
async def close_pool() -> None:
    if os.environ.get("HOOKS_FAIL") == "shutdown":
        raise RuntimeError("pool already closed")
    print("shutdown", flush=True)


@app.on_close
async def closed(conn: wsapp.Connection, was_clean: bool, code: int, reason: str) -> None:
    print(f"on_close {code}", flush=True)
