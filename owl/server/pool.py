"""Loaded models: each loads on first use, within a memory budget, and unloads when idle.

A model stays loaded for its keep_alive after its last request (the server's default,
OWL_KEEP_ALIVE, or a request's own, as Ollama's `keep_alive`); negative keeps it forever.
A model is only unloaded when idle: no request holds it (the request's task is still
running, streaming included) and its scheduler has no generation running or waiting.
Before a load, idle models are unloaded, least recently used first, until the new one
fits OWL_MAX_MEMORY and OWL_MAX_LOADED; when the others are busy the load waits up to
OWL_LOAD_WAIT for one to become idle, then answers 503 (NoRoomForModel).

A request may name a base with LoRA adapters, "BASE+ADAPTER[+ADAPTER…]", or an adapter
alone (its recorded base is loaded with it): each combination is a model of its own (llama.cpp
applies adapters to a whole context), keyed by every file's digest; the base's weights are
mmapped, so the combinations of one base share them in the page cache, but each counts its
own estimate (base + adapters + its KV cache) against the budget.

Embedders are loaded things like any other, in the same table and under the same budget
and keep_alive: the same stored model loaded for embeddings is an entry of its own (an
embedding context is its own llama.cpp context).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import cast

from starlette.concurrency import run_in_threadpool

from owl import engine
from owl.config import Settings
from owl.engine import OVERHEAD, Capability, Embedder, Loaded, Model
from owl.engine.adapters import (
    SEPARATOR,
    base_of,
    check_fits,
    combination_name,
    is_adapter,
    split_combination,
)
from owl.engine.backend import Drawer, Reranker, Transcriber, Voice
from owl.errors import ModelNotFound, NoRoomForModel
from owl.formats.info import human_bytes
from owl.pull import resolve
from owl.store import Manifest, RefKind, Store, parse_ref
from owl.store.lock import Lock, check_locked

log = logging.getLogger("owl.server")
SWEEP_EVERY_S = 1.0
FOREVER_S = 100 * 365 * 86400.0
_ROOM_POLL_S = 0.1


@dataclass(eq=False)
class Entry:
    """A loaded model (or embedder), its estimated memory, and when it was last used."""

    key: str  # [capability:]name@digest
    model: Loaded
    manifest: Manifest
    memory: int  # estimated bytes: weights + KV cache + llama.cpp's working margin
    keep_alive: float  # seconds after the last use; negative: forever
    last_used: float = field(default_factory=time.monotonic)
    holders: set[asyncio.Task] = field(default_factory=set)  # requests using it
    adapters: list[Manifest] = field(default_factory=list)  # LoRA adapters on the base
    capability: Capability = Capability.CHAT  # EMBED: an embedder

    @property
    def name(self) -> str:
        """The base's name, with "+adapter" for each adapter applied."""
        return combination_name(self.manifest, self.adapters)

    @property
    def in_use(self) -> int:
        """Requests holding the model, or generations running or waiting on it."""
        requests = sum(1 for task in self.holders if not task.done())
        return max(requests, self.model.occupancy().busy)

    def expires_at(self) -> datetime | None:
        """When the model unloads if no request comes; None: never (keep_alive < 0)."""
        if not 0 <= self.keep_alive < FOREVER_S:  # beyond a datetime's range: forever too
            return None
        # While in use the countdown has not started: it starts when the last request ends.
        start = time.monotonic() if self.in_use else self.last_used
        remaining = start + self.keep_alive - time.monotonic()
        return datetime.now(UTC) + timedelta(seconds=max(remaining, 0.0))

    def expired(self, now: float) -> bool:
        return 0 <= self.keep_alive <= now - self.last_used and not self.in_use


