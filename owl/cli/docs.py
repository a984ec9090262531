"""owl docs add|list|show|rm|search and owl ask: private documents, indexed and asked locally."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from owl.cli.common import print_json
from owl.config import Settings, load_settings
from owl.docs import collections
from owl.docs.ask import ask, hit_json, retrieve
from owl.docs.embedding import load_text_embedder, model_of
from owl.docs.grounding import location
from owl.docs.index import Index
from owl.docs.ingest import IngestProgress, add_documents
from owl.docs.rerank import Rerank, load_reranker
from owl.engine import Capability, load
from owl.errors import DocumentError
from owl.pull import open_store, resolve

errors = Console(stderr=True)
docs_app = typer.Typer(help="Index private documents and search them, all on this machine.")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
TopK = Annotated[int, typer.Option("--k", min=1, max=50, help="How many chunks to retrieve.")]
RerankWith = Annotated[
    str | None,
    typer.Option(
        "--rerank",
        help="Rerank the candidates with this model (a chat model ranks by query likelihood).",
    ),
]


@docs_app.command("add")
def add_command(
    name: Annotated[str, typer.Argument(help="The collection (made if it is new).")],
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Files and folders (recursively); none: the collection's own again."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Embedding model of a new collection (default minilm)."),
    ] = None,
    chunk_size: Annotated[int, typer.Option(min=200, max=8000, help="Characters a chunk.")] = 1000,
    overlap: Annotated[int, typer.Option(min=0, max=2000, help="Characters chunks share.")] = 150,
    as_json: JsonFlag = False,
) -> None:
    """Add files to collection NAME; unchanged files are not read again, removed ones leave."""
    config = load_settings()
    path = collections.collection_path(config, name)
    recorded = _recorded(path)
    embedder, identity = _embedder(config, model, recorded)
    try:
        with Index.open_or_create(path, embedder=identity, dimensions=embedder.dimensions) as index:
            roots = list(paths or []) or [Path(root) for root in index.roots()]
            if not roots:
                raise DocumentError(
                    f"name the files or folders to add: `owl docs add {name} PATH...`"
                )
            with _bar(as_json) as report_progress:
                report = add_documents(
                    index,
                    roots,
                    collection=name,
                    embedder=embedder,
                    chunk_size=chunk_size,
                    overlap=overlap,
                    progress=report_progress,
                )
            index.add_roots([str(root.expanduser().resolve()) for root in roots])
            stats = index.stats()
    finally:
        embedder.close()
    if as_json:
        print_json(
            {**report.to_json(), "total_files": stats["files"], "total_chunks": stats["chunks"]}
        )
        return
    errors.print(
        f"{name}: {len(report.files_read)} file(s) read, {len(report.files_unchanged)} unchanged, "
        f"{len(report.files_removed)} removed, {len(report.files_skipped)} skipped; "
        f"{report.chunks} chunk(s) in {report.seconds:.1f} s — {stats['files']} file(s), "
        f"{stats['chunks']} chunk(s) in all",
        highlight=False,
    )
    for skipped in report.files_skipped:
        errors.print(f"  skipped {skipped.path}: {skipped.reason}", highlight=False)


class _bar:
    """A progress bar of files, with chunks per second; nothing when printing JSON."""

    def __init__(self, quiet: bool) -> None:
        self._progress = (
            None
            if quiet
            else Progress(
                TextColumn("[bold]indexing[/bold]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=errors,
                transient=True,
            )
        )
        self._task = None

    def __enter__(self):
        if self._progress is None:
            return None
        self._progress.__enter__()
        self._task = self._progress.add_task("docs", total=None, rate="")
        return self._update

    def _update(self, at: IngestProgress) -> None:
        rate = f"{at.chunks / at.seconds:.0f} chunks/s" if at.seconds > 0 else ""
        assert self._progress is not None and self._task is not None
        self._progress.update(self._task, completed=at.files_done, total=at.files_total, rate=rate)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


@docs_app.command("list")
def list_command(as_json: JsonFlag = False) -> None:
    """Every collection: files, chunks, size and embedding model."""
    rows = collections.summaries(load_settings())
    if as_json:
        print_json({"collections": rows})
        return
    table = Table("NAME", "FILES", "CHUNKS", "SIZE", "EMBEDDER", box=None)
    for row in rows:
        table.add_row(
            row["name"],
            str(row["files"]),
            str(row["chunks"]),
            f"{row['bytes'] / 1e6:.1f} MB",
            model_of(row["embedder"]),
        )
    Console().print(table)


@docs_app.command("show")
def show_command(name: str, as_json: JsonFlag = False) -> None:
    """A collection's folders, embedding model and files."""
    shown = collections.details(load_settings(), name)
    if as_json:
        print_json(shown)
        return
    console = Console(highlight=False)
    console.print(
        f"{name}: {shown['files']} file(s), {shown['chunks']} chunk(s), "
        f"embedded with {shown['embedder']}"
    )
    for root in shown["roots"]:
        console.print(f"  folder {root}")
    for entry in shown["files_indexed"]:
        console.print(f"  {entry['path']}  ({entry['chunks']} chunks)")


