"""``evalsink sinks``: the installed sinks, which ones the current configuration enables, and — with
``--check`` — whether each one imports and accepts its configuration.

Listing reads entry-point metadata only (see :mod:`evalsink.discovery`), so it is fast and still
works when a sink package is broken or heavy; importing is what ``--check`` is for.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from evalsink.discovery import SinkEntry

# The rule of evalsink.tracker.select_sinks for a tracker given no sinks= and no lighteval flags.
# It is repeated here because importing the tracker imports pluggy; a test keeps the two in step.
DEFAULT_SINKS = ("local",)
SINKS_VARIABLE = "EVALSINK_SINKS"


def configured_sinks(environ: Mapping[str, str]) -> tuple[list[str], str]:
    """(the sink names the configuration enables, where that came from: the variable or 'default')."""
    if SINKS_VARIABLE in environ:
        names = [name.strip() for name in environ[SINKS_VARIABLE].split(",") if name.strip()]
        return list(dict.fromkeys(names)), SINKS_VARIABLE
    return list(DEFAULT_SINKS), "default"


@dataclass
class SinkStatus:
    """One row of the listing: an installed sink, one claim of a duplicated name, or an enabled
    name that nothing installed provides (``distribution`` None)."""

    name: str
    distribution: str | None
    version: str | None
    entry_point: str | None
    enabled: bool
    checked: bool = False
    remote: bool | None = None
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Config problems of a sink that is not enabled: what enabling it would need, not a failure."""

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "entry_point": self.entry_point,
            "enabled": self.enabled,
            "checked": self.checked,
            "remote": self.remote,
            "ok": self.ok,
            "errors": self.errors,
            "notes": self.notes,
        }


def collect(*, check: bool, environ: Mapping[str, str]) -> tuple[list[SinkStatus], list[str], str]:
    """(a row per installed sink or problem, the enabled names, where they came from)."""
    from evalsink.discovery import _conflict_message, discover, install_hint

    installed = discover()
    enabled, source = configured_sinks(environ)
    rows: list[SinkStatus] = []
    for name in installed.names():
        on = name in enabled
        if name in installed.conflicts:
            claims = installed.conflicts[name]
            message = _conflict_message(name, claims)
            rows.extend(
                SinkStatus(name, c.distribution, c.version, c.value, on, errors=[message]) for c in claims
            )
            continue
        entry = installed.sinks[name]
        row = SinkStatus(name, entry.distribution, entry.version, entry.value, on)
        if check:
            row.checked = True
            row.remote, problems, config_problem = check_sink(entry, environ)
            row.errors = problems
            if config_problem is not None:
                # a sink whose defaults lack a required option (a project...) is fine until someone
                # enables or configures it; a bad EVALSINK_<SINK>__* value is an error either way
                from evalsink.config import env_values

                configured = bool(env_values(name, environ))
                (row.errors if on or configured else row.notes).append(config_problem)
        rows.append(row)
    for name in enabled:
        if name not in installed.sinks and name not in installed.conflicts:
            error = f"enabled by {source} but not installed: {install_hint(name)}"
            rows.append(SinkStatus(name, None, None, None, True, errors=[error]))
    return rows, enabled, source


def check_sink(entry: SinkEntry, environ: Mapping[str, str]) -> tuple[bool | None, list[str], str | None]:
    """Import one sink and validate its config as a run would (defaults plus ``EVALSINK_<SINK>__*``).

    Returns (whether it is remote, the problems of the sink itself, the config's problem if any).
    The sink is not instantiated: a constructor may open connections, and this command only inspects.
    """
    from evalsink.config import build_config
    from evalsink.errors import EvalsinkError
    from evalsink.sink import Sink, SinkConfig

    try:
        sink_class = entry.load()
    except EvalsinkError as exc:
        return None, [str(exc)], None
    if not issubclass(sink_class, Sink):
        where = f"{sink_class.__module__}.{sink_class.__qualname__}"
        return None, [f"entry point {entry.value} is {where}, which is not a subclass of evalsink.Sink"], None
    remote = bool(getattr(sink_class, "remote", True))
    model = getattr(sink_class, "config_model", SinkConfig)
    if not (isinstance(model, type) and issubclass(model, SinkConfig)):
        return remote, [f"{entry.value}.config_model is not a subclass of evalsink.SinkConfig"], None
    try:
        build_config(entry.name, model, None, environ)
    except EvalsinkError as exc:
        return remote, [], str(exc)
    except Exception as exc:  # a validator of the sink's own config crashed: report it against the sink
        return (
            remote,
            [f"sink {entry.name!r}: validating its config raised {type(exc).__name__}: {exc}"],
            None,
        )
    return remote, [], None


@click.command("sinks")
@click.option("--check", is_flag=True, help="Import each sink and validate its config (slower).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def sinks(check: bool, as_json: bool) -> None:
    """List installed sinks and which ones EVALSINK_SINKS enables.

    Exits 1 when a problem is listed: a name claimed by two distributions, an enabled sink that is
    not installed, or (with --check) a sink that fails to import, or an enabled sink whose config
    does not validate (for a sink that is not enabled, that is a note: what enabling it needs).
    """
    rows, enabled, source = collect(check=check, environ=os.environ)
    ok = all(row.ok for row in rows)
    if as_json:
        from evalsink.commands._output import echo_json

        echo_json(
            {
                "enabled": enabled,
                "enabled_from": source,
                "checked": check,
                "ok": ok,
                "sinks": [row.to_json() for row in rows],
            }
        )
    else:
        _print_table(rows, enabled, source, check)
    if not ok:
        sys.exit(1)


def _print_table(rows: list[SinkStatus], enabled: list[str], source: str, check: bool) -> None:
    from rich.table import Table

    from evalsink.commands._output import console

    out = console()
    table = Table(title="evalsink sinks")
    for column in ("sink", "distribution", "version", "enabled", "entry point"):
        table.add_column(column, overflow="fold")  # wrapped when narrow, never cut short
    if check:
        table.add_column("kind", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for row in rows:
        if not row.ok:
            status = "[red]error[/red]"
        elif row.notes:
            status = "[yellow]needs config[/yellow]"
        elif row.checked:
            status = "[green]ok[/green]"
        else:
            status = "installed"
        cells = [row.name, row.distribution or "—", row.version or "—", "yes" if row.enabled else "no"]
        cells.append(row.entry_point or "—")
        if check:
            cells.append("—" if row.remote is None else ("remote" if row.remote else "local"))
        table.add_row(*[_plain(cell) for cell in cells], status)
    out.print(table)
    where = f"{SINKS_VARIABLE}" if source == SINKS_VARIABLE else f"default; set {SINKS_VARIABLE} to change"
    out.print(f"enabled: {', '.join(enabled) or 'none'} ({where})", markup=False)
    errors = dict.fromkeys((row.name, error) for row in rows for error in row.errors)  # a clash once
    for name, error in errors:
        out.print(f"error: {name}: {error}", markup=False, style="red", soft_wrap=True)
    for row in rows:
        for note in row.notes:
            out.print(f"note: {row.name} (not enabled): {note}", markup=False, style="yellow", soft_wrap=True)
    if not check:
        out.print("run 'evalsink sinks --check' to import each sink and validate its config", style="dim")


def _plain(text: str) -> str:
    """Names come from installed metadata: escape them so '[' is shown, not read as markup."""
    from rich.markup import escape

    return escape(text)
