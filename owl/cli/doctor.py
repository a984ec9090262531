"""owl doctor: the installed runtime and every stored model against owl's advisories."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from owl.cli.common import UsageExit4, print_json
from owl.config import load_settings
from owl.errors import OwlError
from owl.pull import open_store, register_embedded
from owl.scan.advisories import DoctorReport, advisories_for, describe, doctor
from owl.scan.findings import ExitCode

console = Console()
_STYLES = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "dim"}


def _status(count: int) -> Text:
    return Text(f"{count} advisories", style="bold red") if count else Text("none", style="green")


def _render(report: DoctorReport) -> None:
    table = Table(box=None, header_style="bold")
    for column in ("KIND", "NAME", "VERSION / SOURCE", "ADVISORIES"):
        table.add_column(column, overflow="fold")
    for check in report.runtime:
        version = check.version or "not installed"
        table.add_row("runtime", check.package, version, _status(len(check.advisories)))
    for model in report.models:
        table.add_row("model", model.model, model.source, _status(len(model.advisories)))
    console.print(table)
    # The details as whole lines (soft wrap): a command to copy is never cut in two.
    for check in report.runtime:
        for item in check.advisories:
            console.print(
                f"[{_STYLES[item.severity]}]{item.severity}[/] {check.package} {check.version}: "
                f"{describe(item)}. Fix: {item.fix}",
                soft_wrap=True,
                highlight=False,
            )
    for model in report.models:
        for advisory in model.advisories:
            console.print(
                f"[{_STYLES[advisory.severity]}]{advisory.severity}[/] {model.model}: "
                f"{describe(advisory)}. owl refuses to load it; remove it: `owl rm {model.model}`",
                soft_wrap=True,
                highlight=False,
            )
    hits = sum(len(check.advisories) for check in [*report.runtime, *report.models])
    if hits:
        console.print(f"[bold red]affected[/bold red]: {hits} advisories apply")
    else:
        console.print(
            f"[green]clean[/green]: no advisory applies to {len(report.runtime)} packages "
            f"and {len(report.models)} stored models"
        )


def doctor_command(
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check the installed runtime and every stored model against known advisories.

    Runtime: llama-cpp-python, jinja2, torch, transformers and the others an advisory names.
    Models: a digest or Hub repository an advisory marks malicious (owl refuses to load it).
    OWL_ADVISORIES adds a file of advisories to owl's own.
    Exit codes: 0 no advisory applies, 1 one does, 2 could not check, 4 usage.
    """
    try:
        settings = load_settings()
        advisories = advisories_for(settings)
        store = open_store(settings)
        register_embedded(store, settings)  # as `owl list` does: the models it shows count
        report = doctor(store, advisories)
    except OwlError as err:  # a broken OWL_ADVISORIES file: nothing was checked, so exit 2
        typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
        raise typer.Exit(ExitCode.UNVERIFIED) from None
    if json_output:
        print_json(report.summary())
    else:
        _render(report)
    raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    app.command("doctor", cls=UsageExit4)(doctor_command)
