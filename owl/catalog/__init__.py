"""Known open-weights models (data file catalog.toml) and search over them.

One table in catalog.toml is one entry a user can pull by its owl name, e.g.
`owl pull llama3.1-8b-instruct`. Conventions the data follows:

- `modality` is what the model mainly works on: `text` (text in, text out), `vision`
  (images: understanding them or generating them), `audio` (speech, music, sound:
  recognising or generating it) or `multimodal` (two modalities together, e.g. an image
  and a question in, text out, or CLIP's joint image-text embeddings). `task` says more,
  with Hugging Face's pipeline names: Stable Diffusion is `vision` + `text-to-image`.
- `size_label` is the nominal size the publisher names the model by ("8B"); `parameters`
  is the exact count where the model card or config states one (8.03e9), else absent.
  `--max-params` compares against the nominal size, exactly: `--max-params 8B` lists
  Llama 3.1 8B (8.03B parameters) but not Gemma 2 9B.
- `license` is a Hugging Face license id; `other` comes with a `license_name` as on the
  Hub. `gated` means the publisher's Hub repository (`repos[0]`) asks you to accept terms
  before it lets you download.
- `gguf_repo`/`gguf_file` name a well-known GGUF a user can run with owl (`mmproj_file`: the
  vision projector in the same repository that `owl pull` brings along); `alias` points at
  one of owl's built-in names instead (the embedded SmolLM2); `pull` is an `hf:` reference
  to a model folder owl runs instead: a CTranslate2 Whisper repository
  (hf:Systran/faster-whisper-small) or a Piper voice's folder
  (hf:rhasspy/piper-voices/en/en_US/lessac/medium). `repos` stay the publisher's own.
"""

from __future__ import annotations

import math
import re
import tomllib
from enum import StrEnum
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from owl.errors import OwlError
from owl.store.ref import DEFAULT_TAG, RefKind, parse_name, parse_ref

__all__ = [
    "CatalogEntry",
    "CatalogError",
    "Modality",
    "entries",
    "find",
    "load",
    "parse_params",
    "search",
]

_DATA = Path(__file__).with_name("catalog.toml")
_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_LICENSE_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
_PARAMS_RE = re.compile(
    r"^(?P<number>\d+(?:\.\d+)?|\.\d+)(?:e(?P<exp>[+-]?\d+))?\s*(?P<unit>[kmbt])?$"
)
_SCALES = {None: 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


class CatalogError(OwlError, ValueError):
    """A catalog data file that does not parse or has an invalid entry."""

    code = "invalid_catalog"


class Modality(StrEnum):
    TEXT = "text"
    VISION = "vision"
    AUDIO = "audio"
    MULTIMODAL = "multimodal"


def parse_params(text: str | float) -> float:
    """A parameter count from "8B", "135M", "1.5b", "7e9", "1T" or a plain number."""
    if isinstance(text, bool):
        raise ValueError(f"invalid parameter count {text!r}")
    if isinstance(text, int | float):
        value = float(text)
    else:
        match = _PARAMS_RE.match(str(text).strip().lower())
        if match is None:
            raise ValueError(
                f"invalid parameter count {text!r}: use a number with an optional K, M, B or T "
                "suffix, e.g. 8B, 135M, 1.5b or 7e9"
            )
        value = float(f"{match['number']}e{match['exp'] or 0}") * _SCALES[match["unit"]]
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"invalid parameter count {text!r}: it must be a positive number")
    return value


