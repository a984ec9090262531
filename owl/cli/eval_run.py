"""owl eval run | compare | rerun: tasks on models, two runs side by side, a run repeated."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from owl.config import load_settings
from owl.errors import OwlError
from owl.pull import open_store

if TYPE_CHECKING:
    from owl.evals.compare import Comparison, Reproduction
    from owl.evals.models import EvalModel
    from owl.evals.run import RunResult

console = Console(soft_wrap=True, highlight=False)
errors = Console(stderr=True)

Json = Annotated[bool, typer.Option("--json", help="Print one line of JSON instead of a table.")]
Output = Annotated[
    Path | None,
    typer.Option(
        "-o",
        "--output",
        help="A folder for report.json, report.md, report.html, report.png and answers.jsonl.",
        file_okay=False,
    ),
]


@contextmanager
def _progress() -> Iterator[Callable[[int, int], None]]:
    """Questions answered, with an ETA, on stderr; it disappears when done."""
    with Progress(
        TextColumn("[bold]evaluating[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("questions"),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,
    ) as bar:
        task = bar.add_task("evaluating", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield progress


def _bad(message: str, hint: str | None = None) -> typer.BadParameter:
    # Usage errors exit 2, as click's own do: the input was wrong, not owl.
    return typer.BadParameter(message, param_hint=hint)


def _options(
    *,
    tasks: list[str],
    models: list[str],
    endpoint: str | None,
    endpoint_model: str | None,
    api_key_env: str | None,
    price: float | None,
    limit: int | None,
    threads: int | None,
    allow_unsafe: bool,
) -> dict[str, Any]:
    """The command's options as report.json keeps them (never the API key itself)."""
    if not models and endpoint is None:
        raise _bad("give a model to evaluate: --model NAME, or --endpoint URL --endpoint-model ID")
    if endpoint is None and (endpoint_model or api_key_env or price is not None):
        raise _bad("--endpoint-model, --api-key-env and --price go with an --endpoint URL")
    if endpoint is not None and not endpoint_model:
        raise _bad("name the endpoint's model with --endpoint-model ID", "'--endpoint-model'")
    return {
        "tasks": [_lasting(ref) for ref in tasks],
        "models": [_lasting(ref) for ref in models],
        "endpoint": endpoint,
        "endpoint_model": endpoint_model,
        "api_key_env": api_key_env,
        "price": price,
        "limit": limit,
        "threads": threads,
        "allow_unsafe": allow_unsafe,
    }


def _lasting(ref: str) -> str:
    """A file or folder as an absolute path: `owl eval rerun` may run from another folder."""
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else ref


def _execute(options: dict[str, Any]) -> RunResult:
    """Load the tasks, open the models, evaluate; bad names are usage errors (exit 2)."""
    from owl.evals.models import open_eval_model
    from owl.evals.run import evaluate
    from owl.evals.tasks import load_tasks

    api_key = None
    if options.get("api_key_env"):
        api_key = os.environ.get(options["api_key_env"])
        if not api_key:
            raise _bad(
                f"the environment variable {options['api_key_env']} is not set", "'--api-key-env'"
            )
    tasks = []
    for ref in options["tasks"]:
        try:
            tasks.extend(load_tasks(ref))
        except OwlError as err:
            raise _bad(str(err), "'TASK'") from None
    config = load_settings(threads=options.get("threads"))
    store = open_store(config)
    models: list[EvalModel] = []
    try:
        for ref in options["models"]:
            try:
                models.append(
                    open_eval_model(
                        ref, store=store, settings=config, allow_unsafe=options["allow_unsafe"]
                    )
                )
            except OwlError as err:
                raise _bad(str(err), "'--model'") from None
        if options.get("endpoint"):
            try:
                remote = open_eval_model(
                    options["endpoint_model"],
                    store=store,
                    settings=config,
                    endpoint=options["endpoint"],
                    api_key=api_key,
                    price_per_1k_tokens=options.get("price"),
                )
            except OwlError as err:
                raise _bad(str(err), "'--endpoint'") from None
            models.append(remote)
        with _progress() as progress:
            return evaluate(
                tasks, models, limit=options.get("limit"), progress=progress, options=options
            )
    finally:
        for model in models:
            model.close()


def _show(run: RunResult) -> None:
    from owl.evals.report import table

    header, rows = table(run)
    shown = Table(*header, show_edge=False)
    for column in shown.columns[2:]:
        column.justify = "right"
    for row in rows:
        shown.add_row(*row)
    console.print(shown, markup=False)


def _write(run: RunResult, output: Path | None, *, quiet: bool) -> dict[str, str]:
    if output is None:
        return {}
    from owl.evals.report import write_report

    paths = write_report(run, output)
    if "report.png" not in paths:
        errors.print(
            "no report.png: the plot needs matplotlib (pip install 'owl[report]')", markup=False
        )
    if not quiet:
        console.print(f"wrote {', '.join(str(p) for p in paths.values())}", markup=False)
    return {name: str(path) for name, path in paths.items()}


def _print_json(payload: dict[str, Any]) -> None:
    # One line: scripts read the last line of the output.
    print(json.dumps(payload, ensure_ascii=False, default=str), flush=True)


