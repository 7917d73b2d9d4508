"""`python -m wsapp`: start-up, error messages, settings precedence, signals, backends."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from websockets.asyncio.client import connect

import wsapp
from tests.helpers import ROOT, TIMEOUT, client, run_cli, serving
from tests.rawclient import RawClient
from wsapp.cli import _help, first_sentence
from wsapp.server.listeners import ListenError, ssl_context_from_files


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuchmodule:app"], "cannot import 'nosuchmodule': no module named 'nosuchmodule'"),
        (["examples.echo:ap"], "module 'examples.echo' has no attribute 'ap'"),
        (
            ["tests.apps.report:not_an_app"],
            "'tests.apps.report:not_an_app' is not a wsapp.App but a int",
        ),
        (
            ["tests.apps.report:make_app"],
            "'tests.apps.report:make_app' is not a wsapp.App but a function"
            " (is it a factory? pass --factory)",
        ),
        (["examples.echo"], "expected module:app (like 'chat:app'), got 'examples.echo'"),
        (
            ["examples.echo:app", "--ping-interval", "-1"],
            "invalid setting from the command line: --ping-interval:"
            " Input should be greater than 0",
        ),
        (
            ["examples.echo:app", "--compression-server-max-window-bits", "20"],
            "--compression-server-max-window-bits: Input should be less than or equal to 15",
        ),
    ],
)
def test_start_up_errors_are_one_clear_line_and_exit_2(args: list[str], message: str) -> None:
    result = run_cli(*args, "--port", "0")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("wsapp: error: ") and message in line


def test_bad_environment_variable_names_the_variable() -> None:
    result = run_cli("examples.echo:app", env={"WSAPP_MAX_MESSAGE_SIZE": "big"})
    assert result.returncode == 2
    assert "invalid setting from the environment: WSAPP_MAX_MESSAGE_SIZE:" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("examples.echo:app", env={"WSAPP_PINGINTERVAL": "1"})
    assert_one_line_error(
        result, "unknown environment variable WSAPP_PINGINTERVAL; did you mean WSAPP_PING_INTERVAL?"
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    """The CLI's contract for every start-up failure: exactly this line on stderr, status 2."""
    assert result.stderr == f"wsapp: error: {message}\n"
    assert result.returncode == 2


HELP = " (see python -m wsapp --help)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "abc"], "argument --port: expected a port number, got 'abc'" + HELP),
        (
            ["--backend", "nope"],
            "argument --backend: 'nope' is not one of asyncio, uvloop, trio" + HELP,
        ),
        (
            ["--log-level", "x"],
            "argument --log-level: 'x' is not one of critical, error, warning, info, debug" + HELP,
        ),
        (
            ["--log-level", "warn"],
            "argument --log-level: 'warn' is not one of critical, error, warning, info, debug;"
            " did you mean warning?" + HELP,
        ),
        (
            ["--max-mesage-size", "1"],
            "unknown option --max-mesage-size; did you mean --max-message-size?" + HELP,
        ),
        (
            ["--max-mesage-size=1"],
            "unknown option --max-mesage-size; did you mean --max-message-size?" + HELP,
        ),
        (["--zzz"], "unknown option --zzz" + HELP),
        (["--foo"], "unknown option --foo" + HELP),  # not the hidden --_fd, however close
        (["extra"], "unexpected argument 'extra'" + HELP),
        (["--port", "99999"], "--port must be 0-65535, not 99999"),
        (["--port", "-1"], "--port must be 0-65535, not -1"),
        (
            ["--keyfile", "key.pem"],
            "--keyfile needs --certfile (the certificate the key belongs to);"
            " give both to serve wss://, or neither to serve ws://",
        ),
    ],
)
def test_bad_flags_are_one_line_not_the_usage(args: list[str], message: str) -> None:
    assert_one_line_error(run_cli("examples.echo:app", *args), message)


def test_missing_target_is_one_line() -> None:
    assert_one_line_error(run_cli(), "the following arguments are required: module:app" + HELP)


def test_port_in_use_names_the_address() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("examples.echo:app", "--port", str(port))
    assert_one_line_error(
        result,
        f"cannot listen on 127.0.0.1:{port}: address already in use (is another server running?)",
    )


