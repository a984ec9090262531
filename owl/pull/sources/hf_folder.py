"""Model folders on the Hugging Face Hub: a CTranslate2 Whisper repository (e.g.
Systran/faster-whisper-small), one Piper voice's folder (rhasspy/piper-voices/en/en_US/…), or
a transformers folder of safetensors weights (facebook/wav2vec2-base-960h).

`locate` reads what an hf: reference names from the repository's file list: one file (a
GGUF, which owl.pull.sources.hf fetches) or a model folder. `download` brings that folder's
files into the HF cache with huggingface_hub, one hf_hub_download per file (auth, revisions,
resumable downloads, mirrors and the offline cache are its), checks each against the sha256
the Hub gave, and hands over the snapshot folder for owl.pull.folder to store. Nothing
reaches owl's store until every file is there and checked.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from tempfile import TemporaryDirectory

from owl.config import Settings
from owl.errors import DigestMismatch, DownloadError, ModelFormatError, SourceNotFound
from owl.formats.hf_folder import is_plain_filename, list_folder
from owl.formats.speech_folders import CT2_WEIGHTS, VOICE_CONFIG_SUFFIX, VOICE_SUFFIX
from owl.pull.sources.hf import commit_of, hub_digest, hub_errors, pick_gguf, repo_files
from owl.store.blobs import sha256_file
from owl.store.manifest import Source
from owl.store.ref import ModelName, ModelRef, RefKind, name_from_stem

# The files faster-whisper loads from a CTranslate2 Whisper folder (what its own download
# asks the Hub for), and a Piper voice's card; anything else in the folder (.gitattributes,
# images, audio samples, other checkpoints) is not part of the model and is not downloaded.
CT2_FILES = (CT2_WEIGHTS, "config.json", "preprocessor_config.json", "tokenizer.json")
CT2_PATTERNS = (*CT2_FILES, "vocabulary.*")
VOICE_EXTRAS = ("MODEL_CARD",)
# A transformers folder (config.json and safetensors weights: a wav2vec 2.0, a causal LM):
# the files from_pretrained reads. Pickle checkpoints (*.bin, *.pt) and other frameworks'
# weights (tf_model.h5, flax) that such repositories also hold are not downloaded.
TRANSFORMERS_FILES = (
    "config.json", "generation_config.json", "preprocessor_config.json",
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
    "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt", "chat_template.jinja",
    "chat_template.json", "model.safetensors.index.json",
    # a sentence-transformers folder: its modules, and each module's config in its sub-folder
    "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
)  # fmt: skip
TRANSFORMERS_PATTERNS = (*TRANSFORMERS_FILES, "*.safetensors")
# A sentence-transformers module's folder ("1_Pooling", "2_Normalize"): its config only.
_MODULE_CONFIG = re.compile(r"\d+_[A-Za-z]+/config\.json")
# Kept with either layout: the card and license files say under which terms it comes.
TERMS_FILES = ("README.md", "LICENSE", "LICENSE.*")
# Offline, the cached snapshot is listed for these only (owl.pull.sources.hf.repo_files).
_OFFLINE_PATTERNS = (
    *CT2_PATTERNS, f"*{VOICE_SUFFIX}", f"*{VOICE_CONFIG_SUFFIX}", *VOICE_EXTRAS, *TERMS_FILES,
    *TRANSFORMERS_PATTERNS, "[0-9]*_*/config.json",
)  # fmt: skip
_EXAMPLES = (
    "a GGUF file (hf:Org/Repo/FILE.gguf), a CTranslate2 Whisper repository (model.bin and "
    "config.json, e.g. hf:Systran/faster-whisper-small), a Piper voice folder (VOICE.onnx "
    "and VOICE.onnx.json, e.g. hf:rhasspy/piper-voices/en/en_US/lessac/medium) or a "
    "transformers folder (config.json and .safetensors weights, e.g. "
    "hf:facebook/wav2vec2-base-960h)"
)


@dataclass(frozen=True)
class HubFolder:
    """A model folder in a Hub repository, as its file list shows it."""

    repo_id: str
    path: str  # the folder in the repository; "" for its top
    revision: str | None  # as the reference gave it (None: the default branch)
    files: tuple[str, ...]  # repository paths of the files to download
    name: ModelName  # the store name a pull gives when none is asked for

    @property
    def uri(self) -> str:
        """The source a manifest records (its revision apart): hf:Org/Repo[/path]."""
        return f"hf:{self.repo_id}/{self.path}" if self.path else f"hf:{self.repo_id}"


def locate(ref: ModelRef, *, settings: Settings) -> HubFolder | ModelRef:
    """What an hf: reference names: a model folder, or the one file to fetch (a ModelRef).

    `hf:Org/Repo` is its GGUF where it has one (picked by owl.pull.sources.hf.pick_gguf),
    else the model folder its top-level files make. `hf:Org/Repo/path` is a file when the
    path's last name has a suffix (`model.gguf`: nothing is listed, as before) or the Hub has
    no folder there; else the model folder there. Files that make no layout owl pulls are
    SourceNotFound, naming those it does; two voices in one folder are ModelFormatError.
    """
    assert ref.repo_id is not None
    path = (ref.filename or "").strip("/")
    if PurePosixPath(path).suffix:
        return ref
    where = f"hf:{ref.repo_id}/{path}" if path else f"hf:{ref.repo_id}"
    with hub_errors(f"hf:{ref.repo_id}", filename=path or None, revision=ref.revision):
        listing = _listing(ref.repo_id, path, ref.revision, settings)
        if listing is None:
            return ref  # no such folder: fetch looks for a file of that name, and says so
        files, folders = listing
        if not path and any(name.lower().endswith(".gguf") for name in files):
            return replace(ref, filename=pick_gguf(ref.repo_id, files))
    names = {
        PurePosixPath(name).name: name
        for name in files
        if _parent(name) == path and is_plain_filename(PurePosixPath(name).name)
    }
    return _folder(ref, path, names, folders=folders, where=where, listed=files)


def _folder(
    ref: ModelRef,
    path: str,
    names: dict[str, str],
    *,
    folders: Collection[str],
    where: str,
    listed: Collection[str] = (),
) -> HubFolder:
    """The model folder that the top-level `names` ({file name: repository path}) make; the
    layout is told by names here, and by content when owl.pull.folder stores it."""
    assert ref.repo_id is not None
    voices = sorted(
        name
        for name in names
        if name.endswith(VOICE_SUFFIX)
        and name.removesuffix(VOICE_SUFFIX) + VOICE_CONFIG_SUFFIX in names
    )
    if len(voices) > 1:
        raise ModelFormatError(
            f"{where} holds {len(voices)} Piper voices ({', '.join(voices[:4])}); a voice "
            "folder holds one: pull each voice's own folder"
        )
    if voices:
        voice = voices[0]
        config = voice.removesuffix(VOICE_SUFFIX) + VOICE_CONFIG_SUFFIX
        wanted = {voice, config, *_matching(names, (*VOICE_EXTRAS, *TERMS_FILES))}
        name = name_from_stem(voice.removesuffix(VOICE_SUFFIX), source=ref.raw)
    elif CT2_WEIGHTS in names and "config.json" in names:
        wanted = set(_matching(names, (*CT2_PATTERNS, *TERMS_FILES)))
        name = ref.default_name()  # the repository's (or the folder's) name
    elif "config.json" in names and any(name.endswith(".safetensors") for name in names):
        wanted = set(_matching(names, (*TRANSFORMERS_PATTERNS, *TERMS_FILES)))
        if "modules.json" in names:  # its pooling (and other modules') configs too
            inside = f"{path}/" if path else ""
            for repo_path in listed:
                relative = repo_path.removeprefix(inside)
                if repo_path.startswith(inside) and _MODULE_CONFIG.fullmatch(relative):
                    names[relative] = repo_path
                    wanted.add(relative)
        name = ref.default_name()
    else:
        inside = f" (it holds the folders {', '.join(sorted(folders)[:6])}: name one)"
        raise SourceNotFound(
            f"{where} has no .gguf file and is no model folder owl knows{inside if folders else ''}"
            f"; owl pulls {_EXAMPLES}"
        )
    return HubFolder(
        repo_id=ref.repo_id,
        path=path,
        revision=ref.revision,
        files=tuple(names[file] for file in sorted(wanted)),
        name=name,
    )


def _matching(names: Collection[str], patterns: tuple[str, ...]) -> list[str]:
    return [name for name in names if any(fnmatchcase(name, p) for p in patterns)]


def _parent(name: str) -> str:
    parent = PurePosixPath(name).parent.as_posix()
    return "" if parent == "." else parent


def _listing(
    repo_id: str, path: str, revision: str | None, settings: Settings
) -> tuple[list[str], list[str]] | None:
    """The files (repository paths) and sub-folders (names) in the folder `path` of the
    repository ("": all its files); None when the Hub has no folder `path`."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import RemoteEntryNotFoundError
    from huggingface_hub.hf_api import RepoFolder

    if not path:
        files = repo_files(repo_id, revision, settings, patterns=("*.gguf", *_OFFLINE_PATTERNS))
        return files, sorted({name.split("/")[0] for name in files if "/" in name})
    if settings.hf_offline:
        patterns = [f"{path}/{pattern}" for pattern in _OFFLINE_PATTERNS]
        snapshot = snapshot_download(
            repo_id, revision=revision, local_files_only=True, allow_patterns=patterns
        )
        folder = Path(snapshot, path)
        if not folder.is_dir():
            return None
        children = sorted(folder.iterdir())
        return (
            [f"{path}/{child.name}" for child in children if child.is_file()],
            [child.name for child in children if child.is_dir()],
        )
    try:
        entries = list(
            HfApi(endpoint=settings.hf_endpoint).list_repo_tree(
                repo_id, path_in_repo=path, revision=revision
            )
        )
    except RemoteEntryNotFoundError:
        return None
    if not entries:
        return None
    return (
        [entry.path for entry in entries if not isinstance(entry, RepoFolder)],
        [PurePosixPath(entry.path).name for entry in entries if isinstance(entry, RepoFolder)],
    )


