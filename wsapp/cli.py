"""``python -m wsapp module:app``: serve an app from the command line (or document it)."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import typing
from collections.abc import Sequence
from types import ModuleType
from typing import Any, NoReturn

from wsapp.app import App, run_app
from wsapp.lifespan import LifespanError
from wsapp.settings import ConfigError, Settings, parse_none, resolve_settings

__all__ = ["load_app", "main"]


class UsageError(Exception):
    """A command line problem: shown as one line, exit status 2."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list


def _document_format(value: str) -> str:
    if value not in ("json", "yaml", "auto"):
        hint = " (put module:app before --asyncapi)" if ":" in value else ""
        raise argparse.ArgumentTypeError(f"expected json or yaml, got {value!r}{hint}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wsapp",
        description="Serve a wsapp application.",
        epilog="Every setting can also come from a WSAPP_<NAME> environment variable; "
        "flags win over the environment, which wins over the App's own settings.",
    )
    parser.add_argument("target", metavar="module:app", help="where the App is, e.g. chat:app")
    parser.add_argument(
        "--factory", action="store_true", help="module:app names a function that returns the App"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port; 0 picks a free one")
    parser.add_argument("--uds", help="listen on this unix socket path instead of TCP")
    parser.add_argument("--backend", choices=["asyncio", "uvloop", "trio"], default="asyncio")
    parser.add_argument("--certfile", help="PEM certificate (chain) to serve TLS (wss://)")
    parser.add_argument("--keyfile", help="PEM private key, if not inside --certfile")
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
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
        doc = (field.description or "").split(".")[0]
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
                _flag(name), dest=name, metavar="A,B", default=None, help=doc + " (comma-separated)"
            )
        else:
            group.add_argument(_flag(name), dest=name, default=None, metavar="VALUE", help=doc)
    return parser


def setting_flags(namespace: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line, as raw values for validation."""
    flags: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        value = getattr(namespace, name)
        if value is None:
            continue
        if _is_list(field.annotation):
            value = [item.strip() for item in value.split(",") if item.strip()]
        flags[name] = parse_none(name, value)
    return flags


def load_app(target: str, factory: bool = False) -> App:
    """Import ``module:attribute`` and return the App it names (or makes, with ``factory``)."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(f"expected module:app (like 'chat:app'), got {target!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
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


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        app = load_app(args.target, args.factory)
    except UsageError as exc:
        _fail(str(exc))
    if args.asyncapi is not None:
        _print_asyncapi(app, args)
        raise SystemExit(0)
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "uds": args.uds,
        "certfile": args.certfile,
        "keyfile": args.keyfile,
        "overrides": setting_flags(args),
    }
    try:
        graceful = run_app(app, args.backend, **options)
    except ConfigError as exc:
        _fail(str(exc))
    except LifespanError as exc:  # the app itself failed, not its command line
        _fail(str(exc), status=1)
    except (OSError, RuntimeError, ModuleNotFoundError) as exc:
        _fail(f"cannot serve: {exc}")
    except KeyboardInterrupt:  # a signal before the handlers were installed
        graceful = False
    raise SystemExit(0 if graceful else 1)
