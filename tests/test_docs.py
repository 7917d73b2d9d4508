"""The documentation's code: every block is an included file (which the tests run) or says
it is a fragment, so a reader knows what runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

FENCE = re.compile(r"^```(\w*)(.*)$")
#: Blocks of these kinds show commands and output, or draw diagrams: not code to copy.
TRANSCRIPTS = {"console", "text", "mermaid"}


def code_blocks(page: Path) -> list[tuple[int, str, str, str]]:
    """(line, language, the rest of the fence line, first line) of each fenced block."""
    lines = page.read_text().splitlines()
    blocks, inside = [], False
    for number, line in enumerate(lines, 1):
        match = FENCE.match(line)
        if match and not inside:
            first = lines[number] if number < len(lines) else ""
            blocks.append((number, match[1], match[2], first))
            inside = True
        elif line.startswith("```"):
            inside = False
    return blocks


def test_every_code_block_is_an_included_file_or_a_marked_fragment() -> None:
    unmarked = [
        f"{page.relative_to(ROOT)}:{line}"
        for page in sorted((ROOT / "docs").glob("*.md"))
        for line, language, rest, first in code_blocks(page)
        if language not in TRANSCRIPTS
        and not first.startswith("--8<--")
        and 'title="fragment"' not in rest
    ]
    assert unmarked == [], 'include a tested file (--8<--) or add title="fragment"'


def test_every_included_file_exists_and_is_tested() -> None:
    included = {
        first.split('"')[1]
        for page in (ROOT / "docs").glob("*.md")
        for _, _, _, first in code_blocks(page)
        if first.startswith("--8<--")
    }
    assert included
    for path in included:
        assert (ROOT / path).is_file(), path
        assert path.startswith("examples/"), f"{path}: examples/ is what the tests run"


def test_the_api_reference_shows_the_public_api_with_a_type_for_every_attribute(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    page = (site / "api" / "index.html").read_text()
    untyped = []
    for row in re.finditer(r'<tr[^>]*class="doc-section-item"[^>]*>(.*?)</tr>', page, re.S):
        cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(
            r"<td[^>]*>(.*?)</td>", row[1], re.S)]  # fmt: skip
        if len(cells) >= 3 and not cells[1]:
            untyped.append(cells[0])
    assert untyped == []
    assert "model_config" not in page  # pydantic's plumbing is not the API
    for anchor in ("wsapp.Headers.getlist", "wsapp.QueryParams.getlist", "wsapp_client"):
        assert anchor in page
