"""The layers stay layers: the protocol package knows nothing of I/O, settings or callbacks,
and the transports know the app only through the narrow interface the lifecycle defines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "wsapp"


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
