"""A diffusers pipeline folder (Stable Diffusion 1.x/2.x, SDXL) → its checks and ModelInfo.

The layout: model_index.json names the pipeline class and, for each component, its library
and class; each component's files are in a sub-folder of its name (unet/, vae/,
text_encoder/, tokenizer/, scheduler/ …). Everything in it is untrusted: the index is read
with a size bound, every class it names must be one diffusers.toml lists (diffusers would
import an unknown library from the folder itself: code the model ships), weights must be
safetensors (pickle-based .bin files can run code when loaded), and no config may ask
transformers to import code of its own (auto_map).

Names are paths one level deep at most ("unet/config.json"), each part a plain name. Like
the other folder readers, this works on a mapping of such names → paths, a folder where it
is or a stored model's blobs alike; `select_files` makes that mapping from a folder on disk.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from owl.errors import ModelFormatError, UnsafeModel
from owl.formats.card import CARD, card_license, read_card
from owl.formats.hf_folder import (
    CONFIG,
    INDEX_SUFFIX,
    PICKLE_WEIGHTS,
    WEIGHTS_SUFFIX,
    check_no_remote_code,
    file_role,
    index_shards,
    is_plain_filename,
    read_json,
)
from owl.formats.info import ModelInfo
from owl.formats.safetensors import count_tensors

log = logging.getLogger(__name__)

INDEX = "model_index.json"
MAX_INDEX = 1 << 20  # a model_index.json is a few hundred bytes
MAX_COMPONENTS = 16
# Top-level files kept beside the index: the card and license files (terms), a signature.
TOP_LEVEL = ("README.md", "LICENSE", "LICENSE.md", "LICENSE.txt", "model.sig")
# What a component sub-folder holds that diffusers and transformers read: configs,
# vocabularies, safetensors weights, SentencePiece models. Nothing else is stored.
KEPT_SUFFIXES = (".json", ".txt", WEIGHTS_SUFFIX, ".model")
# Not loaded by owl, and never stored: pickles, and other frameworks' weights.
UNUSED_WEIGHTS = (*PICKLE_WEIGHTS, ".msgpack", ".onnx", ".onnx_data", ".pb", ".h5", ".xml")
_SHARD = re.compile(r"-\d{5}-of-\d{5}$")


@dataclass(frozen=True)
class Component:
    """One entry of model_index.json: its sub-folder, library and class."""

    name: str
    library: str
    cls: str
    weighted: bool  # a model with weights (unet, vae, text encoders), not a config


@dataclass(frozen=True)
class PipelineIndex:
    """A checked model_index.json: the pipeline class and the components it loads."""

    pipeline: str
    architecture: str
    components: tuple[Component, ...]

    def component(self, name: str) -> Component | None:
        return next((part for part in self.components if part.name == name), None)


@cache
def _table() -> dict[str, Any]:
    with (Path(__file__).parent / "diffusers.toml").open("rb") as data:
        return tomllib.load(data)


def known_pipelines() -> tuple[str, ...]:
    """The pipeline classes owl draws with."""
    return tuple(_table()["pipelines"])


def _class_kind(library: str, cls: str) -> bool | None:
    """True for a known model class, False for a known config class, None for unknown."""
    table = _table()
    if cls in table["models"].get(library, ()):
        return True
    if cls in table["configs"].get(library, ()):
        return False
    return None


def parse_index(data: Any, *, where: str) -> PipelineIndex:
    """A model_index.json's content, checked against diffusers.toml; UnsafeModel for a class
    that would be imported from the folder, ModelFormatError for anything else owl refuses."""
    if not isinstance(data, dict):
        raise ModelFormatError(f"{INDEX} of {where} is not a JSON object")
    pipeline = data.get("_class_name")
    if isinstance(pipeline, list):
        raise UnsafeModel(
            f"{INDEX} of {where} names a custom pipeline ({str(pipeline)[:80]}), whose code "
            "diffusers would import from the folder and run; owl draws with diffusers' own "
            f"pipelines only ({', '.join(known_pipelines())})"
        )
    if pipeline not in _table()["pipelines"]:
        raise ModelFormatError(
            f"{where} is a {str(pipeline)[:80]!r} pipeline; owl draws with "
            f"{', '.join(known_pipelines())} (Stable Diffusion 1.x, 2.x and SDXL)"
        )
    spec = _table()["pipelines"][pipeline]
    components = []
    for name, value in data.items():
        if name.startswith("_") or not isinstance(value, list):
            continue  # _diffusers_version, requires_safety_checker, …: settings, not parts
        components.append(_component(name, value, where=where))
    if len(components) > MAX_COMPONENTS:
        raise ModelFormatError(f"{INDEX} of {where} names {len(components)} components")
    present = {part.name for part in components if part.cls}
    missing = [name for name in spec["required"] if name not in present]
    if missing:
        raise ModelFormatError(
            f"{INDEX} of {where} has no {', '.join(missing)}: a {pipeline} needs them"
        )
    return PipelineIndex(
        pipeline=pipeline,
        architecture=spec["architecture"],
        components=tuple(part for part in components if part.cls),
    )


def _component(name: str, value: list[Any], *, where: str) -> Component:
    if not is_plain_filename(name) or "." in name:
        raise ModelFormatError(
            f"{INDEX} of {where} names the component {name[:80]!r}: a component is a plain "
            "sub-folder name"
        )
    if len(value) != 2:
        raise ModelFormatError(f"{INDEX} of {where}: {name} is not [library, class]")
    library, cls = value
    if library is None and cls is None:
        return Component(name, "", "", weighted=False)  # a component the pipeline leaves out
    if not (isinstance(library, str) and isinstance(cls, str)):
        raise ModelFormatError(f"{INDEX} of {where}: {name} is not [library, class]")
    if library not in _table()["models"] and library not in _table()["configs"]:
        raise UnsafeModel(
            f"{INDEX} of {where} loads {name} from the library {library[:80]!r}, which "
            "diffusers would import from the folder itself (code the model ships); owl loads "
            "components of diffusers and transformers only"
        )
    weighted = _class_kind(library, cls)
    if weighted is None:
        raise ModelFormatError(
            f"{INDEX} of {where} names {library}.{cls[:80]} for {name}, which is not a "
            "Stable Diffusion component owl loads (owl/formats/diffusers.toml lists them)"
        )
    return Component(name, library, cls, weighted=weighted)


def read_index(files: Mapping[str, Path], *, where: str) -> PipelineIndex:
    """The checked model_index.json of the folder `files`."""
    if INDEX not in files:
        raise ModelFormatError(f"{where} has no {INDEX}: it is not a diffusers pipeline")
    return parse_index(read_json(files[INDEX], name=INDEX, limit=MAX_INDEX), where=where)


def _inside(path: Path, root: Path) -> bool:
    """Whether `path`, its links followed, stays in the folder `root` pulled.

    One way out is allowed: a Hugging Face cache snapshot (…/snapshots/REVISION) links each
    file to its repository's blobs folder, beside the snapshots.
    """
    target = path.resolve()
    if target.is_relative_to(root):
        return True
    return root.parent.name == "snapshots" and target.is_relative_to(root.parent.parent / "blobs")


def select_files(folder: Path) -> dict[str, Path]:
    """The files of the diffusers folder at `folder` that owl stores: {relative name: path}.

    model_index.json and the card, license and signature files at the top, and in each
    component's sub-folder its configs, vocabularies and safetensors weights; nothing else
    (a single-file checkpoint beside the layout, pickled or Flax twins) is stored. A link
    (file or folder) that leads out of `folder` is refused, as is a component with pickled
    weights only.
    """
    root = folder.resolve()
    where = str(folder)
    files: dict[str, Path] = {}
    for name in (INDEX, *TOP_LEVEL):
        path = folder / name
        if path.is_file():
            files[name] = _checked_link(path, root, name)
    index = read_index(files, where=where)
    skipped: list[str] = []
    for part in index.components:
        sub = folder / part.name
        if not sub.is_dir():
            raise ModelFormatError(f"{where} has no {part.name}/ folder, which {INDEX} names")
        if sub.is_symlink() and not _inside(sub, root):
            raise ModelFormatError(f"{where}: {part.name}/ links out of the folder; refused")
        pickled = []
        for path in sorted(sub.iterdir(), key=lambda entry: entry.name):
            name = f"{part.name}/{path.name}"
            if path.name.startswith(".") or not path.is_file():
                continue
            if not is_plain_filename(path.name) or not path.name.endswith(KEPT_SUFFIXES):
                if path.name.lower().endswith(PICKLE_WEIGHTS):
                    pickled.append(name)
                skipped.append(name)
                continue
            files[name] = _checked_link(path, root, name)
        if part.weighted and not _weights(files, part.name) and pickled:
            raise ModelFormatError(
                f"{where}: {part.name} has only pickle-based weights ({', '.join(pickled[:2])}), "
                "which can run code when loaded; convert them to safetensors where you trust "
                "them (diffusers' `save_pretrained(dir, safe_serialization=True)`) and pull that"
            )
    if skipped:
        log.warning(
            "%s: not storing %d file(s) diffusers' layout does not load with safetensors (%s)",
            where,
            len(skipped),
            ", ".join(skipped[:4]) + (", …" if len(skipped) > 4 else ""),
        )
    return files


def _checked_link(path: Path, root: Path, name: str) -> Path:
    if not _inside(path, root):
        raise ModelFormatError(f"{name} in {root} is a link to a file outside it; refused")
    return path


def _weights(files: Mapping[str, Path], component: str) -> list[str]:
    prefix = component + "/"
    return sorted(n for n in files if n.startswith(prefix) and n.endswith(WEIGHTS_SUFFIX))


def _part_files(files: Mapping[str, Path], component: str) -> dict[str, Path]:
    prefix = component + "/"
    return {n.removeprefix(prefix): p for n, p in files.items() if n.startswith(prefix)}


def check_files(files: Mapping[str, Path], *, where: str) -> PipelineIndex:
    """The checks a diffusers folder passes before anything is copied, and again on the
    stored bytes: a known pipeline, every component's files there (weights in safetensors,
    every shard an index names), no file outside the layout, no auto_map code."""
    index = read_index(files, where=where)
    names = {part.name for part in index.components}
    for name in files:
        head, _, tail = name.partition("/")
        outside = (
            (head not in names or not is_plain_filename(tail))
            if tail
            else name not in (INDEX, *TOP_LEVEL)
        )
        if outside or name.lower().endswith(UNUSED_WEIGHTS):
            raise ModelFormatError(
                f"{where} holds {name[:120]!r}, which is not part of the diffusers layout "
                f"{INDEX} describes (safetensors weights, configs, vocabularies)"
            )
    for part in index.components:
        own = _part_files(files, part.name)
        if not own:
            raise ModelFormatError(f"{where} has no {part.name}/ files, which {INDEX} names")
        check_no_remote_code(own)
        if not part.weighted:
            continue
        if CONFIG not in own or not _weights(files, part.name):
            raise ModelFormatError(
                f"{where}: {part.name}/ needs a config.json and .safetensors weights"
            )
        for shard_index in (n for n in own if n.endswith(INDEX_SUFFIX)):
            for shard in index_shards(own[shard_index], name=f"{part.name}/{shard_index}"):
                if shard not in own:
                    raise ModelFormatError(
                        f"{part.name}/{shard_index} names the shard {shard!r}, which is not in "
                        f"{where}; the download is incomplete: fetch the missing shards"
                    )
    return index


def _variant_of(name: str) -> str | None:
    """The variant of a weights file: "fp16" for diffusion_pytorch_model.fp16.safetensors
    (or a shard of it, …fp16-00001-of-00002), None for plain weights."""
    stem = Path(name).name.removesuffix(WEIGHTS_SUFFIX)
    if "." not in stem:
        return None
    return _SHARD.sub("", stem.split(".", 1)[1]) or None


def weight_variant(files: Mapping[str, Path], index: PipelineIndex) -> str | None:
    """The weights variant to load: None when every model component has plain weights
    (diffusion_pytorch_model.safetensors), else the one variant they all have ("fp16")."""
    common: set[str] | None = None
    plain = True
    for part in index.components:
        if not part.weighted:
            continue
        variants = {_variant_of(name) for name in _weights(files, part.name)}
        plain = plain and None in variants
        found = {variant for variant in variants if variant is not None}
        common = found if common is None else common & found
    if plain:
        return None
    if not common:
        raise ModelFormatError(
            "the components' weights are of different variants (fp16 in one, plain in "
            "another): pull a folder whose every component has plain safetensors weights, "
            "or the same variant"
        )
    return sorted(common)[0]


def _loaded_weights(files: Mapping[str, Path], index: PipelineIndex) -> list[str]:
    """The weight files of the variant that loads, so that twins are not counted twice."""
    variant = weight_variant(files, index)
    return [
        name
        for part in index.components
        for name in _weights(files, part.name)
        if _variant_of(name) == variant
    ]


def default_size(files: Mapping[str, Path]) -> int | None:
    """The side of the square image the pipeline was trained for (its default): the UNet's
    sample size × the VAE's scale factor (64 × 8 = 512 for SD 1.5); None if unstated."""
    configs = []
    for name in ("unet/config.json", "vae/config.json"):
        data = read_json(files[name], name=name) if name in files else None
        configs.append(data if isinstance(data, dict) else {})
    sample = configs[0].get("sample_size")
    blocks = configs[1].get("block_out_channels")
    if not isinstance(sample, int) or isinstance(sample, bool) or not isinstance(blocks, list):
        return None
    side = sample * 2 ** (len(blocks) - 1)
    return side if 0 < side <= 1 << 16 else None


