"""/api/pull: owl pull (pull_vision) on a thread of its own, its progress as Ollama's statuses."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing, suppress
from functools import partial
from typing import Any

from fastapi import APIRouter, Request

from owl.errors import InvalidModelName, ServerBusy
from owl.pull import pull_vision
from owl.scan.policy import first_reason, verdict_of
from owl.server.framing import NDJSON, framed
from owl.server.ollama.protocol import PullRequest, parse_body
from owl.server.pool import ModelPool
from owl.store import Manifest, ModelRef, RefKind, parse_ref

log = logging.getLogger("owl.server")
router = APIRouter()
PROGRESS_EVERY_S = 0.1
HEARTBEAT_S = 5.0  # well inside the idle timeouts of clients and proxies (30 s and more)
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


class Pulls:
    """The server's running pulls: each on a thread of its own, at most `limit` at once.

    Not the shared worker threads that every route uses: a pull from a host that never
    answers holds its thread until its timeouts run out, and 40 of them would stall every
    other request. Daemon threads, so that shutdown never waits for a download (a partial
    file resumes on the next pull).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running = 0
        self._lock = threading.Lock()

    @property
    def running(self) -> int:
        with self._lock:
            return self._running

    def start(self, work: Callable[[], Manifest]) -> asyncio.Future[Manifest]:
        """Run `work` on a new thread; its result or error in the returned future.
        More than `limit` at once: ServerBusy (429)."""
        with self._lock:
            if self._running >= self.limit:
                raise ServerBusy(
                    f"{self._running} pulls are running, this server's limit "
                    "(OWL_MAX_PULLS); retry when one has finished"
                )
            self._running += 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Manifest] = loop.create_future()

        def settle(result: Manifest | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        def run() -> None:
            result, error = None, None
            try:
                result = work()
            except BaseException as err:  # handed to the request, which raises it
                error = err
            finally:
                with self._lock:
                    self._running -= 1
            with suppress(RuntimeError):  # the loop closed: the server is shutting down
                loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=run, name="owl-pull", daemon=True).start()
        return future


async def pull_statuses(
    ref: ModelRef, pool: ModelPool, pulls: Pulls
) -> AsyncGenerator[dict[str, Any], None]:
    """Ollama's pull statuses while owl.pull.pull runs: progress, then "success".

    "pulling manifest" comes at once, and the last status again every HEARTBEAT_S while
    nothing moves, so that a client and every proxy between see a live stream. The pull
    runs on a thread of its own and finishes even if the client goes away (a later pull
    finds the blob, or resumes it). Errors raise from this iterator.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, int | None] | None] = asyncio.Queue()

    def progress(done: int, total: int | None) -> None:
        with suppress(RuntimeError):  # the loop closed: the server is shutting down
            loop.call_soon_threadsafe(queue.put_nowait, (done, total))

    task = pulls.start(partial(_pull, ref, pool, progress))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    task.add_done_callback(_log_failure)
    label = f"pulling {ref.raw}"
    last: dict[str, Any] = {"status": "pulling manifest"}
    yield last
    finished = False
    reported = float("-inf")
    while not finished:
        try:
            batch = [await asyncio.wait_for(queue.get(), HEARTBEAT_S)]
        except TimeoutError:
            yield last
            continue
        while not queue.empty():
            batch.append(queue.get_nowait())
        finished = None in batch
        chunks = [item for item in batch if item is not None]
        if not chunks or time.monotonic() - reported < PROGRESS_EVERY_S:
            continue  # the source reports every chunk; a client needs a few lines a second
        reported = time.monotonic()
        done, total = chunks[-1]
        sizes = {"completed": done} if total is None else {"total": total, "completed": done}
        last = {"status": label, **sizes}
        yield last
    manifest = task.result()  # raises the pull's error
    for status in _final(manifest):
        yield status
    yield {"status": "success"}


def _pull(ref: ModelRef, pool: ModelPool, progress: Callable[[int, int | None], None]) -> Manifest:
    """As `owl pull REF` does: a vision model comes with the projector its Hub repository or
    catalog entry publishes, so that it sees images once pulled."""
    return pull_vision(
        ref,
        store=pool.store,
        settings=pool.settings,
        progress=progress,
        allow_private=pool.settings.allows_private_sources,
    ).manifest


def _log_failure(task: asyncio.Future[Manifest]) -> None:
    # Read here too: a client that left mid-pull never reads it, and asyncio would log
    # "exception was never retrieved" with a traceback.
    if not task.cancelled() and task.exception() is not None:
        log.warning("pull failed: %s", task.exception())


@router.post("/api/pull")
async def pull(request: Request) -> Any:
    body = await parse_body(request, PullRequest)
    ref = pull_ref(body.model, insecure=body.insecure)
    statuses = pull_statuses(ref, request.app.state.pool, request.app.state.pulls)
    if body.stream:
        return await framed(request, statuses, NDJSON)
    warnings = []
    async with aclosing(statuses):
        async for status in statuses:
            if status["status"].startswith("warning:"):
                warnings.append(status["status"])
    return {"status": "success", **({"warning": " ".join(warnings)} if warnings else {})}
