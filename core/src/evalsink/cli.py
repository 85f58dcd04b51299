"""The ``evalsink`` command: a thin click group; each subcommand lives in :mod:`evalsink.commands`.

Every error a user can cause prints one line on stderr and exits non-zero: evalsink's own errors
(a missing path, a file that is not a results file...) and click's usage errors (a missing argument,
an invalid option value) alike exit with code 2. Importing this module imports click and the command
modules only, so ``evalsink --help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import IO, Any

import click

from evalsink.commands.demo import demo
from evalsink.commands.diff import diff
from evalsink.commands.new_sink import new_sink
from evalsink.commands.push import push
from evalsink.commands.recover import recover
from evalsink.commands.show import show
from evalsink.commands.sinks import sinks

# click >= 8.2 shows the help through this error when a group is called without arguments
_SHOWS_HELP: tuple[type[Exception], ...] = tuple(
    kind for kind in [getattr(click.exceptions, "NoArgsIsHelpError", None)] if isinstance(kind, type)
)


class _OneLineUsageError(click.UsageError):
    """click prints a usage error over four lines (usage, hint, blank, error); one is enough."""

    def show(self, file: IO[Any] | None = None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        message = self.format_message().rstrip(".")
        click.echo(f"evalsink: error: {message}{hint}", file=file, err=file is None)


def _one_line(exc: click.UsageError) -> click.UsageError:
    if isinstance(exc, (_OneLineUsageError, *_SHOWS_HELP)):
        return exc
    return _OneLineUsageError(exc.format_message(), exc.ctx)


class _Group(click.Group):
    """Turns evalsink's own errors and click's usage errors into one readable line (exit code 2)."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:  # the group's own options
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        from evalsink.errors import EvalsinkError

        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a subcommand's arguments and options
            raise _one_line(exc) from None
        except EvalsinkError as exc:
            click.echo(f"evalsink: error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="evalsink")
def main() -> None:
    """Track evaluation results and send them to pluggable sinks."""


main.add_command(demo)
main.add_command(sinks)
main.add_command(show)
main.add_command(diff)
main.add_command(push)
main.add_command(recover)
main.add_command(new_sink)


if __name__ == "__main__":  # pragma: no cover
    main()
