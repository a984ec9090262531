"""owl catalog: search the known open-weights models."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from owl.catalog import CatalogEntry, Modality, parse_params, search
from owl.cli.common import print_json

console = Console()


def catalog_command(
    text: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[TEXT]...", help="Words that must all occur in a name, family, org, …"
        ),
    ] = None,
    modality: Annotated[
        Modality | None,
        typer.Option("--modality", "-m", case_sensitive=False, help="Only this modality."),
    ] = None,
    license_id: Annotated[
        str | None,
        typer.Option("--license", "-l", help="Only this license id (e.g. apache-2.0, llama3.1)."),
    ] = None,
    max_params: Annotated[
        str | None,
        typer.Option("--max-params", metavar="SIZE", help="Nominal size at most, e.g. 8B, 500M."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = (
        False
    ),
) -> None:
    """Search the catalog of open-weights models; `owl pull NAME` pulls one."""
    limit = None
    if max_params is not None:
        try:
            limit = parse_params(max_params)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="'--max-params'") from None
    found = search(" ".join(text or []), modality=modality, license=license_id, max_params=limit)
    if json_output:
        print_json([_as_json(entry) for entry in found])
        return
    if not found:
        console.print("no model in the catalog matches; `owl catalog` with no filters lists all")
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "FAMILY", "ORG", "PARAMS", "MODALITY", "ARCH", "LICENSE", "GGUF"):
        table.add_column(column, no_wrap=column in ("NAME", "PARAMS", "GGUF"))
    for entry in found:
        table.add_row(
            entry.name,
            entry.family,
            entry.organisation,
            entry.size_label,
            entry.modality.value,
            entry.architecture,
            entry.license_label + ("*" if entry.gated else ""),
            _gguf_column(entry),
        )
    console.print(table, markup=False, highlight=False)
    if any(entry.gated for entry in found):
        console.print("* gated: accept the publisher's terms on the Hub before downloading")


def _gguf_column(entry: CatalogEntry) -> str:
    """yes, "yes+mmproj" (pulled with its projector: sees images) or no."""
    if not entry.pull_ref():
        return "no"
    return "yes+mmproj" if entry.mmproj_file else "yes"


def _as_json(entry: CatalogEntry) -> dict:
    return {
        **entry.model_dump(mode="json"),
        "nominal_parameters": entry.nominal_parameters,
        "pull_ref": entry.pull_ref(),
        "sees_images": entry.mmproj_file is not None,
    }


def register(app: typer.Typer) -> None:
    app.command("catalog")(catalog_command)
