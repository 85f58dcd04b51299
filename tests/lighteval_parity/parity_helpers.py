"""What the lighteval parity tests share: which lighteval they need, and how they compare files
(no lighteval import here)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest


def skip_without_lighteval_0_13() -> None:
    """Skip the calling test module unless lighteval 0.13 is importable: it needs torch and ~2 GB,
    so it is not in the tox run (test_against_lighteval.py says how to build its environment)."""
    lighteval = pytest.importorskip("lighteval")
    if not getattr(lighteval, "__version__", "").startswith("0.13."):
        pytest.skip("written against lighteval 0.13", allow_module_level=True)


DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d+")
VOLATILE = {"start_time", "end_time", "total_evaluation_time_secondes", "evalsink_version"}
DOCUMENTED = {"hash_full_prompts", "truncated", "non_truncated", "padded", "non_padded"}
"""Results keys that differ by design: lighteval hashes an always-empty full prompt and counts no
truncated or padded sample (docs/migrating-from-lighteval.md, "What differs, and why")."""


def files_by_name(root: Path) -> dict[str, Path]:
    return {
        DATE.sub("<date>", str(path.relative_to(root))): path for path in root.rglob("*") if path.is_file()
    }


def differences(theirs: Any, ours: Any, where: str = "") -> list[str]:
    """Where two decoded values differ (floats within 1e-12, NaN equal to NaN)."""
    if isinstance(theirs, dict) and isinstance(ours, dict):
        found = [f"{where}: keys {list(theirs)} != {list(ours)}"] if list(theirs) != list(ours) else []
        for key in theirs.keys() & ours.keys():
            found += differences(theirs[key], ours[key], f"{where}.{key}")
        return found
    if isinstance(theirs, list) and isinstance(ours, list) and len(theirs) == len(ours):
        pairs = enumerate(zip(theirs, ours, strict=True))
        return [
            found for index, (left, right) in pairs for found in differences(left, right, f"{where}[{index}]")
        ]
    if isinstance(theirs, float) and isinstance(ours, float):
        equal = math.isclose(theirs, ours, rel_tol=1e-12) or (math.isnan(theirs) and math.isnan(ours))
        return [] if equal else [f"{where}: {theirs!r} != {ours!r}"]
    return [] if type(theirs) is type(ours) and theirs == ours else [f"{where}: {theirs!r} != {ours!r}"]


def without_keys(value: Any, keys: set[str]) -> Any:
    if isinstance(value, dict):
        return {key: without_keys(item, keys) for key, item in value.items() if key not in keys}
    if isinstance(value, list):
        return [without_keys(item, keys) for item in value]
    return value


def assert_same_details(theirs: dict[str, Path], ours: dict[str, Path]) -> int:
    """Every details parquet of lighteval's has evalsink's twin: same schema, same rows. Returns
    how many were compared."""
    details = [name for name in theirs if name.endswith(".parquet")]
    for name in details:
        expected, written = pq.read_table(theirs[name]), pq.read_table(ours[name])
        assert written.schema.remove_metadata() == expected.schema.remove_metadata(), name
        assert differences(expected.to_pylist(), written.to_pylist(), name) == []
    return len(details)


def comparable_results(
    theirs: dict[str, Path], ours: dict[str, Path]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both results files, decoded, without the keys that change from run to run."""
    [name] = [name for name in theirs if name.endswith(".json")]
    pair = []
    for files in (theirs, ours):
        data = json.loads(files[name].read_text(encoding="utf-8"))
        for key in VOLATILE:
            data["config_general"].pop(key, None)
        pair.append(data)
    return pair[0], pair[1]
