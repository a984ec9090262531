"""ModelRef: every form a user can name a model in, parsed and validated once.

    smollm2  smollm2:q8_0                 a model in the store (or a built-in alias)
    ./dir/model.gguf  /abs/model.gguf     a local file
    https://host/model.gguf#sha256=HEX    an http(s) URL, optionally pinned by digest
    hf:Org/Repo/file.gguf@revision        a file in a Hugging Face Hub repository
    package:dist-name/path/in/dist.gguf   a model file shipped inside a Python package

Names and digests are validated here so that neither can ever become a path traversal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from owl.errors import InvalidModelName

_NAME_PART = r"[a-z0-9][a-z0-9._-]{0,127}"
_NAME_RE = re.compile(rf"^(?P<name>{_NAME_PART})(?::(?P<tag>{_NAME_PART}))?$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_HF_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_DIST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MODEL_SUFFIXES = (".gguf", ".safetensors")
DEFAULT_TAG = "latest"
NAME_RULES = "letters, digits, '.', '_' and '-', starting with a letter or digit, optionally ':tag'"


class RefKind(StrEnum):
    NAME = "name"
    FILE = "file"
    URL = "url"
    HF = "hf"
    PACKAGE = "package"


@dataclass(frozen=True)
class ModelName:
    """A validated store name: `name[:tag]`, lower case, never a path."""

    name: str
    tag: str = DEFAULT_TAG

    def __str__(self) -> str:
        return self.name if self.tag == DEFAULT_TAG else f"{self.name}:{self.tag}"


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference. Only the fields of its `kind` are set."""

    kind: RefKind
    raw: str
    name: ModelName | None = None  # NAME
    path: Path | None = None  # FILE
    url: str | None = None  # URL
    digest: str | None = None  # URL: the digest the bytes must have
    repo_id: str | None = None  # HF
    filename: str | None = None  # HF (None: pick the repository's GGUF), PACKAGE
    revision: str | None = None  # HF
    distribution: str | None = None  # PACKAGE

    def default_name(self) -> ModelName:
        """The store name a pull gives when no --name is given: the file's stem."""
        if self.kind is RefKind.NAME:
            assert self.name is not None
            return self.name
        if self.kind is RefKind.FILE:
            assert self.path is not None
            stem = self.path.name
        elif self.kind is RefKind.URL:
            assert self.url is not None
            stem = unquote(PurePosixPath(urlsplit(self.url).path).name)
        else:
            stem = PurePosixPath(self.filename or self.repo_id or "").name
        for suffix in MODEL_SUFFIXES:
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
        return name_from_stem(stem, source=self.raw)


def parse_name(text: str) -> ModelName:
    """Validate a store name (`name` or `name:tag`)."""
    lowered = text.strip().lower()
    match = _NAME_RE.match(lowered)
    if not match or ".." in lowered:
        raise InvalidModelName(f"invalid model name {text!r}: use {NAME_RULES}")
    return ModelName(match["name"], match["tag"] or DEFAULT_TAG)


def name_from_stem(stem: str, *, source: str) -> ModelName:
    """Turn a file stem into a valid name (invalid characters become '-')."""
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._")
    cleaned = re.sub(r"\.{2,}", ".", cleaned)[:128]
    if not cleaned:
        raise InvalidModelName(f"cannot derive a model name from {source!r}; pass --name NAME")
    return parse_name(cleaned)


def validate_digest(digest: str) -> str:
    """Return `digest` if it is `sha256:` and 64 lower-case hex digits, else raise."""
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise InvalidModelName(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return digest


def _looks_like_path(text: str) -> bool:
    return (
        "/" in text
        or "\\" in text
        or text.startswith((".", "~"))
        or text.lower().endswith(MODEL_SUFFIXES)
    )


def _parse_url(text: str) -> ModelRef:
    try:
        parts = urlsplit(text)
        hostname = parts.hostname  # parses the brackets of an IPv6 host, and may fail
    except ValueError as err:
        raise InvalidModelName(
            f"invalid URL {text!r} ({err}): expected http(s)://host/path/model.gguf"
        ) from None
    if not hostname or not parts.path.strip("/"):
        raise InvalidModelName(f"invalid URL {text!r}: expected http(s)://host/path/model.gguf")
    digest = None
    if parts.fragment:
        key, _, value = parts.fragment.partition("=")
        if key != "sha256":
            raise InvalidModelName(
                f"unsupported URL fragment {parts.fragment!r}: only #sha256=<64 hex digits>"
            )
        digest = validate_digest(f"sha256:{value.lower()}")
    url = parts._replace(fragment="").geturl()
    return ModelRef(RefKind.URL, text, url=url, digest=digest)


def _parse_hf(text: str, body: str) -> ModelRef:
    revision = None
    if "@" in body:
        body, revision = body.rsplit("@", 1)
        if not revision or ".." in revision:
            raise InvalidModelName(f"invalid revision in {text!r}")
    segments = [segment for segment in body.strip("/").split("/") if segment]
    if len(segments) < 2 or not _HF_REPO_RE.match("/".join(segments[:2])):
        raise InvalidModelName(
            f"invalid Hub reference {text!r}: expected hf:Org/Repo/file.gguf[@revision]"
        )
    filename = "/".join(segments[2:]) or None
    if filename and any(segment in (".", "..") for segment in segments[2:]):
        raise InvalidModelName(f"invalid file path in {text!r}")
    return ModelRef(
        RefKind.HF, text, repo_id="/".join(segments[:2]), filename=filename, revision=revision
    )


def _parse_package(text: str, body: str) -> ModelRef:
    distribution, _, inner = body.partition("/")
    segments = inner.split("/")
    if (
        not _DIST_RE.match(distribution)
        or not inner
        or any(segment in ("", ".", "..") for segment in segments)
    ):
        raise InvalidModelName(
            f"invalid package reference {text!r}: expected package:DIST/path/in/package.gguf"
        )
    return ModelRef(RefKind.PACKAGE, text, distribution=distribution, filename=inner)


def _user_path(text: str) -> Path:
    try:
        return Path(text).expanduser()
    except RuntimeError:  # "~someone" with no such user, or no home at all
        raise InvalidModelName(
            f"'{text}' starts with ~ but names no user's home folder here; give the path in full"
        ) from None


def parse_ref(text: str) -> ModelRef:
    """Parse any user-given model reference into a validated ModelRef."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidModelName("empty model name: give a name, a file path, a URL or hf:Org/Repo")
    text = text.strip()
    lowered = text.lower()
    if lowered.startswith(("http://", "https://")):
        return _parse_url(text)
    if lowered.startswith("hf://"):
        return _parse_hf(text, text[5:])
    if lowered.startswith("hf:"):
        return _parse_hf(text, text[3:])
    if lowered.startswith("package:"):
        return _parse_package(text, text[8:])
    if lowered.startswith("file:"):
        return ModelRef(RefKind.FILE, text, path=_user_path(text[5:].removeprefix("//")))
    if _looks_like_path(text):
        return ModelRef(RefKind.FILE, text, path=_user_path(text))
    return ModelRef(RefKind.NAME, text, name=parse_name(text))
