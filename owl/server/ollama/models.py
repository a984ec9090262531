"""The store as Ollama describes it: /api/tags, /api/show, /api/ps and owl's stop route."""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from owl.engine import Capability, capabilities_of
from owl.engine.adapters import SEPARATOR, adapter_of
from owl.errors import InvalidPrompt, ModelNotFound
from owl.formats import inspect
from owl.formats.info import ModelInfo, human_count
from owl.server.ollama.protocol import ShowRequest, parse_body
from owl.server.pool import ModelPool
from owl.store import Manifest
from owl.store.ref import DEFAULT_TAG

router = APIRouter()

# Ollama reports a model kept loaded forever (keep_alive < 0) as expiring ~292 years on.
_FOREVER = timedelta(days=292 * 365)


def rfc3339(moment: datetime | None = None) -> str:
    """A UTC time as Ollama writes it (RFC 3339, 'Z')."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tagged_name(manifest: Manifest) -> str:
    """Ollama always shows the tag: 'smollm2:latest'."""
    return f"{manifest.name}:{manifest.tag or DEFAULT_TAG}"


def details(manifest: Manifest) -> dict[str, Any]:
    """Ollama's `details` object, from what the manifest recorded at pull time."""
    info = manifest.info
    family = info.get("architecture") or ""
    parameters = info.get("parameters")
    return {
        "parent_model": manifest.parents[0].name if manifest.parents else "",
        "format": manifest.format,
        "family": family,
        "families": [family] if family else None,
        "parameter_size": human_count(parameters) if parameters else "",
        "quantization_level": info.get("quantization") or "",
    }


def tag_entry(
    manifest: Manifest, *, adapter_of: str | None = None, name: str | None = None
) -> dict[str, Any]:
    """One model of /api/tags. `adapter_of`: a LoRA adapter's base (owl.engine.adapters),
    shown in details.family; `name`: a loaded combination's ("base:tag+adapter:tag")."""
    name = name or tagged_name(manifest)
    entry_details = details(manifest)
    if adapter_of is not None:
        family = f"lora adapter of {adapter_of}" if adapter_of else "lora adapter"
        entry_details = {**entry_details, "family": family, "parent_model": adapter_of}
    return {
        "name": name,
        "model": name,
        "modified_at": rfc3339(manifest.pulled_at),
        "size": manifest.size,
        "digest": manifest.weights.digest.removeprefix("sha256:"),
        "details": entry_details,
    }


def ps_entry(
    manifest: Manifest,
    *,
    memory: int,
    expires_at: datetime | None,
    context_length: int,
    name: str | None = None,
) -> dict[str, Any]:
    """One loaded model of /api/ps: `size` is its estimated memory, as Ollama reports it.
    `name`: a loaded base-with-adapters' name (the pool's Loaded.name)."""
    return {
        **tag_entry(manifest, name=name),
        "size": memory,
        "expires_at": rfc3339(expires_at or datetime.now(UTC) + _FOREVER),
        "size_vram": 0,  # owl's engine runs on the CPU
        "context_length": context_length,
    }


def _parameters_text(parameters: dict[str, Any]) -> str:
    # Ollama's layout: the name padded to 30 columns, then the value (strings quoted).
    lines = []
    for key, value in sorted(parameters.items()):
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            shown = f'"{item}"' if isinstance(item, str) else str(item)
            lines.append(f"{key:<30} {shown}")
    return "\n".join(lines)


# Ollama's names where it has one; owl's own capability names for the rest.
_OLLAMA_NAMES = (
    (Capability.CHAT, "completion"), (Capability.CHAT, "tools"), (Capability.SEE, "vision"),
    (Capability.EMBED, "embedding"), (Capability.TRANSCRIBE, "transcribe"),
    (Capability.SPEAK, "speak"), (Capability.DRAW, "draw"), (Capability.RERANK, "rerank"),
)  # fmt: skip


def ollama_capabilities(capabilities: frozenset[Capability]) -> list[str]:
    """/api/show's capabilities: what clients (and owl's web UI) pick models by."""
    if Capability.EMBED in capabilities:  # an image embedder also sees: it is not a chat model
        return ["embedding"]
    return [name for capability, name in _OLLAMA_NAMES if capability in capabilities]


