"""Advisories: known holes in the runtime owl runs models with, and models known to be malicious.

The entries live in advisories.toml beside this module; OWL_ADVISORIES names a file of the
same format whose entries are added (an entry with the id of one of owl's replaces it: the
way to correct an entry locally). `owl doctor` reports both kinds; the load gate
(owl.scan.policy.require_loadable) refuses a model an advisory marks malicious.

Installed versions are read from the distributions' metadata (importlib.metadata), never by
importing the packages: importing torch takes seconds, and an affected package is exactly
the one owl should not run code from to ask its version.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from owl.config import Settings
from owl.errors import ConfigError
from owl.scan.findings import ExitCode
from owl.store.manifest import Manifest, Source
from owl.store.ref import RefKind, parse_ref, validate_digest
from owl.store.store import Store

SHIPPED = Path(__file__).with_name("advisories.toml")
Severity = Literal["critical", "high", "medium", "low"]


class RuntimeAdvisory(BaseModel):
    """A known hole in versions `affected` of the Python distribution `package`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    package: str = Field(min_length=1)
    affected: str = Field(description="PEP 440 specifiers of the affected versions: '<3.1.6'.")
    severity: Severity
    summary: str
    fix: str
    url: str | None = None

    @field_validator("affected")
    @classmethod
    def _specifiers(cls, value: str) -> str:
        try:
            SpecifierSet(value)
        except InvalidSpecifier:
            raise ValueError(f"{value!r} is not a version range; write e.g. '<3.1.6'") from None
        return value

    def affects(self, installed: str) -> bool:
        """Whether the installed version `installed` is in the affected range."""
        try:
            parsed = Version(installed)
        except InvalidVersion:  # a local build with an odd version: cannot tell, so say so
            return True
        return SpecifierSet(self.affected).contains(parsed, prereleases=True)


class ModelAdvisory(BaseModel):
    """A model known to be malicious: by any of its files' digests or by its Hub repository."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    severity: Severity = "critical"
    summary: str
    url: str | None = None
    digests: list[str] = Field(default_factory=list)
    repositories: list[str] = Field(default_factory=list, description="hf:ORG/NAME")

    @field_validator("digests")
    @classmethod
    def _digests(cls, value: list[str]) -> list[str]:
        return [validate_digest(digest) for digest in value]

    @field_validator("repositories")
    @classmethod
    def _repositories(cls, value: list[str]) -> list[str]:
        for repo in value:
            ref = parse_ref(repo) if repo.lower().startswith("hf:") else None
            if ref is None or ref.filename is not None:
                raise ValueError(f"{repo!r} is not a Hub repository; write hf:ORG/NAME")
        return value

    def repo_ids(self) -> set[str]:
        return {(parse_ref(repo).repo_id or "").lower() for repo in self.repositories}


class Advisories(BaseModel):
    """Every advisory owl knows: its own file's and the user's."""

    model_config = ConfigDict(extra="forbid")

    watch: list[str] = Field(default_factory=list, description="Reported even when clean.")
    runtime: list[RuntimeAdvisory] = Field(default_factory=list)
    model: list[ModelAdvisory] = Field(default_factory=list)

    def merged(self, other: Advisories) -> Advisories:
        """These with `other`'s added; an entry of `other` replaces one with the same id."""
        mine = {item.id: item for item in self.runtime} | {item.id: item for item in other.runtime}
        models = {item.id: item for item in self.model} | {item.id: item for item in other.model}
        watch = list(dict.fromkeys([*self.watch, *other.watch]))
        return Advisories(watch=watch, runtime=list(mine.values()), model=list(models.values()))


