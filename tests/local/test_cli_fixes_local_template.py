"""The local sink's ``details_path_template`` is checked by its config model, so by config validation.

The check was in the sink's constructor, which ``evalsink sinks --check`` never calls: it said ok
for ``EVALSINK_LOCAL__DETAILS_PATH_TEMPLATE='{nope}/x'``, and the first run then failed to start.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from evalsink.config import build_config
from evalsink.errors import SinkConfigError
from evalsink_local import LocalSinkConfig

MESSAGE = (
    "local sink's details_path_template '{nope}/x': unknown placeholder {nope}; "
    "valid placeholders: {output_dir}, {org}, {model}"
)


def test_config_validation_refuses_a_template_that_cannot_be_filled() -> None:
    with pytest.raises(SinkConfigError) as raised:
        build_config("local", LocalSinkConfig, None, {"EVALSINK_LOCAL__DETAILS_PATH_TEMPLATE": "{nope}/x"})
    assert str(raised.value) == (
        f"sink 'local': invalid config: EVALSINK_LOCAL__DETAILS_PATH_TEMPLATE='{{nope}}/x': {MESSAGE}"
    )
    with pytest.raises(SinkConfigError, match="cannot be filled"):
        build_config("local", LocalSinkConfig, {"details_path_template": "{output_dir}/{model:d}"}, {})
    config = build_config(
        "local", LocalSinkConfig, {"details_path_template": "{output_dir}/{org}/{model}"}, {}
    )
    assert isinstance(config, LocalSinkConfig)
    assert config.details_path_template == "{output_dir}/{org}/{model}"


def test_sinks_check_reports_a_bad_details_path_template() -> None:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("EVALSINK_")}
    done = subprocess.run(
        [sys.executable, "-m", "evalsink", "sinks", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**environ, "COLUMNS": "250", "EVALSINK_LOCAL__DETAILS_PATH_TEMPLATE": "{nope}/x"},
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: local: sink 'local': invalid config: EVALSINK_LOCAL__DETAILS_PATH_TEMPLATE=" in (
        done.stdout + done.stderr
    )
    assert MESSAGE in done.stdout + done.stderr
