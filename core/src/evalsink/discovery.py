"""Finding sinks through the ``evalsink.sinks`` entry-point group, importing only enabled ones.

Listing reads package metadata only, so a broken or slow-to-import sink (a wandb install, say)
never slows or breaks a run that does not enable it. The local sink is found the same way as a
third party's.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
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


def installed_sinks() -> dict[str, SinkEntry]:
    """Every installed sink by name; two distributions claiming one name is an error naming both."""
    found: dict[str, SinkEntry] = {}
    for ep in entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else "<unknown distribution>"
        dist_version = dist.version if dist is not None else "?"
        entry = SinkEntry(ep.name, ep.value, dist_name, dist_version, ep)
        previous = found.get(ep.name)
        if previous is None:
            found[ep.name] = entry
        elif _canonical(previous.distribution) != _canonical(dist_name):
            raise DuplicateSinkError(
                f"two installed distributions provide the sink {ep.name!r}: "
                f"{previous.distribution} {previous.version} ({previous.value}) and "
                f"{dist_name} {dist_version} ({ep.value}); uninstall one of them"
            )
        # the same distribution listed twice (editable installs do this) is one sink
    return found


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def install_hint(name: str) -> str:
    extra = KNOWN_EXTRAS.get(name)
    if extra is not None:
        return f'pip install "evalsink[{extra}]"'
    return f"install the package that provides the evalsink sink {name!r}"


def find_sink(name: str, available: dict[str, SinkEntry] | None = None) -> SinkEntry:
    sinks = installed_sinks() if available is None else available
    entry = sinks.get(name)
    if entry is None:
        known = ", ".join(sorted(sinks)) or "none"
        raise SinkNotInstalledError(
            f"sink {name!r} is not installed (installed sinks: {known}); to add it: {install_hint(name)}"
        )
    return entry
