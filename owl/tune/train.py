"""The training loop: transformers model + PEFT LoRA, AdamW, checkpoints, exact resume.

owl's own loop rather than transformers.Trainer: a few dozen lines that owl controls end to
end — the data order (a permutation per epoch from the seed), the RNG state in every
checkpoint, a constant learning rate after a fixed warmup — so that a run stopped at any
step and resumed takes the same steps as one that never stopped.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import owl.tune.checkpoints as checkpoints
from owl.errors import TuneError
from owl.tune.data import IGNORE, Encoded
from owl.tune.options import TuneOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepReport:
    """What a progress callback hears after each step (and each eval)."""

    step: int
    total: int
    epoch: int
    loss: float
    tokens_per_s: float
    eval_loss: float | None = None


Progress = Callable[[StepReport], None]


@dataclass
class TrainResult:
    """A finished run: where its adapter is and how training went."""

    adapter_dir: Path
    steps: int
    total_steps: int
    resumed_from: int
    losses: list[float] = field(default_factory=list)  # this process's steps, in order
    eval_losses: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0

    @property
    def train_loss(self) -> float | None:
        """The mean loss of the last few steps (one step is noisy)."""
        tail = self.losses[-4:]
        return sum(tail) / len(tail) if tail else None

    @property
    def eval_loss(self) -> float | None:
        return self.eval_losses[-1] if self.eval_losses else None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def _device(options: TuneOptions) -> str:
    import torch

    if options.device:
        if options.device.startswith("cuda") and not torch.cuda.is_available():
            raise TuneError("--device cuda was asked for, but torch sees no CUDA GPU")
        return options.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def batches(n: int, options: TuneOptions, epoch: int) -> list[list[int]]:
    """The example indices of each batch of `epoch`: a seeded permutation, cut in batches."""
    import torch

    order = torch.randperm(n, generator=torch.Generator().manual_seed(options.seed + epoch))
    indices = order.tolist()
    return [indices[i : i + options.batch_size] for i in range(0, n, options.batch_size)]


def collate(items: list[Encoded], pad_id: int, device: str) -> dict[str, Any]:
    """Right-padded tensors: input_ids, attention_mask, labels (IGNORE on padding)."""
    import torch

    width = max(len(item.input_ids) for item in items)
    ids = [item.input_ids + [pad_id] * (width - len(item.input_ids)) for item in items]
    labels = [item.labels + [IGNORE] * (width - len(item.labels)) for item in items]
    mask = [[1] * len(item.input_ids) + [0] * (width - len(item.input_ids)) for item in items]
    return {
        "input_ids": torch.tensor(ids, device=device),
        "attention_mask": torch.tensor(mask, device=device),
        "labels": torch.tensor(labels, device=device),
    }


def lora_model(folder: Path, options: TuneOptions, device: str) -> Any:
    """The base model from `folder` (float32) wrapped with fresh LoRA adapters."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=torch.float32, local_files_only=True
        )
    except (ValueError, OSError) as err:
        raise TuneError(f"transformers cannot load the base model in {folder}: {err}") from err
    model.config.use_cache = False
    config = LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        # Every linear layer of the blocks (attention and MLP projections), never lm_head:
        # llama.cpp's LoRA converter maps exactly these.
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config).to(device)


