"""Generate docs/sink-options.md from the sinks' config models.

    python docs/mkdocs/gen_config_reference.py           # rewrite docs/sink-options.md
    python docs/mkdocs/gen_config_reference.py --check   # exit 1 if the committed page is stale

Every first-party sink (an ``evalsink.sinks`` entry point declared in ``plugins/*/pyproject.toml``
under a name the core knows an install hint for, ``evalsink.discovery.KNOWN_EXTRAS``; the example
sink of docs/writing-a-sink.md is a template, not one of them) gets one section: its config
model's fields, with their type and constraints, default, ``EVALSINK_<SINK>__<FIELD>`` variable
and description. The description is the field's
``Field(description=...)``, else the docstring written under the field in the class that declares
it or in the nearest base class that does (``SinkConfig`` documents ``required`` and
``hook_timeout``). Generating needs every sink distribution installed; tests/docs checks the
committed page section by section against whichever sinks are installed.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import sys
import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "sink-options.md"
SECTION = re.compile(r"^## `(?P<name>[^`]+)`$", re.MULTILINE)

HEADER = """\
# Sink options reference

Every option of every first-party sink, generated from the sinks' config models (the pydantic
classes named below) by `docs/mkdocs/gen_config_reference.py`; a test fails when this page and the
models disagree. How options are given, merged and validated is on
[the configuration page](configuration.md#sink-options); each sink's own page explains what its
options do.

An option is given in `sink_config={"<sink>": {"<option>": value}}` or as the environment variable
in the table (`EVALSINK_`, the sink name upper-cased with `-` and `.` turned into `_`, two underscores, the
option name in any case). An explicit `sink_config` value wins over the environment. Environment
values are strings, converted by pydantic (`"500"` → `500`, `"false"` → `False`). Only `hook_timeout`
reads `none` (or `null`) as `None`; for any other option `"none"` is the string `"none"` (a valid
`compression`), so leave the variable unset to keep an option's default. Every sink accepts
`required` and `hook_timeout`, which come from `evalsink.SinkConfig`.
"""


@dataclass(frozen=True)
class SinkSpec:
    """A first-party sink as its distribution declares it."""

    name: str
    distribution: str
    entry_point: str  # "module:Class"


def first_party_sinks(root: Path = ROOT) -> list[SinkSpec]:
    """The first-party ``evalsink.sinks`` entry points of ``plugins/*/pyproject.toml``: ``local``
    (the default sink) first, then the others in name order."""
    from evalsink.discovery import KNOWN_EXTRAS

    sinks = []
    for pyproject in sorted((root / "plugins").glob("*/pyproject.toml")):
        text = pyproject.read_text(encoding="utf-8")
        distribution = re.search(r'^name\s*=\s*"([^"]+)"', text, re.MULTILINE)
        section = re.search(
            r'^\[project\.entry-points\."evalsink\.sinks"\]\n(.*?)(?=^\[|\Z)', text, re.M | re.S
        )
        if distribution is None or section is None:
            continue
        for name, value in re.findall(r'^\s*([\w.-]+)\s*=\s*"([^"]+)"', section.group(1), re.MULTILINE):
            if name in KNOWN_EXTRAS:
                sinks.append(SinkSpec(name=name, distribution=distribution.group(1), entry_point=value))
    return sorted(sinks, key=lambda sink: (sink.name != "local", sink.name))


def load_sink_class(spec: SinkSpec) -> type[Any]:
    module, _, attribute = spec.entry_point.partition(":")
    return getattr(importlib.import_module(module), attribute)  # type: ignore[no-any-return]


# -- rendering one field --------------------------------------------------------------------------
def _code(text: str) -> str:
    """An inline code span (table-safe: a `|` is escaped so it does not split the cell)."""
    return "`" + text.replace("|", "\\|") + "`"


def render_type(annotation: Any) -> str:
    """A type as users write values: ``str | None``, ``"a" | "b"``, ``list[str]``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(json.dumps(value) for value in typing.get_args(annotation))
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(render_type(arg) for arg in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(render_type(arg) for arg in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def render_constraints(metadata: list[Any]) -> list[str]:
    """The field's bounds (``≥ 1``, ``length ≥ 3``, ``matches …``), in declaration order."""
    words = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "length ≥", "max_length": "length ≤"}
    found = []
    for item in metadata:
        for attribute, word in words.items():
            value = getattr(item, attribute, None)
            if value is not None:
                found.append(f"{word} {value}")
        pattern = getattr(item, "pattern", None)
        if pattern is not None:
            found.append(f"matches {_code(pattern)}")
    return found