def run_command(
    tasks: Annotated[
        list[str],
        typer.Argument(
            help="Shipped task names, task YAML files, folders of them, or owl .jsonl tasks.",
            show_default=False,
        ),
    ],
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model", help="A stored model: NAME, NAME:QUANT or NAME+ADAPTER (repeatable)."
        ),
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(
            help="An OpenAI-compatible URL to evaluate too (owl serve, any server, a closed API)."
        ),
    ] = None,
    endpoint_model: Annotated[
        str | None, typer.Option(help="The model id to ask the --endpoint for.")
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(help="The environment variable that holds the --endpoint's API key."),
    ] = None,
    price: Annotated[
        float | None,
        typer.Option(
            help="The --endpoint's price in USD per 1,000 tokens: the report shows the cost.", min=0
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Only the first N questions of each task.", min=1)
    ] = None,
    json_output: Json = False,
    output: Output = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: all cores).")] = None,
    allow_unsafe: Annotated[
        bool,
        typer.Option(
            "--allow-unsafe",
            help="Load a model whose scan found it unsafe or unverified (experts only; recorded).",
        ),
    ] = False,
) -> None:
    """Evaluate models on tasks: one table of score ± standard error per task and model."""
    options = _options(
        tasks=tasks,
        models=model or [],
        endpoint=endpoint,
        endpoint_model=endpoint_model,
        api_key_env=api_key_env,
        price=price,
        limit=limit,
        threads=threads,
        allow_unsafe=allow_unsafe,
    )
    run = _execute(options)
    files = _write(run, output, quiet=json_output)
    if json_output:
        _print_json({**run.to_json(), "files": files})
        return
    _show(run)


def _read(path: Path, what: str) -> RunResult:
    from owl.evals.run import read_run

    try:
        return read_run(path)
    except OwlError as err:
        raise _bad(str(err), what) from None


def compare_command(
    run_a: Annotated[
        Path,
        typer.Argument(
            help="A report.json, or the folder `owl eval run -o` wrote.", show_default=False
        ),
    ],
    run_b: Annotated[Path, typer.Argument(help="The run to compare it with.", show_default=False)],
    a: Annotated[
        str | None, typer.Option("--a", help="RUN_A's model, when it holds several.")
    ] = None,
    b: Annotated[
        str | None, typer.Option("--b", help="RUN_B's model, when it holds several.")
    ] = None,
    metric: Annotated[
        str | None, typer.Option(help="The metric to compare (default: each task's first).")
    ] = None,
    seed: Annotated[int, typer.Option(help="The bootstrap's seed (non-0/1 metrics).")] = 0,
    json_output: Json = False,
) -> None:
    """Question by question: what changed between two runs, and whether it is significant."""
    from owl.evals.compare import compare

    first, second = _read(run_a, "'RUN_A'"), _read(run_b, "'RUN_B'")
    try:
        result = compare(first, second, model_a=a, model_b=b, metric=metric, seed=seed)
    except OwlError as err:
        raise _bad(str(err)) from None
    if json_output:
        _print_json(result.to_json())
        return
    _show_comparison(result)


def _show_comparison(result: Comparison) -> None:
    console.print(f"A: {result.a}    B: {result.b}", markup=False)
    for task in result.tasks:
        console.print(
            f"{task.task} ({task.metric}, n={task.n}): A {task.mean_a:.3f}, B {task.mean_b:.3f}; "
            f"{len(task.differing)} questions differ (A better on {task.a_only}, B on "
            f"{task.b_only}; {task.test})",
            markup=False,
        )
        for row in task.differing[:20]:
            console.print(
                f"  #{row['index']}: A {row['prediction_a']!r} ({row['a']:g}), "
                f"B {row['prediction_b']!r} ({row['b']:g}), target {row['target']!r}",
                markup=False,
            )
        if len(task.differing) > 20:
            console.print(f"  … {len(task.differing) - 20} more (--json lists all)", markup=False)
        console.print(f"  {task.verdict}", markup=False)
    for note in result.notes:
        errors.print(f"note: {note}", markup=False)


def rerun_command(
    report: Annotated[
        Path, typer.Argument(help="The report.json of the run (or its folder).", show_default=False)
    ],
    json_output: Json = False,
    output: Output = None,
) -> None:
    """Run a recorded evaluation again and say whether the numbers are the same."""
    from owl.evals.compare import reproduction

    before = _read(report, "'REPORT'")
    if not before.options.get("tasks"):
        raise _bad(
            f"{report} does not record the command's options; it cannot be rerun", "'REPORT'"
        )
    after = _execute(before.options)
    check = reproduction(before, after)
    files = _write(after, output, quiet=json_output)
    if json_output:
        _print_json({**after.to_json(), "reproduction": check.to_json(), "files": files})
    else:
        _show(after)
        _show_reproduction(check)
    if not check.matches:
        raise typer.Exit(1)


def _show_reproduction(check: Reproduction) -> None:
    for change in check.changed:
        console.print(f"changed: {change}", markup=False)
    if check.matches:
        console.print("the numbers match the recorded run", markup=False)
        return
    console.print("the numbers differ from the recorded run:", markup=False)
    for diff in check.differences:
        if diff["metric"] is None:
            console.print(f"  {diff['task']} on {diff['model']}: not run this time", markup=False)
        else:
            console.print(
                f"  {diff['task']} on {diff['model']}: {diff['metric']} {diff['before']} then, "
                f"{diff['after']} now",
                markup=False,
            )


def add_commands(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("compare")(compare_command)
    app.command("rerun")(rerun_command)
