"""The one thread of this process that runs model code (see owl/engine/stream.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import cache


@cache
def engine_thread() -> ThreadPoolExecutor:
    """One for all models: llama.cpp's OpenMP threads slow down threefold once decodes come
    from two threads of one process, and on a CPU two models would only contend anyway.
    Batched generations take turns on it step by step (owl/engine/scheduler.py).
    """
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="owl-engine")
