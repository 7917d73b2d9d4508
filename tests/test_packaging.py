"""The wheel ships what an installed wsapp needs: every subpackage, and `py.typed`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_has_the_subpackages_and_py_typed(tmp_path: Path) -> None:
    # Built from a copy: setuptools writes build/ and *.egg-info next to the sources, and the
    # working tree is not this test's to write in.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "wsapp", source / "wsapp", ignore=shutil.ignore_patterns("__pycache__"))
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
    )
    assert built.returncode == 0, built.stderr  # e.g. setuptools < 70.1 without `wheel`
    (wheel,) = wheels.glob("wsapp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # PEP 561: without it, type checkers ignore wsapp's annotations in users' code.
    assert "wsapp/py.typed" in names
    for package in ("wsapp", "wsapp/protocol", "wsapp/server"):
        assert f"{package}/__init__.py" in names
    assert "wsapp/server/listeners.py" in names
    assert "wsapp/protocol/handshake.py" in names
