"""The conformance kit itself: a sound sink passes it, and each kind of broken sink fails it.

The kit runs in a child pytest (as a sink author's suite runs it), against the installed test sinks
of tests/fixtures/recorder_sink; outcomes are read from the child's JUnit XML report.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from core_helpers import run_pytest

KIT_TESTS = {
    "test_found_through_its_entry_point",
    "test_constructs_from_its_config",
    "test_unknown_option_is_rejected",
    "test_full_run",
    "test_odd_values_and_many_batches",
    "test_empty_run",
    "test_failed_run",
    "test_finishing_twice_is_harmless",
    "test_a_run_that_fails_after_it_was_saved_keeps_its_data",
}
FAULT_TESTS = {
    f"test_a_fault_costs_the_other_sinks_nothing_and_the_run_can_be_pushed_again[{hook}]"
    for hook in ("evalsink_run_started", "evalsink_details_batch", "evalsink_results_saved")
}
KIT_TESTS |= FAULT_TESTS


def run_kit(tmp_path: Path, sink_name: str, config: dict[str, object], body: str = "") -> dict[str, str]:
    """Run the kit for one sink in a child pytest; test name -> passed/failed/error/skipped."""
    test_file = tmp_path / "test_kit.py"
    test_file.write_text(
        textwrap.dedent(
            f"""
            import pytest
            from evalsink.testing import SinkConformance

            class TestKit(SinkConformance):
                @pytest.fixture
                def sink_name(self):
                    return {sink_name!r}

                @pytest.fixture
                def sink_config(self):
                    return {config!r}
            """
        )
        + textwrap.indent(textwrap.dedent(body), "    "),
        encoding="utf-8",
    )
    cases = run_pytest(tmp_path, str(test_file))
    return {name: {"failure": "failed"}.get(outcome, outcome) for _, name, outcome in cases}


def test_a_sound_sink_passes_every_check(tmp_path: Path) -> None:
    outcomes = run_kit(tmp_path, "recorder", {"label": "kit"})
    assert outcomes == dict.fromkeys(KIT_TESTS, "passed")


@pytest.mark.parametrize(
    ("fail_in", "failing"),
    [
        (
            "results_saved",
            {
                "test_full_run",
                "test_odd_values_and_many_batches",
                "test_empty_run",
                "test_finishing_twice_is_harmless",
                "test_a_run_that_fails_after_it_was_saved_keeps_its_data",
            },
        ),
        (
            "details_batch",
            # also the failed run: its details are flushed to the sinks while it is finished
            {
                "test_full_run",
                "test_odd_values_and_many_batches",
                "test_failed_run",
                "test_finishing_twice_is_harmless",
                "test_a_run_that_fails_after_it_was_saved_keeps_its_data",
            },
        ),
        (
            "run_finished",
            {
                "test_failed_run",
                "test_full_run",
                "test_odd_values_and_many_batches",
                "test_empty_run",
                "test_finishing_twice_is_harmless",
                "test_a_run_that_fails_after_it_was_saved_keeps_its_data",
            },
        ),
        # an unknown option is refused before the sink is constructed
        ("init", KIT_TESTS - {"test_found_through_its_entry_point", "test_unknown_option_is_rejected"}),
    ],
)
def test_a_failing_sink_fails_the_checks_it_breaks(tmp_path: Path, fail_in: str, failing: set[str]) -> None:
    outcomes = run_kit(tmp_path, "flaky", {"fail_in": fail_in})
    # the fault tests push the failed run to the sink again, where its own failure recurs
    assert {name for name, outcome in outcomes.items() if outcome != "passed"} == failing | FAULT_TESTS


def test_a_sink_without_entry_point_fails_discovery(tmp_path: Path) -> None:
    outcomes = run_kit(tmp_path, "not-installed-anywhere", {})
    assert outcomes["test_found_through_its_entry_point"] == "failed"


def test_check_saved_failures_fail_the_kit(tmp_path: Path) -> None:
    body = """
    def check_saved(self, saved):
        assert len(saved.evaluation.samples) == -1, "the backend lost samples"
    """
    outcomes = run_kit(tmp_path, "recorder", {}, body)
    assert outcomes["test_full_run"] == "failed"
    assert outcomes["test_odd_values_and_many_batches"] == "failed"
    assert outcomes["test_failed_run"] == "passed"


def test_a_suite_without_a_sink_name_fixture_is_told_what_to_add(tmp_path: Path) -> None:
    test_file = tmp_path / "test_no_name.py"
    test_file.write_text(
        "from evalsink.testing import SinkConformance\n\nclass TestKit(SinkConformance):\n    pass\n",
        encoding="utf-8",
    )
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert child.returncode == 1
    assert "must define a `sink_name` fixture" in child.stdout