class CatalogEntry(BaseModel):
    """One pullable model of the catalog."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    family: str
    display_name: str
    organisation: str
    parameters: float | None = None
    size_label: str
    modality: Modality
    task: str
    architecture: str
    license: str
    license_name: str | None = None
    repos: tuple[str, ...]
    gguf_repo: str | None = None
    gguf_file: str | None = None
    mmproj_file: str | None = None
    pull: str | None = None
    gated: bool = False
    alias: str | None = None
    note: str | None = None
    description: str = ""

    @field_validator("name")
    @classmethod
    def _owl_name(cls, value: str) -> str:
        parsed = parse_name(value)
        if parsed.name != value or parsed.tag != DEFAULT_TAG:
            raise ValueError(f"{value!r} is not a lower-case owl model name without a tag")
        return value

    @field_validator("family", "display_name", "organisation", "task", "architecture")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("size_label")
    @classmethod
    def _nominal_size(cls, value: str) -> str:
        parse_params(value)
        return value

    @field_validator("parameters")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError("must be a positive number")
        return value

    @field_validator("license")
    @classmethod
    def _license_id(cls, value: str) -> str:
        if not _LICENSE_RE.match(value):
            raise ValueError(f"{value!r} is not a Hugging Face license id (lower case)")
        return value

    @field_validator("repos")
    @classmethod
    def _hub_repos(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one Hugging Face Hub repository")
        for repo in value:
            if not _REPO_RE.match(repo):
                raise ValueError(f"{repo!r} is not a Hub repository id (Org/Name)")
        return value

    @field_validator("gguf_repo")
    @classmethod
    def _gguf_repo(cls, value: str | None) -> str | None:
        if value is not None and not _REPO_RE.match(value):
            raise ValueError(f"{value!r} is not a Hub repository id (Org/Name)")
        return value

    @field_validator("gguf_file", "mmproj_file")
    @classmethod
    def _gguf_file(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = value.split("/")
        if not value.endswith(".gguf") or any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"{value!r} is not a .gguf path inside a repository")
        return value

    @field_validator("pull")
    @classmethod
    def _hub_ref(cls, value: str | None) -> str | None:
        if value is not None:
            ref = parse_ref(value)
            if ref.kind is not RefKind.HF or ref.revision is not None or value != ref.raw:
                raise ValueError(f"{value!r} is not a Hub reference hf:Org/Repo[/path]")
        return value

    @field_validator("alias")
    @classmethod
    def _alias_name(cls, value: str | None) -> str | None:
        if value is not None:
            cls._owl_name(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CatalogEntry:
        if self.gguf_file is not None and self.gguf_repo is None:
            raise ValueError("gguf_file needs a gguf_repo")
        if self.mmproj_file is not None and self.gguf_repo is None:
            raise ValueError("mmproj_file needs a gguf_repo: it is a file of that repository")
        if self.pull is not None and (self.gguf_repo is not None or self.alias is not None):
            raise ValueError("give one of pull, gguf_repo and alias: each names what owl pulls")
        if self.license == "other" and not self.license_name and not self.note:
            raise ValueError("license 'other' needs a license_name or a note that explains it")
        return self

    @property
    def nominal_parameters(self) -> float:
        """The nominal size as a number (what --max-params compares)."""
        return parse_params(self.size_label)

    @property
    def license_label(self) -> str:
        """The license id, or for `other` the license's name."""
        if self.license == "other" and self.license_name:
            return self.license_name
        return self.license

    def pull_ref(self) -> str | None:
        """The reference `owl pull` uses for this entry; None when owl has nothing to run."""
        if self.alias:
            return self.alias
        if self.pull:
            return self.pull
        if self.gguf_repo and self.gguf_file:
            return f"hf:{self.gguf_repo}/{self.gguf_file}"
        if self.gguf_repo:
            return f"hf:{self.gguf_repo}"
        return None

    def haystack(self) -> str:
        """The lower-case text that free-text search matches against."""
        fields = (
            self.name,
            self.family,
            self.display_name,
            self.organisation,
            self.architecture,
            self.modality.value,
            self.task,
            self.description,
        )
        return " ".join(fields).lower()


def load(path: Path) -> list[CatalogEntry]:
    """Read and validate a catalog data file; CatalogError names the entry at fault."""
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise CatalogError(f"cannot read the catalog {path}: {err}") from err
    result = []
    for key, fields in table.items():
        if not isinstance(fields, dict):
            raise CatalogError(f"catalog {path.name}: [{key}] must be a table of fields")
        try:
            result.append(CatalogEntry.model_validate({"name": key, **fields}))
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'entry'}: {error['msg']}"
                for error in err.errors()
            )
            raise CatalogError(
                f"catalog {path.name}: entry [{key}] is invalid: {problems}"
            ) from err
    return result


@cache
def entries() -> list[CatalogEntry]:
    """Every entry of owl's catalog, in the data file's order (read once)."""
    return load(_DATA)


@cache
def _by_name() -> dict[str, CatalogEntry]:
    return {entry.name: entry for entry in entries()}


def find(name: str) -> CatalogEntry | None:
    """The entry with this owl name (case-insensitive), or None."""
    return _by_name().get(name.strip().lower())


def search(
    text: str | None = None,
    *,
    modality: str | None = None,
    license: str | None = None,
    max_params: float | None = None,
) -> list[CatalogEntry]:
    """Entries matching every given filter, in catalog order.

    `text`: every word must occur (case-insensitive) in the name, family, display name,
    organisation, architecture, modality, task or description. `license`: a license id or
    an `other` license's name. `max_params`: the nominal size is at most this many.
    """
    words = (text or "").lower().split()
    wanted_modality = _modality(modality) if modality is not None else None
    wanted_license = license.strip().lower() if license else None
    found = []
    for entry in entries():
        if wanted_modality is not None and entry.modality is not wanted_modality:
            continue
        if wanted_license is not None and wanted_license not in (
            entry.license,
            (entry.license_name or "").lower(),
        ):
            continue
        if max_params is not None and entry.nominal_parameters > max_params:
            continue
        haystack = entry.haystack()
        if all(word in haystack for word in words):
            found.append(entry)
    return found


def _modality(value: str) -> Modality:
    try:
        return Modality(str(value).strip().lower())
    except ValueError:
        allowed = ", ".join(item.value for item in Modality)
        raise ValueError(f"unknown modality {value!r}: use one of {allowed}") from None
