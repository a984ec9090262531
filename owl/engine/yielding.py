"""A worker thread that yields the CPU to the engine thread.

Work that can wait its turn (encoding an image) runs on it at a higher nice value than the
engine thread's decoding, so text slots keep their cores while an image is encoded beside
them: on a 2-core machine, an encoder at the same priority halved the text's tokens per
second. With nothing else to run, the worker gets the whole machine as before. The threads a
native library starts from the worker (llama.cpp's OpenMP team) inherit its nice value.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

NICENESS = 10  # CFS weight 110 against the engine thread's 1024 (nice 0)


def yielding_executor(name: str) -> ThreadPoolExecutor:
    """One worker thread, run at NICENESS (Linux; elsewhere at normal priority)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=name, initializer=lower_priority)


def lower_priority() -> None:
    """Raise the calling thread's nice value to NICENESS (never lower it)."""
    if sys.platform != "linux":  # only Linux keeps a nice value per thread, by its thread id
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(
            os.PRIO_PROCESS, thread, max(NICENESS, os.getpriority(os.PRIO_PROCESS, thread))
        )
    except OSError:  # a sandbox that forbids it: the work runs, at normal priority
        pass
