"""mkdocs hook: renders the settings reference from wsapp.Settings itself.

The reference is generated, not written, so a default, a reason, an environment variable or a
flag can never drift from the code.
"""

from __future__ import annotations

import json
from typing import Any

MARKER = "<!-- settings-reference -->"


def _default(field: Any) -> str:
    value = field.get_default(call_default_factory=True)
    return f"`{json.dumps(value)}`"


def settings_reference() -> str:
    """One heading per setting (its anchor is its name, `settings/#max_message_size`), then
    its default, environment variable and flag on one line, then what it does: a layout that
    stays readable on a narrow screen, where a five-column table does not."""
    from wsapp.settings import ENV_PREFIX, Settings

    sections = []
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            flag += f"` / `--no-{name.replace('_', '-')}"
        doc = " ".join((field.description or "").split())
        sections.append(
            f"### `{name}` {{ #{name} }}\n\n"
            f"Default {_default(field)} · environment `{ENV_PREFIX}{name.upper()}` · "
            f"flag `{flag}`\n\n{doc}\n"
        )
    return "\n".join(sections)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, settings_reference())
    return markdown