def test_unresolvable_host_names_the_host() -> None:
    host = "no.such.host.invalid"
    with pytest.raises(socket.gaierror) as failed:
        socket.getaddrinfo(host, 8000)
    reason = str(failed.value.strerror)
    result = run_cli("examples.echo:app", "--host", host)
    assert_one_line_error(
        result,
        f"cannot listen on {host}:8000: the host name does not resolve"
        f" ({reason[:1].lower()}{reason[1:]})",
    )


@dataclass
class TLSFiles:
    cert: Path  # the certificate alone
    key: Path  # its private key
    both: Path  # key and certificate in one file
    other_key: Path  # the key of another certificate
    encrypted_key: Path  # `key`, encrypted with a passphrase


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    issued, other = ca.issue_cert("localhost"), ca.issue_cert("other.example")
    files = TLSFiles(*(folder / name for name in ("c.pem", "k.pem", "ck.pem", "o.pem", "e.pem")))
    issued.cert_chain_pems[0].write_to_path(files.cert)
    issued.private_key_pem.write_to_path(files.key)
    issued.private_key_and_cert_chain_pem.write_to_path(files.both)
    other.private_key_pem.write_to_path(files.other_key)
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), password=None)
    files.encrypted_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return files


def test_tls_file_errors_name_the_file_and_the_problem(tls_files: TLSFiles) -> None:
    missing = tls_files.cert.parent / "missing.pem"
    folder = tls_files.cert.parent
    cases: list[tuple[list[str], str]] = [
        (["--certfile", str(missing)], f"certificate file {missing} does not exist"),
        (["--certfile", str(folder)], f"cannot read certificate file {folder}: is a directory"),
        (
            ["--certfile", str(tls_files.cert), "--keyfile", str(missing)],
            f"key file {missing} does not exist",
        ),
        (
            ["--certfile", str(tls_files.cert)],
            f"certificate file {tls_files.cert} holds no private key: give the key file too"
            " (--keyfile, or keyfile= in code), or append the key to the certificate file",
        ),
        (
            ["--certfile", str(tls_files.cert), "--keyfile", str(tls_files.other_key)],
            f"the private key in {tls_files.other_key} does not match the certificate in"
            f" {tls_files.cert}: give the key the certificate was issued for",
        ),
        (
            ["--certfile", str(tls_files.key)],
            f"certificate file {tls_files.key} holds no PEM certificate (a '-----BEGIN"
            " CERTIFICATE-----' block); give the certificate (chain) in PEM form",
        ),
    ]
    for args, message in cases:
        assert_one_line_error(run_cli("examples.echo:app", *args, "--port", "0"), message)


def test_an_encrypted_key_is_refused_without_prompting(tls_files: TLSFiles) -> None:
    # OpenSSL would otherwise ask for the passphrase on the terminal and wait.
    with pytest.raises(wsapp.ConfigError) as caught:
        ssl_context_from_files(str(tls_files.cert), str(tls_files.encrypted_key))
    assert str(caught.value) == (
        f"the private key in {tls_files.encrypted_key} is encrypted and wsapp does not ask for "
        f"passphrases: decrypt it first (openssl pkey -in {tls_files.encrypted_key} "
        "-out decrypted-key.pem)"
    )


def test_a_key_file_without_its_key_says_so(tls_files: TLSFiles) -> None:
    with pytest.raises(wsapp.ConfigError) as caught:
        ssl_context_from_files(str(tls_files.cert), str(tls_files.cert))
    assert str(caught.value) == (
        f"key file {tls_files.cert} holds no PEM private key"
        " (a '-----BEGIN ... PRIVATE KEY-----' block)"
    )
    assert ssl_context_from_files(str(tls_files.both))  # key and certificate in one file


