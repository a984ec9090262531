"""Loaded models: each loads on first use and stays loaded."""

from __future__ import annotations

import asyncio
from functools import partial

from starlette.concurrency import run_in_threadpool

from owl import engine
from owl.config import Settings
from owl.engine import Model
from owl.errors import ModelNotFound
from owl.store import Manifest, RefKind, Store, parse_ref, resolve
from owl.store.lock import Lock, check_locked


class ModelPool:
    """Models by store name, loaded once; a lock stops two requests loading one twice."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        allow_unsafe: frozenset[str] = frozenset(),
        lock: Lock | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        # With owl serve --locked: only models whose files are exactly the pinned ones load.
        self.lock = lock
        # Names the operator let through despite their scan verdict (owl serve --allow-unsafe).
        self.allow_unsafe = allow_unsafe
        self._models: dict[str, Model] = {}
        self._loading = asyncio.Lock()

    def manifest(self, name: str) -> Manifest:
        """The stored model a request names. Only store names: a request never reads a path."""
        ref = parse_ref(name)
        if ref.kind is not RefKind.NAME:
            raise ModelNotFound(f"model '{name}' does not exist; GET /v1/models lists the models")
        return resolve(ref, store=self.store, settings=self.settings)

    async def get(self, name: str) -> Model:
        manifest = await run_in_threadpool(self.manifest, name)
        if self.lock is not None:
            check_locked(manifest, self.lock)
        # By name and digest: a name pulled again with other weights loads the new ones.
        key = f"{manifest.display_name}@{manifest.weights.digest}"
        model = self._models.get(key)
        if model is not None:
            return model
        async with self._loading:
            if key not in self._models:
                self._models[key] = await run_in_threadpool(
                    partial(
                        engine.load,
                        manifest,
                        store=self.store,
                        settings=self.settings,
                        allow_unsafe=self._allowed_unsafe(manifest),
                        by="owl serve --allow-unsafe",
                        slots=self.settings.parallel,
                    )
                )
                prefix = f"{manifest.display_name}@"
                stale_keys = [other for other in self._models if other.startswith(prefix)]
                for stale in (other for other in stale_keys if other != key):
                    # Closing waits for the generations already queued on it.
                    await run_in_threadpool(self._models.pop(stale).close)
            return self._models[key]

    def _allowed_unsafe(self, manifest: Manifest) -> bool:
        return bool({manifest.name, manifest.display_name} & self.allow_unsafe)

    def loaded(self) -> list[str]:
        return sorted({model.name for model in self._models.values()})

    def close(self) -> None:
        for model in self._models.values():
            model.close()
        self._models.clear()
