"""``python -m wsapp module:app``: serve an app from the command line (or document it)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import typing
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import anyio

from wsapp.app import App, run_app
from wsapp.lifespan import LifespanError
from wsapp.log import configure_logging
from wsapp.operations.metrics import SnapshotFiles
from wsapp.server.listeners import ListenError
from wsapp.server.reload import Reloader
from wsapp.server.runner import require_backend
from wsapp.server.workers import Supervisor, die_with_parent
from wsapp.settings import ConfigError, Settings, did_you_mean, resolve_settings

__all__ = ["load_app", "main"]

PROG = "python -m wsapp"


class UsageError(Exception):
    """A command line problem: shown as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors keep the CLI's contract: one line, exit status 2.

    argparse's own `error` prints the whole usage (dozens of lines, one per setting) above
    the one line that matters.
    """

    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see {self.prog} --help)")

    def parse_arguments(self, argv: Sequence[str] | None) -> argparse.Namespace:
        """`parse_args`, but an unknown option is named with the closest real one."""
        args, extras = self.parse_known_args(argv)
        if extras:
            options = [
                name
                for action in self._actions
                if action.help is not argparse.SUPPRESS  # hidden: never suggested
                for name in action.option_strings
            ]
            unknown = next((item for item in extras if item.startswith("-")), None)
            if unknown is None:
                self.error(f"unexpected argument {extras[0]!r}")
            name = unknown.partition("=")[0]
            self.error(f"unknown option {name}{did_you_mean(name, options)}")
        return args


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list


def _one_of(*choices: str) -> Callable[[str], str]:
    """An argparse type accepting ``choices`` only, suggesting the closest on a typo (argparse's
    own ``choices`` message differs between Python versions and suggests nothing)."""

    def check(value: str) -> str:
        if value not in choices:
            raise argparse.ArgumentTypeError(
                f"{value!r} is not one of {', '.join(choices)}{did_you_mean(value, choices)}"
            )
        return value

    return check


def _port(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None


def _workers(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(
            f"expected a number of processes (1 or more), got {value!r}"
        )
    return count


def first_sentence(text: str) -> str:
    """The first sentence of a docstring: up to a period followed by a space (or the end)
    that is not inside backticks, so `App.allow_any_origin` or `10.0.0.0/8` do not end it."""
    text = " ".join(text.split())
    in_code = False
    for index, char in enumerate(text):
        if char == "`":
            in_code = not in_code
        elif char == "." and not in_code and text[index + 1 : index + 2] in ("", " "):
            return text[: index + 1]
    return text


def _help(field_description: str | None) -> str:
    return first_sentence(field_description or "").replace("%", "%%")  # argparse formats help


def _document_format(value: str) -> str:
    if value not in ("json", "yaml", "auto"):
        hint = " (put module:app before --asyncapi)" if ":" in value else ""
        raise argparse.ArgumentTypeError(f"expected json or yaml, got {value!r}{hint}")
    return value


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description="Serve a wsapp application.",
        epilog="Every setting can also come from a WSAPP_<NAME> environment variable; "
        "flags win over the environment, which wins over the App's own settings.",
    )
    parser.add_argument("target", metavar="module:app", help="where the App is, e.g. chat:app")
    parser.add_argument(
        "--factory", action="store_true", help="module:app names a function that returns the App"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=_port, default=8000, help="TCP port (0-65535); 0 picks a free one"
    )
    parser.add_argument("--uds", help="listen on this unix socket path instead of TCP")
    parser.add_argument(
        "--workers",
        type=_workers,
        default=None,
        metavar="N",
        help="serve with N worker processes on the same port, under a supervisor that "
        "replaces a worker that dies; rooms span them (through --broker, or through the "
        "supervisor when none is set)",
    )
    parser.add_argument(
        "--reload",
        action="store_true",
        help="for development: restart the server (closing connections with 1012) whenever a "
        ".py file under the current directory (or --reload-dir) changes",
    )
    parser.add_argument(
        "--reload-dir",
        action="append",
        default=None,
        metavar="DIR",
        help="a directory --reload watches instead of the current one (repeatable)",
    )
    # Set by the supervisor on the command lines of its workers; not for people.
    parser.add_argument(
        "--_reuse-port", dest="reuse_port", action="store_true", help=argparse.SUPPRESS
    )
    parser.add_argument("--_fd", dest="fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--_ready-fd", dest="ready_fd", type=int, default=None, help=argparse.SUPPRESS
    )
    parser.add_argument("--_metrics-dir", dest="metrics_dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--backend",
        type=_one_of("asyncio", "uvloop", "trio"),
        default="asyncio",
        metavar="{asyncio,uvloop,trio}",
        help="event loop (default asyncio); uvloop needs wsapp[uvloop], trio wsapp[trio]",
    )
    parser.add_argument("--certfile", help="PEM certificate (chain) to serve TLS (wss://)")
    parser.add_argument("--keyfile", help="PEM private key, if not inside --certfile")
    levels = ("critical", "error", "warning", "info", "debug")
    parser.add_argument(
        "--log-level",
        default="info",
        type=_one_of(*levels),
        metavar="{" + ",".join(levels) + "}",
        help="logging level (default info)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        type=_one_of("text", "json"),
        metavar="{text,json}",
        help="log lines as text (default) or as one JSON object per line, with the "
        "connection id, path, client and close code as fields",
    )
    parser.add_argument(
        "--asyncapi",
        nargs="?",
        const="auto",
        type=_document_format,
        metavar="json|yaml",
        help="print the app's AsyncAPI 3.0 document instead of serving (default format: YAML "
        "if PyYAML is installed, else JSON)",
    )
    group = parser.add_argument_group("settings (see wsapp.Settings)")
    for name, field in Settings.model_fields.items():
        doc = _help(field.description)
        if field.annotation is bool:
            group.add_argument(
                _flag(name),
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=doc,
            )
        elif _is_list(field.annotation):
            group.add_argument(
                _flag(name), dest=name, metavar="A,B", default=None, help=doc + " Comma-separated."
            )
        else:
            group.add_argument(_flag(name), dest=name, default=None, metavar="VALUE", help=doc)
    return parser


def setting_flags(namespace: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line, as the text typed: resolve_settings parses it
    exactly as it parses the environment's (commas, `none`/`off`)."""
    return {
        name: getattr(namespace, name)
        for name in Settings.model_fields
        if getattr(namespace, name) is not None
    }


