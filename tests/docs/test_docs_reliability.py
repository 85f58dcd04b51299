"""docs/reliability.md names, for each behaviour, the test that proves it: every one must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = re.compile(r"`((?:tests|plugins)/[^`:]+?)(?:::(\w+))?`|`::(\w+)`")


def test_every_test_the_reliability_page_names_exists() -> None:
    text = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    checked, current = 0, None
    for match in REFERENCE.finditer(text):
        path, name, continued = match.groups()
        if path is not None:
            current = ROOT / path
            if "*" in path:
                assert list(ROOT.glob(path)), path
                continue
            assert current.exists(), path
        else:
            assert current is not None, continued
            name = continued
        if name is not None:
            assert current is not None
            assert f"def {name}(" in current.read_text(encoding="utf-8"), f"{current}::{name}"
            checked += 1
    assert checked >= 25  # the page lists the tests, not only the folders