@docs_app.command("rm")
def rm_command(name: str) -> None:
    """Delete a collection's index (the documents themselves are not touched)."""
    config = load_settings()
    collections.remove_collection(config, name)
    errors.print(f"removed collection {name}", highlight=False)


@docs_app.command("search")
def search_command(
    name: str,
    query: str,
    k: TopK = 5,
    mode: Annotated[str, typer.Option(help="hybrid, bm25 or vector.")] = "hybrid",
    rerank: RerankWith = None,
    as_json: JsonFlag = False,
) -> None:
    """Retrieve the chunks of NAME that best match QUERY (no model answers)."""
    config = load_settings()
    with Index.open(collections.existing_path(config, name)) as index, ExitStack() as loaded:
        embedder, _ = _embedder(config, None, index.embedder)
        loaded.callback(embedder.close)
        scorer = _reranker(config, rerank, loaded)
        found = retrieve(index, query, embedder=embedder, k=k, mode=mode, rerank=scorer)
    if as_json:
        print_json({"hits": [hit_json(hit) for hit in found.hits]})
        return
    console = Console(highlight=False)
    for number, hit in enumerate(found.hits, start=1):
        console.print(f"[bold][{number}] {location(hit)}[/bold]  score {hit.score:.4f}")
        console.print(hit.text.strip()[:400], markup=False)


def ask_command(
    name: Annotated[str, typer.Argument(help="The document collection.")],
    question: Annotated[str, typer.Argument(help="What to ask of its documents.")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="The chat model (default: smollm2).")
    ] = None,
    k: TopK = 5,
    rerank: RerankWith = None,
    as_json: JsonFlag = False,
) -> None:
    """Answer QUESTION from collection NAME's documents, citing them ([1] path:page)."""
    config = load_settings()
    store = open_store(config)
    with Index.open(collections.existing_path(config, name)) as index, ExitStack() as loaded:
        embedder, _ = _embedder(config, None, index.embedder)
        loaded.callback(embedder.close)
        scorer = _reranker(config, rerank, loaded)
        manifest = resolve(
            model or config.default_model, store=store, settings=config, pull_missing=True
        )
        chat = load(manifest, store=store, settings=config, capability=Capability.CHAT)
        loaded.callback(chat.close)
        answer = ask(index, question, embedder=embedder, model=chat, k=k, rerank=scorer)  # type: ignore[arg-type]
    if as_json:
        print_json(answer.to_json())
        return
    print(answer.text)
    cited = answer.citations or list(range(1, len(answer.sources) + 1))
    if cited:
        print("\nSources:" if answer.citations else "\nRetrieved (not cited):")
        for number in cited:
            print(f"  [{number}] {location(answer.sources[number - 1])}")


def _reranker(config: Settings, name: str | None, loaded: ExitStack) -> Rerank | None:
    if name is None:
        return None
    model, scorer = load_reranker(name, store=open_store(config), settings=config)
    loaded.callback(model.close)
    return scorer


def _recorded(path: Path) -> str | None:
    """The embedding model a collection was built with; None for a new collection."""
    if not path.is_file():
        return None
    with Index.open(path) as index:
        return index.embedder


def _embedder(config: Settings, model: str | None, recorded: str | None):
    if model is None and recorded is not None:
        model = model_of(recorded)
    store = open_store(config)
    return load_text_embedder(
        model or config.embedding_model, store=store, settings=config, recorded=recorded
    )


def register(app: typer.Typer) -> None:
    app.add_typer(docs_app, name="docs")
    app.command("ask")(ask_command)
