"""The sentence-transformers layout of a Hugging Face folder, read without sentence-transformers.

modules.json lists the modules a text goes through, each with its sub-folder:

    [{"path": "", "type": "sentence_transformers.models.Transformer", …},
     {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling", …},
     {"path": "2_Normalize", "type": "sentence_transformers.models.Normalize", …}]

1_Pooling/config.json says how token vectors become one (`pooling_mode`, or the older
`pooling_mode_*_tokens` flags), and sentence_bert_config.json the longest input
(`max_seq_length`) and whether texts are lower-cased first. Everything here is untrusted:
JSON is read with a size bound and a module's sub-folder must be one plain name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from owl.errors import ModelFormatError
from owl.formats.hf_folder import is_plain_filename, read_json

MODULES = "modules.json"
SENTENCE_CONFIG = "sentence_bert_config.json"
MODULE_CONFIG = "config.json"
MAX_MODULE_JSON = 1 << 20  # a module's config is a few hundred bytes
# sentence-transformers' legacy flags, in the order it concatenates their vectors.
LEGACY_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


@dataclass(frozen=True)
class Module:
    """One entry of modules.json: its kind (the type's last name: "Pooling") and sub-folder."""

    kind: str
    path: str


@dataclass(frozen=True)
class SentenceLayout:
    """What a sentence-transformers folder says about making one vector of a text.

    `pooling`: the pooling modes whose vectors are concatenated, in order (None: no Pooling
    module); `max_seq_length`: the longest input in tokens (None: not said).
    """

    modules: tuple[Module, ...]
    pooling: tuple[str, ...] | None
    normalize: bool
    max_seq_length: int | None
    lowercase: bool

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(module.kind for module in self.modules)


def read_modules(files: Mapping[str, Path]) -> tuple[Module, ...]:
    """modules.json's modules in order; () when the folder has none."""
    if MODULES not in files:
        return ()
    data = read_json(files[MODULES], name=MODULES, limit=MAX_MODULE_JSON)
    if not isinstance(data, list) or not all(isinstance(entry, dict) for entry in data):
        raise ModelFormatError(f"{MODULES} is not a list of modules; fix or remove it")
    modules = []
    for entry in data:
        kind, path = entry.get("type"), entry.get("path", "")
        if not isinstance(kind, str) or not isinstance(path, str):
            raise ModelFormatError(f"{MODULES} has a module without a type or path: {entry!r}")
        path = path.strip("/")
        if path and not is_plain_filename(path):
            raise ModelFormatError(
                f"{MODULES} names the module folder {path[:80]!r}, which is not one plain "
                "folder name inside the model folder"
            )
        modules.append(Module(kind=kind.rsplit(".", 1)[-1], path=path))
    return tuple(modules)


def module_files(folder: Path) -> dict[str, Path]:
    """The JSON files of the module sub-folders modules.json names, as {"1_Pooling/config.json":
    path}: what a model folder needs beside its top-level files (the pooling's config)."""
    files: dict[str, Path] = {}
    for module in read_modules({MODULES: folder / MODULES} if (folder / MODULES).is_file() else {}):
        sub = folder / module.path
        if not module.path or sub.is_symlink() or not sub.is_dir():
            continue  # a Normalize module has no files; its folder is often not shipped
        for path in sorted(sub.iterdir(), key=lambda entry: entry.name):
            if path.is_file() and path.name.endswith(".json") and is_plain_filename(path.name):
                files[f"{module.path}/{path.name}"] = path
    return files


def read_layout(files: Mapping[str, Path]) -> SentenceLayout | None:
    """The sentence-transformers layout of a folder's files ({relative name: path}); None
    when it has neither modules.json nor sentence_bert_config.json."""
    modules = read_modules(files)
    if not modules and SENTENCE_CONFIG not in files:
        return None
    pooling = None
    for module in modules:
        if module.kind == "Pooling":
            name = f"{module.path}/{MODULE_CONFIG}" if module.path else MODULE_CONFIG
            if name not in files:
                raise ModelFormatError(
                    f"{MODULES} names a Pooling module in {module.path or 'the folder'}/, but "
                    f"{name} is missing; fetch the whole model folder"
                )
            pooling = pooling_modes(_object(files[name], name))
            break
    config = _object(files[SENTENCE_CONFIG], SENTENCE_CONFIG) if SENTENCE_CONFIG in files else {}
    length = config.get("max_seq_length")
    return SentenceLayout(
        modules=modules,
        pooling=pooling,
        normalize="Normalize" in (module.kind for module in modules),
        max_seq_length=length if isinstance(length, int) and length > 0 else None,
        lowercase=config.get("do_lower_case") is True,
    )


def pooling_modes(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The pooling modes a Pooling module's config names, in concatenation order:
    `pooling_mode` (a name or a list of names), else the legacy flags, else mean (as
    sentence-transformers defaults)."""
    mode = config.get("pooling_mode")
    if isinstance(mode, str):
        return (mode,)
    if isinstance(mode, list) and mode and all(isinstance(m, str) for m in mode):
        return tuple(mode)
    if mode is not None:
        raise ModelFormatError(f"the pooling config's pooling_mode {mode!r} is not a mode name")
    flagged = tuple(name for key, name in LEGACY_POOLING.items() if config.get(key) is True)
    unknown = sorted(
        key for key, value in config.items()
        if key.startswith("pooling_mode_") and key not in LEGACY_POOLING and value is True
    )  # fmt: skip
    return flagged + tuple(unknown) or ("mean",)


def _object(path: Path, name: str) -> dict[str, Any]:
    data = read_json(path, name=name, limit=MAX_MODULE_JSON)
    if not isinstance(data, dict):
        raise ModelFormatError(f"{name} is not a JSON object; fix or remove it")
    return data
