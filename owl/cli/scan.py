"""owl scan | verify: check files before loading them; re-hash the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from owl.cli.common import UsageExit4, print_json
from owl.config import load_settings
from owl.errors import InvalidModelName, OwlError
from owl.pull import open_store, register_embedded
from owl.scan import FileReport, ScanReport, scan
from owl.scan.findings import ExitCode
from owl.store import Manifest, Store, parse_name

console = Console()
_STYLES = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "dim"}
_VERDICT_STYLES = {"clean": "green", "unsafe": "bold red", "unverified": "yellow"}


def _usage(message: str) -> typer.BadParameter:
    error = typer.BadParameter(message)
    error.exit_code = ExitCode.USAGE
    return error


def _stored(target: str, store: Store) -> Manifest | None:
    try:
        return store.find(parse_name(target))
    except InvalidModelName:
        return None


def _scan_targets(targets: list[str]) -> list[FileReport]:
    from owl.scan.policy import scan_manifest

    config = load_settings()
    store = open_store(config)
    reports: list[FileReport] = []
    for target in targets:
        path = Path(target)
        if path.exists():
            reports.extend(scan([path]).files)
            continue
        register_embedded(store, config)
        manifest = _stored(target, store)
        if manifest is None:
            raise _usage(
                f"no file, folder or stored model is named {target!r}; `owl list` shows the models"
            )
        reports.extend(scan_manifest(manifest, store=store)[0])
    return reports


def _render(report: ScanReport) -> None:
    if report.findings:
        table = Table(box=None, header_style="bold")
        for column in ("SEVERITY", "FILE", "WHERE", "WHY"):
            table.add_column(column, overflow="fold")
        for finding in report.findings:
            severity = finding.severity.value
            table.add_row(
                Text(severity, style=_STYLES[severity]),
                finding.file,
                finding.location,
                finding.reason,
            )
        console.print(table)
    for file in report.files:
        if file.status != "scanned":
            console.print(f"[yellow]{file.status}[/yellow] {file.file}: {file.error or '-'}")
    scanned = sum(file.status == "scanned" for file in report.files)
    verdict = report.verdict.value
    style = _VERDICT_STYLES.get(verdict, "yellow")
    console.print(
        f"[{style}]{verdict}[/{style}]: {scanned} of {len(report.files)} files scanned, "
        f"{len(report.findings)} findings"
        + (" (--strict: every finding counts)" if report.strict else "")
    )


def scan_command(
    targets: Annotated[
        list[str], typer.Argument(help="Files, folders or store model names.", metavar="PATH|MODEL")
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the findings as JSON.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Medium and low findings make a file unsafe too.")
    ] = False,
) -> None:
    """Check model files for code that runs on load and for malformed structure.

    Exit codes: 0 clean, 1 unsafe, 2 could not be verified, 3 no supported files, 4 usage.
    """
    try:
        report = ScanReport(files=_scan_targets(targets), strict=strict)
    except OwlError as err:  # e.g. a damaged store: nothing was verified, so exit 2, not 1
        typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
        raise typer.Exit(ExitCode.UNVERIFIED) from None
    if json_output:
        print_json(report.summary())
    else:
        _render(report)
    raise typer.Exit(report.exit_code)


def verify_command(
    models: Annotated[
        list[str] | None, typer.Argument(help="Models to check (default: all).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Re-hash stored files against their manifests' sha256 digests."""
    from owl.store.verify import verify, verify_store

    config = load_settings()
    store = open_store(config)
    register_embedded(store, config)  # as `owl list` does: the models it shows are checked
    if models:
        checks = verify([store.get(parse_name(name)) for name in models], store=store)
    else:
        checks = verify_store(store)
    if json_output:
        print_json([check.__dict__ for check in checks])
    else:
        for check in checks:
            line: dict[str, Any] = {
                "ok": f"[green]ok[/green]      {check.model}  {check.filename}",
                "missing": f"[yellow]missing[/yellow] {check.model}  {check.filename}: its blob "
                f"is gone; run `owl pull {check.model}` to fetch it again",
                "corrupt": f"[bold red]corrupt[/bold red] {check.model}  {check.filename}: "
                f"the bytes hash to {check.actual}, not {check.digest}; moved to "
                f"{check.quarantined}; run `owl pull {check.model}` to fetch it again",
                "unreadable": f"[bold red]unreadable[/bold red] {check.model}: {check.error}",
            }
            console.print(line[check.status], highlight=False)
        if not checks:
            console.print("the store holds no models")
    if any(check.status != "ok" for check in checks):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("scan", cls=UsageExit4)(scan_command)
    app.command("verify")(verify_command)
