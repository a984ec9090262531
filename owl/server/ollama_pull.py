"""/api/pull: owl.store.pull in a worker thread, its progress callback as Ollama's statuses."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool

from owl.errors import InvalidModelName
from owl.scan.policy import first_reason, verdict_of
from owl.server.pool import ModelPool
from owl.store import Manifest, ModelRef, RefKind, parse_ref, pull

log = logging.getLogger("owl.server")
PROGRESS_EVERY_S = 0.1
_PULLABLE = "a store, built-in or catalog name, an https:// URL or an hf:Org/Repo/file.gguf"


def pull_ref(name: str, *, insecure: bool) -> ModelRef:
    """What a request may pull. Never a path on the server: a request does not read files."""
    ref = parse_ref(name)
    if ref.kind in (RefKind.FILE, RefKind.PACKAGE):
        raise InvalidModelName(
            f"'{name}' is not something the API pulls; send {_PULLABLE}. A file on the "
            "server's own disk is added there with `owl pull PATH`"
        )
    if ref.kind is RefKind.URL and name.lower().startswith("http://") and not insecure:
        raise InvalidModelName(
            f"'{name}' is plain http, which anyone on the way can alter; use https, or send "
            '"insecure": true to pull it anyway'
        )
    return ref


def _warning(manifest: Manifest) -> str | None:
    verdict = verdict_of(manifest)
    if verdict in ("clean", "unsupported"):
        return None
    # Kept in the store so that it can be inspected, but run and serve refuse it.
    return (
        f"warning: {manifest.display_name} is {verdict}: {first_reason(manifest)}. owl will "
        f"refuse to load it; `owl scan {manifest.display_name}` lists every finding"
    )


def _final(manifest: Manifest) -> list[dict[str, Any]]:
    digest = manifest.weights.digest
    done = manifest.weights.size
    statuses: list[dict[str, Any]] = [
        {
            "status": f"pulling {digest.removeprefix('sha256:')[:12]}",
            "digest": digest,
            "total": done,
            "completed": done,
        },
        {"status": "verifying sha256 digest"},
        {"status": "writing manifest"},
    ]
    warning = _warning(manifest)
    if warning is not None:
        statuses.append({"status": warning})
    return statuses


async def pull_statuses(ref: ModelRef, pool: ModelPool) -> AsyncGenerator[dict[str, Any], None]:
    """Ollama's pull statuses while owl.store.pull runs: progress, then "success".

    The pull runs in a worker thread and finishes even if the client goes away (a later
    pull finds the blob, or resumes it). Errors raise from this iterator.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, int | None] | None] = asyncio.Queue()

    def progress(done: int, total: int | None) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (done, total))

    task = asyncio.ensure_future(
        run_in_threadpool(
            partial(pull, ref, store=pool.store, settings=pool.settings, progress=progress)
        )
    )
    task.add_done_callback(lambda _: queue.put_nowait(None))
    task.add_done_callback(_log_failure)
    label = f"pulling {ref.raw}"
    announced = finished = False
    reported = float("-inf")
    while not finished:
        batch = [await queue.get()]
        while not queue.empty():
            batch.append(queue.get_nowait())
        finished = None in batch
        chunks = [item for item in batch if item is not None]
        if not chunks or time.monotonic() - reported < PROGRESS_EVERY_S:
            continue  # the source reports every chunk; a client needs a few lines a second
        reported = time.monotonic()
        if not announced:
            yield {"status": "pulling manifest"}
            announced = True
        done, total = chunks[-1]
        sizes = {"completed": done} if total is None else {"total": total, "completed": done}
        yield {"status": label, **sizes}
    manifest = task.result()  # raises the pull's error
    if not announced:
        yield {"status": "pulling manifest"}
    for status in _final(manifest):
        yield status
    yield {"status": "success"}


def _log_failure(task: asyncio.Future[Manifest]) -> None:
    # Read here too: a client that left mid-pull never reads it, and asyncio would log
    # "exception was never retrieved" with a traceback.
    if not task.cancelled() and task.exception() is not None:
        log.warning("pull failed: %s", task.exception())