def render_default(field: Any) -> str:
    from pydantic_core import PydanticUndefined

    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if isinstance(value, str):
        return _code(json.dumps(value))
    return _code(repr(value))


def attribute_docstrings(cls: type[Any]) -> dict[str, str]:
    """Field name -> the string literal right below its annotated assignment in ``cls``'s body."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.ClassDef)
    found = {}
    for statement, following in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            found[statement.target.id] = following.value.value
    return found


def describe(model: type[Any], name: str) -> str:
    """One line of markdown: the field's description or the nearest docstring in the MRO."""
    text = model.model_fields[name].description
    if not text:
        for cls in model.__mro__:  # the classes that declare the field, nearest first
            if name in vars(cls).get("__annotations__", {}):
                text = attribute_docstrings(cls).get(name)
                if text:
                    break
    if not text:
        return "—"
    text = " ".join(inspect.cleandoc(text).split())
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    return _escape_pipes_outside_code(text)


def _escape_pipes_outside_code(text: str) -> str:
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(
        _code(part[1:-1])
        if part.startswith("`") and part.endswith("`") and len(part) > 1
        else part.replace("|", "\\|")
        for part in parts
    )


# -- rendering the page ---------------------------------------------------------------------------
def render_sink(spec: SinkSpec) -> str:
    """The section of one sink (starting with its ``## `name``` heading)."""
    from evalsink.config import env_prefix

    sink_class = load_sink_class(spec)
    model = sink_class.config_model
    if getattr(sink_class, "remote", True):
        order = "`remote = True`: called after the local sinks"
    else:
        order = "`remote = False`: called before the remote sinks"
    ranks = "every rank" if getattr(sink_class, "all_ranks", False) else "rank 0 only"
    lines = [
        f"## `{spec.name}`",
        "",
        f"Config model `{model.__module__}.{model.__qualname__}`; distribution `{spec.distribution}`; "
        f"entry point `{spec.entry_point}`; {order}; with several processes, called on {ranks}.",
    ]
    page = ROOT / "docs" / "sinks" / f"{spec.name}.md"
    if page.exists():
        lines[-1] += f" What the options do: [the `{spec.name}` sink's page](sinks/{spec.name}.md)."
    lines += [
        "",
        "| option | type | default | environment variable | description |",
        "|---|---|---|---|---|",
    ]
    for name, field in model.model_fields.items():
        kind = ", ".join([_code(render_type(field.annotation)), *render_constraints(field.metadata)])
        variable = _code(f"{env_prefix(spec.name)}{name.upper()}")
        lines.append(
            f"| `{name}` | {kind} | {render_default(field)} | {variable} | {describe(model, name)} |"
        )
    return "\n".join(lines) + "\n"


def render_page(sections: list[str]) -> str:
    return HEADER + "".join(f"\n{section}" for section in sections)


def split_page(text: str) -> tuple[str, dict[str, str]]:
    """The committed page's header, and its sections by sink name (as ``render_sink`` writes them)."""
    starts = list(SECTION.finditer(text))
    header = text[: starts[0].start()] if starts else text
    sections = {}
    for index, match in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(text)
        sections[match["name"]] = text[match.start() : end].rstrip("\n") + "\n"
    return header.rstrip("\n") + "\n", sections


def main(argv: list[str]) -> int:
    page = render_page([render_sink(spec) for spec in first_party_sinks()])
    if "--check" in argv:
        if PAGE.read_text(encoding="utf-8") != page:
            print(f"{PAGE} is out of date: run python {Path(__file__).relative_to(ROOT)}", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
