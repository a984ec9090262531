"""owl eval perplexity | kld | extraction (here) and run | compare | rerun (eval_run.py):
how good a model is on a text or on tasks."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from owl.cli import eval_run
from owl.config import load_settings
from owl.pull import open_store

console = Console(soft_wrap=True, highlight=False)
errors = Console(stderr=True)
eval_app = typer.Typer(
    help="Measure models: on tasks (run, compare, rerun), and on a text (perplexity, KL "
    "divergence from a reference).",
    no_args_is_help=True,
)

ModelArg = Annotated[str, typer.Argument(help="A stored model name, file or reference (GGUF).")]
Text = Annotated[
    Path, typer.Option("--text", help="A UTF-8 text file to score.", show_default=False)
]
Ctx = Annotated[int, typer.Option(help="Tokens per chunk; the second half is scored.", min=4)]
Json = Annotated[bool, typer.Option("--json", help="End with one line of JSON.")]
Threads = Annotated[int | None, typer.Option(help="CPU threads (default: all cores).")]
AllowUnsafe = Annotated[
    bool,
    typer.Option(
        "--allow-unsafe",
        help="Load a model whose scan found it unsafe or unverified (experts only; recorded).",
    ),
]


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A chunk counter on stderr; it disappears when done."""
    with Progress(
        TextColumn(f"[bold]{label}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("chunks"),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,
    ) as bar:
        task = bar.add_task(label, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield progress


def _print_json(payload: dict[str, Any]) -> None:
    # One line: scripts read the last line of the output.
    print(json.dumps(payload, ensure_ascii=False), flush=True)


def perplexity_command(
    model: ModelArg,
    text: Text,
    ctx: Ctx = 512,
    json_output: Json = False,
    threads: Threads = None,
    allow_unsafe: AllowUnsafe = False,
) -> None:
    """Perplexity of MODEL on a text, by llama-perplexity's method (second half of each chunk)."""
    from owl.evals import perplexity

    config = load_settings(threads=threads)
    store = open_store(config)
    with _progress("scoring") as progress:
        result = perplexity(
            model,
            text=text,
            ctx=ctx,
            store=store,
            settings=config,
            allow_unsafe=allow_unsafe,
            progress=progress,
        )
    if json_output:
        _print_json(result.to_json())
        return
    console.print(
        f"perplexity of [bold]{result.model}[/bold] on {text.name} (ctx {result.ctx}): "
        f"[bold]{result.perplexity:.4f}[/bold] ± {result.stderr:.4f}"
    )
    console.print(
        f"  {result.tokens} tokens scored in {result.chunks} chunks "
        f"({result.text_tokens} tokens of text), {result.seconds:.1f} s"
    )


def kld_command(
    model: ModelArg,
    reference: Annotated[
        str,
        typer.Option(
            "--reference",
            help="The model to compare with (e.g. the unquantized one).",
            show_default=False,
        ),
    ],
    text: Text,
    ctx: Ctx = 512,
    json_output: Json = False,
    threads: Threads = None,
    allow_unsafe: AllowUnsafe = False,
) -> None:
    """KL divergence of MODEL's next-token distributions from REFERENCE's, on a text."""
    from owl.evals import kl_divergence

    config = load_settings(threads=threads)
    store = open_store(config)
    with _progress("comparing") as progress:
        result = kl_divergence(
            model,
            reference=reference,
            text=text,
            ctx=ctx,
            store=store,
            settings=config,
            allow_unsafe=allow_unsafe,
            progress=progress,
        )
    if json_output:
        _print_json(result.to_json())
        return
    console.print(
        f"KL divergence of [bold]{result.model}[/bold] from [bold]{result.reference}[/bold] "
        f"on {text.name} (ctx {result.ctx}):"
    )
    rows = [
        ("mean KLD", f"{result.kld_mean:.6f} ± {result.kld_stderr:.6f}"),
        ("median KLD", f"{result.kld_median:.6f}"),
        ("99% KLD", f"{result.kld_p99:.6f}"),
        ("max KLD", f"{result.kld_max:.6f}"),
        ("same top token", f"{100 * result.top1_agreement:.2f} %"),
        ("perplexity", f"{result.perplexity:.4f} ± {result.perplexity_stderr:.4f}"),
        (
            "reference's",
            f"{result.reference_perplexity:.4f} ± {result.reference_stderr:.4f}",
        ),
        ("scored", f"{result.tokens} tokens in {result.chunks} chunks, {result.seconds:.1f} s"),
    ]
    for label, value in rows:
        console.print(f"  {label:<15} {value}")


def extraction_command(
    model: ModelArg,
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="The eval split: chat JSONL whose last assistant turn is the expected JSON.",
        ),
    ] = Path("data/extraction/eval.jsonl"),
    adapter: Annotated[
        list[str] | None,
        typer.Option("--adapter", help="A LoRA adapter in the store to apply (repeatable)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Score only the first N examples.", min=1)
    ] = None,
    parallel: Annotated[
        int,
        typer.Option(
            help="Answers generated at once: faster, but near-ties can then differ run to run.",
            min=1,
        ),
    ] = 1,
    json_output: Json = False,
    threads: Threads = None,
    allow_unsafe: AllowUnsafe = False,
) -> None:
    """Exact match and JSON validity of MODEL's greedy answers on an extraction split."""
    from owl.evals.extraction import extraction

    config = load_settings(threads=threads)
    store = open_store(config)
    with _progress("answering") as progress:
        result = extraction(
            model,
            data=data,
            adapters=adapter or (),
            limit=limit,
            parallel=parallel,
            store=store,
            settings=config,
            allow_unsafe=allow_unsafe,
            progress=progress,
        )
    if json_output:
        _print_json(result.to_json())
        return
    with_adapters = f" + {', '.join(result.adapters)}" if result.adapters else ""
    console.print(f"[bold]{result.model}{with_adapters}[/bold] on {data.name}:")
    console.print(
        f"  exact match  [bold]{100 * result.exact_match:.1f} %[/bold] "
        f"({result.exact}/{result.examples})"
    )
    console.print(
        f"  valid JSON   {100 * result.json_valid:.1f} % ({result.valid}/{result.examples})"
    )
    console.print(f"  answered in  {result.seconds:.1f} s")


eval_app.command("perplexity")(perplexity_command)
eval_app.command("kld")(kld_command)
eval_app.command("extraction")(extraction_command)
eval_run.add_commands(eval_app)  # run | compare | rerun: tasks on models, and their reports


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
