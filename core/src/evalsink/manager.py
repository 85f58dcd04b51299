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

Isolation covers data too: every sink gets its own deep copy of the results, and batches are
read-only, so a sink that edits what it is handed changes nothing for the sinks called after it.

pluggy still does what it is good at: validating each sink's hook signatures against the specs
when it is registered, and refusing misspelt hook names (``check_pending``).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import reprlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

from evalsink import hookspecs
from evalsink.errors import SinkFailedError, SinkLoadError
from evalsink.report import SinkOutcome
from evalsink.sink_thread import WARNINGS_LOCK, HookTimeoutError, SinkThread, call_inline, note_interrupt

if TYPE_CHECKING:
    from evalsink.models import EvaluationResults
    from evalsink.run import DetailsBatch, Run, RunStatus

logger = logging.getLogger("evalsink")

CATCH_UP_SECONDS = 1.0
"""How long ``run_finished`` waits for a sink still busy with an earlier call (see ``_caught_up``)."""

_HOOK_NAMES = tuple(name for name in dir(hookspecs) if name.startswith("evalsink_"))
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 80


def _never_runs(function: Any) -> str | None:
    """Why calling ``function`` would not run its body, or None.

    Hooks are called like plain functions: an ``async def`` only returns a coroutine, a generator
    function only a generator, and nothing awaits or iterates them, so the sink's code never ran
    while the report said the sink was fine.
    """
    if inspect.iscoroutinefunction(function):
        return "is an `async def`: hooks are called without an event loop, so its body would never run"
    if inspect.isasyncgenfunction(function):
        return "is an async generator (`async def` with `yield`): its body would never run"
    if inspect.isgeneratorfunction(function):
        return "is a generator function (it contains `yield`): calling it would not run its body"
    return None


def _outputs(result: object) -> tuple[list[str], str | None]:
    """The paths or URLs a hook returned, and what was wrong with the rest (None when nothing).

    A hook returns None or a list of strings (a ``str`` or ``os.PathLike``, or a tuple, are taken
    too). Anything else — a dict, a number, bytes, a generator — used to vanish without a word; it
    is kept out of the outputs and described, so the sink's report can say so.
    """
    if result is None:
        return [], None
    items = result if isinstance(result, (list, tuple)) else [result]
    outputs = [_as_output(item) for item in items]
    kept = [output for output in outputs if output is not None]
    rejected = [item for item, output in zip(items, outputs, strict=True) if output is None]
    if not rejected:
        return kept, None
    if isinstance(result, (list, tuple)):
        what = f"a {type(result).__name__} holding " + ", ".join(_describe(item) for item in rejected)
    else:
        what = _describe(result)
    return kept, what


def _as_output(item: object) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, os.PathLike):
        path = os.fspath(item)
        return path if isinstance(path, str) else None
    return None