def _read(path: Path, *, setting: str | None) -> Advisories:
    where = f"{setting} names {path}, which" if setting else f"{path}"
    fix = f"; fix it, or unset {setting}" if setting else ""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist{fix}") from None
    except (OSError, UnicodeError) as err:
        raise ConfigError(f"{where} cannot be read ({err}){fix}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{where} is not valid TOML ({err}){fix}") from None
    try:
        return Advisories.model_validate(data)
    except ValidationError as err:
        problem = err.errors(include_url=False)[0]
        location = ".".join(str(part) for part in problem["loc"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{where} is not an advisory file: {location}: {message}{fix}") from None


def load_advisories(extra: Path | None = None) -> Advisories:
    """owl's advisories, with those of the file `extra` (OWL_ADVISORIES) merged in.

    ConfigError, naming the file and the entry, when `extra` cannot be used.
    """
    shipped = _read(SHIPPED, setting=None)
    if extra is None:
        return shipped
    return shipped.merged(_read(extra.expanduser(), setting="OWL_ADVISORIES"))


def advisories_for(settings: Settings) -> Advisories:
    """The advisories `settings` name (OWL_ADVISORIES adds a file to owl's own)."""
    return load_advisories(settings.advisories)


@dataclass(frozen=True)
class RuntimeCheck:
    """One watched distribution: its installed version and the advisories that affect it."""

    package: str
    version: str | None  # None: not installed, so nothing to affect
    advisories: list[RuntimeAdvisory] = field(default_factory=list)


def installed_version(package: str) -> str | None:
    """The installed version of the distribution `package`, None when it is not installed."""
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def check_runtime(advisories: Advisories) -> list[RuntimeCheck]:
    """Every watched distribution and every one an advisory names, with the advisories its
    installed version has."""
    names = {item.package for item in advisories.runtime} | set(advisories.watch)
    checks = []
    for package in sorted({name.lower() for name in names}):
        installed = installed_version(package)
        hits = [
            item
            for item in advisories.runtime
            if item.package.lower() == package and installed is not None and item.affects(installed)
        ]
        checks.append(RuntimeCheck(package=package, version=installed, advisories=hits))
    return checks


def _repo_of(source: Source | None) -> str | None:
    if source is None or source.kind is not RefKind.HF:
        return None
    try:
        return (parse_ref(source.uri).repo_id or "").lower()
    except ValueError:  # a hand-edited manifest: no repository to match
        return None


def model_advisories(manifest: Manifest, advisories: Advisories) -> list[ModelAdvisory]:
    """The advisories that mark `manifest`'s model malicious.

    A file's digest or the Hub repository it came from matches, and so does its lineage:
    a model owl quantized or converted from a malicious one carries what its parent did.
    """
    digests = {entry.digest for entry in manifest.files} | {
        parent.digest for parent in manifest.parents
    }
    repos = {_repo_of(manifest.source)} | {_repo_of(parent.source) for parent in manifest.parents}
    repos.discard(None)
    return [
        item
        for item in advisories.model
        if digests.intersection(item.digests) or repos.intersection(item.repo_ids())
    ]


def describe(item: ModelAdvisory | RuntimeAdvisory) -> str:
    """'ID (severity): summary, see URL' — how an advisory is named in messages."""
    see = f"; see {item.url}" if item.url else ""
    return f"{item.id} ({item.severity}): {item.summary}{see}"


@dataclass(frozen=True)
class ModelCheck:
    model: str
    source: str
    advisories: list[ModelAdvisory]


@dataclass(frozen=True)
class DoctorReport:
    """What `owl doctor` found: the runtime's advisories and every stored model's."""

    runtime: list[RuntimeCheck]
    models: list[ModelCheck]

    @property
    def affected(self) -> bool:
        return any(check.advisories for check in [*self.runtime, *self.models])

    @property
    def exit_code(self) -> int:
        """As `owl scan`'s: 0 nothing applies, 1 an advisory applies."""
        return ExitCode.UNSAFE if self.affected else ExitCode.CLEAN

    def summary(self) -> dict[str, Any]:
        """The report as JSON-ready data (`owl doctor --json`)."""
        return {
            "verdict": "affected" if self.affected else "clean",
            "runtime": [
                {
                    "package": check.package,
                    "version": check.version,
                    "installed": check.version is not None,
                    "advisories": [item.model_dump() for item in check.advisories],
                }
                for check in self.runtime
            ],
            "models": [
                {
                    "model": check.model,
                    "source": check.source,
                    "advisories": [item.model_dump() for item in check.advisories],
                }
                for check in self.models
            ],
        }


def doctor(store: Store, advisories: Advisories) -> DoctorReport:
    """Check the installed runtime and every stored model against `advisories`."""
    models = [
        ModelCheck(
            model=manifest.display_name,
            source=manifest.source.uri,
            advisories=model_advisories(manifest, advisories),
        )
        for manifest in store.list()
    ]
    return DoctorReport(runtime=check_runtime(advisories), models=models)
