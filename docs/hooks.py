"""mkdocs hook: renders the settings reference table from wsapp.Settings itself.

The table is generated, not written, so a default, a reason, an environment variable or a
flag can never drift from the code.
"""

from __future__ import annotations

import json
from typing import Any

MARKER = "<!-- settings-table -->"


def _default(field: Any) -> str:
    value = field.get_default(call_default_factory=True)
    return f"`{json.dumps(value)}`"


def settings_table() -> str:
    from wsapp.settings import ENV_PREFIX, Settings

    rows = [
        "| Setting | Default | Environment | Flag | What it does, and why this default |",
        "|---|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            flag += f" / --no-{name.replace('_', '-')}"
        doc = " ".join((field.description or "").split())
        rows.append(
            f"| `{name}` | {_default(field)} | `{ENV_PREFIX}{name.upper()}` | `{flag}` | {doc} |"
        )
    return "\n".join(rows)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, settings_table())
    return markdown
