"""Where the local sink puts files: lighteval's layout, made safe.

* results: ``{output_dir}/results/{model}/results_{date_id}.json``, or
  ``{results_path_template}/results_{date_id}.json`` with ``{output_dir}``, ``{org}`` and ``{model}``
  filled in (as lighteval);
* details: ``{output_dir}/details/{model}/{date_id}/details_{task}_{date_id}.parquet``; with a
  results_path_template, ``{results folder}/details/{date_id}/...`` so details follow the results
  (lighteval ignores the template for details); ``details_path_template`` in the sink config names the
  folder that holds the ``{date_id}/`` folders (placeholders ``{output_dir}``, ``{org}``, ``{model}``).

Model and task names pass through :mod:`evalsink.paths`, so they can never leave the folder.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from evalsink.errors import SinkConfigError
from evalsink.paths import model_path, safe_component, split_model_name, task_file_part
from evalsink.storage import OutputDir


@dataclass(frozen=True)
class Layout:
    results: OutputDir
    results_prefix: str
    details: OutputDir
    details_prefix: str

    def results_file(self, date_id: str) -> str:
        return f"{self.results_prefix}results_{date_id}.json"

    def details_folder(self, date_id: str) -> str:
        return f"{self.details_prefix}{date_id}"

    def details_file(self, task_name: str, date_id: str) -> str:
        return f"{self.details_folder(date_id)}/details_{task_file_part(task_name)}_{date_id}.parquet"


def _fill(template: str, output: OutputDir, model_name: str | None) -> str:
    org, model = split_model_name(model_name)
    return template.format(
        output_dir=output.url.rstrip("/"), org=safe_component(org) if org else "", model=safe_component(model)
    )


PLACEHOLDERS = ("output_dir", "org", "model")
"""What a results or details path template may name (lighteval's ``results_path_template``'s)."""


def check_template(template: str, option: str) -> None:
    """Refuse a template that :func:`_fill` would fail on, naming the placeholder at fault.

    The template is filled only at ``save()``, after the whole evaluation: a typo there
    (``{model_name}``, ``{date_id}``, ``{}``) would cost the run's files. The sink checks it when
    it is built instead, by parsing it and filling it once with stand-in values (which also finds
    a bad format spec such as ``{model:d}``).
    """
    valid = ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)
    try:
        for _, field, _, _ in string.Formatter().parse(template):
            if field is not None and re.split(r"[.\[]", field, maxsplit=1)[0] not in PLACEHOLDERS:
                raise SinkConfigError(
                    f"{option} {template!r}: unknown placeholder {{{field}}}; valid placeholders: {valid}"
                )
        _fill(template, OutputDir("/output_dir"), "org/model")
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
        why = f"{type(exc).__name__}: {exc}"
        raise SinkConfigError(
            f"{option} {template!r} cannot be filled: {why}; valid placeholders: {valid}"
        ) from exc


def layout_for(
    output: OutputDir,
    model_name: str | None,
    results_path_template: str | None = None,
    details_path_template: str | None = None,
) -> Layout:
    model = model_path(model_name)
    if results_path_template:
        results = OutputDir(_fill(results_path_template, output, model_name))
        results_layout = (results, "")
        details_default = (results, "details/")
    else:
        results_layout = (output, f"results/{model}/")
        details_default = (output, f"details/{model}/")
    if details_path_template:
        details_layout = (OutputDir(_fill(details_path_template, output, model_name)), "")
    else:
        details_layout = details_default
    return Layout(results_layout[0], results_layout[1], details_layout[0], details_layout[1])
