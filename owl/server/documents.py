"""Document collections over HTTP, on the same stage functions as `owl docs` and `owl ask`:

    GET    /v1/documents                 the collections
    GET    /v1/documents/{name}          one collection: folders, files, embedding model
    POST   /v1/documents/{name}          add files under the server's --docs-folder (a stream
                                         of progress events with "stream": true)
    POST   /v1/documents/{name}/query    retrieval only: {"hits": [...]}, as `owl docs search`
    DELETE /v1/documents/{name}          delete the index (never the documents)

The server reads documents only under the folder its operator named (OWL_DOCS_FOLDER): a
request that names a path elsewhere is refused, as image paths are (--image-folder).
Embedders come from the server's one pool, under its memory budget.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncGenerator, Callable
from contextlib import suppress
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from owl.config import Settings
from owl.docs import collections
from owl.docs.ask import Retrieved, hit_json, retrieve
from owl.docs.embedding import embedder_id, model_of
from owl.docs.index import Index
from owl.docs.ingest import IngestProgress, IngestReport, add_documents
from owl.errors import DocumentError, OwlError, SourceNotAllowed
from owl.server.framing import SSE, framed
from owl.server.pool import ModelPool
from owl.server.rerank import ranker

router = APIRouter(prefix="/v1/documents")


class QueryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=10_000)
    k: int = Field(default=5, ge=1, le=50)
    mode: Literal["hybrid", "bm25", "vector"] = "hybrid"
    rerank: str | None = Field(default=None, max_length=512, description="A model to rerank with.")


class AddBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(min_length=1, max_length=64)
    model: str | None = Field(default=None, max_length=256, description="A new collection's.")
    stream: bool = False


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _pool(request: Request) -> ModelPool:
    return request.app.state.pool


def _writer(request: Request, path: Path) -> asyncio.Lock:
    """One ingestion at a time per collection (SQLite has one writer)."""
    locks: dict[Path, asyncio.Lock] = request.app.state.__dict__.setdefault("docs_writers", {})
    return locks.setdefault(path, asyncio.Lock())


async def collection_embedder(request: Request, index: Index) -> Any:
    """The collection's own embedding model from the pool: the same name and weights it was
    built with, else a DocumentError saying what to do."""
    name = model_of(index.embedder)
    manifest = await run_in_threadpool(_pool(request).manifest, name)
    if embedder_id(manifest) != index.embedder:
        raise DocumentError(
            f"this collection was built with {index.embedder}, but '{name}' now has other "
            f"weights ({manifest.weights.digest}); rebuild the collection"
        )
    return await _pool(request).embedder(name)


def shown_path(settings: Settings, path: str) -> str:
    """A document's path as a client sees it: inside the docs folder, relative to it (the
    server's own layout is not the client's business), else as it is."""
    folder = settings.docs_folder
    if folder is None:
        return path
    root = str(folder.expanduser().resolve())
    return path[len(root) + 1 :] if path.startswith(root + os.sep) else path


async def retrieve_from(
    request: Request, name: str, query: str, *, k: int, mode: str, rerank: str | None = None
) -> Retrieved:
    """`owl docs search` for a server request: the collection's model (and `rerank`, a
    ranking model from the pool), off the event loop."""
    settings = _settings(request)
    path = collections.existing_path(settings, name)
    scorer = (await ranker(request, rerank)).rerank if rerank is not None else None
    index = await run_in_threadpool(Index.open, path)
    try:
        embedder = await collection_embedder(request, index)
        found = await run_in_threadpool(
            partial(retrieve, index, query, embedder=embedder, k=k, mode=mode, rerank=scorer)
        )
    finally:
        index.close()
    hits = [replace(hit, path=shown_path(settings, hit.path)) for hit in found.hits]
    return Retrieved(hits, found.best_similarity)


@router.get("")
async def list_collections(request: Request) -> dict[str, Any]:
    return {
        "object": "list",
        "data": await run_in_threadpool(collections.summaries, _settings(request)),
    }


@router.get("/{name}")
async def show_collection(request: Request, name: str) -> dict[str, Any]:
    settings = _settings(request)
    shown = await run_in_threadpool(collections.details, settings, name)
    shown["roots"] = [shown_path(settings, root) for root in shown["roots"]]
    for entry in shown["files_indexed"]:
        entry["path"] = shown_path(settings, entry["path"])
    return shown


@router.delete("/{name}")
async def delete_collection(request: Request, name: str) -> dict[str, Any]:
    path = collections.existing_path(_settings(request), name)
    async with _writer(request, path):
        await run_in_threadpool(collections.remove_collection, _settings(request), name)
    return {"name": name, "deleted": True}


@router.post("/{name}/query")
async def query_collection(request: Request, name: str, body: QueryBody) -> dict[str, Any]:
    found = await retrieve_from(
        request, name, body.query, k=body.k, mode=body.mode, rerank=body.rerank
    )
    return {"hits": [hit_json(hit) for hit in found.hits], "best_similarity": found.best_similarity}


def allowed_paths(settings: Settings, paths: list[str]) -> list[Path]:
    """The paths a request names, each inside the server's docs folder (after resolving
    links and '..'), else SourceNotAllowed."""
    folder = settings.docs_folder
    if folder is None:
        raise SourceNotAllowed(
            "this server reads no document folders; start it with --docs-folder DIR "
            "(OWL_DOCS_FOLDER) to index files under DIR, or use `owl docs add` on its machine"
        )
    root = folder.expanduser().resolve()
    chosen = []
    for given in paths:
        candidate = Path(given)
        path = (candidate if candidate.is_absolute() else root / candidate).resolve()
        if path != root and root not in path.parents:
            raise SourceNotAllowed(
                f"{given} is outside the server's docs folder; name a path in it"
            )
        if not path.exists():
            raise DocumentError(f"{given} does not exist in the server's docs folder")
        chosen.append(path)
    return chosen


@router.post("/{name}", response_model=None)
async def add_to_collection(request: Request, name: str, body: AddBody) -> Any:
    settings = _settings(request)
    roots = allowed_paths(settings, body.paths)
    path = collections.collection_path(settings, name)
    lock = _writer(request, path)
    await lock.acquire()
    try:
        index = await _open_for_add(request, path, body.model)
        embedder = await collection_embedder(request, index)
    except BaseException:
        lock.release()
        raise

    def work(
        progress: Callable[[IngestProgress], None], cancelled: Callable[[], bool]
    ) -> IngestReport:
        try:
            report = add_documents(
                index,
                roots,
                collection=name,
                embedder=embedder,
                progress=progress,
                cancelled=cancelled,
            )
            index.add_roots([str(root) for root in roots])
            return report
        finally:
            index.close()

    events = _ingest_events(work, lock, shown=partial(shown_path, settings))
    if body.stream:
        return await framed(request, events, SSE)
    report: dict[str, Any] = {}
    async for event in events:
        report = event
    return report


async def _open_for_add(request: Request, path: Path, model: str | None) -> Index:
    """The collection's index; a new one made for `model` (default: the server's
    embedding model), whose vectors' dimensions it records."""
    if path.is_file():
        index = await run_in_threadpool(Index.open, path)
        if model is not None and model_of(index.embedder) != model:
            index.close()
            raise DocumentError(
                f"this collection embeds with {model_of(index.embedder)}; leave out 'model'"
            )
        return index
    pool = _pool(request)
    manifest = await run_in_threadpool(pool.manifest, model or _settings(request).embedding_model)
    embedder = await pool.embedder(manifest.display_name)
    return await run_in_threadpool(
        partial(
            Index.open_or_create,
            path,
            embedder=embedder_id(manifest),
            dimensions=embedder.dimensions,
        )
    )