def load_app(target: str, factory: bool = False) -> App:
    """Import ``module:attribute`` and return the App it names (or makes, with ``factory``)."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(f"expected module:app (like 'chat:app'), got {target!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    _check_not_shadowed()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UsageError(
                f"cannot import {module_name!r}: no module named {exc.name!r}"
            ) from None
        raise
    obj: object = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"module {module_name!r} has no attribute {attribute!r}")
        obj = getattr(obj, part)
    if factory:
        if not callable(obj):
            raise UsageError(f"{target!r} is not callable, so it cannot be a --factory")
        obj = obj()
    if not isinstance(obj, App):
        hint = "" if factory or not callable(obj) else " (is it a factory? pass --factory)"
        raise UsageError(f"{target!r} is not a wsapp.App but a {type(obj).__name__}{hint}")
    return obj


def _check_not_shadowed() -> None:
    """Refuse to go on when `import wsapp`, in the user's code, would not find this package
    (a folder or file named wsapp where the app is, such as a clone of wsapp): the app would
    fail with an AttributeError that names nothing of the cause."""
    ours = os.path.dirname(os.path.realpath(__file__))
    found = sys.modules["wsapp"]  # a regular package has a file; a mere folder, a path
    file = getattr(found, "__file__", None)
    where = os.path.dirname(file) if file else next(iter(getattr(found, "__path__", [])), "?")
    if os.path.realpath(where) != ours:
        raise UsageError(
            f"`import wsapp` finds {where}, not the wsapp package ({ours}): rename that, or "
            "run from another directory"
        )


def _fail(message: str, status: int = 2) -> NoReturn:
    print(f"wsapp: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def _print_asyncapi(app: App, args: argparse.Namespace) -> None:
    """Print the AsyncAPI document of ``app``, with the settings the flags would serve it with."""
    from wsapp.asyncapi import asyncapi_document

    try:
        yaml: ModuleType | None = importlib.import_module("yaml")
    except ImportError:
        yaml = None
    if args.asyncapi == "yaml" and yaml is None:
        _fail("--asyncapi yaml needs PyYAML: pip install 'wsapp[asyncapi]'")
    try:
        settings = resolve_settings(app.settings, flags=setting_flags(args))
    except ConfigError as exc:
        _fail(str(exc))
    document = asyncapi_document(app, title=args.target, subprotocols=settings.subprotocols)
    if args.asyncapi == "json" or yaml is None:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        # A SafeDumper writing text of several lines (descriptions) as literal blocks.
        dumper: Any = type("Dumper", (yaml.SafeDumper,), {})
        dumper.add_representer(str, _represent_str)
        print(yaml.dump(document, Dumper=dumper, sort_keys=False, allow_unicode=True), end="")


def _represent_str(dumper: Any, value: str) -> Any:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _report_ready(fd: int, server: object) -> None:
    """Tell the supervisor that this worker serves (its start-up hooks have run)."""
    os.write(fd, b"1")
    os.close(fd)


def _supervise(app: App, args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``--workers N`` worker processes; the supervisor's exit status."""
    try:
        settings = resolve_settings(app.settings, flags=setting_flags(args))
    except ConfigError as exc:
        _fail(str(exc))
    command = [sys.executable, "-m", "wsapp", *argv]
    supervisor = Supervisor(
        command,
        args.workers,
        host=args.host,
        port=args.port,
        uds=args.uds,
        broker=settings.broker is not None,
    )
    try:
        return anyio.run(supervisor.run)
    except ListenError as exc:
        _fail(str(exc))


