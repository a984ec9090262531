"""Hugging Face Hub files, downloaded and cached by huggingface_hub itself.

huggingface_hub brings auth tokens, revisions, resumable downloads, HF_ENDPOINT mirrors
and its offline cache; owl then copies the file into its own store, checking the Hub's
sha256 (the ETag of an LFS file, which also names its blob in the HF cache). A reference
that names a model folder (a CTranslate2 Whisper, a Piper voice) is hf_folder's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fnmatch import fnmatchcase
from pathlib import Path

from owl.config import Settings
from owl.errors import DownloadError, InvalidModelName, OwlError, SourceNotFound
from owl.formats.projector import is_projector_file
from owl.pull.sources import Fetched
from owl.store.blobs import BlobStore, Progress
from owl.store.ref import ModelRef

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_PREFERRED_QUANTS = ("Q4_K_M", "Q4_K_S", "Q5_K_M", "Q8_0", "Q4_0")
_MAX_CARD_BYTES = 1 << 20  # model cards are a few KB; a huge README is not read


def pick_gguf(repo_id: str, files: list[str]) -> str:
    """The GGUF file to pull from a repository when the user named none (a vision model's
    projector, mmproj-….gguf, is not one: owl.pull.projector pulls it with the model)."""
    ggufs = sorted(
        name for name in files if name.lower().endswith(".gguf") and not is_projector_file(name)
    )
    if len(ggufs) == 1:
        return ggufs[0]
    for quant in _PREFERRED_QUANTS:
        matches = [name for name in ggufs if quant.lower() in name.lower()]
        if len(matches) == 1:
            return matches[0]
    if not ggufs:
        raise SourceNotFound(f"hf:{repo_id} has no .gguf file; name a file: hf:{repo_id}/FILE")
    listed = ", ".join(ggufs[:10])
    raise InvalidModelName(
        f"hf:{repo_id} has several GGUF files ({listed}); name one: hf:{repo_id}/FILE"
    )


def commit_of(path: Path) -> str | None:
    """The commit of a file in the HF cache: the name of the snapshot folder that holds it."""
    parts = path.parts
    if "snapshots" in parts:
        index = len(parts) - 1 - parts[::-1].index("snapshots")
        return parts[index + 1] if index + 1 < len(parts) else None
    return None


def hub_digest(path: Path) -> str | None:
    """The sha256 the Hub gave for a file it downloaded into the HF cache, where it gave one.

    An LFS file's ETag is its sha256 and names its blob in the cache; a small file's is its
    git hash, which says nothing of its sha256.
    """
    etag = path.resolve().name
    return f"sha256:{etag}" if _SHA256_HEX.match(etag) else None


def repo_files(
    repo_id: str, revision: str | None, settings: Settings, *, patterns: Sequence[str] = ("*.gguf",)
) -> list[str]:
    """The files of a repository (paths in it): the Hub's list, or offline those of its cached
    snapshot that match `patterns`.

    Offline, huggingface_hub refuses a cached snapshot that lacks a file, among those that
    match `patterns`, which a listing it cached earlier names; `patterns` are therefore the
    files the caller needs, so that a README's image never downloaded leaves the model
    reachable.
    """
    from huggingface_hub import HfApi, snapshot_download

    if settings.hf_offline:
        folder = Path(
            snapshot_download(
                repo_id, revision=revision, local_files_only=True, allow_patterns=list(patterns)
            )
        )
        names = [path.relative_to(folder).as_posix() for path in folder.rglob("*")]
        return [
            name
            for name in names
            if (folder / name).is_file() and any(fnmatchcase(name, p) for p in patterns)
        ]
    return HfApi(endpoint=settings.hf_endpoint).list_repo_files(repo_id, revision=revision)


@contextmanager
def hub_errors(where: str, *, filename: str | None, revision: str | None) -> Iterator[None]:
    """huggingface_hub's errors as owl's, each saying what to do; `where` is hf:Org/Repo."""
    import httpx2  # huggingface_hub 2.x's HTTP client: its errors are not OSErrors
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except OwlError:
        raise  # owl's own (pick_gguf's) already say what to do
    except GatedRepoError as err:
        raise DownloadError(
            f"{where} is gated: accept its terms on the Hub, then `hf auth login` ({err})"
        ) from err
    except RepositoryNotFoundError as err:
        raise SourceNotFound(
            f"{where}: no such repository (or it is private: `hf auth login`)"
        ) from err
    except RevisionNotFoundError as err:
        raise SourceNotFound(f"{where}: no revision {revision!r}") from err
    except LocalEntryNotFoundError as err:
        raise DownloadError(
            f"{where}/{filename or ''}: not in the local Hugging Face cache and the Hub "
            "cannot be reached (offline?); connect, or unset HF_HUB_OFFLINE"
        ) from err
    except EntryNotFoundError as err:
        raise SourceNotFound(f"{where}: no file {filename!r} in the repository") from err
    except (HfHubHTTPError, httpx2.TransportError, OSError) as err:
        raise DownloadError(f"{where}: download failed ({err}); try again") from err


def fetch(
    ref: ModelRef,
    *,
    blobs: BlobStore,
    settings: Settings,
    progress: Progress | None = None,
    allow_private: bool = True,  # unused: hf goes to settings.hf_endpoint, the operator's choice
) -> Fetched:
    """Download (or take from the HF cache) one file of a Hub repository."""
    from huggingface_hub import hf_hub_download

    assert ref.repo_id is not None
    with hub_errors(f"hf:{ref.repo_id}", filename=ref.filename, revision=ref.revision):
        filename = ref.filename
        if filename is None:
            filename = pick_gguf(ref.repo_id, repo_files(ref.repo_id, ref.revision, settings))
        local = hf_hub_download(
            ref.repo_id,
            filename,
            revision=ref.revision,
            endpoint=settings.hf_endpoint,
            local_files_only=settings.hf_offline,
        )

    path = Path(local)
    digest = blobs.import_file(path, expected=hub_digest(path), progress=progress)
    revision = commit_of(path) or ref.revision
    return Fetched(
        digest=digest,
        size=path.stat().st_size,
        filename=Path(filename).name,
        uri=f"hf:{ref.repo_id}/{filename}",
        revision=revision,
        card=_model_card(ref.repo_id, revision, settings),
    )


def _model_card(repo_id: str, revision: str | None, settings: Settings) -> str | None:
    """The repository's README.md (its model card, which names the license), if it has one.

    Best effort: a repository without a card, or a Hub that fails now, only means the
    license is looked for elsewhere (the GGUF's metadata, owl's catalog).
    """
    import httpx2
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        local = Path(
            hf_hub_download(
                repo_id,
                "README.md",
                revision=revision,
                endpoint=settings.hf_endpoint,
                local_files_only=settings.hf_offline,
            )
        )
        if local.stat().st_size > _MAX_CARD_BYTES:
            return None
        return local.read_text(encoding="utf-8", errors="replace")
    except (HfHubHTTPError, LocalEntryNotFoundError, httpx2.TransportError, OSError):
        return None
