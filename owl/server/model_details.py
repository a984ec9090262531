"""owl's own routes for what `owl show`, `owl license check` and `owl quantize --report` tell
about a stored model, as JSON for the web UI's details view (and any other client):

    GET /v1/owl/models/{name}/details              architecture, template, lineage, scan, …
    GET /v1/owl/models/{name}/license?use=hosted   the verdict and obligations for one use

Ollama's /api/show answers in Ollama's shape and has no room for lineage, scan findings or
license obligations; these are owl's words for them, read from the manifest (what the pull,
the scan and the quantizer recorded), never from the model's own claims about itself.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from owl.engine import capabilities_of
from owl.errors import InvalidParameter
from owl.formats.info import ModelInfo
from owl.licenses import Use, terms
from owl.pull import check_model
from owl.scan.policy import verdict_of
from owl.server.pool import ModelPool
from owl.store import Manifest, Store

router = APIRouter(prefix="/v1/owl/models")

QUANTIZED = "quantized"


def _pool(request: Request) -> ModelPool:
    return request.app.state.pool


def scan_of(manifest: Manifest) -> dict[str, Any] | None:
    """The verdict of each file and its findings, as the pull's scan recorded them."""
    if not manifest.scans:
        return None
    files = []
    for entry in manifest.files:
        record = manifest.scans.get(entry.digest)
        files.append(
            {
                "file": entry.filename,
                "verdict": record.verdict if record else "unverified",
                "findings": record.findings if record else [],
                "error": record.error if record else None,
            }
        )
    return {"verdict": verdict_of(manifest), "files": files}


def lineage_of_manifest(manifest: Manifest) -> dict[str, Any]:
    """Where the model came from: its source, the models owl derived it from, and for a
    LoRA adapter its base and training figures."""
    adapter = None
    if manifest.info.get("adapter"):
        tuned = manifest.info.get("tune") or {}
        adapter = {
            "base": manifest.info.get("base"),
            **{key: tuned.get(key) for key in ("rank", "steps", "train_loss", "eval_loss")},
        }
    return {
        "source": manifest.source.model_dump(mode="json"),
        "parents": [parent.model_dump(mode="json") for parent in manifest.parents],
        "adapter": adapter,
    }


def _quantized_from(manifest: Manifest) -> str | None:
    return next((p.name for p in manifest.parents if p.relation == QUANTIZED), None)


def quality_report(manifest: Manifest, *, store: Store) -> dict[str, Any] | None:
    """`owl quantize --report`'s figures for the family of `manifest` (its parent and each
    quantization of that parent measured against it), from the children's manifests, where
    the report keeps them; None when none of them was measured."""
    parent_name = _quantized_from(manifest) or manifest.display_name
    stored = store.list()
    rows, reference, measured_on = [], None, None
    for other in stored:
        quality = other.info.get("quality")
        if _quantized_from(other) != parent_name or not isinstance(quality, dict):
            continue
        reference = reference or quality.get("reference_perplexity")
        measured_on = measured_on or {"text": quality.get("text"), "ctx": quality.get("ctx")}
        rows.append(
            {
                "name": other.display_name,
                "type": (other.info.get("quantize") or {}).get("type")
                or other.info.get("quantization"),
                "size": other.size,
                "perplexity": quality.get("perplexity"),
                "kld_mean": quality.get("kld_mean"),
                "top1_agreement": quality.get("top1_agreement"),
            }
        )
    if not rows:
        return None
    parent = next((m for m in stored if m.display_name == parent_name), None)
    if parent is not None:
        reference_row = {
            "name": parent.display_name,
            "type": parent.info.get("quantization") or "reference",
            "size": parent.size,
            "perplexity": reference,
            "kld_mean": 0.0,
            "top1_agreement": 1.0,
        }
        rows.insert(0, reference_row)
    rows.sort(key=lambda row: row["size"])
    return {"reference": parent_name, **(measured_on or {}), "rows": rows}


def details_body(
    manifest: Manifest, info: ModelInfo, *, store: Store, capabilities: list[str]
) -> dict[str, Any]:
    """Everything the details view shows, as `owl show` has it."""
    return {
        "name": manifest.display_name,
        "format": manifest.format,
        "architecture": info.architecture,
        "model_class": info.metadata.get("hf.architecture"),
        "parameters": info.parameters,
        "quantization": info.quantization,
        "context_length": info.context_length,
        "embedding_length": info.embedding_length,
        "block_count": info.block_count,
        "vocab_size": info.vocab_size,
        "size": manifest.size,
        "digest": manifest.weights.digest,
        "files": [entry.model_dump(mode="json") for entry in manifest.files],
        "pulled_at": manifest.pulled_at.isoformat(),
        "defaults": manifest.parameters,
        "capabilities": capabilities,
        "template": info.chat_template,
        "license": manifest.license or info.license,
        "lineage": lineage_of_manifest(manifest),
        "scan": scan_of(manifest),
        "signature": manifest.signature.model_dump(mode="json") if manifest.signature else None,
        "quality": quality_report(manifest, store=store),
    }


@router.get("/{name:path}/details")
async def model_details(name: str, request: Request) -> dict[str, Any]:
    pool = _pool(request)
    manifest = await run_in_threadpool(pool.manifest, name)

    def gather() -> dict[str, Any]:
        info = pool.store.read_info(manifest)
        capabilities = sorted(c.value for c in capabilities_of(manifest, store=pool.store))
        return details_body(manifest, info, store=pool.store, capabilities=capabilities)

    return await run_in_threadpool(gather)


def parse_use(use: str) -> Use:
    try:
        return Use(use.strip().lower())
    except ValueError:
        raise InvalidParameter(
            param="use", reason=f"{use[:40]!r}: one of {', '.join(u.value for u in Use)}"
        ) from None


@router.get("/{name:path}/license")
async def model_license(
    name: str, request: Request, use: str = "personal", monthly_users: int | None = None
) -> dict[str, Any]:
    """`owl license check MODEL --use USE`: the verdict, obligations and reasons, over the
    model's lineage, with the license's own record (name, link, note) when owl knows it."""
    chosen = parse_use(use)
    if monthly_users is not None and monthly_users < 0:
        raise InvalidParameter(param="monthly_users", reason="must be 0 or more")
    pool = _pool(request)
    manifest = await run_in_threadpool(pool.manifest, name)

    def judge() -> dict[str, Any]:
        verdict = check_model(manifest, store=pool.store, use=chosen, monthly_users=monthly_users)
        known = terms(verdict.license) if verdict.license else None
        fields = {"id", "name", "spdx", "url", "note"}
        record = None if known is None else known.model_dump(mode="json", include=fields)
        return {
            "model": manifest.display_name,
            "use": chosen.value,
            **verdict.model_dump(mode="json"),
            "terms": record,
        }

    return await run_in_threadpool(judge)