class ModelPool:
    """Models by store name and digest; a lock serialises loads and unloads."""

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
        self._entries: dict[str, Entry] = {}
        self._loading = asyncio.Lock()
        self._sweeper: asyncio.Task | None = None
        self._soon: set[asyncio.Task] = set()  # sweeps asked for by keep_alive 0

    def manifest(self, name: str) -> Manifest:
        """The stored model a request names. Only store names: a request never reads a path.

        For "BASE+ADAPTER…" (or an adapter alone): the base, once every part is found.
        """
        if SEPARATOR in name:
            return self.combination(name)[0]
        return self._stored(name)

    def combination(self, name: str) -> tuple[Manifest, list[Manifest]]:
        """(base, adapters) that `name` asks for: "BASE+A1+A2", an adapter alone (with its
        recorded base), or a plain model (no adapters). AdapterMismatch when one does not fit."""
        base, *adapters = [self._stored(part) for part in split_combination(name)]
        if is_adapter(base, store=self.store):
            adapters.insert(0, base)
            base = base_of(base, store=self.store)
        for adapter in adapters:
            check_fits(adapter, base, store=self.store)
        return base, adapters

    def _stored(self, name: str) -> Manifest:
        ref = parse_ref(name)
        if ref.kind is not RefKind.NAME:
            raise ModelNotFound(f"model '{name}' does not exist; GET /v1/models lists the models")
        return resolve(ref, store=self.store, settings=self.settings)

    async def get(self, name: str, *, keep_alive: float | None = None) -> Model:
        """The loaded model `name`, loading it first if needed; held until this request ends.

        `keep_alive`: seconds it stays loaded after this request (None: OWL_KEEP_ALIVE).
        """
        # engine.load gives a Model for CHAT and an Embedder for EMBED (its contract).
        return cast(Model, await self._get(name, Capability.CHAT, keep_alive))

    async def embedder(self, name: str, *, keep_alive: float | None = None) -> Embedder:
        """get() for embeddings: `name` loaded as an embedder, under the same budget."""
        return cast(Embedder, await self._get(name, Capability.EMBED, keep_alive))

    async def transcriber(self, name: str, *, keep_alive: float | None = None) -> Transcriber:
        """get() for speech to text: `name` (a Whisper model) under the same budget."""
        return cast(Transcriber, await self._get(name, Capability.TRANSCRIBE, keep_alive))

    async def voice(self, name: str, *, keep_alive: float | None = None) -> Voice:
        """get() for text to speech: `name` (a Piper voice) under the same budget."""
        return cast(Voice, await self._get(name, Capability.SPEAK, keep_alive))

    async def drawer(self, name: str, *, keep_alive: float | None = None) -> Drawer:
        """get() for text to images: `name` (a diffusers pipeline) under the same budget."""
        return cast(Drawer, await self._get(name, Capability.DRAW, keep_alive))

    async def reranker(self, name: str, *, keep_alive: float | None = None) -> Reranker:
        """get() for reranking: `name` (a cross-encoder) under the same budget."""
        return cast(Reranker, await self._get(name, Capability.RERANK, keep_alive))

    async def _get(self, name: str, capability: Capability, keep_alive: float | None) -> Loaded:
        manifest, adapters = await run_in_threadpool(self.combination, name)
        if self.lock is not None:
            for pinned in (manifest, *adapters):
                check_locked(pinned, self.lock)
        # By names and digests: a name pulled again with other weights loads the new ones.
        key = SEPARATOR.join(f"{m.display_name}@{m.weights.digest}" for m in (manifest, *adapters))
        if capability is not Capability.CHAT:  # one model may be loaded for several things
            key = f"{capability}:{key}"
        entry = self._entries.get(key)
        if entry is None:
            async with self._loading:
                entry = self._entries.get(key) or await self._load(
                    manifest, key, adapters, capability
                )
                self._hold(entry, keep_alive)  # before the lock lets a sweep in
        else:
            self._hold(entry, keep_alive)
        return entry.model

    def _hold(self, entry: Entry, keep_alive: float | None) -> None:
        # Ollama's rule: every request sets the model's keep_alive, its own or the default.
        entry.keep_alive = self.settings.keep_alive if keep_alive is None else keep_alive
        entry.last_used = time.monotonic()
        task = asyncio.current_task()
        if task is not None and task not in entry.holders:
            # A request runs in one task, streaming included: its end releases the model.
            entry.holders.add(task)
            task.add_done_callback(partial(self._release, entry))
        loop = asyncio.get_running_loop()
        if self._sweeper is None or self._sweeper.done() or self._sweeper.get_loop() is not loop:
            self._sweeper = loop.create_task(self._sweep_forever())

    def _release(self, entry: Entry, task: asyncio.Task) -> None:
        entry.holders.discard(task)
        entry.last_used = time.monotonic()
        if entry.keep_alive == 0 and not entry.in_use and not task.get_loop().is_closed():
            # keep_alive 0: unload right after the request, not at the next sweep.
            sweep = task.get_loop().create_task(self._sweep_logged())
            self._soon.add(sweep)
            sweep.add_done_callback(self._soon.discard)

    async def _load(
        self, manifest: Manifest, key: str, adapters: list[Manifest], capability: Capability
    ) -> Entry:
        name = combination_name(manifest, adapters)
        # An embedder or a speech model runs one at a time; a generating model one per slot.
        slots = self.settings.parallel if capability is Capability.CHAT else 1
        memory = await run_in_threadpool(
            partial(
                engine.estimate_memory,
                manifest,
                store=self.store,
                settings=self.settings,
                slots=slots,
            )
        )
        memory += int(sum(adapter.size for adapter in adapters) * OVERHEAD)
        if memory > self.settings.max_memory:
            raise NoRoomForModel(
                f"model '{name}' needs about {human_bytes(memory)} of memory "
                f"(weights and context) but the server's budget is "
                f"{human_bytes(self.settings.max_memory)}; raise OWL_MAX_MEMORY, serve with a "
                f"smaller --ctx, or use a smaller quantization (`owl fit {manifest.display_name}`)"
            )
        # The same name with other weights (pulled again) is replaced, not kept beside.
        stale = [
            entry
            for entry in self._entries.values()
            if entry.name == name and entry.capability is capability
        ]
        for entry in stale:
            self._entries.pop(entry.key)
        try:
            await self._make_room(memory, name)
            allowed = await run_in_threadpool(self._allowed_unsafe, manifest, *adapters)
            model = await run_in_threadpool(
                partial(
                    engine.load,
                    manifest,
                    store=self.store,
                    settings=self.settings,
                    capability=capability,
                    allow_unsafe=allowed,
                    by="owl serve --allow-unsafe",
                    slots=slots,
                    adapters=adapters,
                )
            )
        except BaseException:
            for entry in stale:  # the new weights did not load: the old ones serve on
                self._entries[entry.key] = entry
            raise
        entry = Entry(
            key,
            model,
            manifest,
            memory,
            keep_alive=self.settings.keep_alive,
            adapters=adapters,
            capability=capability,
        )
        self._entries[key] = entry
        log.info("loaded %s (about %s)", entry.name, human_bytes(memory))
        for old in stale:
            # Closing waits for the generations already queued on it.
            await run_in_threadpool(old.model.close)
        return entry

    def _fits(self, memory: int) -> bool:
        used = sum(entry.memory for entry in self._entries.values())
        return (
            len(self._entries) < self.settings.max_loaded
            and used + memory <= self.settings.max_memory
        )

    async def _make_room(self, memory: int, name: str) -> None:
        # Under self._loading. Idle models go, least recently used first; busy ones are
        # waited for (bounded), since unloading would cut their requests off.
        deadline = time.monotonic() + self.settings.load_wait
        while not self._fits(memory):
            idle = [entry for entry in self._entries.values() if not entry.in_use]
            if idle:
                await self._unload(min(idle, key=lambda entry: entry.last_used))
                continue
            if time.monotonic() >= deadline:
                busy = ", ".join(sorted(entry.name for entry in self._entries.values()))
                raise NoRoomForModel(
                    f"no room to load '{name}': the loaded models ({busy}) are all in use and "
                    f"the server allows {self.settings.max_loaded} model(s) and "
                    f"{human_bytes(self.settings.max_memory)}; retry when a request ends, or "
                    "raise OWL_MAX_LOADED / OWL_MAX_MEMORY"
                )
            await asyncio.sleep(_ROOM_POLL_S)

    async def _unload(self, entry: Entry) -> None:
        # Under self._loading: out of the table first, so no new request gets it.
        self._entries.pop(entry.key, None)
        await run_in_threadpool(entry.model.close)
        log.info("unloaded %s", entry.name)

    async def _sweep_once(self) -> None:
        if not any(entry.expired(time.monotonic()) for entry in self._entries.values()):
            return
        async with self._loading:
            for entry in list(self._entries.values()):
                # Checked again under the lock: a request may have taken it meanwhile.
                if entry.expired(time.monotonic()):
                    await self._unload(entry)

    async def _sweep_logged(self) -> None:
        try:
            await self._sweep_once()
        except Exception:  # a model that fails to close must not stop the sweeping
            log.exception("unloading an expired model failed")

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            await self._sweep_logged()

    async def stop(self, name: str) -> tuple[list[str], list[str]]:
        """Unload the loaded model `name`: (unloaded now, unloading when their requests end).

        ModelNotFound when it is not loaded. A model in use keeps serving the requests it
        has and unloads as soon as they end (its keep_alive becomes 0).
        """
        entries = await run_in_threadpool(self._named, name)
        if not entries:
            raise ModelNotFound(f"model '{name}' is not loaded; `owl ps` lists the loaded models")
        unloaded, pending = [], []
        async with self._loading:
            for entry in entries:
                entry.keep_alive = 0
                entry.last_used = time.monotonic()
                if entry.in_use:
                    pending.append(entry.name)
                elif self._entries.get(entry.key) is entry:
                    await self._unload(entry)
                    unloaded.append(entry.name)
        return unloaded, pending

    def _named(self, name: str) -> list[Entry]:
        try:
            wanted = combination_name(*self.combination(name))
        except ModelNotFound:  # removed from the store while loaded: match the name as given
            wanted = name
        return [entry for entry in self._entries.values() if entry.name == wanted]

    def _allowed_unsafe(self, *manifests: Manifest) -> bool:
        # One flag loads a base with its adapters: set when every one of them that is not
        # clean was let through by name (a clean one passes either way).
        from owl.scan.policy import ensure_scanned, verdict_of

        return all(
            bool({manifest.name, manifest.display_name} & self.allow_unsafe)
            or verdict_of(ensure_scanned(manifest, store=self.store)) == "clean"
            for manifest in manifests
        )

    def entries(self) -> list[Entry]:
        """The loaded models and embedders, by name."""
        return sorted(self._entries.values(), key=lambda entry: entry.name)

    def loaded(self) -> list[str]:
        return sorted({entry.name for entry in self._entries.values()})

    def close(self) -> None:
        """Unload every model now: what still runs at shutdown is ended, not waited for."""
        for task in (self._sweeper, *self._soon):
            if task is not None:
                task.cancel()
        for entry in self._entries.values():
            entry.model.close(cancel=True)
        self._entries.clear()
