"""The HTTP server: create_app(settings) builds the FastAPI app; nothing global."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from owl import __version__
from owl.config import Settings
from owl.server import errors, ollama_routes, openai_routes
from owl.server.pool import ModelPool
from owl.store import open_store, register_embedded
from owl.store.lock import Lock


def create_app(
    settings: Settings, *, allow_unsafe: Iterable[str] = (), lock: Lock | None = None
) -> FastAPI:
    """A FastAPI app serving the models in settings.home's store.

    Models whose scan verdict is not clean are refused unless named in `allow_unsafe`;
    with a `lock`, so is any model whose files are not the ones it pins.
    """
    store = open_store(settings)
    pool = ModelPool(settings, store, allow_unsafe=frozenset(allow_unsafe), lock=lock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(register_embedded, store, settings)
        yield
        pool.close()

    app = FastAPI(title="owl", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.pool = pool
    errors.install(app)
    app.include_router(openai_routes.router)
    app.include_router(ollama_routes.router)

    @app.get("/health")
    async def health() -> dict[str, object]:
        return {"status": "ok", "version": __version__, "loaded": pool.loaded()}

    return app


def serve(
    settings: Settings, *, allow_unsafe: Iterable[str] = (), lock: Lock | None = None
) -> None:
    """Run the server with uvicorn on settings.host:settings.port until interrupted."""
    import uvicorn

    uvicorn.run(
        create_app(settings, allow_unsafe=allow_unsafe, lock=lock),
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=10,
    )
