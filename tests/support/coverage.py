"""Architecture coverage: one tiny model of a family through every stage of owl that takes it.

    folder ─► owl pull (verdict clean) ─► owl show (architecture, parameter count)
                                       └► transformers backend: greedy tokens = transformers'
           ─► owl convert f16 ─► owl quantize Q8_0 ─► llama.cpp logits ≈ transformers' float32

`coverage()` records each stage's outcome (a failure stops only the stages after it on the
same path), for tests/quantize/test_architectures.py and scripts/architectures.py.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from tests.support.tiny_models import build_tiny_folder, input_ids, reference_logits, tiny_model

HF_STAGES = ("pull", "inspect", "transformers")
GGUF_STAGES = ("convert", "quantize", "runs", "f16", "q8_0")
STAGES = HF_STAGES[:2] + GGUF_STAGES + HF_STAGES[2:]
# Tokens the transformers backend generates greedily after the whole input (its KV cache).
CONTINUATION = 8

# Logits tolerance per GGUF type against transformers' float32 (set from measurements, see
# docs/architectures.md and tests/quantize/test_architectures.py): share of positions whose top
# token agrees (at least), max |Δlogit| over all positions and the whole vocabulary (at most).
TOLERANCE = {"f16": {"top1": 0.8, "max": 0.02}, "q8_0": {"top1": 0.6, "max": 0.1}}


def llama_logits(path: Path, ids: list[int], *, threads: int | None = None):  # noqa: ANN201
    """llama.cpp's logits of the GGUF at `path` at every position of `ids` (no BOS added)."""
    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=64, logits_all=True, n_threads=threads, verbose=False
    )
    try:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)], dtype=np.float32)
    finally:
        llm.close()


def compare(ours, reference) -> dict[str, float]:  # noqa: ANN001
    """Top-1 agreement (share of positions) and max/mean |Δlogit| of two [positions, vocab]."""
    import numpy as np

    diff = np.abs(ours - reference)
    top1 = float((ours.argmax(1) == reference.argmax(1)).mean())
    return {"top1": top1, "max": float(diff.max()), "mean": float(diff.mean())}


def within(found: dict[str, float], kind: str) -> bool:
    limit = TOLERANCE[kind]
    return found["top1"] >= limit["top1"] and found["max"] <= limit["max"]


def reference_continuation(folder: Path, ids: list[int], new: int = CONTINUATION) -> list[int]:
    """transformers' greedy `new` tokens after `ids` (generate(), no sampling)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    out = model.generate(
        torch.tensor([ids]), do_sample=False, max_new_tokens=new, min_new_tokens=new
    )
    return out[0, len(ids) :].tolist()


def greedy(backend, ids: list[int], n: int) -> list[int]:  # noqa: ANN001 (an owl Backend)
    """The backend's first `n` greedy tokens after `ids`."""
    from owl.engine.sampling import SamplingParams

    generation = backend.generate(ids, SamplingParams(temperature=0))
    try:
        return list(itertools.islice(generation, n))
    finally:
        generation.close()


def stored_weights(model) -> int:  # noqa: ANN001 (a transformers PreTrainedModel)
    """How many numbers the model's checkpoint holds: parameters and persistent buffers
    (DeepSeek-V3's e_score_correction_bias is one), a tied tensor once."""
    seen: dict[int, int] = {}
    for tensor in model.state_dict().values():
        seen[tensor.data_ptr()] = tensor.numel()
    return sum(seen.values())