def _reload(args: argparse.Namespace, argv: list[str]) -> int:
    """Serve with ``--reload``: the server in a child process, restarted on changes."""
    if args.workers is not None:
        _fail("--reload runs one server process; drop --workers while developing")
    directories = [Path(directory) for directory in args.reload_dir or [os.getcwd()]]
    for directory in directories:
        if not directory.is_dir():
            _fail(f"--reload-dir {str(directory)!r} is not a directory")
    child = [argument for argument in argv if argument != "--reload"]
    return anyio.run(Reloader([sys.executable, "-m", "wsapp", *child], directories).run)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_arguments(argv)
    if not 0 <= args.port <= 65535:
        _fail(f"--port must be 0-65535, not {args.port}")
    if args.keyfile is not None and args.certfile is None:
        _fail(
            "--keyfile needs --certfile (the certificate the key belongs to); "
            "give both to serve wss://, or neither to serve ws://"
        )
    worker = args.ready_fd is not None
    configure_logging(args.log_level, worker, args.log_format)
    if args.reload:
        raise SystemExit(_reload(args, sys.argv[1:] if argv is None else list(argv)))
    try:
        app = load_app(args.target, args.factory)
    except UsageError as exc:
        _fail(str(exc))
    if args.asyncapi is not None:
        _print_asyncapi(app, args)
        raise SystemExit(0)
    if args.workers is not None and not worker:
        try:  # once, here, rather than once per worker
            require_backend(args.backend)
        except RuntimeError as exc:
            _fail(f"cannot serve: {exc}")
        raise SystemExit(_supervise(app, args, sys.argv[1:] if argv is None else list(argv)))
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "uds": args.uds,
        "certfile": args.certfile,
        "keyfile": args.keyfile,
        "overrides": setting_flags(args),
        "reuse_port": args.reuse_port,
        "fd": args.fd,
    }
    ready = None
    if worker:
        die_with_parent()
        ready = partial(_report_ready, args.ready_fd)
        if args.metrics_dir is not None:  # whichever worker is scraped reports them all
            app.metrics.shared = SnapshotFiles(args.metrics_dir)
    try:
        graceful = run_app(app, args.backend, ready, **options)
    except (ConfigError, ListenError) as exc:
        _fail(str(exc))
    except LifespanError as exc:  # the app itself failed, not its command line
        _fail(str(exc), status=1)
    except (OSError, RuntimeError, ModuleNotFoundError) as exc:
        _fail(f"cannot serve: {exc}")
    except KeyboardInterrupt:  # a signal before the handlers were installed
        graceful = False
    raise SystemExit(0 if graceful else 1)