@pytest.mark.anyio
async def test_create_server_refuses_what_the_cli_refuses(tls_files: TLSFiles) -> None:
    app = wsapp.App()
    with pytest.raises(wsapp.ConfigError) as caught:
        await app.create_server("127.0.0.1", 0, keyfile=str(tls_files.key))
    assert str(caught.value) == (
        f"keyfile={str(tls_files.key)!r} without certfile: pass the certificate too "
        "(certfile=...), or neither to serve without TLS"
    )
    context = ssl_context_from_files(str(tls_files.both))
    with pytest.raises(wsapp.ConfigError, match=r"^both ssl_context and certfile given"):
        await app.create_server("127.0.0.1", 0, certfile=str(tls_files.both), ssl_context=context)
    with pytest.raises(wsapp.ConfigError) as caught:
        await app.create_server("127.0.0.1", 99999)
    assert str(caught.value) == "port must be 0-65535, not 99999"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ListenError) as in_use:
            await app.create_server("127.0.0.1", port)
    assert isinstance(in_use.value, OSError)  # code catching OSError still works
    assert str(in_use.value) == (
        f"cannot listen on 127.0.0.1:{port}: address already in use (is another server running?)"
    )


def test_help_shows_each_settings_whole_first_sentence() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wsapp", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    shown = " ".join(result.stdout.split())  # argparse wraps lines at the terminal's width
    for name, inside in [("allowed_origins", "App.allow_any_origin"), ("trusted_proxies", "10.0")]:
        description = " ".join(str(wsapp.Settings.model_fields[name].description).split())
        sentence = description.split(". ")[0] + "."
        assert inside in sentence  # a period inside backticks does not end it
        assert sentence in shown


def test_first_sentence() -> None:
    assert first_sentence("One `a.b` c.\n Two.") == "One `a.b` c."
    assert first_sentence("Version 1.5 is out. More") == "Version 1.5 is out."
    assert first_sentence("No period at all") == "No period at all"
    assert first_sentence("Ends here.") == "Ends here."
    assert _help("Up to 50% of it. More.") == "Up to 50%% of it."  # argparse formats help


pytestmark_async = pytest.mark.anyio


@pytestmark_async
async def test_settings_precedence_defaults_app_env_flags() -> None:
    async def settings_seen(address: str) -> dict[str, Any]:
        async with connect(address) as ws:
            return dict(json.loads(await ws.recv()))

    env = {
        "WSAPP_MAX_MESSAGE_SIZE": "222",
        "WSAPP_WRITE_TIMEOUT": "8",
        "WSAPP_DEBUG": "true",
        "WSAPP_TRUSTED_PROXIES": "10.0.0.0/8,unix",  # commas, as for a flag
    }
    with anyio.fail_after(TIMEOUT):
        async with serving(
            "tests.apps.report:app",
            "--write-timeout",
            "9",
            "--allowed-origins",
            "https://a.example,https://b.example",
            "--no-debug",
            env=env,
        ) as served:
            seen = await client(settings_seen, served.url)
            served.process.send_signal(signal.SIGTERM)
    assert seen["pong_timeout"] == 30.0  # default
    assert seen["ping_interval"] == 5.0  # App(settings=...)
    assert seen["max_message_size"] == 222  # environment over App
    assert seen["write_timeout"] == 9.0  # flag over environment
    assert seen["debug"] is False  # flag over environment
    assert seen["allowed_origins"] == ["https://a.example", "https://b.example"]
    assert seen["trusted_proxies"] == ["10.0.0.0/8", "unix"]


@pytestmark_async
async def test_factory_and_start_line() -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving("tests.apps.report:make_app", "--factory") as served:
            assert served.url.startswith("ws://127.0.0.1:")
            served.process.send_signal(signal.SIGINT)
    assert served.process.returncode == 0


RUN_ECHO = """
{setup}
from examples.echo import app
app.run(port=0)
"""


async def echo_hello(address: str) -> Any:
    async with connect(address) as ws:
        await ws.send("hello")
        return await ws.recv()


@pytestmark_async
async def test_app_run_logs_like_the_cli() -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(script=RUN_ECHO.format(setup=""), stop=True) as served:
            assert served.url.startswith("ws://127.0.0.1:")
            assert await client(echo_hello, served.url) == "hello"
            await served.wait_for(served.stderr, " close ")
    assert served.process.returncode == 0
    assert any(" INFO wsapp: open " in line for line in served.stderr)


@pytestmark_async
async def test_app_run_keeps_the_logging_the_program_configured() -> None:
    setup = "import logging; logging.basicConfig(level='INFO', format='MINE %(message)s')"
    with anyio.fail_after(TIMEOUT):
        async with serving(script=RUN_ECHO.format(setup=setup), stop=True) as served:
            assert await client(echo_hello, served.url) == "hello"
            await served.wait_for(served.stderr, "MINE close ")
    wsapp_lines = [line for line in served.stderr if "wsapp" in line or " open " in line]
    assert wsapp_lines and all(line.startswith("MINE ") for line in wsapp_lines)  # once each