def read_files(files: Mapping[str, Path], *, where: str) -> ModelInfo:
    """The ModelInfo of a diffusers pipeline folder given as {relative name: path}."""
    index = check_files(files, where=where)
    weights = _loaded_weights(files, index)
    counts = count_tensors([files[name] for name in weights], names=weights)
    metadata: dict[str, Any] = {
        **counts.metadata,
        "diffusers.pipeline": index.pipeline,
        "diffusers.components": ",".join(part.name for part in index.components),
    }
    side = default_size(files)
    if side is not None:
        metadata["diffusers.default_size"] = side
    scheduler = index.component("scheduler")
    if scheduler is not None:
        metadata["diffusers.scheduler"] = scheduler.cls
    variant = weight_variant(files, index)
    if variant is not None:
        metadata["diffusers.variant"] = variant
    card = read_card(files[CARD]) if CARD in files else ""
    return ModelInfo(
        format="diffusers",
        architecture=index.architecture,
        parameters=counts.parameters,
        quantization=counts.main_type,
        tensor_types=dict(counts.types),
        license=card_license(card) or None,
        metadata=metadata,
    )


def diffusers_role(name: str) -> str:
    """A file's role in a diffusers folder: model (weights), config, tokenizer, card, other."""
    if name == INDEX or name.endswith("scheduler_config.json"):
        return "config"
    return file_role(Path(name).name)
