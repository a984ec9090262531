"""owl distill: a teacher's answers to your prompts, filtered, tune a student."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from owl.config import load_settings
from owl.pull import open_store

console = Console(soft_wrap=True, highlight=False)
errors = Console(stderr=True, soft_wrap=True, highlight=False)


def distill_command(
    teacher: Annotated[
        str,
        typer.Option(
            "--teacher",
            help="A stored model, or an OpenAI-compatible base URL (http://host:port/v1).",
            show_default=False,
        ),
    ],
    student: Annotated[
        str, typer.Option("--student", help="The base model to tune.", show_default=False)
    ],
    prompts: Annotated[
        Path,
        typer.Option(
            "--prompts",
            help='One prompt a line (.txt), or chat JSONL ({"messages"} or {"prompt"}).',
            show_default=False,
        ),
    ],
    samples: Annotated[int, typer.Option(help="Answers asked per prompt.", min=1)] = 1,
    temperature: Annotated[
        float | None,
        typer.Option(help="Teacher's sampling temperature (default: 0 for one sample, else 0.7)."),
    ] = None,
    max_tokens: Annotated[
        int, typer.Option(help="Longest answer; a longer one is dropped as truncated.", min=1)
    ] = 512,
    schema: Annotated[
        Path | None,
        typer.Option(help="A JSON Schema file: answers must be JSON valid against it."),
    ] = None,
    json_only: Annotated[
        bool, typer.Option("--json-only", help="Keep only answers that are JSON.")
    ] = False,
    name: Annotated[
        str | None, typer.Option(help="The student adapter's name (default: STUDENT-distilled).")
    ] = None,
    teacher_model: Annotated[
        str | None, typer.Option(help="The model id at the teacher URL (default: its only one).")
    ] = None,
    teacher_api_key: Annotated[
        str | None,
        typer.Option(
            envvar="OWL_TEACHER_API_KEY", help="API key for the teacher URL.", show_default=False
        ),
    ] = None,
    teacher_license: Annotated[
        str | None, typer.Option(help="The teacher's license id, when owl cannot see it (a URL).")
    ] = None,
    parallel: Annotated[int, typer.Option(help="Teacher answers generated at once.", min=1)] = 4,
    no_tune: Annotated[
        bool, typer.Option("--no-tune", help="Only write the dataset; do not tune.")
    ] = False,
    epochs: Annotated[int, typer.Option(help="Passes over the dataset.", min=1)] = 1,
    max_steps: Annotated[
        int | None, typer.Option(help="Stop after this many steps.", min=1)
    ] = None,
    rank: Annotated[int, typer.Option(help="LoRA rank.", min=1)] = 8,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 2e-4,
    batch_size: Annotated[int, typer.Option(help="Examples per step.", min=1)] = 4,
    ctx: Annotated[int | None, typer.Option(help="The teacher's context window (tokens).")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: all cores).")] = None,
) -> None:
    """Distil TEACHER into STUDENT: answers to PROMPTS → filtered dataset → `owl tune`."""
    from owl.tune.distill import distill

    config = load_settings(threads=threads, ctx=ctx)
    store = open_store(config)
    options = None
    if not no_tune:
        from owl.tune.options import TuneOptions

        options = TuneOptions(
            epochs=epochs, max_steps=max_steps, rank=rank, lr=lr, batch_size=batch_size
        )
    with Progress(
        TextColumn("[bold]teacher[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("answers"),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,
    ) as bar:
        task = bar.add_task("teacher", total=None)
        result = distill(
            teacher,
            student=student,
            prompts=prompts,
            store=store,
            settings=config,
            samples=samples,
            temperature=temperature,
            max_tokens=max_tokens,
            schema=schema,
            json_only=json_only,
            name=name,
            options=options,
            teacher_model=teacher_model,
            teacher_api_key=teacher_api_key,
            teacher_license=teacher_license,
            parallel=parallel,
            tune_student=not no_tune,
            status=lambda message: errors.print(message, markup=False),
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    report = result.report
    dropped = ", ".join(f"{count} {why}" for why, count in report.to_json()["dropped"].items())
    console.print(
        f"kept [bold]{report.kept}[/bold] of {report.answers} answers to {report.prompts} "
        f"prompts (dropped: {dropped})"
    )
    console.print(f"dataset: {result.dataset}")
    if result.student is not None:
        console.print(
            f"student: [bold]{result.student.display_name}[/bold] "
            f"(teacher {result.teacher.name}); run it with "
            f"`owl run {student} --adapter {result.student.display_name}`"
        )


def register(app: typer.Typer) -> None:
    app.command("distill")(distill_command)
