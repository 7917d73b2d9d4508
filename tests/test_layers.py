"""The layers stay layers: every module imports only modules below it in one pinned order (at
run time, for type checking and inside functions alike), the protocol package knows nothing
of I/O, settings or callbacks, and the transports know the app only through the narrow
interface the lifecycle defines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "wsapp"

#: Every module of wsapp, from the bottom up: each may import the ones before it, never one
#: after it. A lower module that needs something of a higher one declares a small protocol
#: for it (`log.Logged`, `rooms.RoomMember`, `transport.Accepting`, `ratelimit.Answerable`,
#: `operations.metrics.RoomGauges`...). A new module takes its place here.
ORDER = [
    # vocabulary: no I/O, no other layer
    "wsapp.datastructures",
    "wsapp.concurrency",
    "wsapp.exceptions",
    "wsapp.tasks",
    # the protocol, sans I/O: bytes in, events and bytes out
    "wsapp.protocol.closecode",
    "wsapp.protocol.events",
    "wsapp.protocol.limits",
    "wsapp.protocol.masking",
    "wsapp.protocol.bytequeue",
    "wsapp.protocol.frames",
    "wsapp.protocol.deflate",
    "wsapp.protocol.reader",
    "wsapp.protocol.handshake",
    "wsapp.protocol.session",
    "wsapp.protocol",
    # what is configured, and what a request is
    "wsapp.settings",
    "wsapp.request",
    "wsapp.query",
    "wsapp.routing",
    "wsapp.log",
    # what operators see: counters where events happen, one collector reading them
    "wsapp.operations",
    "wsapp.operations.metrics",
    "wsapp.operations.prometheus",
    "wsapp.operations.looplag",
    "wsapp.operations.plainhttp",
    # one connection's way in (admission, then the queue) and the transport contract
    "wsapp.ratelimit",
    "wsapp.inbox",
    "wsapp.intake",
    "wsapp.transport",
    # rooms and the brokers that carry them across processes
    "wsapp.rooms.brokers",
    "wsapp.rooms.brokers.memory",
    "wsapp.rooms.brokers.hub",
    "wsapp.rooms.brokers.redis",
    "wsapp.rooms",
    # the connection, its callbacks, and the life of it every host runs
    "wsapp.connection",
    "wsapp.messages",
    "wsapp.endpoint",
    "wsapp.dispatcher",
    "wsapp.lifespan",
    "wsapp.lifecycle",
    "wsapp.rooms.publisher",
    # the hosts: the built-in server (and its supervision) and the ASGI adapter
    "wsapp.server.keepalive",
    "wsapp.server.flusher",
    "wsapp.server.streams",
    "wsapp.server.outbox",
    "wsapp.server.transport",
    "wsapp.server.handler",
    "wsapp.server.listeners",
    "wsapp.server.runner",
    "wsapp.server",
    "wsapp.server.reload",
    "wsapp.server.workers",
    "wsapp.asgi",
    # the app, and the tools around it
    "wsapp.app",
    "wsapp",
    "wsapp.testing",
    "wsapp.asyncapi",
    "wsapp.pytest_plugin",
    "wsapp.cli",
    "wsapp.__main__",
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def wsapp_imports(path: Path) -> set[str]:
    """The wsapp modules ``path`` imports anywhere (`from wsapp import lifecycle` imports the
    module wsapp.lifecycle; `from wsapp.protocol import CloseCode`, the package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in MODULES} - {module_name(path)}


def test_every_module_has_its_place_in_the_order() -> None:
    assert sorted(ORDER) == sorted(MODULES)
    assert len(ORDER) == len(set(ORDER))


@pytest.mark.parametrize("module", ORDER)
def test_a_module_imports_only_modules_below_it(module: str) -> None:
    if module not in MODULES:
        pytest.fail(f"{module} is in ORDER but not in wsapp/")
    below = set(ORDER[: ORDER.index(module)])
    above = wsapp_imports(MODULES[module]) - below
    assert not above, f"{module} imports {sorted(above)}, which ORDER puts above it"


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and not node.level:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("path", sorted((PACKAGE / "protocol").glob("*.py")), ids=lambda p: p.name)
def test_the_protocol_package_imports_no_io_no_settings_and_no_other_wsapp_layer(
    path: Path,
) -> None:
    for module in imported_modules(path):
        top = module.split(".")[0]
        assert top not in ("anyio", "trio", "asyncio", "pydantic", "pydantic_settings"), module
        if top == "wsapp":
            assert module.startswith("wsapp.protocol") or module == "wsapp.datastructures", module


@pytest.mark.parametrize(
    "path",
    [PACKAGE / "asgi.py", PACKAGE / "testing.py", *sorted((PACKAGE / "server").glob("*.py"))],
    ids=lambda p: p.name,
)
def test_transports_do_not_import_the_app_at_run_time(path: Path) -> None:
    # testing.py names App in annotations only (under TYPE_CHECKING), which ast sees too, so
    # the check is on module-level statements: the import cycle app <-> transport is gone.
    tree = ast.parse(path.read_text())
    runtime = {
        node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module is not None
    }
    assert "wsapp.app" not in runtime
