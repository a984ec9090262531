"""owl tune BASE --data train.jsonl: LoRA fine-tuning → an adapter model in the store."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from owl.cli.common import print_json, warn_if_not_clean
from owl.config import load_settings
from owl.errors import TuneError
from owl.formats import human_bytes
from owl.pull import open_store, resolve
from owl.tune import TuneOptions, tune
from owl.tune.train import StepReport

console = Console(highlight=False)
progress_console = Console(stderr=True)  # the bar stays off stdout, which --json owns


def tune_command(
    base: Annotated[
        str, typer.Argument(help="The stored model to fine-tune (GGUF or safetensors).")
    ],
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            "-d",
            help='Training JSONL, a line each: {"messages": [...]}, {"prompt", "completion"} '
            'or {"text"}.',
        ),
    ],
    eval_data: Annotated[
        Path | None, typer.Option("--eval", help="Eval JSONL (same shapes): loss per epoch.")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="The adapter's name (default BASE-lora).")
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the data.")] = 1,
    max_steps: Annotated[
        int | None,
        typer.Option("--max-steps", min=1, help="Stop after this many steps (overrides --epochs)."),
    ] = None,
    rank: Annotated[int, typer.Option("--rank", min=1, help="LoRA rank.")] = 8,
    alpha: Annotated[
        float | None, typer.Option("--alpha", help="LoRA alpha (default 2 × rank).")
    ] = None,
    dropout: Annotated[float, typer.Option("--dropout", help="LoRA dropout.")] = 0.05,
    lr: Annotated[
        float, typer.Option("--lr", help="Learning rate (constant after warmup).")
    ] = 2e-4,
    warmup_steps: Annotated[int, typer.Option("--warmup-steps", min=0)] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1)] = 4,
    max_len: Annotated[
        int, typer.Option("--max-len", min=8, help="Tokens per example; longer ones are cut.")
    ] = 512,
    seed: Annotated[int, typer.Option("--seed", help="Seeds LoRA init, data order, dropout.")] = 0,
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", min=1, help="Steps between checkpoints.")
    ] = 50,
    nproc: Annotated[
        int,
        typer.Option("--nproc", min=1, help="Data-parallel processes (torch.distributed, gloo)."),
    ] = 1,
    device: Annotated[
        str | None,
        typer.Option("--device", help="cpu or cuda (default: cuda when torch sees a GPU)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the run's newest checkpoint.")
    ] = False,
    outtype: Annotated[
        str, typer.Option("--outtype", help="The GGUF adapter's type: f16, f32, bf16, q8_0.")
    ] = "f16",
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the stored adapter's manifest as JSON.")
    ] = False,
) -> None:
    """Fine-tune LoRA adapters of BASE on your data, on this machine; store them as a model.

    The adapter is exported to GGUF with llama.cpp's own LoRA converter and stored with
    BASE as its parent (BASE's license carries over). Checkpoints go to
    OWL_HOME/tune/NAME/; after an interruption, the same command with --resume goes on.
    """
    config = load_settings()
    store = open_store(config)
    try:
        options = TuneOptions(
            epochs=epochs,
            max_steps=max_steps,
            rank=rank,
            alpha=alpha,
            dropout=dropout,
            lr=lr,
            warmup_steps=warmup_steps,
            batch_size=batch_size,
            max_len=max_len,
            seed=seed,
            checkpoint_every=checkpoint_every,
            resume=resume,
            nproc=nproc,
            device=device,
            outtype=outtype,
        )
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in err.errors()
        )
        raise TuneError(f"invalid option: {problems}") from None
    manifest = resolve(base, store=store, settings=config)
    started = time.perf_counter()
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  {task.fields[rate]} tok/s  {task.fields[eval]}"),
        TimeRemainingColumn(),
        console=progress_console,
        transient=False,
    )
    task = bar.add_task("preparing", total=None, loss="-", rate="-", eval="")

    def status(message: str) -> None:
        bar.update(task, description=message)

    def on_step(report: StepReport) -> None:
        fields = {"loss": f"{report.loss:.3f}", "rate": f"{report.tokens_per_s:.0f}"}
        if report.eval_loss is not None:
            fields["eval"] = f"eval {report.eval_loss:.3f}"
        bar.update(
            task,
            description=f"epoch {report.epoch + 1}",
            total=report.total,
            completed=report.step,
            **fields,
        )

    with bar:
        adapter = tune(
            manifest,
            data=data,
            eval_data=eval_data,
            name=name,
            options=options,
            store=store,
            settings=config,
            progress=on_step,
            status=status,
        )
    if json_output:
        print_json(adapter.model_dump(mode="json"))
    else:
        info = adapter.info.get("tune", {})
        losses = f"train loss {info.get('train_loss') or float('nan'):.3f}"
        if info.get("eval_loss") is not None:
            losses += f", eval loss {info['eval_loss']:.3f}"
        console.print(
            f"tuned [bold]{adapter.display_name}[/bold], a LoRA adapter of "
            f"{manifest.display_name} ({info.get('steps')} steps, {losses}, "
            f"{info.get('tokens_per_s')} tok/s, {human_bytes(adapter.weights.size)} GGUF) "
            f"in {time.perf_counter() - started:.0f} s"
        )
    warn_if_not_clean(adapter)


def register(app: typer.Typer) -> None:
    """Add `owl tune`."""
    app.command("tune")(tune_command)
