"""tune(): a stored base model + the user's JSONL → a LoRA adapter model in the store.

Order matters for the user: everything that can be wrong with the request (the name, the
data, the scan verdict, the checkpoints) is found before minutes go into dequantizing or
training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import owl.tune.checkpoints as checkpoints
from owl.config import Settings
from owl.engine.adapters import is_adapter
from owl.errors import NameClash, TuneError
from owl.store import Manifest, ModelName, Store, parse_name
from owl.store.blobs import sha256_file
from owl.tune.base import base_folder, chat_template, load_tokenizer
from owl.tune.data import Encoder, read_examples
from owl.tune.export import RELATION, export_adapter
from owl.tune.options import TuneOptions
from owl.tune.train import Progress, TrainResult, train

log = logging.getLogger(__name__)

Status = Callable[[str], None]


def default_name(base: Manifest) -> ModelName:
    """`smollm2` → `smollm2-lora`."""
    return parse_name(f"{base.name}-lora")


def run_dir(settings: Settings, name: ModelName) -> Path:
    """OWL_HOME/tune/<name>/<tag>: the run's checkpoints and its last adapter."""
    return settings.home / "tune" / name.name / name.tag  # ModelName parts hold no separator


def _is_run_of(existing: Manifest, base: Manifest, store: Store) -> bool:
    return is_adapter(existing, store=store) and any(
        parent.relation == RELATION and parent.digest == base.weights.digest
        for parent in existing.parents
    )


def _check_target(store: Store, target: ModelName, base: Manifest, resume: bool) -> bool:
    """Whether a stored model named `target` is to be replaced; NameClash if it may not be."""
    existing = store.find(target)
    if existing is None:
        return False
    if resume and _is_run_of(existing, base, store):
        return True
    raise NameClash(
        f"a model named '{target}' already exists; tune with --name OTHER, "
        f"or `owl rm {target}` first"
        + (" (or --resume to continue its run)" if _is_run_of(existing, base, store) else "")
    )


def tune(
    base: Manifest,
    *,
    data: Path,
    eval_data: Path | None = None,
    name: str | None = None,
    options: TuneOptions,
    store: Store,
    settings: Settings,
    progress: Progress | None = None,
    status: Status | None = None,
) -> Manifest:
    """Fine-tune LoRA adapters of the stored model `base` on `data`; the stored adapter.

    `data` (and `eval_data`) are JSONL files (owl/tune/data.py). The adapter is stored as
    `name` (default "<base>-lora"), a GGUF LoRA whose lineage names `base` ("fine-tuned")
    and carries its license. `progress` hears each step; `status` hears what is happening,
    in words. Checkpoints go to OWL_HOME/tune/<name>/<tag>/checkpoints; options.resume
    continues the newest.
    """
    from owl.scan.policy import require_loadable

    target = parse_name(name) if name else default_name(base)
    replace = _check_target(store, target, base, options.resume)
    run = run_dir(settings, target)
    if not options.resume and checkpoints.latest(run / "checkpoints") is not None:
        raise TuneError(
            f"an earlier run of '{target}' left checkpoints in {run / 'checkpoints'}: add "
            f"--resume to continue it, or delete that folder to start afresh"
        )
    examples = read_examples(data)
    eval_examples = read_examples(eval_data) if eval_data else None
    base = require_loadable(base, store=store, by="owl tune")
    folder = base_folder(base, store=store, settings=settings, status=status)
    tokenizer = load_tokenizer(folder)
    encoder = Encoder(tokenizer, chat_template(tokenizer), max_len=options.max_len)
    train_items = encoder.encode_all(examples, path=data)
    eval_items = encoder.encode_all(eval_examples, path=eval_data) if eval_examples else None
    data_digest = sha256_file(data)
    identity = {
        **options.run_identity(),
        "base": base.weights.digest,
        "data": data_digest,
    }
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    if status:
        status(f"training LoRA rank {options.rank} on {len(train_items)} examples")
    arguments = {
        "options": options,
        "run_dir": run,
        "pad_id": pad_id,
        "identity": identity,
        "eval_items": eval_items,
        "threads": options.threads or settings.threads,
        "progress": progress,
    }
    if options.nproc > 1:
        from owl.tune.parallel import train_parallel

        result = train_parallel(folder, train_items, nproc=options.nproc, **arguments)
    else:
        result = train(folder, train_items, **arguments)
    if status:
        status("converting the adapter to GGUF with llama.cpp's LoRA converter")
    return export_adapter(
        result.adapter_dir,
        base=base,
        base_folder=folder,
        name=target,
        store=store,
        settings=settings,
        info=_summary(result, options, data_digest, eval_data, len(train_items)),
        outtype=options.outtype,
        replace=replace,
    )


def _summary(
    result: TrainResult,
    options: TuneOptions,
    data_digest: str,
    eval_data: Path | None,
    examples: int,
) -> dict:
    return {
        "data_digest": data_digest,
        "eval_digest": sha256_file(eval_data) if eval_data else None,
        "examples": examples,
        "steps": result.steps,
        "epochs": round(result.steps / max(1, -(-examples // options.batch_size)), 3),
        "rank": options.rank,
        "alpha": options.alpha,
        "lr": options.lr,
        "batch_size": options.batch_size,
        "max_len": options.max_len,
        "seed": options.seed,
        "train_loss": result.train_loss,
        "eval_loss": result.eval_loss,
        "tokens_per_s": round(result.tokens_per_s, 1),
        "resumed_from": result.resumed_from,
    }
