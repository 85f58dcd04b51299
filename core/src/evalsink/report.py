"""What ``save()`` returns: one outcome per sink, so a failed push is visible, not lost."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SinkOutcome:
    """How one sink fared over the run."""

    name: str
    required: bool = False
    outputs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed_hooks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """What the sink reported with :meth:`evalsink.Sink.warn`."""
    seconds: float = 0.0
    timed_out: bool = False
    """A hook exceeded the sink's ``hook_timeout``; the sink got no further hook."""
    exception: BaseException | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class SaveReport:
    """Per-sink outcomes, plus run-level warnings (NaN values written as null, skipped metrics)."""

    run_id: str
    date_id: str | None
    sinks: dict[str, SinkOutcome] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(outcome.ok for outcome in self.sinks.values())

    @property
    def failed(self) -> list[str]:
        return [name for name, outcome in self.sinks.items() if not outcome.ok]

    def __getitem__(self, sink_name: str) -> SinkOutcome:
        return self.sinks[sink_name]

    def __str__(self) -> str:
        dated = f" ({self.date_id})" if self.date_id else ""  # none on ranks other than 0: rank 0 saves
        lines = [f"run {self.run_id}{dated}: {'ok' if self.ok else 'FAILED: ' + ', '.join(self.failed)}"]
        for outcome in self.sinks.values():
            state = "ok" if outcome.ok else "failed"
            lines.append(f"  {outcome.name}: {state} in {outcome.seconds:.2f}s")
            lines.extend(f"    -> {path}" for path in outcome.outputs)
            lines.extend(f"    !! {error}" for error in outcome.errors)
        lines.extend(f"  warning: {warning}" for warning in self.warnings)
        return "\n".join(lines)
