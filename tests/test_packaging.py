"""The wheel ships what an installed wsapp needs: every subpackage, `py.typed`, and the C
speed-up where it can be compiled, without it where it cannot."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def build_wheel(tmp_path: Path, **environment: str) -> set[str]:
    """The names in a wheel built from a copy of the sources (setuptools writes build/ and
    *.egg-info next to them, and the working tree is not this test's to write in)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "wsapp", source / "wsapp", ignore=shutil.ignore_patterns("__pycache__", "*.so")
    )
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(wheels),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **environment},
    )
    assert built.returncode == 0, built.stderr  # e.g. setuptools < 70.1 without `wheel`
    (wheel,) = wheels.glob("wsapp-*.whl")
    return set(zipfile.ZipFile(wheel).namelist())


def speedups(names: set[str]) -> list[str]:
    return [name for name in names if name.startswith("wsapp/protocol/_speedups.cpython")]


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_the_wheel_has_the_subpackages_py_typed_and_the_speedup(tmp_path: Path) -> None:
    names = build_wheel(tmp_path)
    # PEP 561: without it, type checkers ignore wsapp's annotations in users' code.
    assert "wsapp/py.typed" in names
    assert "wsapp/protocol/_speedups.pyi" in names
    for package in ("wsapp", "wsapp/protocol", "wsapp/server"):
        assert f"{package}/__init__.py" in names
    assert "wsapp/server/listeners.py" in names
    assert "wsapp/protocol/handshake.py" in names
    assert speedups(names)


def test_without_a_compiler_the_wheel_builds_without_the_speedup(tmp_path: Path) -> None:
    names = build_wheel(tmp_path, CC="/bin/false")
    assert "wsapp/protocol/masking.py" in names
    assert not speedups(names)
