"""owl quantize MODEL --type TYPE: llama.cpp's quantizer, into a new store entry MODEL:TYPE."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from owl.cli.common import print_json
from owl.config import Settings, load_settings, parse_size
from owl.formats import human_bytes
from owl.pull import open_store, resolve
from owl.quantize import Imatrix, QuantType, find_type, quant_types, quantize
from owl.quantize.quant_types import needs_imatrix
from owl.store import Manifest, Store

console = Console(highlight=False, soft_wrap=True)


def quantize_command(
    model: Annotated[str, typer.Argument(help="A GGUF model in the store, e.g. smollm2.")],
    qtypes: Annotated[
        list[str],
        typer.Option(
            "--type",
            "-t",
            help="The quantization type (any case; repeat for several): "
            + ", ".join(quant_types())
            + ".",
            metavar="TYPE",
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", "-n", help="Store it under this name (default MODEL:type)."),
    ] = None,
    imatrix: Annotated[
        Path | None,
        typer.Option(
            "--imatrix",
            help="An importance matrix made by llama.cpp's llama-imatrix for this model "
            "(one of --imatrix or --calibrate is required by the IQ types and Q2_K_S).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    calibrate_text: Annotated[
        Path | None,
        typer.Option(
            "--calibrate",
            help="Compute the importance matrix from this UTF-8 text, as llama-imatrix does, "
            "once for all --type. Text like the model's use works best. It is computed on "
            "MODEL: calibrate the highest-precision file you have (f16/f32, else Q8_0), as "
            "llama-imatrix recommends.",
            exists=True,
            dir_okay=False,
            metavar="TEXT",
        ),
    ] = None,
    calibrate_ctx: Annotated[
        int, typer.Option("--calibrate-ctx", help="Tokens per calibration chunk.", min=16)
    ] = 512,
    calibrate_chunks: Annotated[
        int | None,
        typer.Option(
            "--calibrate-chunks", help="Read at most N chunks (default: the whole text).", min=1
        ),
    ] = None,
    imatrix_out: Annotated[
        Path | None,
        typer.Option(
            "--imatrix-out",
            help="Also write the computed importance matrix here (llama-imatrix's GGUF format, "
            "for --imatrix or llama.cpp's tools).",
            dir_okay=False,
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object with the result.")
    ] = False,
    report: Annotated[
        bool,
        typer.Option(
            "--report",
            help="Measure each result against MODEL on --text (perplexity, KL divergence, "
            "top-1 agreement, decode speed); write a table and a PNG plot.",
        ),
    ] = False,
    text: Annotated[
        Path | None,
        typer.Option("--text", help="The text --report measures on.", exists=True, dir_okay=False),
    ] = None,
    ctx: Annotated[int, typer.Option("--ctx", help="Context for --report's evals.")] = 512,
    report_file: Annotated[
        Path | None,
        typer.Option("--report-file", help="Where the table goes (default: ./quantize-MODEL.md)."),
    ] = None,
) -> None:
    """Quantize a stored GGUF model with llama.cpp into a new model, MODEL:TYPE, with lineage."""
    if report and text is None:
        raise typer.BadParameter("--report measures on your text: give it with --text FILE")
    if name and len(qtypes) > 1:
        raise typer.BadParameter("--name names one model: give one --type with it")
    if imatrix is not None and calibrate_text is not None:
        raise typer.BadParameter("give --imatrix FILE or --calibrate TEXT, not both")
    if imatrix_out is not None and calibrate_text is None:
        raise typer.BadParameter("--imatrix-out writes the matrix --calibrate TEXT computes")
    config = load_settings()
    store = open_store(config)
    kinds = [find_type(qtype) for qtype in qtypes]
    if imatrix is None and calibrate_text is None:
        for kind in kinds:
            if kind.imatrix == "required":
                raise needs_imatrix(kind)
    parent = resolve(model, store=store, settings=config)
    matrix: Path | Imatrix | None = imatrix
    if calibrate_text is not None:
        matrix = _calibrate(
            parent,
            store=store,
            config=config,
            text=calibrate_text,
            ctx=calibrate_ctx,
            chunks=calibrate_chunks,
            out=imatrix_out,
            quiet=json_output,
        )
    results = []
    for kind in kinds:
        started = time.perf_counter()
        result = _quantize_one(parent, kind, store=store, config=config, name=name, imatrix=matrix)
        results.append(result)
        if not (report and json_output):  # --report --json prints one JSON object, at the end
            _report(result, parent, time.perf_counter() - started, json_output=json_output)
    if report:
        assert text is not None
        _quality_report(
            parent,
            results,
            store=store,
            config=config,
            text=text,
            ctx=ctx,
            path=report_file,
            json_output=json_output,
        )


def _quality_report(
    parent: Manifest,
    results: list[Manifest],
    *,
    store: Store,
    config: Settings,
    text: Path,
    ctx: int,
    path: Path | None,
    json_output: bool,
) -> None:
    from owl.quantize.report import quality_report, record_quality, rows_json, write_report

    path = path or Path(f"quantize-{parent.name}.md")
    with Console(stderr=True).status(f"measuring {len(results)} models on {text.name} …"):
        rows = quality_report(parent, results, store=store, settings=config, text=text, ctx=ctx)
    table, image = write_report(rows, path, text=text, ctx=ctx)
    record_quality(rows, results, store=store, text=text, ctx=ctx)
    if json_output:
        print_json({"report": rows_json(rows), "table": str(table), "plot": str(image)})
        return
    console.print(table.read_text(encoding="utf-8"), markup=False)
    console.print(f"wrote {table} and {image}")


def _calibrate(
    parent: Manifest,
    *,
    store: Store,
    config: Settings,
    text: Path,
    ctx: int,
    chunks: int | None,
    out: Path | None,
    quiet: bool,
) -> Imatrix:
    from owl.quantize.calibrate import calibrate

    precision = str(parent.info.get("quantization") or "").upper()
    if precision not in {"F32", "F16", "BF16", "Q8_0"}:
        typer.secho(
            f"note: {parent.display_name} is {precision or 'quantized'}; its activations carry "
            "its rounding errors, so an importance matrix computed on an f16/f32 (`owl "
            "convert`) or Q8_0 file of the model is better",
            err=True,
            fg=typer.colors.YELLOW,
        )
    started = time.perf_counter()
    with Console(stderr=True).status(
        f"computing an importance matrix for {parent.display_name} from {text.name} "
        f"(chunks of {ctx} tokens) …"
    ):
        matrix = calibrate(
            parent, store=store, settings=config, text=text, ctx=ctx, chunks=chunks, out=out
        )
    if not quiet:
        console.print(
            f"importance matrix: {len(matrix.values)} tensors from {matrix.chunks} chunks of "
            f"{ctx} tokens of {text.name}, in {time.perf_counter() - started:.1f} s"
            + (f"; wrote {out}" if out is not None else "")
        )
    return matrix


def _quantize_one(
    parent: Manifest,
    kind: QuantType,
    *,
    store: Store,
    config: Settings,
    name: str | None,
    imatrix: Path | Imatrix | None,
) -> Manifest:
    with Progress(
        SpinnerColumn(),
        TextColumn(
            f"quantizing [bold]{parent.display_name}[/bold] ({human_bytes(parent.size)}, "
            f"{parent.info.get('quantization') or '?'}) to [bold]{kind.name}[/bold]"
        ),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("tensors"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("quantize", total=None)
        result = quantize(
            parent,
            store=store,
            settings=config,
            qtype=kind.name,
            name=name,
            imatrix=imatrix,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    return result


def _report(result: Manifest, parent: Manifest, seconds: float, *, json_output: bool) -> None:
    details = result.info.get("quantize", {})
    parameters = result.info.get("parameters")
    bits = round(result.size * 8 / parameters, 2) if parameters else None
    if json_output:
        print_json(
            {
                "name": result.display_name,
                "parent": parent.display_name,
                "type": details.get("type"),
                "size": result.size,
                "bits_per_weight": bits,
                "parameters": parameters,
                "seconds": round(seconds, 2),
                "digest": result.weights.digest,
                "requantized": details.get("requantized"),
                "imatrix": details.get("imatrix"),
            }
        )
    else:
        console.print(
            f"quantized [bold]{result.display_name}[/bold]: {human_bytes(result.size)}"
            + (f", {bits:.2f} bits per weight" if bits is not None else "")
            + f", in {seconds:.1f} s (from {parent.display_name}, {human_bytes(parent.size)})"
        )
    if details.get("requantized"):
        typer.secho(
            f"warning: {parent.display_name} was already quantized ({details.get('from')}), "
            f"so {result.display_name} carries the rounding errors of both; quantize an "
            "f16/bf16 GGUF (`owl convert`) where quality matters, and measure the cost with "
            "`owl eval`",
            err=True,
            fg=typer.colors.YELLOW,
        )
    kind = find_type(details.get("type") or "")
    if kind.imatrix == "recommended" and not details.get("imatrix"):
        typer.secho(
            f"note: {kind.name} loses much more quality without an importance matrix "
            "(--calibrate TEXT or --imatrix FILE)",
            err=True,
            fg=typer.colors.YELLOW,
        )


def fit_command(
    model: Annotated[str, typer.Argument(help="A GGUF model in the store.")],
    ram: Annotated[str, typer.Option("--ram", help="The memory to fit in, e.g. 8GB.")],
    ctx: Annotated[
        int | None, typer.Option("--ctx", help="Context to leave room for (default: OWL_CTX).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The best quantization of MODEL that fits in --ram, with its quality cost."""
    from dataclasses import asdict

    from owl.formats import inspect
    from owl.quantize.fit import best, fit

    try:
        budget = parse_size(ram)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    config = load_settings(ctx=ctx)
    store = open_store(config)
    manifest = resolve(model, store=store, settings=config)
    context = config.ctx or manifest.info.get("context_length") or 4096
    metadata = inspect(store.weights_path(manifest)).metadata
    options = fit(manifest, store=store, ram=budget, ctx=context, metadata=metadata)
    chosen = best(options)
    if json_output:
        print_json(
            {
                "model": manifest.display_name,
                "ram": budget,
                "ctx": context,
                "best": asdict(chosen) if chosen else None,
                "options": [asdict(option) for option in options],
            }
        )
    else:
        for option in options:
            mark = "[green]fits   [/green]" if option.fits else "[red]too big[/red]"
            size = human_bytes(option.weights_bytes) + ("" if option.measured else " (est.)")
            console.print(
                f"{mark} {option.type:<8} weights {size:<18} "
                f"needs {human_bytes(option.memory_bytes):<10} {option.cost}"
            )
        if chosen is None:
            console.print(f"nothing fits in {human_bytes(budget)} with a {context}-token context")
        else:
            action = (
                f"already stored as {chosen.stored_as}"
                if chosen.stored_as
                else f"`owl quantize {manifest.display_name} --type {chosen.type}`"
            )
            console.print(
                f"best: [bold]{chosen.type}[/bold] ({human_bytes(chosen.memory_bytes)} of "
                f"{human_bytes(budget)} with a {context}-token context): {action}"
            )
    if chosen is None:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `owl quantize` and `owl fit`."""
    app.command("quantize")(quantize_command)
    app.command("fit")(fit_command)