def _describe(value: object) -> str:
    return f"{type(value).__name__} {_SHORT.repr(value)}"


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
                    why = _never_runs(impl.function)
                    if why is not None:
                        raise ValueError(f"{caller.name} {why}; write it as a plain `def`")
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
            self._threads[name] = SinkThread(name, local=not getattr(sink, "remote", True))

    def order(self) -> list[str]:
        """Local sinks first, then remote ones, each group in the order they were enabled."""
        return sorted(self.sinks, key=lambda name: bool(getattr(self.sinks[name], "remote", True)))

    def _call(
        self,
        hook: str,
        *,
        skip_failed: bool = True,
        every_sink: bool = False,
        per_sink: Mapping[str, Callable[[str], Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        """Call ``hook`` on each sink in turn; ``per_sink`` makes an argument for each sink (by name).

        With ``every_sink``, Ctrl-C or SIGTERM cuts short only the sink it landed in: the sinks
        after it are still called, and the interrupt is raised once they all were.
        """
        implementations = {impl.plugin_name: impl for impl in getattr(self._pm.hook, hook).get_hookimpls()}
        fresh = per_sink or {}
        interrupt: BaseException | None = None
        for name in self.order():
            impl = implementations.get(name)
            outcome = self.outcomes[name]
            if impl is None or (skip_failed and not outcome.ok):
                continue
            if outcome.timed_out and not self._caught_up(name, hook):
                logger.warning("sink %r gets no %s: it is still stuck in an earlier hook", name, hook)
                continue
            arguments = {arg: fresh[arg](name) if arg in fresh else kwargs[arg] for arg in impl.argnames}
            try:
                self._call_one(name, hook, impl.function, arguments)
            except BaseException as exc:  # only an interrupt gets here: _call_one records the rest
                if not every_sink:
                    raise
                interrupt = interrupt or exc
        if interrupt is not None:
            raise interrupt

    def _caught_up(self, name: str, hook: str) -> bool:
        """Whether a sink left at work by Ctrl-C or SIGTERM (which cut the evaluation's wait for it
        short) has finished that call, so that it can still be told how the run ended.

        Only ``run_finished`` waits, and briefly: an interrupt usually lands while a sink takes a
        batch, which it finishes in milliseconds; one still busy after :data:`CATCH_UP_SECONDS`
        is left alone, as the interrupt asked. A sink that overran its ``hook_timeout`` is not
        waited for again."""
        thread = self._threads.get(name)
        if thread is None or not thread.interrupted:
            return False
        return thread.wait_idle(CATCH_UP_SECONDS if hook == "evalsink_run_finished" else 0.0)

    def _call_one(
        self, name: str, hook: str, function: Callable[..., Any], arguments: dict[str, Any]
    ) -> None:
        """One sink's implementation: whatever it raises or returns is recorded on its outcome."""
        outcome = self.outcomes[name]
        thread = self._threads.get(name)
        started = time.perf_counter()
        try:
            if thread is None:
                result = call_inline(function, arguments)
            else:
                result = thread.call(function, arguments, self._timeouts[name] or 0.0)
            _refuse_awaitable(result)
        except BaseException as exc:
            if not isinstance(exc, Exception):  # Ctrl-C (or exit) while the caller waited or, called
                # inline, while the sink ran; a sink's own SystemExit arrives as SinkExitError
                _record_interrupt(outcome, hook, exc, thread)
                note_interrupt(thread)  # marks a thread left busy as interrupted
                raise
            self._record_failure(name, hook, exc)
        else:
            self._record_result(name, hook, result)
        finally:
            outcome.seconds += time.perf_counter() - started
            self._collect_warnings(name)

    def _record_failure(self, name: str, hook: str, exc: Exception) -> None:
        outcome = self.outcomes[name]
        outcome.timed_out = isinstance(exc, HookTimeoutError)
        outcome.outputs.extend(str(item) for item in getattr(exc, "outputs", ()) or ())
        outcome.errors.append(f"{hook}: {type(exc).__name__}: {exc}")
        outcome.failed_hooks.append(hook)
        outcome.exception = outcome.exception or exc
        logger.error("sink %r failed in %s: %s: %s", name, hook, type(exc).__name__, exc, exc_info=exc)

    def _record_result(self, name: str, hook: str, result: object) -> None:
        """Keep the outputs a hook returned; a return value that is not one is a warning, not a
        failure: the sink did its work, only its report of it is unusable."""
        outputs, rejected = _outputs(result)
        outcome = self.outcomes[name]
        outcome.outputs.extend(outputs)
        if rejected is not None:
            self._warn(
                name,
                f"{hook} returned {rejected}, which is not a path or URL: left out of the outputs "
                "(a hook returns a list of str, or None)",
            )

    def _warn(self, name: str, message: str, *, late: bool = False) -> None:
        """Log a sink's warning and keep it in its outcome (``report[name].warnings``)."""
        self.outcomes[name].warnings.append(message)
        logger.warning("sink %r%s: %s", name, " (after the run finished)" if late else "", message)

    def _collect_warnings(self, name: str) -> None:
        self._drain(name, getattr(self.sinks[name], "warnings", None))

    def _drain(self, name: str, given: object) -> None:
        while isinstance(given, list) and given:  # pop, not copy-and-clear: the sink's threads may append
            self._warn(name, str(given.pop(0)))

    def _keep_late_warnings(self) -> None:
        """No hook call is left to collect what a sink warns about once the run is finished, but
        a thread the sink started may still warn: from now on each warning is logged and kept in
        the sink's outcome as it is given (the outcome ``save()``'s report holds)."""
        for name, sink in self.sinks.items():
            attributes = getattr(sink, "__dict__", None)  # where Sink.warn appends
            if attributes is None or not isinstance(attributes.get("warnings", []), list):
                continue
            with WARNINGS_LOCK:  # a sink thread's Sink.warn appends to the old list or the new
                given = attributes.get("warnings")
                attributes["warnings"] = _LateWarnings(functools.partial(self._warn, name, late=True))
            self._drain(name, given)  # what came between the last hook and now

    def run_started(self, run: Run) -> None:
        self._call("evalsink_run_started", run=run)

    def details_batch(self, run: Run, batch: DetailsBatch) -> None:
        self._call("evalsink_details_batch", run=run, batch=batch)

    def results_saved(self, run: Run, results: EvaluationResults) -> None:
        """Each sink gets a deep copy of ``results``: one sink emptying or editing what it was
        handed cost the sinks after it their data (and left the caller's model changed)."""
        takers = {
            i.plugin_name
            for i in self._pm.hook.evalsink_results_saved.get_hookimpls()
            if "results" in i.argnames
        }
        last = next((name for name in reversed(self.order()) if name in takers), None)
        self._call(
            "evalsink_results_saved",
            run=run,
            # the last sink to take them gets the model itself: no sink comes after it, and the
            # caller does not read it again (a copy per sink cost ~0.1 ms a task: 0.35 s at 3,000)
            per_sink={"results": lambda name: results if name == last else _own_copy(results)},
        )

    def run_finished(self, run: Run, status: RunStatus, error: BaseException | None) -> None:
        """Every sink hears how the run ended, even when SIGTERM or Ctrl-C lands in one sink's
        call (a slow W&B ``finish()`` is where a scheduler's SIGTERM most often finds a run):
        the sinks after it used to be left with their runs open."""
        try:
            hook = "evalsink_run_finished"
            self._call(hook, skip_failed=False, every_sink=True, run=run, status=status, error=error)
        finally:
            for thread in self._threads.values():
                thread.stop()
            self._keep_late_warnings()

    def raise_required(self) -> None:
        """Raise for the first failed sink configured ``required=True`` (after all sinks ran)."""
        for name in self.order():
            outcome = self.outcomes[name]
            if outcome.required and not outcome.ok:
                raise SinkFailedError(
                    f"required sink {name!r} failed: {'; '.join(outcome.errors)}"
                ) from outcome.exception


def _own_copy(results: EvaluationResults) -> EvaluationResults:
    """A deep copy (key order and private attributes included) for one sink.

    The copy costs about 0.1 ms per task (0.3 to 0.5 s for 3,000 lighteval tasks). A model that cannot be
    copied (an extra field holding a lock, say, in results given to ``publish()``) is handed over
    as it is rather than costing every sink the run.
    """
    try:
        return results.model_copy(deep=True)
    except Exception as exc:
        logger.warning(
            "the results could not be copied for each sink, they share one (%s: %s)", type(exc).__name__, exc
        )
        return results


def _refuse_awaitable(result: object) -> None:
    """An ``async`` hook registration could not see (one wrapped by a plain decorator): its body
    never ran, so the sink failed; closing the coroutine spares a 'never awaited' warning."""
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise TypeError("the hook returned an awaitable: hooks are not awaited, so its body never ran")


def _record_interrupt(outcome: SinkOutcome, hook: str, exc: BaseException, thread: SinkThread | None) -> None:
    """Ctrl-C (or an exit) goes on up, but the sink it cut short is marked failed first: a report
    read later (the run is still finished) must not say that sink was fine."""
    if thread is None:  # called inline: the interrupt landed inside the sink's own code
        outcome.errors.append(f"{hook}: interrupted ({type(exc).__name__}) while the sink was working")
    elif thread.busy:
        outcome.timed_out = True  # no later hook waits behind the running call
        outcome.errors.append(
            f"{hook}: interrupted ({type(exc).__name__}) while the sink was still "
            "working; left running in the background"
        )
    else:  # the sink had finished its call
        return
    outcome.failed_hooks.append(hook)


class _LateWarnings(list[str]):
    """Stands in for a finished sink's ``warnings`` list: each message is handed on as it comes."""

    def __init__(self, report: Callable[[str], None]) -> None:
        super().__init__()
        self._report = report

    def append(self, message: object) -> None:
        self._report(str(message))

    def extend(self, messages: Iterable[object]) -> None:
        for message in messages:
            self._report(str(message))
