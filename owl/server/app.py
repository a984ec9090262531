"""The HTTP server: create_app(settings) builds the FastAPI app; nothing global."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from types import FrameType

import anyio.to_thread
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware

from owl import __version__
from owl.config import Settings
from owl.pull import open_store, register_embedded
from owl.server import disconnect, errors, limits, metrics
from owl.server.anthropic import routes as anthropic_routes
from owl.server.auth import ApiKeyMiddleware, api_keys
from owl.server.documents import router as documents_router
from owl.server.generations import Generations
from owl.server.http_protocol import JsonErrorsH11Protocol
from owl.server.images import image_files
from owl.server.model_details import router as model_details_router
from owl.server.ollama import routes as ollama_routes
from owl.server.ollama.pull import Pulls
from owl.server.openai import audio as openai_audio
from owl.server.openai import images as openai_images
from owl.server.openai import routes as openai_routes
from owl.server.openai.responses import routes as responses_routes
from owl.server.pool import ModelPool
from owl.server.rerank import router as rerank_router
from owl.server.tokenizer_routes import router as tokenizer_router
from owl.server.ui import UiMiddleware
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
    keys = api_keys(settings)  # an unreadable keys file fails here, before serving
    counters = metrics.Metrics()
    generations = Generations(settings, counters)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        generations.bind(asyncio.get_running_loop())
        await run_in_threadpool(register_embedded, store, settings)
        yield
        generations.shutdown(now=True)  # streams the graceful timeout did not end
        pool.close()

    app = FastAPI(title="owl", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.pool = pool
    app.state.metrics = counters
    app.state.generations = generations
    app.state.pulls = Pulls(settings.max_pulls)
    app.state.image_files = image_files(settings)
    errors.install(app)
    disconnect.install(app)
    limits.install(app)
    app.include_router(openai_routes.router)
    app.include_router(openai_audio.router)
    app.include_router(openai_images.router)
    app.include_router(responses_routes.router)
    app.include_router(ollama_routes.router)
    app.include_router(anthropic_routes.router)
    app.include_router(metrics.router)
    app.include_router(model_details_router)
    app.include_router(tokenizer_router)
    app.include_router(documents_router)
    app.include_router(rerank_router)
    # Added innermost first: the catch-all answers a route's unexpected error; metrics
    # count every answer, 401s and 413s included; CORS answers preflights before auth and
    # puts its headers on the 401s too.
    app.add_middleware(errors.CatchAllMiddleware)
    app.add_middleware(
        limits.BodyLimitMiddleware,
        limit=settings.max_body,
        # a little over the upload itself: the multipart framing and the other fields
        audio_limit=settings.max_audio_bytes + (64 << 10),
    )
    app.add_middleware(ApiKeyMiddleware, keys=keys)
    if settings.ui:  # outside the key check: the page must load to ask for a key
        app.add_middleware(UiMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Retry-After"],
        )
    app.add_middleware(metrics.MetricsMiddleware, metrics=counters)

    @app.get("/health")
    async def health() -> JSONResponse:
        """ "ok", or 503 with the reason when requests cannot be served now."""
        problem = None
        if generations.draining:
            problem = "shutting down"
        elif anyio.to_thread.current_default_thread_limiter().available_tokens < 1:
            # Every route's blocking work (tokenizing, store reads, loads) waits for these.
            problem = "busy: every worker thread is in use; requests wait"
        body = {
            "status": "ok" if problem is None else "unavailable",
            "version": __version__,
            "loaded": pool.loaded(),
            "pulls": app.state.pulls.running,
        }
        if problem is not None:
            body["reason"] = problem
        return JSONResponse(body, status_code=200 if problem is None else 503)

    return app


def serve(
    settings: Settings, *, allow_unsafe: Iterable[str] = (), lock: Lock | None = None
) -> None:
    """Run the server with uvicorn on settings.host:settings.port until SIGTERM or Ctrl-C.

    Then it stops accepting, lets open generations finish for up to
    settings.shutdown_timeout less a margin, ends the rest with a final chunk, and exits 0.
    """
    app = create_app(settings, allow_unsafe=allow_unsafe, lock=lock)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=settings.shutdown_timeout,
        http=JsonErrorsH11Protocol,
    )
    _GracefulServer(config, app.state.generations).run()


class _GracefulServer(uvicorn.Server):
    """uvicorn's server that also tells the app's generations to wind down.

    A handled SIGTERM or Ctrl-C is a clean exit (0), not re-raised as uvicorn does; a
    second Ctrl-C stops every stream at once.
    """

    def __init__(self, config: uvicorn.Config, generations: Generations) -> None:
        super().__init__(config)
        self.generations = generations

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
            self.generations.shutdown(now=True)
        else:
            self.should_exit = True
            self.generations.shutdown()