async def _ingest_events(
    work: Callable[..., IngestReport], lock: asyncio.Lock, *, shown: Callable[[str], str]
) -> AsyncGenerator[dict[str, Any], None]:
    """Progress events while `work` runs on a thread, then its report; closing the stream
    (the client left) stops the ingestion after the file it is on."""
    loop = asyncio.get_running_loop()
    updates: asyncio.Queue[IngestProgress] = asyncio.Queue()
    stop = threading.Event()

    def progress(at: IngestProgress) -> None:  # on the ingestion's thread
        loop.call_soon_threadsafe(updates.put_nowait, at)

    job = asyncio.ensure_future(run_in_threadpool(work, progress, stop.is_set))
    try:
        while not job.done():
            update = asyncio.ensure_future(updates.get())
            await asyncio.wait({update, job}, return_when=asyncio.FIRST_COMPLETED)
            if update.done():
                yield _progress_event(update.result())
            else:
                update.cancel()
        # The thread queued its last updates before it returned (call_soon_threadsafe keeps
        # their order): they go out before the report, so the bar reaches the end.
        while not updates.empty():
            yield _progress_event(updates.get_nowait())
        report = job.result().to_json()
        for key in ("files_read", "files_unchanged", "files_removed"):
            report[key] = [shown(path) for path in report[key]]
        for skipped in report["files_skipped"]:
            skipped["path"] = shown(skipped["path"])
        yield {"type": "done", **report}
    finally:
        if not job.done():
            stop.set()
            with suppress(OwlError):
                await job
        lock.release()


def _progress_event(at: IngestProgress) -> dict[str, Any]:
    return {
        "type": "progress",
        "files_done": at.files_done,
        "files_total": at.files_total,
        "chunks": at.chunks,
        "seconds": round(at.seconds, 3),
    }