def _rng_state() -> dict[str, Any]:
    import torch

    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def summed_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """The summed next-token loss over the batch's learned tokens, and their count."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]),
        labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    return loss, (labels != IGNORE).sum()


def evaluate(
    model: Any, items: list[Encoded], *, batch_size: int, pad_id: int, device: str
) -> float:
    """The mean loss per learned token over `items` (no dropout, no gradients)."""
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            loss, learned = summed_loss(
                model, collate(items[start : start + batch_size], pad_id, device)
            )
            total += float(loss)
            count += int(learned)
    model.train(was_training)
    return total / count if count else float("nan")


def _world() -> tuple[int, int]:
    """(rank, world size): (0, 1) unless torch.distributed runs (owl.tune.parallel)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train(
    folder: Path,
    train_items: list[Encoded],
    *,
    options: TuneOptions,
    run_dir: Path,
    pad_id: int,
    identity: dict[str, Any],
    eval_items: list[Encoded] | None = None,
    threads: int = 1,
    progress: Progress | None = None,
) -> TrainResult:
    """Train LoRA adapters on the base in `folder`; the adapter is saved in run_dir/adapter.

    `identity` (options, data digest, base) is written into every checkpoint; with
    options.resume the newest checkpoint in run_dir/checkpoints is continued, and refused
    when its identity differs.
    """
    import torch
    import torch.distributed as dist
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    torch.set_num_threads(threads)
    device = _device(options)
    process, world = _world()
    per_epoch = math.ceil(len(train_items) / options.batch_size)
    total = options.max_steps or options.epochs * per_epoch
    folder_ckpt = run_dir / "checkpoints"

    torch.manual_seed(options.seed)
    model = lora_model(folder, options, device)
    params = [param for param in model.parameters() if param.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
    warmup = options.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
    )
    step = 0
    if options.resume:
        found = checkpoints.latest(folder_ckpt)
        if found is None:
            raise TuneError(
                f"--resume found no checkpoint in {folder_ckpt}; run without --resume to start"
            )
        saved = checkpoints.load(found)
        if saved["state"].get("identity") != identity:
            raise TuneError(
                f"the checkpoint in {folder_ckpt} is of a run with other data or options "
                f"({saved['state'].get('identity')}); resume with the same ones, or start "
                "afresh without --resume"
            )
        set_peft_model_state_dict(model, saved["adapter"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        _set_rng_state(saved["rng"])
        step = found.step
        log.info("resuming from step %d of %s", step, folder_ckpt)
    result = TrainResult(run_dir / "adapter", step, total, resumed_from=step)

    def checkpoint() -> None:
        checkpoints.save(
            folder_ckpt,
            step=step,
            adapter=get_peft_model_state_dict(model),
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            rng=_rng_state(),
            state={"identity": identity},
        )

    def run_eval(epoch: int, loss: float, rate: float) -> None:
        value = evaluate(
            model, eval_items or [], batch_size=options.batch_size, pad_id=pad_id, device=device
        )
        result.eval_losses.append(value)
        if progress:
            progress(StepReport(step, total, epoch, loss, rate, eval_loss=value))

    model.train()
    started = time.perf_counter()
    order: list[list[int]] = []
    loss_value, rate = float("nan"), 0.0
    while step < total:
        epoch, position = divmod(step, per_epoch)
        if position == 0 or not order:
            order = batches(len(train_items), options, epoch)
        # Each process takes its share of the batch; the loss is normalised by the learned
        # tokens of the whole batch and the gradients summed, so that N processes take
        # the step one process would.
        chosen = order[position][process::world]
        if chosen:
            batch = collate([train_items[i] for i in chosen], pad_id, device)
            loss_sum, learned = summed_loss(model, batch)
            counts = torch.stack([learned, batch["attention_mask"].sum()]).double()
        else:  # the epoch's last batch is smaller than the number of processes
            loss_sum, counts = (
                torch.zeros((), device=device),
                torch.zeros(2, dtype=torch.float64, device=device),
            )
        if world > 1:
            dist.all_reduce(counts)
        loss = loss_sum / counts[0]
        if chosen:
            loss.backward()
        reported = loss.detach().clone()
        if world > 1:
            for param in params:
                if param.grad is None:
                    param.grad = torch.zeros_like(param)
                dist.all_reduce(param.grad)
            dist.all_reduce(reported)
        if not torch.isfinite(reported):
            raise TuneError(
                f"the training loss became {float(reported)} at step {step + 1}; lower --lr "
                "(and resume from the last checkpoint with --resume)"
            )
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        loss_value = reported.item()
        result.losses.append(loss_value)
        result.tokens += int(counts[1])
        elapsed = time.perf_counter() - started
        rate = result.tokens / elapsed if elapsed > 0 else 0.0
        if progress and process == 0:
            progress(StepReport(step, total, epoch, loss_value, rate))
        if step % options.checkpoint_every == 0 and step < total and process == 0:
            checkpoint()
        if eval_items and step % per_epoch == 0 and step < total and process == 0:
            run_eval(epoch, loss_value, rate)
    result.seconds = time.perf_counter() - started
    result.steps = step
    if process != 0:
        return result  # the other processes' copies are the same: rank 0 writes
    if eval_items:
        run_eval((step - 1) // per_epoch, loss_value, rate)
    if step > result.resumed_from:
        checkpoint()  # the end of a run stopped by --max-steps is where --resume goes on
    model.save_pretrained(str(result.adapter_dir), safe_serialization=True)
    return result
