"""owl pull | list | show | rm."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from owl.cli.common import print_json, warn_if_not_clean
from owl.cli.sign import signature_cell
from owl.cli.vision import capability_words, projector_cell, projector_details, repin
from owl.config import load_settings
from owl.errors import ModelNotFound
from owl.formats import ModelInfo, human_bytes, human_count, inspect
from owl.formats.hf_folder import list_folder
from owl.pull import open_store, pull_locked, pull_vision, register_embedded, resolve
from owl.scan.policy import verdict_of
from owl.signatures import Trust
from owl.store import Manifest, RefKind, parse_name, parse_ref
from owl.store.lock import LOCK_FILE, read_lock

console = Console()
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def pull_command(
    ref: Annotated[
        str | None,
        typer.Argument(
            help="NAME, ./file.gguf, ./model-folder, https://…, hf:Org/Repo/file.gguf, "
            "hf:Systran/faster-whisper-tiny, hf:rhasspy/piper-voices/en/en_US/lessac/medium"
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Store it under this name.")
    ] = None,
    locked: Annotated[
        bool,
        typer.Option(
            "--locked",
            help="Pull exactly the files owl.lock pins (all its models when no NAME is given).",
        ),
    ] = False,
    lock_file: Annotated[
        Path, typer.Option("--lock-file", help="The lock file for --locked.")
    ] = Path(LOCK_FILE),
    require_signature: Annotated[
        bool,
        typer.Option(
            "--require-signature", help="Refuse a model that is not signed by the signer named."
        ),
    ] = False,
    public_key: Annotated[
        Path | None, typer.Option("--public-key", help="Trust signatures by this key (PEM).")
    ] = None,
    certificate_chain: Annotated[
        list[Path] | None,
        typer.Option("--certificate-chain", help="Trust certificates from this chain (PEM)."),
    ] = None,
    identity: Annotated[
        str | None, typer.Option("--identity", help="Trust this Sigstore signer identity.")
    ] = None,
    issuer: Annotated[
        str | None, typer.Option("--issuer", help="The OIDC issuer of --identity.")
    ] = None,
    signature: Annotated[
        Path | None,
        typer.Option("--signature", help="The signature of a single-file model (model.sig)."),
    ] = None,
    mmproj: Annotated[
        str | None,
        typer.Option(
            "--mmproj",
            help="A vision projector GGUF to store with the model (a path, https://… or "
            "hf:Org/Repo/mmproj-….gguf); also adds one to a stored model.",
        ),
    ] = None,
    no_mmproj: Annotated[
        bool,
        typer.Option("--no-mmproj", help="Do not pull the projector a Hub repository has."),
    ] = False,
) -> None:
    """Pull a model into the store (resumable, verified by sha256, and by its signature
    when it has one: a folder's model.sig, or --signature)."""
    trust = Trust(
        public_key=public_key,
        certificate_chain=tuple(certificate_chain or ()),
        identity=identity,
        issuer=issuer,
        require=require_signature,
    )
    config = load_settings()
    store = open_store(config)
    if locked:
        lock = read_lock(lock_file)
        register_embedded(store, config)
        for locked_name in [ref] if ref else list(lock.models):
            _report_pull(
                _with_progress(
                    lambda progress, locked_name=locked_name: pull_locked(
                        locked_name, lock=lock, store=store, settings=config, progress=progress
                    )
                )
            )
        return
    if ref is None:
        raise typer.BadParameter("name a model to pull (or use --locked to pull owl.lock's)")
    notes = []

    def run(progress: Callable[[int, int | None], None]) -> Manifest:
        pulled = pull_vision(
            ref,
            store=store,
            settings=config,
            projector=mmproj,
            find_projector=not no_mmproj,
            name=name,
            progress=progress,
            trust=trust,
            signature=signature,
        )
        notes.extend([pulled.projector_note] if pulled.projector_note else [])
        return pulled.manifest

    manifest = _with_progress(run)
    _report_pull(manifest)
    for note in notes:  # which projector owl chose, said once the progress bar is gone
        console.print(note, markup=False, highlight=False)
    if mmproj is not None and repin(manifest, Path(LOCK_FILE)):
        console.print(f"{LOCK_FILE}: '{manifest.display_name}' now pins its projector too")


def _with_progress(run: Callable[[Callable[[int, int | None], None]], Manifest]) -> Manifest:
    with Progress(
        TextColumn("[bold]pulling[/bold]"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("pull", total=None)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        return run(progress)


def _report_pull(manifest: Manifest) -> None:
    console.print(
        f"pulled [bold]{manifest.display_name}[/bold] "
        f"({human_bytes(manifest.size)}, {manifest.weights.digest[:19]})"
    )
    if manifest.projector is not None:
        projector = manifest.projector
        console.print(
            f"projector: {projector.filename} ({human_bytes(projector.size)})",
            markup=False,
            highlight=False,
        )
    if manifest.signature is not None:
        console.print(f"signature: {signature_cell(manifest.signature)}")
    warn_if_not_clean(manifest)


def list_command(json_output: JSON = False) -> None:
    """List the models in the store."""
    config = load_settings()
    store = open_store(config)
    register_embedded(store, config)
    manifests = store.list()
    if json_output:
        print_json([manifest.model_dump(mode="json") for manifest in manifests])
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "SIZE", "FORMAT", "QUANT", "PARAMS", "LICENSE", "SCAN", "DIGEST"):
        table.add_column(column)
    for manifest in manifests:
        table.add_row(
            manifest.display_name,
            human_bytes(manifest.size),
            _format_cell(manifest),
            manifest.info.get("quantization") or "-",
            human_count(manifest.info.get("parameters")),
            manifest.license or "-",
            verdict_of(manifest) if manifest.scans else "-",
            manifest.weights.digest.removeprefix("sha256:")[:12],
        )
    console.print(table)


def show_command(
    model: Annotated[str, typer.Argument(help="A model in the store, a file or a model folder.")],
    json_output: JSON = False,
    template: Annotated[
        bool, typer.Option("--template", help="Print only the chat template.")
    ] = False,
) -> None:
    """Show a model's architecture, parameters, quantization, template, license, source.

    MODEL may also be a local file or Hugging Face model folder that is not in the store:
    it is read where it is.
    """
    config = load_settings()
    store = open_store(config)
    ref = parse_ref(model)
    try:
        manifest = resolve(ref, store=store, settings=config)
    except ModelNotFound:
        if ref.kind is not RefKind.FILE or ref.path is None or not ref.path.exists():
            raise
        manifest = None  # a local file or folder not in the store: read it where it is
    if manifest is None:
        assert ref.path is not None
        info = inspect(ref.path)
    else:
        info = store.read_info(manifest)
    if template:
        print(info.chat_template or "")
        return
    if manifest is None:
        assert ref.path is not None
        _show_file(ref.path, info, json_output=json_output)
        return
    capabilities = capability_words(manifest, store=store)
    projector = projector_details(manifest, store=store)
    details = {
        "name": manifest.display_name,
        "architecture": info.architecture,
        "parameters": info.parameters,
        "quantization": info.quantization,
        "tensor_types": info.tensor_types,
        "context_length": info.context_length,
        "embedding_length": info.embedding_length,
        "block_count": info.block_count,
        "head_count": info.head_count,
        "vocab_size": info.vocab_size,
        "license": manifest.license or info.license,
        "defaults": manifest.parameters,
        "format": manifest.format,
        "size": manifest.size,
        "digest": manifest.weights.digest,
        "files": [entry.model_dump(mode="json") for entry in manifest.files],
        "source": manifest.source.model_dump(mode="json"),
        "pulled_at": manifest.pulled_at.isoformat(),
        "scan": verdict_of(manifest) if manifest.scans else None,
        "signature": manifest.signature.model_dump(mode="json") if manifest.signature else None,
        "capabilities": capabilities,
        "projector": projector,
        "chat_template": info.chat_template,
        "metadata": info.metadata,
    }
    if json_output:
        print_json(details)
        return
    rows = [
        ("name", manifest.display_name),
        *([("adapter", _adapter_cell(manifest))] if manifest.info.get("adapter") else []),
        ("architecture", _architecture(info)),
        (
            "parameters",
            f"{human_count(info.parameters)} ({info.parameters:,})" if info.parameters else "-",
        ),
        ("quantization", info.quantization or "-"),
        ("tensor types", ", ".join(f"{kind}×{count}" for kind, count in info.tensor_types.items())),
        ("context length", str(info.context_length or "-")),
        ("embedding length", str(info.embedding_length or "-")),
        ("layers", str(info.block_count or "-")),
        ("vocabulary", str(info.vocab_size or "-")),
        ("license", details["license"] or "-"),
        (
            "defaults",
            " ".join(f"{key}={value}" for key, value in manifest.parameters.items()) or "-",
        ),
        ("format", manifest.format),
        ("size", human_bytes(manifest.size)),
        ("digest", manifest.weights.digest),
        *([("files", _files_cell(manifest))] if len(manifest.files) > 1 else []),
        *([("projector", projector_cell(projector))] if projector else []),
        ("capabilities", ", ".join(capabilities) or "-"),
        (
            "source",
            manifest.source.uri
            + (f" @ {manifest.source.revision}" if manifest.source.revision else ""),
        ),
        ("pulled", manifest.pulled_at.strftime("%Y-%m-%d %H:%M:%S %Z")),
        ("scan", verdict_of(manifest) if manifest.scans else "not scanned yet"),
        ("signature", signature_cell(manifest.signature)),
    ]
    console.print(_key_value_table(rows))
    if info.chat_template:
        console.print("[bold]chat template[/bold]")
        console.print(info.chat_template, markup=False, highlight=False)


def _format_cell(manifest: Manifest) -> str:
    if manifest.info.get("adapter"):
        return f"{manifest.format} LoRA"
    return f"{manifest.format}+vision" if manifest.projector else manifest.format


def _architecture(info: ModelInfo) -> str:
    model_class = info.metadata.get("hf.architecture")
    if model_class and model_class != info.architecture:
        return f"{info.architecture or '-'} ({model_class})"
    return info.architecture or "-"


def _adapter_cell(manifest: Manifest) -> str:
    """'LoRA of smollm2 (rank 8, 200 steps, train loss 0.412, eval loss 0.530)'."""
    tuned = manifest.info.get("tune") or {}
    figures = [
        f"rank {tuned['rank']}" if tuned.get("rank") else None,
        f"{tuned['steps']} steps" if tuned.get("steps") else None,
        *(
            f"{label} loss {tuned[key]:.3f}"
            for key, label in (("train_loss", "train"), ("eval_loss", "eval"))
            if isinstance(tuned.get(key), int | float)
        ),
    ]
    shown = ", ".join(figure for figure in figures if figure)
    base = manifest.info.get("base") or "?"
    return (
        f"LoRA of {base}"
        + (f" ({shown})" if shown else "")
        + f"; `owl run {base} --adapter {manifest.display_name}`"
    )


def _files_cell(manifest: Manifest) -> str:
    return "\n".join(
        f"{entry.filename} ({entry.role}, {human_bytes(entry.size)})" for entry in manifest.files
    )


def _key_value_table(rows: Iterable[tuple[str, str]]) -> Table:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    return table


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _show_file(path: Path, info: ModelInfo, *, json_output: bool) -> None:
    size = (
        sum(file.stat().st_size for file in list_folder(path).values())
        if path.is_dir()
        else path.stat().st_size
    )
    details = {"path": str(path.resolve()), "size": size, **info.model_dump()}
    if json_output:
        print_json(details)
        return
    keys = ("path", "format", "parameters", "quantization", "context_length", "license")
    rows = [(key.replace("_", " "), _cell(details[key])) for key in keys]
    rows.insert(1, ("architecture", _architecture(info)))
    console.print(_key_value_table(rows))
    console.print("(not in the store: `owl pull` it to run it)")


def rm_command(
    names: Annotated[list[str], typer.Argument(help="Models to delete.")],
) -> None:
    """Delete models from the store (and the files no other model uses)."""
    config = load_settings()
    store = open_store(config)
    register_embedded(store, config)  # `owl list` shows the built-in models: they can go too
    for name in names:
        manifest = store.remove(parse_name(name))
        console.print(f"deleted [bold]{manifest.display_name}[/bold]")


def register(app: typer.Typer) -> None:
    app.command("pull")(pull_command)
    app.command("list")(list_command)
    app.command("ls", hidden=True)(list_command)
    app.command("show")(show_command)
    app.command("rm")(rm_command)