@pytestmark_async
@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
async def test_backends(backend: str) -> None:
    async def echo(address: str) -> Any:
        async with connect(address) as ws:
            await ws.send(backend)
            return await ws.recv()

    with anyio.fail_after(TIMEOUT):
        async with serving("examples.echo:app", "--backend", backend) as served:
            assert await client(echo, served.url) == backend
            served.process.send_signal(signal.SIGTERM)
    assert served.process.returncode == 0


@pytestmark_async
async def test_sigterm_closes_100_connections_with_1001_runs_every_on_close_and_exits_0() -> None:
    async def hundred(address: str) -> list[int | None]:
        sockets = [await connect(address) for _ in range(100)]
        await asyncio.gather(*(ws.recv() for ws in sockets))  # each one's settings report
        await asyncio.gather(*(ws.wait_closed() for ws in sockets))
        return [ws.close_code for ws in sockets]

    with anyio.fail_after(TIMEOUT * 2):
        async with serving("tests.apps.report:app") as served, anyio.create_task_group() as tg:
            codes: list[int | None] = []

            async def run_clients() -> None:
                codes.extend(await client(hundred, served.url))

            tg.start_soon(run_clients)
            await served.wait_for(served.stderr, "INFO wsapp: open ", 100)
            served.process.send_signal(signal.SIGTERM)
    assert codes == [1001] * 100
    assert served.process.returncode == 0
    assert served.stdout.count("on_close 1001 True") == 100
    assert any("shutting down gracefully" in line for line in served.stderr)


@pytestmark_async
async def test_second_signal_forces_exit_at_once() -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving("examples.echo:app", "--close-timeout", "60") as served:
            port = int(served.url.rsplit(":", 1)[1])
            async with RawClient.connect(port) as raw:  # will never answer the close frame
                served.process.send_signal(signal.SIGTERM)
                assert (await raw.read_close())[0] == 1001
                served.process.send_signal(signal.SIGINT)
                with anyio.fail_after(5):  # not the 60 s close_timeout
                    await served.process.wait()
    assert served.process.returncode == 1
    assert any("forcing exit" in line for line in served.stderr)


def without(folder: Path, module: str) -> None:
    """Make ``module`` fail to import for a process with ``folder`` on its PYTHONPATH, as
    in an install without it."""
    (folder / module).mkdir()
    (folder / module / "__init__.py").write_text(f"raise ModuleNotFoundError(name={module!r})\n")


@pytest.mark.parametrize("backend", ["trio", "uvloop"])
@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one process", "workers"])
def test_a_backend_that_is_not_installed_is_one_line_naming_the_extra(
    tmp_path: Path, backend: str, workers: list[str]
) -> None:
    without(tmp_path, backend)
    result = run_cli(
        "examples.echo:app", "--port", "0", "--backend", backend, *workers,
        env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert_one_line_error(
        result, f"cannot serve: backend {backend!r} needs {backend}: pip install 'wsapp[{backend}]'"
    )


def test_app_run_on_a_backend_that_is_not_installed_names_the_extra(tmp_path: Path) -> None:
    without(tmp_path, "trio")
    program = (
        "from examples.echo import app\n"
        "try:\n"
        "    app.run(port=0, backend='trio')\n"
        "except RuntimeError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert result.stdout == "backend 'trio' needs trio: pip install 'wsapp[trio]'\n"


def test_a_folder_named_wsapp_where_the_app_is_is_named_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "wsapp").mkdir()  # e.g. a clone of wsapp next to the app
    (tmp_path / "chat.py").write_text("import wsapp\n\napp = wsapp.App()\n")
    result = subprocess.run(
        [sys.executable, "-m", "wsapp", "chat:app", "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )  # the installed wsapp (this tree, installed editable), as a user's would be
    assert_one_line_error(
        result,
        f"`import wsapp` finds {tmp_path / 'wsapp'}, not the wsapp package ({ROOT / 'wsapp'}): "
        "rename that, or run from another directory",
    )
