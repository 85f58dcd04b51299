"""Finding sinks through the ``evalsink.sinks`` entry-point group, importing only enabled ones.

Listing reads package metadata only, so a broken or slow-to-import sink (a wandb install, say)
never slows or breaks a run that does not enable it. The local sink is found the same way as a
third party's.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from evalsink.errors import DuplicateSinkError, SinkLoadError, SinkNotInstalledError

GROUP = "evalsink.sinks"

# First-party sinks and the extra of the ``evalsink`` distribution that installs each.
KNOWN_EXTRAS = {
    "local": "local",
    "hub": "hub",
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "trackio": "trackio",
}


@dataclass(frozen=True)
class SinkEntry:
    """An installed sink as its package metadata describes it (nothing imported)."""

    name: str
    value: str
    distribution: str
    version: str
    entry_point: EntryPoint

    def load(self) -> type[Any]:
        """Import the sink class; any import problem becomes a :class:`SinkLoadError`."""
        try:
            loaded = self.entry_point.load()
        except Exception as exc:
            raise SinkLoadError(
                f"sink {self.name!r} from {self.distribution} {self.version} failed to import "
                f"({self.value}): {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(loaded, type):
            raise SinkLoadError(
                f"sink {self.name!r} from {self.distribution} {self.version}: entry point {self.value} "
                f"is a {type(loaded).__name__}, not a sink class"
            )
        return loaded


@dataclass(frozen=True)
class Installed:
    """What the entry points say: one entry per sink name, plus names claimed more than once."""

    sinks: dict[str, SinkEntry]
    conflicts: dict[str, list[SinkEntry]]

    def names(self) -> list[str]:
        return sorted({*self.sinks, *self.conflicts})


def discover() -> Installed:
    """Read the ``evalsink.sinks`` entry points (metadata only, nothing imported).

    The same distribution listed twice (editable installs do this) counts once. A name claimed by
    two distributions is kept aside as a conflict: it only fails a tracker that enables it.
    """
    found: dict[str, SinkEntry] = {}
    conflicts: dict[str, list[SinkEntry]] = {}
    for ep in entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else "<unknown distribution>"
        dist_version = dist.version if dist is not None else "?"
        entry = SinkEntry(ep.name, ep.value, dist_name, dist_version, ep)
        if ep.name in conflicts:
            claims = conflicts[ep.name]
        elif ep.name in found:
            claims = [found[ep.name]]
        else:
            claims = []
        if not claims:
            found[ep.name] = entry
        elif all(_canonical(c.distribution) != _canonical(dist_name) for c in claims):
            conflicts[ep.name] = [*claims, entry]
            found.pop(ep.name, None)
    return Installed(found, conflicts)


def installed_sinks() -> dict[str, SinkEntry]:
    """Every installed sink by name (names claimed by two distributions left out: see discover)."""
    return discover().sinks


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def install_hint(name: str) -> str:
    """The command that installs a sink, when this evalsink release knows one."""
    extra = KNOWN_EXTRAS.get(name)
    if extra is None:
        return f"install the package that provides the evalsink sink {name!r}"
    if extra not in _declared_extras():
        return f"the {name!r} sink is planned but not released with this evalsink version yet"
    command = f'pip install "evalsink[{extra}]"'
    plugin = _source_plugin(name)
    if plugin is None:
        return command
    # installed from a clone: the extra names a distribution no package index has
    return f"pip install {shlex.quote(str(plugin))} (from this source tree; from a package index: {command})"


def _source_plugin(name: str) -> Path | None:
    """``plugins/<name>`` of the source tree evalsink was installed from, if it was and it exists.

    pip records a local directory install (editable or not) in ``direct_url.json`` (PEP 610); a
    tree that was never installed is where this module lies.
    """
    import json
    from importlib.metadata import PackageNotFoundError, distribution
    from urllib.parse import urlparse
    from urllib.request import url2pathname  # only on this error path: urllib.request is slow to import

    try:
        record = distribution("evalsink").read_text("direct_url.json")
    except PackageNotFoundError:
        core = Path(__file__).resolve().parents[2]  # core/src/evalsink/discovery.py
    else:
        if not record:
            return None
        url = urlparse(str(json.loads(record).get("url", "")))
        if url.scheme != "file":
            return None
        core = Path(url2pathname(url.path))
    plugin = core.parent / "plugins" / name
    return plugin if (plugin / "pyproject.toml").is_file() else None


def _declared_extras() -> set[str]:
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        return set(metadata("evalsink").get_all("Provides-Extra") or [])
    except PackageNotFoundError:  # a source tree that was never installed
        return set(KNOWN_EXTRAS)


def _did_you_mean(name: str, installed: Installed) -> str:
    """A suggestion for a misspelt sink name (``tensorbord``), among installed and first-party sinks."""
    if name in KNOWN_EXTRAS:
        return ""
    import difflib

    close = difflib.get_close_matches(name, sorted({*installed.names(), *KNOWN_EXTRAS}), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _conflict_message(name: str, claims: list[SinkEntry]) -> str:
    owners = " and ".join(f"{c.distribution} {c.version} ({c.value})" for c in claims)
    return f"several installed distributions provide the sink {name!r}: {owners}; uninstall all but one"


def find_sinks(names: list[str], installed: Installed | None = None) -> list[SinkEntry]:
    """The entries for ``names``; every missing or ambiguous name is reported in one error."""
    found = discover() if installed is None else installed
    for name in names:
        if name in found.conflicts:
            raise DuplicateSinkError(_conflict_message(name, found.conflicts[name]))
    for name in names:
        _refuse_shared_prefix(name, found)
    missing = [name for name in names if name not in found.sinks]
    if missing:
        known = ", ".join(found.names()) or "none"
        problems = "; ".join(
            f"sink {name!r} is not installed: {install_hint(name)}{_did_you_mean(name, found)}"
            for name in missing
        )
        raise SinkNotInstalledError(f"{problems} (installed sinks: {known})")
    return [found.sinks[name] for name in names]


def _refuse_shared_prefix(name: str, installed: Installed) -> None:
    """Two installed sinks such as ``a-b`` and ``a_b`` read the same ``EVALSINK_A_B__*`` variables:
    each would be configured with options meant for the other (or fail on them as unknown)."""
    from evalsink.config import env_prefix

    if name not in installed.sinks:
        return
    prefix = env_prefix(name)
    others = [e for other, e in installed.sinks.items() if other != name and env_prefix(other) == prefix]
    if others:
        owners = " and ".join(
            f"{e.name!r} from {e.distribution} {e.version}" for e in [installed.sinks[name], *others]
        )
        raise DuplicateSinkError(
            f"the installed sinks {owners} share the environment prefix {prefix}: their options would "
            "mix; uninstall all but one"
        )


def find_sink(name: str, installed: Installed | None = None) -> SinkEntry:
    return find_sinks([name], installed)[0]
