"""MkDocs hooks of the documentation site (``hooks:`` in docs/mkdocs/mkdocs.yml).

The pages are written to read well on GitHub too, whose tables need a ``|`` inside a code span to
be escaped (`` `a\\|b` ``). Python-Markdown never splits a table cell inside a code span, and
would show that backslash, so table rows get ``\\|`` turned back into ``|`` within code spans
before they are rendered. Nothing else is changed.
"""

from __future__ import annotations

import re
from typing import Any

_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def unescape_table_code_pipes(markdown: str) -> str:
    lines = markdown.split("\n")
    fence: str | None = None
    for index, line in enumerate(lines):
        opening = _FENCE.match(line)
        if opening:
            if fence is None:
                fence = opening.group(1)
            elif opening.group(1) == fence:
                fence = None
            continue
        if fence is None and line.lstrip().startswith("|") and "\\|" in line:
            lines[index] = _CODE_SPAN.sub(
                lambda span: span.group(1) + span.group(2).replace("\\|", "|") + span.group(1), line
            )
    return "\n".join(lines)


def on_page_markdown(markdown: str, **_: Any) -> str:
    return unescape_table_code_pipes(markdown)
