"""Manifests: a model's name → its files by digest, with where they came from.

One JSON file per model at `OWL_HOME/manifests/<name>/<tag>.json`, written atomically.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from owl.store.ref import DEFAULT_TAG, ModelName, RefKind, validate_digest

SCHEMA_VERSION = 1
# Formats whose model is a folder of files (owl.formats.folders): a Hugging Face folder, a
# CTranslate2 Whisper, a Piper voice, a diffusers pipeline (whose files are named by their
# paths in it, "unet/config.json"). The engine loads Store.model_dir(manifest).
FOLDER_FORMATS = frozenset({"safetensors", "ctranslate2", "onnx", "diffusers"})
# A vision GGUF's second file: llama.cpp's multimodal projector (mmproj), which turns an
# image into embeddings of the language model's width.
PROJECTOR_ROLE = "projector"


class FileEntry(BaseModel):
    """One file of a model: its role, digest and size.

    Roles: "model" (weights, each shard), "config", "tokenizer", "card" (README.md),
    "projector" (a vision GGUF's mmproj), "other".
    """

    role: str = "model"
    filename: str
    digest: str
    size: int = Field(ge=0)

    @field_validator("digest")
    @classmethod
    def _valid_digest(cls, value: str) -> str:
        return validate_digest(value)


class Source(BaseModel):
    """Where the files came from, enough to pull them again."""

    kind: RefKind
    uri: str
    revision: str | None = None


class ScanRecord(BaseModel):
    """The scan verdict for one file (see owl.scan), kept so the same bytes are not rescanned."""

    verdict: str  # clean | unsafe | unverified | unsupported
    format: str | None = None  # what the scan recognised the file as
    scanner: str = Field(description="owl.scan.scanner_version() that made this verdict.")
    scanned_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    findings: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None = None


class SignatureRecord(BaseModel):
    """The model's signature (model.sig) as the pull checked it: the files matched what was
    signed; `verified` when the signer was checked against whom the user trusts."""

    file: str
    method: str = Field(description="key | certificate | sigstore")
    signer: str = Field(description="The key's sha256 hint, a certificate subject, an identity.")
    issuer: str | None = None
    verified: bool = Field(description="Checked cryptographically against the user's trust.")
    files: int = Field(ge=0, description="How many files the signature covers.")
    checked_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class UnsafeOverride(BaseModel):
    """Someone loaded this model despite its verdict, with --allow-unsafe: the audit trail."""

    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    verdict: str
    by: str = Field(description="The command that did it, e.g. 'owl run --allow-unsafe'.")


class Parent(BaseModel):
    """The model this one was derived from by owl, and how: its lineage, one step up."""

    name: str
    digest: str = Field(description="The parent's weights digest at the time.")
    relation: str = Field(
        description="quantized | converted | fine-tuned | merged | distilled | teacher"
    )
    license: str | None = None
    source: Source | None = None

    @field_validator("digest")
    @classmethod
    def _valid_digest(cls, value: str) -> str:
        return validate_digest(value)


class Manifest(BaseModel):
    """What the store knows of one model."""

    schema_version: int = SCHEMA_VERSION
    name: str
    tag: str = DEFAULT_TAG
    format: str
    files: list[FileEntry]
    source: Source
    license: str | None = None
    license_sources: dict[str, str] = Field(
        default_factory=dict,
        description="Each place a license id was found (gguf, card, catalog, alias, user).",
    )
    parents: list[Parent] = Field(default_factory=list, description="Lineage (owl-derived).")
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="Default sampling parameters, e.g. temperature."
    )
    pulled_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    info: dict[str, Any] = Field(default_factory=dict)
    scans: dict[str, ScanRecord] = Field(
        default_factory=dict, description="Scan verdicts by file digest."
    )
    allow_unsafe: list[UnsafeOverride] = Field(default_factory=list)
    signature: SignatureRecord | None = None
    projector_source: Source | None = Field(
        default=None,
        description="Where the projector file came from, when not from `source` (--mmproj).",
    )

    @property
    def model_name(self) -> ModelName:
        return ModelName(self.name, self.tag)

    @property
    def display_name(self) -> str:
        return str(self.model_name)

    @property
    def weights(self) -> FileEntry:
        """The (first) weights file: the file the engine loads for a single-file format."""
        return next(entry for entry in self.files if entry.role == "model")

    @property
    def weight_files(self) -> list[FileEntry]:
        """Every weights file (the shards of a sharded safetensors model)."""
        return [entry for entry in self.files if entry.role == "model"]

    @property
    def projector(self) -> FileEntry | None:
        """A vision GGUF's projector file (mmproj); None for a model without one."""
        return next((entry for entry in self.files if entry.role == PROJECTOR_ROLE), None)

    @property
    def is_folder(self) -> bool:
        """Whether the model is a folder of files (config, weights, tokenizer), not one file."""
        return self.format in FOLDER_FORMATS

    @property
    def size(self) -> int:
        return sum(entry.size for entry in self.files)
