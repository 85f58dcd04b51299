"""Nested JSON-like data as a two-column markdown table, for TensorBoard's text dashboard.

TensorBoard renders text summaries as markdown; a flat ``| key | value |`` table with dotted keys
reads better there than a JSON dump and needs no extra dependency.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any


def _flatten(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            yield from _flatten(item, f"{path}.{key}" if path else str(key))
    else:
        yield path, value


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    # a "|" would end the cell and a newline the row; "\" first so the escapes stay escapes
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", "<br>")


def to_markdown(data: Mapping[str, Any]) -> str:
    """``{"a": {"b": 1}, "c": "x"}`` -> a ``| key | value |`` table with rows ``a.b`` and ``c``."""
    rows = ["| key | value |", "|---|---|"]
    rows.extend(f"| {_cell(key)} | {_cell(value)} |" for key, value in _flatten(data, ""))
    return "\n".join(rows)
