"""The typed facade over pluggy: one method per hook, and the one place isolation lives.

pluggy stops a hook call at the first implementation that raises, which would let one flaky
remote sink cost every other sink its data. So each sink's implementation is called on its own:
an exception becomes a recorded failure of that sink (logged, and reported by ``save()``), and the
other sinks carry on. An exception with an ``outputs`` attribute still reports what the sink
did write. The call order is evalsink's (local sinks first), so pluggy's ``tryfirst`` and
``trylast`` have no effect and hook wrappers are refused at registration. A sink that failed is
not sent further data, but ``run_finished`` still reaches
it so it can close what it opened. Failures of sinks configured ``required=True`` are raised by
:meth:`SinkManager.raise_required` once every sink has had its turn.

Each sink's hooks run on a thread of its own (:mod:`evalsink.sink_thread`) with the sink's
``hook_timeout``: a sink that hangs is marked failed, the run goes on without it, and it receives
no further hook, not even ``run_finished`` (its thread is still stuck in the earlier call).

pluggy still does what it is good at: validating each sink's hook signatures against the specs
when it is registered, and refusing misspelt hook names (``check_pending``).
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import TYPE_CHECKING, Any

import pluggy

from evalsink import hookspecs
from evalsink.errors import SinkFailedError, SinkLoadError
from evalsink.report import SinkOutcome
from evalsink.sink_thread import HookTimeoutError, SinkThread

if TYPE_CHECKING:
    from evalsink.models import EvaluationResults
    from evalsink.run import DetailsBatch, Run, RunStatus

logger = logging.getLogger("evalsink")

_HOOK_NAMES = tuple(name for name in dir(hookspecs) if name.startswith("evalsink_"))


class SinkManager:
    """Owns one pluggy PluginManager per tracker (no global state shared between trackers)."""

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self.sinks: dict[str, Any] = {}
        self.outcomes: dict[str, SinkOutcome] = {}
        self._timeouts: dict[str, float | None] = {}
        self._threads: dict[str, SinkThread] = {}

    def register(self, name: str, sink: Any, *, required: bool, timeout: float | None = None) -> None:
        try:
            self._pm.register(sink, name=name)
            self._pm.check_pending()
            implemented = set()
            for caller in self._pm.get_hookcallers(sink) or []:
                for impl in caller.get_hookimpls():
                    if impl.plugin_name != name:
                        continue
                    implemented.add(caller.name)
                    if impl.hookwrapper or impl.wrapper:
                        raise ValueError(f"{caller.name} is a hook wrapper; sinks implement plain hooks")
                    if impl.kwargnames:  # pluggy never passes them: the hook would only see defaults
                        raise ValueError(
                            f"{caller.name} gives a default to {', '.join(impl.kwargnames)}; hook "
                            "arguments are always passed and must have no default"
                        )
            unmarked = sorted(
                spec
                for spec in _HOOK_NAMES
                # looked up without running it: a property named like a hook may raise when read
                if spec not in implemented and callable(inspect.getattr_static(sink, spec, None))
            )
            if unmarked:  # pluggy registers only marked methods: these would never be called
                raise ValueError(f"{', '.join(unmarked)} lack(s) the @hookimpl marker")
        except (pluggy.PluginValidationError, ValueError) as exc:
            if self._pm.has_plugin(name):
                self._pm.unregister(name=name)
            raise SinkLoadError(f"sink {name!r} does not follow the hook contract: {exc}") from exc
        self.sinks[name] = sink
        self.outcomes[name] = SinkOutcome(name=name, required=required)
        self._timeouts[name] = timeout
        if timeout is not None:
            self._threads[name] = SinkThread(name)

    def order(self) -> list[str]:
        """Local sinks first, then remote ones, each group in the order they were enabled."""
        return sorted(self.sinks, key=lambda name: bool(getattr(self.sinks[name], "remote", True)))

    def _call(self, hook: str, *, skip_failed: bool = True, **kwargs: Any) -> None:
        implementations = {impl.plugin_name: impl for impl in getattr(self._pm.hook, hook).get_hookimpls()}
        for name in self.order():
            impl = implementations.get(name)
            outcome = self.outcomes[name]
            if impl is None or (skip_failed and not outcome.ok):
                continue
            if outcome.timed_out:
                logger.warning("sink %r gets no %s: it is still stuck in an earlier hook", name, hook)
                continue
            started = time.perf_counter()
            arguments = {arg: kwargs[arg] for arg in impl.argnames}
            thread = self._threads.get(name)
            try:
                if thread is None:
                    result = impl.function(**arguments)
                else:
                    result = thread.call(impl.function, arguments, self._timeouts[name] or 0.0)
            except BaseException as exc:
                if not isinstance(exc, Exception):  # Ctrl-C (or exit) while the caller waited; a sink
                    # thread's own SystemExit arrives as SinkExitError
                    if thread is not None and thread.busy:
                        outcome.timed_out = True  # no later hook waits behind the running call
                        outcome.errors.append(
                            f"{hook}: interrupted ({type(exc).__name__}) while the sink was still "
                            "working; left running in the background"
                        )
                        outcome.failed_hooks.append(hook)
                    raise
                outcome.timed_out = isinstance(exc, HookTimeoutError)
                outcome.outputs.extend(str(item) for item in getattr(exc, "outputs", ()) or ())
                outcome.errors.append(f"{hook}: {type(exc).__name__}: {exc}")
                outcome.failed_hooks.append(hook)
                outcome.exception = outcome.exception or exc
                logger.error(
                    "sink %r failed in %s: %s: %s", name, hook, type(exc).__name__, exc, exc_info=exc
                )
            else:
                if isinstance(result, (list, tuple)):
                    outcome.outputs.extend(str(item) for item in result)
                elif isinstance(result, str):
                    outcome.outputs.append(result)
            finally:
                outcome.seconds += time.perf_counter() - started
                self._collect_warnings(name, outcome)

    def _collect_warnings(self, name: str, outcome: SinkOutcome) -> None:
        given = getattr(self.sinks[name], "warnings", None)
        while isinstance(given, list) and given:  # pop, not copy-and-clear: the sink's threads may append
            message = str(given.pop(0))
            outcome.warnings.append(message)
            logger.warning("sink %r: %s", name, message)

    def run_started(self, run: Run) -> None:
        self._call("evalsink_run_started", run=run)

    def details_batch(self, run: Run, batch: DetailsBatch) -> None:
        self._call("evalsink_details_batch", run=run, batch=batch)

    def results_saved(self, run: Run, results: EvaluationResults) -> None:
        self._call("evalsink_results_saved", run=run, results=results)

    def run_finished(self, run: Run, status: RunStatus, error: BaseException | None) -> None:
        try:
            self._call("evalsink_run_finished", skip_failed=False, run=run, status=status, error=error)
        finally:
            for thread in self._threads.values():
                thread.stop()

    def raise_required(self) -> None:
        """Raise for the first failed sink configured ``required=True`` (after all sinks ran)."""
        for name in self.order():
            outcome = self.outcomes[name]
            if outcome.required and not outcome.ok:
                raise SinkFailedError(
                    f"required sink {name!r} failed: {'; '.join(outcome.errors)}"
                ) from outcome.exception
