"""``evalsink new-sink NAME``: start a sink package whose tests pass before its first edit.

The files come from the templates shipped in evalsink (``evalsink/templates/sink/*.tmpl``, filled
with :class:`string.Template`): a pyproject registering the entry point, a working sink that writes
one JSON summary per run, the conformance kit's tests reading that summary back, and a README.
evalsink's own test suite generates a package, installs it and runs its tests, so what a sink author
starts from is known to pass.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
from importlib.resources import files
from pathlib import Path
from string import Template

import click

NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
"""A sink name: lowercase letters and digits, words joined by single '-' or '_'. It must turn into an
importable module name (``evalsink_<name>``) and an ``EVALSINK_<NAME>__*`` variable prefix."""
MAX_NAME_LENGTH = 32

# template file -> path in the generated package (itself a template)
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "sink.py.tmpl": "src/${module}/__init__.py",
    "test_conformance.py.tmpl": "tests/test_${module_suffix}_conformance.py",
}


def check_name(name: str) -> str:
    """``name`` if it can be a new sink's name, else a :class:`click.BadParameter` saying why."""
    if not NAME.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        raise click.BadParameter(
            f"{name!r} is not a sink name: use up to {MAX_NAME_LENGTH} lowercase letters and digits, "
            "starting with a letter, words joined by '-' or '_' (e.g. 'mysink', 'my-sink')",
            param_hint="NAME",
        )
    if re.match(r"evalsink[-_]", name):
        raise click.BadParameter(
            f"{name!r}: give the sink's name without the 'evalsink-' prefix (the distribution gets it)",
            param_hint="NAME",
        )
    from evalsink.config import env_prefix
    from evalsink.discovery import discover

    # two distributions claiming one name make it unusable in both; 'my-sink' and 'my_sink' (or an
    # installed 'My_Sink') would share the EVALSINK_MY_SINK__* variables (and an import package)
    for other, installed in discover().sinks.items():
        owner = f"({installed.distribution} {installed.version})"
        if other == name:
            raise click.BadParameter(f"a sink named {name!r} is already installed {owner}", param_hint="NAME")
        if env_prefix(other) == env_prefix(name):
            raise click.BadParameter(
                f"{name!r} would share its package and environment variables with the installed sink "
                f"{other!r} {owner}",
                param_hint="NAME",
            )
    return name


def variables(name: str) -> dict[str, str]:
    """What the templates are filled with, all derived from the sink's name."""
    words = re.split(r"[-_]", name)
    class_prefix = "".join(word.capitalize() for word in words)
    module_suffix = "_".join(words)
    return {
        "name": name,
        "distribution": f"evalsink-{'-'.join(words)}",
        "module": f"evalsink_{module_suffix}",
        "module_suffix": module_suffix,
        "class_prefix": class_prefix,
        "class_name": f"{class_prefix}Sink",
        "config_name": f"{class_prefix}Config",
        "env_prefix": f"EVALSINK_{module_suffix.upper()}",
    }


def render(name: str) -> dict[str, str]:
    """The generated package: relative path -> file content."""
    values = variables(name)
    templates = files("evalsink") / "templates" / "sink"
    rendered = {
        Template(target).substitute(values): Template(
            (templates / source).read_text(encoding="utf-8")
        ).substitute(values)
        for source, target in FILES.items()
    }
    rendered[f"src/{values['module']}/py.typed"] = ""  # the sink's type hints are part of its API
    return rendered


def write_package(target: Path, contents: dict[str, str]) -> None:
    """Create ``target`` with ``contents``, whole or not at all.

    The files are written in a hidden sibling folder renamed into place at the end, so a failure
    midway leaves no half-generated package to confuse a second attempt (and a folder with files
    that appeared at ``target`` in the meantime makes the rename fail rather than merge).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        for relative, text in contents.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@click.command("new-sink")
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=True, dir_okay=True, path_type=Path),
    default=None,
    help="Folder to create (it must not exist). Default: ./evalsink-NAME.",
)
def new_sink(name: str, directory: Path | None) -> None:
    """Create a sink package NAME: entry point, a working sink, conformance tests, README.

    The sink writes one JSON summary per run to {output_dir}/NAME, and its tests pass as generated:
    pip install -e "DIR[test]" && pytest DIR. Then replace the hooks' bodies with your backend's
    calls (docs/writing-a-sink.md). Exit code 2 for an invalid or installed NAME, or an existing DIR.
    """
    from evalsink.errors import EvalsinkError

    check_name(name)
    values = variables(name)
    target = directory if directory is not None else Path(values["distribution"])
    if os.path.lexists(target):
        raise EvalsinkError(f"{target} already exists; choose another --dir")
    contents = render(name)
    try:
        write_package(target, contents)
    except OSError as exc:
        raise EvalsinkError(f"could not create {target}: {exc}") from exc
    click.echo(f"created {target}/ ({values['distribution']}, sink {name!r}):")
    for relative in sorted(contents):
        click.echo(f"  {relative}")
    click.echo(f"next: pip install -e {_extra_word(target)} && pytest {shlex.quote(str(target))}")


def _extra_word(target: Path) -> str:
    """``{target}[test]`` as one shell word, for a command the user pastes: a ``--dir`` with spaces,
    quotes or ``$`` was printed unquoted and split or expanded. A path shlex leaves alone keeps the
    double quotes the docs show (``"evalsink-mysink[test]"``; the brackets are a glob in zsh)."""
    if shlex.quote(str(target)) == str(target):
        return f'"{target}[test]"'
    return shlex.quote(f"{target}[test]")
