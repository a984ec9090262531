"""The yielding worker runs at a higher nice value than its caller, so the engine thread's
decoding wins the CPU when both want it."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from owl.engine.yielding import NICENESS, yielding_executor


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(sys.platform != "linux", reason="only Linux keeps a nice value per thread")
def test_the_worker_runs_nicer_than_its_caller_and_leaves_the_caller_alone():
    caller = _nice()
    with yielding_executor("test-yielding") as executor:
        worker = executor.submit(_nice).result()
        # The threads it starts (as OpenMP's team is started) inherit its nice value.
        started: list[int] = []

        def start_one() -> None:
            thread = threading.Thread(target=lambda: started.append(_nice()))
            thread.start()
            thread.join()

        executor.submit(start_one).result()
    assert worker == max(NICENESS, caller)  # never a lower nice value than the caller's
    assert started == [worker]
    assert _nice() == caller
