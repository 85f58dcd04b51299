"""A forked child can use the sinks its parent started: it gets threads of its own."""

from __future__ import annotations

import os

import pytest

from evalsink.sink_thread import SinkThread


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_runs_hook_calls_on_a_thread_of_its_own() -> None:
    sink_thread = SinkThread("forked")
    assert sink_thread.call(os.getpid, {}, timeout=10) == os.getpid()  # parent's thread started
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread does not exist here
        try:
            answer = sink_thread.call(os.getpid, {}, timeout=10)
        except BaseException:
            os._exit(2)
        os._exit(0 if answer == os.getpid() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    sink_thread.stop()
