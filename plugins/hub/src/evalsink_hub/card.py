"""The details repository's README.md: ``datasets`` configs in YAML, then the latest results.

The YAML front matter lists, as lighteval's card does:

* one config per task ever pushed to the repository (:func:`evalsink_hub.naming.config_names`),
  with one split per run that has the task (:func:`evalsink_hub.naming.split_name`) and a
  ``latest`` split pointing at the task's newest run;
* a ``results`` config: one split per run's ``results_{date_id}.parquet``, and ``latest``.

That is the ``configs`` / ``data_files`` layout ``datasets.load_dataset`` and the Hub's viewer read.
The text shows the newest run's aggregated results and a ``load_dataset`` snippet.

The YAML is written here, not with a YAML library: every scalar is a JSON string (JSON is YAML),
so task names holding ``:``, ``|``, ``#`` or quotes can never change the document's structure.
Paths are glob-escaped, because ``datasets`` reads ``data_files`` entries as patterns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evalsink_hub.naming import (
    LATEST_SPLIT,
    RESULTS_CONFIG,
    RepoFiles,
    config_names,
    split_name,
    task_from_part,
)

MAX_CARD_TASKS = 100
"""Tasks shown in the card's task table and latest-results block; the rest are only in the YAML
configs and the results file."""

_GLOB_MAGIC = re.compile(r"([*?\[\]])")


@dataclass(frozen=True)
class LatestResults:
    """The newest run's aggregated results (``results`` of its results JSON) and where they are."""

    date_id: str
    results: Mapping[str, Any]
    link: str
    """URL of the results JSON (in this repository or a separate results repository)."""
    model_name: str | None = None
    """``config_general.model_name`` of that run."""


def glob_escape(path: str) -> str:
    """A path as a ``data_files`` pattern that matches exactly that file (``[`` -> ``[[]``...)."""
    return _GLOB_MAGIC.sub(r"[\1]", path)


def _q(text: str) -> str:
    """A YAML scalar: a JSON string (valid YAML; no name can break the document)."""
    return json.dumps(text, ensure_ascii=False)


def _data_files(runs: Mapping[str, str]) -> list[tuple[str, str]]:
    """(split, path) of every run in date order, then ``latest`` -> the newest run."""
    dates = sorted(runs)
    splits = [(split_name(date_id), runs[date_id]) for date_id in dates]
    if dates:
        splits.append((LATEST_SPLIT, runs[dates[-1]]))
    return splits


def dataset_configs(files: RepoFiles) -> list[tuple[str, list[tuple[str, str]]]]:
    """(config name, [(split, path)]) of the card: ``results`` first, then tasks by config name."""
    configs: list[tuple[str, list[tuple[str, str]]]] = []
    if files.results_parquet:
        configs.append((RESULTS_CONFIG, _data_files(files.results_parquet)))
    names = config_names(files.details)
    for part in sorted(files.details, key=lambda p: names[p]):
        configs.append((names[part], _data_files(files.details[part])))
    return configs


def configs_yaml(files: RepoFiles) -> str:
    """The ``configs:`` block of the front matter (empty when the repository has no data files)."""
    configs = dataset_configs(files)
    if not configs:
        return ""
    lines = ["configs:"]
    for name, splits in configs:
        lines.append(f"- config_name: {_q(name)}")
        lines.append("  data_files:")
        for split, path in splits:
            lines.append(f"  - split: {_q(split)}")
            lines.append("    path:")
            lines.append(f"    - {_q(glob_escape(path))}")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """Text for a markdown table cell: ``|`` escaped (also inside code spans), no line breaks."""
    return " ".join(text.split()).replace("|", "\\|")


def _fenced(body: str, language: str) -> str:
    fence = "```"
    while fence in body:
        fence += "`"
    return f"{fence}{language}\n{body}\n{fence}"


def _results_block(results: Mapping[str, Any]) -> tuple[str, int]:
    """The results JSON shown in the card (``all`` first, at most MAX_CARD_TASKS tasks), and how
    many tasks were left out."""
    keys = sorted(results, key=lambda task: (task != "all", task))
    shown = {task: results[task] for task in keys[:MAX_CARD_TASKS]}
    return json.dumps(shown, indent=4, ensure_ascii=False), max(0, len(keys) - MAX_CARD_TASKS)


def build_card(
    repo_id: str,
    model_name: str,
    files: RepoFiles,
    latest: LatestResults | None,
) -> str:
    """README.md of a details repository holding ``files`` (after the commit that uploads it)."""
    configs = dataset_configs(files)
    task_configs = [name for name, _ in configs if name != RESULTS_CONFIG]
    runs = sorted(
        {*files.results_json, *files.results_parquet, *(d for r in files.details.values() for d in r)}
    )
    front = f"---\npretty_name: {_q(f'Evaluation run of {model_name}')}\n{configs_yaml(files)}---\n"

    has_results = any(name == RESULTS_CONFIG for name, _ in configs)
    parts = [
        f"# Evaluation run of {model_name}",
        f"This dataset was created by evalsink from the evaluation run(s) of the model `{model_name}`. "
        f"It holds {len(runs)} run(s) and {len(task_configs)} evaluated task(s).",
        "Each task is a configuration. Each run is a split of it, named after the run's timestamp "
        f"(e.g. `{split_name(runs[-1])}` for run `{runs[-1]}`), and the `{LATEST_SPLIT}` split "
        "points at the newest run of the task."
        + (
            f" The `{RESULTS_CONFIG}` configuration holds the aggregated results of every run."
            if has_results
            else ""
        )
        if runs
        else "It holds no run yet.",
    ]
    example = task_configs[0] if task_configs else (RESULTS_CONFIG if configs else None)
    if example is not None:
        snippet = (
            "from datasets import load_dataset\n\n"
            f"data = load_dataset({_q(repo_id)}, {_q(example)}, split={_q(LATEST_SPLIT)})"
        )
        parts += ["To load the details of a task from its newest run:", _fenced(snippet, "python")]
    if task_configs:
        names = config_names(files.details)
        ordered = sorted(files.details, key=lambda p: names[p])
        rows = [
            f"| `{_cell(names[part])}` | `{_cell(task_from_part(part))}` | {len(files.details[part])} |"
            for part in ordered[:MAX_CARD_TASKS]
        ]
        table = "| config | task | runs |\n|---|---|---|\n" + "\n".join(rows)
        if len(ordered) > MAX_CARD_TASKS:
            table += f"\n\n{len(ordered) - MAX_CARD_TASKS} more task(s) are listed in the configs above."
        parts.append(table)
    parts.append("## Latest results")
    if latest is None:
        parts.append("No results file was found in this repository.")
    else:
        block, left_out = _results_block(latest.results)
        parts.append(
            f"These are the [latest results from run {latest.date_id}]({latest.link}). Tasks not "
            "evaluated in that run keep their results in earlier runs: see each run's split of the "
            f"`{RESULTS_CONFIG}` configuration and the `{LATEST_SPLIT}` split of each task."
        )
        parts.append(_fenced(block, "python"))
        if left_out:
            parts.append(f"{left_out} more task(s) are in the results file.")
    return front + "\n" + "\n\n".join(parts) + "\n"
