"""Read a Hugging Face model folder (config.json, *.safetensors, tokenizer files) → ModelInfo.

Everything in such a folder is untrusted: JSON files are read with a size bound, file names
from an index must be plain names inside the folder, and a folder that asks transformers to
import its own Python code (`auto_map`) is refused. The reader works on a mapping of file
name → path, so that it reads a folder where it is and a stored model from its blobs alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from owl.errors import ModelFormatError, UnsafeModel
from owl.formats.card import CARD, card_license, read_card
from owl.formats.info import ModelInfo
from owl.formats.safetensors import count_tensors

CONFIG = "config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
WEIGHTS_SUFFIX = ".safetensors"
INDEX_SUFFIX = ".safetensors.index.json"
# Keys that make transformers import Python code shipped in the folder (trust_remote_code).
CODE_KEYS = ("auto_map",)
CODE_FILES = (CONFIG, TOKENIZER_CONFIG)
# Pickle-based weights: loading them can run code, so owl takes safetensors only.
PICKLE_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MAX_JSON = 64 << 20  # config and tokenizer_config are kilobytes; a large added-token list, MBs

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,254}$")
_TOKENIZER_FILES = frozenset(
    {
        TOKENIZER_CONFIG, "tokenizer.json", "tokenizer.model", "special_tokens_map.json",
        "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt", "spiece.model",
        "chat_template.jinja", "chat_template.json", "preprocessor_config.json",
    }
)  # fmt: skip
_CONFIG_FILES = frozenset({CONFIG, "generation_config.json"})
_CONTEXT_KEYS = (
    "max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx",
)  # fmt: skip
_EMBEDDING_KEYS = ("hidden_size", "n_embd", "d_model")
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers")
_HEAD_KEYS = ("num_attention_heads", "n_head")


def is_plain_filename(name: str) -> bool:
    """Whether `name` is one plain file name: no separator, no '..', not hidden, not odd.

    Names from a folder listing or an index file become paths only if they pass this.
    """
    return isinstance(name, str) and bool(_PLAIN_NAME.match(name)) and ".." not in name


def file_role(name: str) -> str:
    """The role of a top-level file of a model folder: model, config, tokenizer, card, other."""
    if name.endswith(WEIGHTS_SUFFIX):
        return "model"
    if name in _CONFIG_FILES or name.endswith(INDEX_SUFFIX):
        return "config"
    if name in _TOKENIZER_FILES or name.endswith(".tiktoken"):
        return "tokenizer"
    if name == CARD:
        return "card"
    return "other"


def list_folder(folder: Path) -> dict[str, Path]:
    """The folder's top-level files (links followed, hidden files skipped), by name, sorted."""
    try:
        entries = sorted(folder.iterdir(), key=lambda path: path.name)
    except OSError as err:
        raise ModelFormatError(f"cannot read the folder {folder}: {err.strerror}") from err
    return {path.name: path for path in entries if not path.name.startswith(".") and path.is_file()}


def read_json(path: Path, *, name: str, limit: int = MAX_JSON) -> Any:
    """A JSON file of a model folder, at most `limit` bytes; ModelFormatError otherwise."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as err:
        raise ModelFormatError(f"cannot read {name}: {err.strerror}") from err
    if len(raw) > limit:
        raise ModelFormatError(f"{name} is larger than {limit:,} bytes; owl will not read it")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ModelFormatError(f"{name} is not valid JSON ({err}); fix or remove it") from None


def read_folder_config(folder: Path) -> dict[str, Any]:
    """`folder`'s config.json as an object; {} when it has none or it holds no object."""
    path = folder / CONFIG
    config = read_json(path, name=CONFIG) if path.is_file() else {}
    return config if isinstance(config, dict) else {}


def model_class_of(config: Mapping[str, Any]) -> str | None:
    """The model class a config.json names (architectures[0]), if it names one."""
    classes = config.get("architectures")
    first = classes[0] if isinstance(classes, list) and classes else None
    return first if isinstance(first, str) else None


def check_no_remote_code(files: Mapping[str, Path]) -> None:
    """Refuse (UnsafeModel) a folder whose config names Python code of its own (auto_map).

    transformers (and llama.cpp's converter, which loads tokenizers with
    trust_remote_code=True) would import that code; owl takes only models transformers
    supports without it.
    """
    for name in CODE_FILES:
        if name not in files:
            continue
        data = read_json(files[name], name=name)
        if isinstance(data, dict) and any(key in data for key in CODE_KEYS):
            raise UnsafeModel(
                f"{name} names Python code of its own (auto_map), which transformers would "
                "import and run; owl takes only models that transformers supports without it"
            )


def check_weights(files: Mapping[str, Path], *, where: str) -> list[str]:
    """The safetensors weight files of a folder (index-checked); ModelFormatError if none.

    A folder whose index names a shard that is not a plain file name of the folder is
    refused, as is one that has only pickle-based weights (.bin, .pt).
    """
    if CONFIG not in files:
        raise ModelFormatError(
            f"{where} is not a Hugging Face model folder: it has no config.json "
            "(a model folder holds config.json, *.safetensors and the tokenizer files)"
        )
    weights = [name for name in files if name.endswith(WEIGHTS_SUFFIX)]
    if not weights:
        pickled = [name for name in files if name.lower().endswith(PICKLE_WEIGHTS)]
        if pickled:
            raise ModelFormatError(
                f"{where} has only pickle-based weights ({', '.join(pickled[:3])}), which can "
                "run code when loaded; convert them to safetensors where you trust them (e.g. "
                "transformers' `save_pretrained(dir, safe_serialization=True)`) and pull that"
            )
        raise ModelFormatError(f"{where} has no .safetensors weights")
    for index in (name for name in files if name.endswith(INDEX_SUFFIX)):
        for shard in index_shards(files[index], name=index):
            if shard not in files:
                raise ModelFormatError(
                    f"{index} names the shard {shard!r}, which is not in {where}; "
                    "the download is incomplete: fetch the missing shards"
                )
    return weights