def show_body(
    manifest: Manifest,
    info: ModelInfo,
    capabilities: frozenset[Capability],
    projector: ModelInfo | None = None,
) -> dict[str, Any]:
    """/api/show: details, template, default parameters, license and the file's metadata;
    a vision model's `projector` (its mmproj's facts) as Ollama's projector_info."""
    model_info: dict[str, Any] = dict(info.metadata)
    model_info.setdefault("general.architecture", info.architecture)
    if info.parameters is not None:
        model_info["general.parameter_count"] = info.parameters
    if info.architecture and info.context_length is not None:
        model_info.setdefault(f"{info.architecture}.context_length", info.context_length)
    parameters = _parameters_text(manifest.parameters)
    modelfile = "\n".join(
        [
            '# Modelfile generated by "owl" (owl does not build models from Modelfiles)',
            f"FROM {tagged_name(manifest)}",
            *(f"PARAMETER {line}" for line in parameters.splitlines()),
        ]
    )
    body = {
        "license": manifest.license or info.license or "",
        "modelfile": modelfile + "\n",
        "parameters": parameters,
        # owl's templates are Jinja (the model's own), not Ollama's Go templates.
        "template": info.chat_template or "",
        "details": details(manifest),
        "model_info": model_info,
        "capabilities": ollama_capabilities(capabilities),
        "modified_at": rfc3339(manifest.pulled_at),
    }
    if projector is not None:
        body["projector_info"] = dict(projector.metadata)
    return body


def _pool(request: Request) -> ModelPool:
    return request.app.state.pool


@router.head("/api/tags", include_in_schema=False)  # one operation per method in the schema
@router.get("/api/tags")
async def tags(request: Request) -> dict[str, Any]:
    store = _pool(request).store

    def entries() -> list[dict[str, Any]]:
        return [
            tag_entry(manifest, adapter_of=adapter_of(manifest, store=store))
            for manifest in store.list()
        ]

    return {"models": await run_in_threadpool(entries)}


@router.post("/api/show")
async def show(request: Request) -> dict[str, Any]:
    body = await parse_body(request, ShowRequest)
    pool = _pool(request)
    manifest = await run_in_threadpool(pool.manifest, body.model)
    info = await run_in_threadpool(pool.store.read_info, manifest)  # folders too
    capabilities = await run_in_threadpool(partial(capabilities_of, manifest, store=pool.store))
    projector_path = await run_in_threadpool(pool.store.projector_path, manifest)
    projector = None if projector_path is None else await run_in_threadpool(inspect, projector_path)
    return show_body(manifest, info, capabilities, projector)


@router.get("/api/ps")
async def ps(request: Request) -> dict[str, Any]:
    models = [
        ps_entry(
            entry.manifest,
            memory=entry.memory,
            expires_at=entry.expires_at(),
            context_length=entry.model.n_ctx,
            name=entry.name if "+" in entry.name else None,  # a base+adapter combination
        )
        for entry in _pool(request).entries()
    ]
    return {"models": models}


@router.delete("/api/ps/{name:path}")
async def stop(name: str, request: Request) -> dict[str, Any]:
    """owl's own (`owl stop`): unload a model now, or as soon as its requests end."""
    unloaded, pending = await _pool(request).stop(name)
    return {"model": name, "unloaded": unloaded, "unloading": pending}


@router.delete("/api/delete")
async def delete(request: Request) -> dict[str, Any]:
    """Ollama's model removal: unloaded if loaded, then its manifest and the blobs no other
    model uses (owl rm). 404 for a model that is not stored."""
    body = await parse_body(request, ShowRequest)
    if SEPARATOR in body.model:
        raise InvalidPrompt(
            f"'{body.model}' is a combination, not a stored model; delete the base or the "
            "adapter by its own name"
        )
    pool = _pool(request)
    manifest = await run_in_threadpool(pool.manifest, body.model)
    with suppress(ModelNotFound):  # not loaded
        await pool.stop(manifest.display_name)
    removed = await run_in_threadpool(pool.store.remove, manifest.model_name)
    return {"model": removed.display_name, "deleted": True}
