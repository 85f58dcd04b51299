"""The site's configuration (docs/mkdocs/): every page is in the nav, and the build's own hook.

``mkdocs build --strict -f docs/mkdocs/mkdocs.yml`` (the tox docs environment) is the full check:
broken links and anchors, and pages outside the nav, fail it. These tests say the same about the
nav without MkDocs, and keep the config strict.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
CONFIG = DOCS / "mkdocs" / "mkdocs.yml"


def _config() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")

    class Loader(yaml.SafeLoader):
        """Reads MkDocs' !!python/name tags as plain strings."""

    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: suffix)
    data: dict[str, Any] = yaml.load(CONFIG.read_text(encoding="utf-8"), Loader=Loader)
    return data


def _nav_pages(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return []


def test_every_page_is_in_the_nav_once_and_every_nav_entry_exists() -> None:
    config = _config()
    pages = sorted(str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md") if "mkdocs" not in path.parts)
    nav = _nav_pages(config["nav"])
    assert sorted(nav) == pages
    assert len(nav) == len(set(nav))


def test_the_build_is_strict_about_links_anchors_and_the_nav() -> None:
    config = _config()
    assert config["strict"] is True
    assert config["docs_dir"] == ".."
    for check in ("omitted_files", "not_found", "absolute_links", "unrecognized_links", "anchors"):
        assert config["validation"][check] == "warn", check  # strict turns warnings into failures


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_mkdocs_hooks", DOCS / "mkdocs" / "hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_pipes_escaped_for_github_render_plain_on_the_site() -> None:
    unescape = _hooks().unescape_table_code_pipes
    page = "\n".join(
        [
            "| task | file |",
            "|---|---|",
            "| `lighteval\\|mmlu\\|5` | a \\| b, `x\\|y` |",
            "",
            "text `a\\|b` outside a table",
            "```",
            "| `in\\|code` |",
            "```",
        ]
    )
    assert unescape(page).splitlines() == [
        "| task | file |",
        "|---|---|",
        "| `lighteval|mmlu|5` | a \\| b, `x|y` |",
        "",
        "text `a\\|b` outside a table",
        "```",
        "| `in\\|code` |",
        "```",
    ]