@contextmanager
def download(folder: HubFolder, *, settings: Settings) -> Iterator[tuple[Path, Source]]:
    """The folder's files, downloaded into the HF cache where missing and checked, as one
    folder of exactly those files, and the Source to record (the commit they came from).

    Everything is downloaded and checked before anything is yielded: a file the Hub lacks is
    SourceNotFound, a failed download DownloadError, bytes that are not the sha256 the Hub
    gave DigestMismatch; then nothing has reached owl's store.
    """
    from huggingface_hub import hf_hub_download

    local: dict[str, Path] = {}
    for file in folder.files:
        with hub_errors(f"hf:{folder.repo_id}", filename=file, revision=folder.revision):
            local[PurePosixPath(file).name] = Path(
                hf_hub_download(
                    folder.repo_id,
                    file,
                    revision=folder.revision,
                    endpoint=settings.hf_endpoint,
                    local_files_only=settings.hf_offline,
                )
            )
    # Each file is asked for at the branch: all must come from one commit, or the folder
    # would mix two versions of the model.
    commits = {commit_of(path) for path in local.values()}
    if len(commits) > 1:
        raise DownloadError(
            f"{folder.uri} changed on the Hub while it was downloaded (commits "
            f"{', '.join(sorted(str(commit) for commit in commits))}); pull it again"
        )
    for name, path in local.items():
        expected = hub_digest(path)
        if expected is not None and (actual := sha256_file(path)) != expected:
            raise DigestMismatch(
                f"{folder.uri}: {name} in the Hugging Face cache has {actual}, but the Hub "
                f"gave {expected}; nothing was stored. Delete it from the cache "
                "(`hf cache rm`) and pull again"
            )
    commit = commits.pop() if commits else None
    source = Source(kind=RefKind.HF, uri=folder.uri, revision=commit or folder.revision)
    with _as_folder(local) as path:
        yield path, source


@contextmanager
def _as_folder(files: dict[str, Path]) -> Iterator[Path]:
    """A folder of exactly `files` ({name: path}): the snapshot folder that holds them when it
    holds nothing else, else a temporary folder of links to them (the HF cache keeps every
    file of a commit anyone downloaded, and those are not all part of the model)."""
    parents = {path.parent for path in files.values()}
    if len(parents) == 1:
        (snapshot,) = parents
        if set(list_folder(snapshot)) == set(files):
            yield snapshot
            return
    with TemporaryDirectory(prefix="owl-hf-") as temp:
        for name, path in files.items():
            (Path(temp) / name).symlink_to(path.resolve())
        yield Path(temp)