def index_shards(path: Path, *, name: str) -> list[str]:
    """The shard file names a `*.safetensors.index.json` maps tensors to, each a plain name."""
    data = read_json(path, name=name)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict):
        raise ModelFormatError(f"{name} has no weight_map object; it is not a safetensors index")
    shards = sorted({str(value) for value in weight_map.values()})
    for shard in shards:
        if not is_plain_filename(shard) or not shard.endswith(WEIGHTS_SUFFIX):
            raise ModelFormatError(
                f"{name} names {shard[:120]!r} as a shard: shards must be .safetensors files "
                "in the folder itself, never a path elsewhere"
            )
    return shards


def _text(value: Any, limit: int = 128) -> str | None:
    return value[:limit] if isinstance(value, str) and value.strip() else None


def _first(config: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _chat_template(files: Mapping[str, Path], tokenizer_config: Any) -> str | None:
    if "chat_template.jinja" in files:
        try:
            raw = files["chat_template.jinja"].read_bytes()[:MAX_JSON]
        except OSError as err:
            raise ModelFormatError(f"cannot read chat_template.jinja: {err.strerror}") from err
        return raw.decode("utf-8", errors="replace")
    if "chat_template.json" in files:
        data = read_json(files["chat_template.json"], name="chat_template.json")
        template = data.get("chat_template") if isinstance(data, dict) else None
        if isinstance(template, str):
            return template
    template = tokenizer_config.get("chat_template") if isinstance(tokenizer_config, dict) else None
    if isinstance(template, list):  # named templates: [{"name": "default", "template": …}]
        named = {
            item.get("name"): item.get("template") for item in template if isinstance(item, dict)
        }
        template = named.get("default")
    return template if isinstance(template, str) else None


def _license(files: Mapping[str, Path], config: Mapping[str, Any]) -> str | None:
    # As written: which license that is, and which source wins, owl.licenses decides.
    if CARD in files:
        try:
            card = read_card(files[CARD])
        except OSError:
            card = ""
        found = card_license(card)
        if found:
            return found
    value = config.get("license")
    return value if isinstance(value, str) and value.strip() else None


def _quantization(config: Mapping[str, Any], main_type: str | None) -> str | None:
    quant = config.get("quantization_config")
    if isinstance(quant, dict) and isinstance(quant.get("quant_method"), str):
        bits = quant.get("bits")
        method = quant["quant_method"][:32]
        return f"{method} {bits}-bit" if isinstance(bits, int) else method
    return main_type


def read_hf_files(files: Mapping[str, Path], *, where: str = "the folder") -> ModelInfo:
    """The ModelInfo of a model folder given as {file name: path}; ModelFormatError if broken."""
    weights = check_weights(files, where=where)
    config = read_json(files[CONFIG], name=CONFIG)
    if not isinstance(config, dict):
        raise ModelFormatError("config.json is not a JSON object")
    # Multimodal models (gemma3, llava) keep the language model's sizes in text_config.
    text = config.get("text_config")
    sizes = {**text, **config} if isinstance(text, dict) else config
    tokenizer_config = (
        read_json(files[TOKENIZER_CONFIG], name=TOKENIZER_CONFIG)
        if TOKENIZER_CONFIG in files
        else {}
    )
    counts = count_tensors([files[name] for name in weights], names=weights)
    architectures = config.get("architectures")
    model_class = (
        _text(architectures[0]) if isinstance(architectures, list) and architectures else None
    )
    model_type = _text(config.get("model_type"))
    context = _first(sizes, _CONTEXT_KEYS)
    if context is None and isinstance(tokenizer_config, dict):
        context = _first(tokenizer_config, ("model_max_length",))
        context = context if context is not None and context < 1 << 24 else None
    metadata: dict[str, Any] = {**counts.metadata, "hf.weight_files": len(weights)}
    dtype = _text(config.get("torch_dtype", config.get("dtype")))
    for key, value in (
        ("hf.architecture", model_class),
        ("hf.model_type", model_type),
        ("hf.dtype", dtype),
    ):
        if value is not None:
            metadata[key] = value
    return ModelInfo(
        format="safetensors",
        architecture=model_type or model_class,
        name=_text(config.get("_name_or_path")),
        parameters=counts.parameters,
        quantization=_quantization(config, counts.main_type),
        tensor_types=dict(counts.types),
        context_length=context,
        embedding_length=_first(sizes, _EMBEDDING_KEYS),
        block_count=_first(sizes, _LAYER_KEYS),
        head_count=_first(sizes, _HEAD_KEYS),
        vocab_size=_first(sizes, ("vocab_size",)),
        chat_template=_chat_template(files, tokenizer_config),
        license=_license(files, config),
        metadata=metadata,
    )


def read_hf_folder(folder: Path) -> ModelInfo:
    """The ModelInfo of the Hugging Face model folder at `folder`, read where it is."""
    return read_hf_files(list_folder(folder), where=str(folder))