def _reason(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    # The converter's errors end with its output's last lines, joined by " | ".
    lines = [part.strip() for line in text.splitlines() for part in line.split(" | ")]
    lines = [line for line in lines if line]
    return f"{type(err).__name__}: {lines[-1][:300]}" if lines else type(err).__name__


def hf_stages(
    family: str, folder: Path, *, reference, store, settings, result: dict[str, Any]
) -> None:  # noqa: ANN001
    """pull → inspect → transformers backend, into `result` (see coverage())."""
    from owl.engine import load
    from owl.pull import pull
    from owl.scan.policy import verdict_of

    ids = input_ids(family)
    stage = "pull"
    try:
        manifest = pull(str(folder), store=store, settings=settings, name=f"{folder.name}-hf")
        result["pull_verdict"] = verdict_of(manifest)
        result["pull"] = result["pull_verdict"] == "clean"
        if not result["pull"]:
            raise RuntimeError(f"scan verdict {result['pull_verdict']}")
        stage = "inspect"
        info = store.read_info(manifest)
        built = tiny_model(family)
        result["inspect_found"] = {"architecture": info.architecture, "parameters": info.parameters}
        result["inspect"] = (
            info.architecture == built.config.model_type
            and info.parameters == stored_weights(built)
        )
        stage = "transformers"
        model = load(manifest, store=store, settings=settings)
        try:
            # The next token at every position (each prefix), then a continuation through
            # the backend's KV cache: the argmax of transformers' float32 logits each time.
            top1 = [greedy(model.backend, ids[: k + 1], 1)[0] for k in range(len(ids))]
            continued = greedy(model.backend, ids, CONTINUATION)
        finally:
            model.backend.close()
        expected_top1 = reference.argmax(1).tolist()
        agree = sum(a == b for a, b in zip(top1, expected_top1, strict=True)) / len(ids)
        same = continued == reference_continuation(folder, ids)
        result["transformers_found"] = {"top1": agree, "continuation": same}
        result["transformers"] = agree == 1.0 and same
    except Exception as err:  # noqa: BLE001 (the matrix records any failure, with its reason)
        result[stage] = False
        result.setdefault("errors", []).append(f"{stage}: {_reason(err)}")


def gguf_stages(
    family: str, folder: Path, *, reference, store, settings, tools: Path, result: dict[str, Any]
) -> None:  # noqa: ANN001
    """convert f16 → quantize Q8_0 → llama.cpp logits of both, into `result` (see coverage())."""
    from owl.quantize.convert import convert
    from owl.quantize.quantize import quantize

    ids = input_ids(family)
    stage = "convert"
    try:
        f16 = convert(folder, store=store, settings=settings, tools=tools)
        result["convert"] = True
        stage = "quantize"
        q8_0 = quantize(f16, store=store, settings=settings, qtype="Q8_0")
        result["quantize"] = True
        stage = "runs"
        for kind, manifest in (("f16", f16), ("q8_0", q8_0)):
            found = compare(llama_logits(store.weights_path(manifest), ids), reference)
            result["runs"] = True
            result[f"{kind}_found"] = found
            result[kind] = within(found, kind)
    except Exception as err:  # noqa: BLE001 (the matrix records any failure, with its reason)
        result[stage] = False
        result.setdefault("errors", []).append(f"{stage}: {_reason(err)}")


def coverage(
    family: str, *, work: Path, store, settings, gguf: bool = True, hf: bool = True
) -> dict[str, Any]:  # noqa: ANN001
    """Take `family`'s tiny model through every stage (gguf/hf: which paths).

    Returns {"family", each of STAGES: bool | None (not reached), "pull_verdict",
    "inspect_found", "f16_found"/"q8_0_found": compare(), "transformers_found": {"top1",
    "continuation"}, "errors": each failure's reason, when any}. `work` holds the shared
    SmolLM2 tokenizer, the converter and the tiny folders.
    """
    from owl.pull.sources.package import locate
    from owl.store.ref import parse_ref
    from tests.conftest import EMBEDDED_REF
    from tests.quantize.test_convert import shared_tools
    from tests.support.tiny_lora import smollm2_tokenizer

    result: dict[str, Any] = {"family": family, **dict.fromkeys(STAGES)}
    tokenizer = smollm2_tokenizer(work, locate(parse_ref(EMBEDDED_REF)))
    folder = build_tiny_folder(family, work, tokenizer)
    reference = reference_logits(folder, input_ids(family))
    common = {"reference": reference, "store": store, "settings": settings, "result": result}
    if hf:
        hf_stages(family, folder, **common)
    if gguf:
        gguf_stages(family, folder, tools=shared_tools(work), **common)
    return result
