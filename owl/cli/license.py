"""owl license check: may I use this model (or this license) for what I mean to do?"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from owl.cli.common import UsageExit4, print_json
from owl.config import Settings, load_settings
from owl.errors import InvalidModelName
from owl.licenses import LicenseVerdict, Use, check, terms
from owl.licenses.terms import USE_WORDS
from owl.pull import check_model, open_store, register_embedded
from owl.store import Manifest, Store, parse_name
from owl.store.aliases import find_alias

console = Console(soft_wrap=True, highlight=False)
license_app = typer.Typer(
    help="Know what you may do with a model: its license terms, obligations and verdict.",
    no_args_is_help=True,
)
_STYLES = {
    "allowed": "bold green",
    "conditional": "bold yellow",
    "denied": "bold red",
    "review": "bold magenta",
}


def _stored(target: str, store: Store, config: Settings) -> Manifest | None:
    try:
        name = parse_name(target)
    except InvalidModelName:
        return None  # not a model name: perhaps a license id such as openrail++
    manifest = store.find(name)
    if manifest is None and find_alias(name) is not None:
        register_embedded(store, config)  # a model shipped in a package: stored on first use
        manifest = store.find(name)
    return manifest


def _render(verdict: LicenseVerdict, *, subject: str, use: Use) -> None:
    console.print(
        Text.assemble((verdict.verdict, _STYLES[verdict.verdict]), f": {USE_WORDS[use]}, {subject}")
    )
    known = terms(verdict.license)
    if known is not None:
        console.print(Text(f"license: {known.id}, {known.name} ({known.spdx}) {known.url}"))
    elif verdict.license:
        console.print(Text(f"license: {verdict.license} (terms unknown to owl)"))
    for heading, lines in (("obligations", verdict.obligations), ("why", verdict.reasons)):
        if lines:
            console.print(Text(f"{heading}:", style="bold"))
            for line in lines:
                console.print(Text(f"  • {line}"))
    if known is not None and known.note:
        console.print(Text(f"note: {known.note}", style="dim"))


def check_command(
    target: Annotated[
        str,
        typer.Argument(
            help="A stored model, or a license id (apache-2.0, llama3.1, cc-by-nc-4.0, …).",
            metavar="MODEL|LICENSE_ID",
        ),
    ],
    use: Annotated[
        Use,
        typer.Option(
            "--use",
            case_sensitive=False,
            help="What you mean to do: personal, research, commercial, or hosted "
            "(serving it to other people).",
        ),
    ],
    monthly_users: Annotated[
        int | None,
        typer.Option(
            "--monthly-users",
            min=0,
            help="Monthly active users of your (and your affiliates') products or services, "
            "for user caps such as Llama's 700 million.",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Say whether a use is allowed, allowed on conditions, denied, or needs a person (review).

    With the obligations (attribution, notices, naming rules, use policies) and the clauses.

    Exit codes: 0 allowed or conditional, 1 denied, 2 review, 4 usage.
    """
    config = load_settings()
    store = open_store(config)
    manifest = _stored(target, store, config)
    if manifest is not None:
        verdict = check_model(manifest, store=store, use=use, monthly_users=monthly_users)
        subject = f"model {manifest.display_name}"
    else:
        verdict = check(target, use=use, monthly_users=monthly_users)
        subject = f"license {verdict.license}"
        if terms(target) is None:
            verdict.reasons = [
                f"{target!r} is neither a stored model nor a license owl knows: read its terms "
                "(`owl list` shows the stored models)"
            ]
            subject = repr(target)
    if json_output:
        print_json(verdict.model_dump(mode="json"))
    else:
        _render(verdict, subject=subject, use=use)
    raise typer.Exit(verdict.exit_code)


# A usage error exits 4, as in `owl scan`: click's 2 would read as "review".
license_app.command("check", cls=UsageExit4)(check_command)


def register(app: typer.Typer) -> None:
    app.add_typer(license_app, name="license")
