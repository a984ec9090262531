"""Which backend runs a model: entries by format and capability.

llama.cpp runs GGUF models (generation, scoring, embeddings); transformers runs Hugging Face
safetensors folders (families llama.cpp cannot run), imported only when used. A new
modality is one more entry. `capabilities_of` tells what a stored model is made for
without loading it (`owl show`, Ollama's /api/show).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from owl.engine.backend import Capability, Loaded
from owl.engine.kv_cache import DEFAULT, CacheTypes
from owl.errors import EngineError, NotEmbeddable, OwlError, WrongModelKind
from owl.formats.sentence_folder import MODULES as SENTENCE_MODULES
from owl.store import Manifest, Store

GENERATION = frozenset({Capability.CHAT, Capability.COMPLETE, Capability.SCORE})
SPEECH = frozenset({Capability.TRANSCRIBE, Capability.SPEAK})
_AUDIO_EXTRA = "{missing} is not installed, and owl needs it for speech: `pip install 'owl[audio]'`"
DRAWING = frozenset({Capability.DRAW})
RERANKING = frozenset({Capability.RERANK})


@dataclass(frozen=True)
class LoadRequest:
    """What a factory gets: the model's file (or folder) and how to load it."""

    path: Path
    name: str
    n_ctx: int
    threads: int | None
    slots: int = 1
    adapters: tuple[tuple[Path, float], ...] = ()  # (file, scale) of each LoRA adapter
    defaults: dict[str, Any] = field(default_factory=dict)  # the manifest's sampling defaults
    projector: Path | None = None  # a vision GGUF's projector (mmproj)
    cache_types: CacheTypes = DEFAULT  # the KV cache's element types (llama.cpp)


@dataclass(frozen=True)
class Entry:
    """A backend for one format: what it can do, how to load it, and what it needs.

    `needs`: top-level modules beyond owl's own dependencies; when one is missing the load
    fails with `extra` (formatted with `missing`), which says what to install.
    """

    format: str
    capabilities: frozenset[Capability]
    factory: Callable[[LoadRequest], Loaded]
    needs: frozenset[str] = frozenset()
    extra: str = ""

    def load(self, request: LoadRequest) -> Loaded:
        try:
            return self.factory(request)
        except ImportError as err:
            missing = (err.name or "").split(".")[0]
            if missing not in self.needs:
                raise
            raise EngineError(self.extra.format(missing=missing)) from err


def _llama_generation(request: LoadRequest) -> Loaded:
    from owl.engine.llama.backend import LlamaCppBackend
    from owl.engine.model import Model

    backend = LlamaCppBackend(
        request.path,
        n_ctx=request.n_ctx,
        threads=request.threads,
        slots=request.slots,
        adapters=request.adapters,
        projector=request.projector,
        cache_types=request.cache_types,
    )
    return Model(backend, name=request.name, defaults=request.defaults)


def _llama_embedding(request: LoadRequest) -> Loaded:
    from owl.engine.llama.embedder import Embedder

    return Embedder(request.path, n_ctx=request.n_ctx, threads=request.threads, name=request.name)


def _transformers_generation(request: LoadRequest) -> Loaded:
    from owl.engine.model import Model
    from owl.engine.transformers.backend import TransformersBackend

    backend = TransformersBackend(
        request.path, n_ctx=request.n_ctx, threads=request.threads, name=request.name
    )
    return Model(backend, name=request.name, defaults=request.defaults)


def _whisper(request: LoadRequest) -> Loaded:
    from owl.engine.whisper import WhisperTranscriber

    return WhisperTranscriber(request.path, name=request.name, threads=request.threads)


def _diffusers(request: LoadRequest) -> Loaded:
    from owl.engine.diffusers import DiffusersDrawer

    return DiffusersDrawer(
        request.path, name=request.name, threads=request.threads, defaults=request.defaults
    )


def _ctc(request: LoadRequest) -> Loaded:
    from owl.engine.transformers.ctc import CtcTranscriber

    return CtcTranscriber(request.path, name=request.name, threads=request.threads)


def _image_embedder(request: LoadRequest) -> Loaded:
    from owl.engine.transformers.image_embedder import ImageEmbedder

    return ImageEmbedder(request.path, name=request.name, threads=request.threads)


def _text_embedder(request: LoadRequest) -> Loaded:
    from owl.engine.transformers.text_embedder import TextEmbedder

    return TextEmbedder(request.path, name=request.name, threads=request.threads)


_IMAGE_EMBEDDING = Entry(
    "safetensors",
    frozenset({Capability.EMBED}),
    _image_embedder,
    needs=frozenset({"torch", "transformers", "safetensors", "PIL"}),
    extra="{missing} is not installed, and owl needs it for image embeddings: "
    "`pip install 'owl[convert,vision]'`",
)
_TEXT_EMBEDDING = Entry(
    "safetensors",
    frozenset({Capability.EMBED}),
    _text_embedder,
    needs=frozenset({"torch", "transformers", "safetensors", "tokenizers"}),
    extra="{missing} is not installed, and owl needs it for text embeddings with "
    "transformers: `pip install 'owl[convert]'`, or `owl convert MODEL` to embed with llama.cpp",
)


def _hf_embedder(request: LoadRequest) -> Loaded:
    """A Hugging Face folder's embedder by its model class: CLIP-style and image-only classes
    go to the image embedder, the rest to the text embedder (which refuses non-encoders)."""
    from owl.engine.transformers.image_embedder import IMAGE_ONLY, PAIRED
    from owl.formats.hf_folder import model_class_of, read_folder_config

    name = model_class_of(read_folder_config(request.path)) or ""
    entry = _IMAGE_EMBEDDING if name.endswith(PAIRED + IMAGE_ONLY) else _TEXT_EMBEDDING
    return entry.load(request)


def _cross_encoder(request: LoadRequest) -> Loaded:
    from owl.engine.transformers.cross_encoder import CrossEncoder

    return CrossEncoder(request.path, name=request.name, threads=request.threads)


def _piper(request: LoadRequest) -> Loaded:
    from owl.engine.piper import PiperVoice

    return PiperVoice(request.path, name=request.name, threads=request.threads)


ENTRIES: tuple[Entry, ...] = (
    Entry("gguf", GENERATION, _llama_generation),
    Entry("gguf", frozenset({Capability.EMBED}), _llama_embedding),
    Entry(
        "safetensors",
        frozenset({Capability.CHAT, Capability.COMPLETE}),
        _transformers_generation,
        needs=frozenset({"torch", "transformers", "safetensors", "tokenizers"}),
        extra=(
            "running a safetensors model needs {missing}, which is not installed: "
            "`pip install 'owl[convert]'`, or `owl convert MODEL` to run it as a GGUF "
            "with llama.cpp"
        ),
    ),
    Entry(
        "safetensors",  # a *ForCTC folder (wav2vec 2.0); CtcTranscriber refuses other classes
        frozenset({Capability.TRANSCRIBE}),
        _ctc,
        needs=frozenset({"torch", "transformers", "safetensors", "tokenizers"}),
        extra="{missing} is not installed, and owl needs it for wav2vec 2.0: "
        "`pip install 'owl[convert]'`",
    ),
    # Text encoders (sentence-transformers folders, BERT-style classes) and CLIP, SigLIP,
    # DINOv2 folders; each of the two entries above says what to install for its kind.
    Entry("safetensors", frozenset({Capability.EMBED}), _hf_embedder),
    Entry(
        "safetensors",  # a *ForSequenceClassification folder with one label: a cross-encoder
        RERANKING,
        _cross_encoder,
        needs=frozenset({"torch", "transformers", "safetensors", "tokenizers"}),
        extra="{missing} is not installed, and owl needs it to rerank with a cross-encoder: "
        "`pip install 'owl[convert]'`",
    ),
    Entry(
        "ctranslate2",
        frozenset({Capability.TRANSCRIBE}),
        _whisper,
        needs=frozenset({"faster_whisper", "ctranslate2", "av"}),
        extra=_AUDIO_EXTRA,
    ),
    Entry(
        "onnx",
        frozenset({Capability.SPEAK}),
        _piper,
        needs=frozenset({"onnxruntime"}),
        extra=_AUDIO_EXTRA,
    ),
    Entry(
        "diffusers",
        DRAWING,
        _diffusers,
        needs=frozenset({"diffusers", "torch", "transformers", "safetensors", "PIL"}),
        extra="{missing} is not installed, and owl needs it to draw: `pip install 'owl[draw]'`",
    ),
)


def formats() -> list[str]:
    """The formats some backend runs, in registry order."""
    return list(dict.fromkeys(entry.format for entry in ENTRIES))


def select(manifest: Manifest, capability: Capability) -> Entry:
    """The entry that runs `manifest`'s format for `capability`; an OwlError saying why not."""
    for entry in ENTRIES:
        if entry.format == manifest.format and capability in entry.capabilities:
            return entry
    raise _refusal(manifest, capability)


def _refusal(manifest: Manifest, capability: Capability) -> OwlError:
    name = manifest.display_name
    if manifest.format == "diffusers":
        return WrongModelKind(
            f"'{name}' is an image generation model (a diffusers pipeline), which owl cannot "
            f"{capability} with; draw with it: `owl draw PROMPT --model {name}`, or "
            "POST /v1/images/generations"
        )
    if capability is Capability.DRAW:
        return WrongModelKind(
            f"'{name}' is a {manifest.format} model, not an image generation one; draw with a "
            "Stable Diffusion pipeline in diffusers' layout (`owl pull ./folder` of one with "
            "model_index.json)"
        )
    if capability is Capability.EMBED:
        return NotEmbeddable(
            f"'{name}' is {manifest.format}; owl makes embeddings with llama.cpp from GGUF "
            "models and with transformers from Hugging Face folders (sentence-transformers "
            "and BERT-style text encoders such as the built-in `minilm`; CLIP, SigLIP, DINOv2): "
            "embed with one of those"
        )
    if capability is Capability.RERANK:
        return WrongModelKind(
            f"'{name}' is a {manifest.format} model, not a cross-encoder; rerank with a "
            "Hugging Face *ForSequenceClassification folder of one label "
            "(hf:cross-encoder/ms-marco-MiniLM-L-6-v2, hf:BAAI/bge-reranker-base), or by a "
            "chat model's query likelihood (POST /v1/rerank with a chat model)"
        )
    if capability is Capability.TRANSCRIBE:
        return WrongModelKind(
            f"'{name}' is a {manifest.format} model, not a speech-to-text one; transcribe with "
            "a Whisper model (the built-in `whisper`, or hf:Systran/faster-whisper-*) or a "
            "wav2vec 2.0 folder (Wav2Vec2ForCTC)"
        )
    if capability is Capability.SPEAK:
        return WrongModelKind(
            f"'{name}' is a {manifest.format} model, not a voice; speak with a Piper voice "
            "(the built-in `piper-joe`)"
        )
    if manifest.format not in formats():
        return EngineError(
            f"model '{name}' is {manifest.format}; owl runs {', '.join(formats())} models. "
            "Convert it to GGUF first (`owl convert`)"
        )
    return EngineError(
        f"model '{name}' is {manifest.format}, which owl cannot {capability} with; "
        "convert it to GGUF first (`owl convert`)"
    )


def capabilities_of(manifest: Manifest, *, store: Store) -> frozenset[Capability]:
    """What a stored model is made for, read from its files without loading it.

    An embedding GGUF (an encoder, or one with a pooling type) embeds, as does a Hugging Face
    folder of an embedding class (hf_capabilities.toml) or in sentence-transformers' layout
    (modules.json); any other model generates with its format's backend, and a GGUF stored
    with a projector also sees. (A causal GGUF can still be loaded for EMBED: it is
    mean-pooled, but it is not made for it.)
    """
    if manifest.format == "gguf":
        from owl.engine.llama.pooling import is_embedding_model
        from owl.formats import inspect

        if is_embedding_model(inspect(store.weights_path(manifest)).metadata):
            return frozenset({Capability.EMBED})
    if manifest.format == "diffusers":
        return DRAWING
    if manifest.format == "safetensors":
        declared = hf_capabilities(manifest, store=store)
        if declared is not None:
            return declared
        if any(entry.filename == SENTENCE_MODULES for entry in manifest.files):
            return frozenset({Capability.EMBED})  # a sentence-transformers folder
    found = [entry.capabilities for entry in ENTRIES if entry.format == manifest.format]
    generating = frozenset().union(*found) - {Capability.EMBED}
    if manifest.format == "safetensors":  # a class the table does not name generates text
        generating -= _BY_CLASS_ONLY
    if manifest.format == "gguf" and manifest.projector is not None:
        generating |= {Capability.SEE}  # its projector (mmproj) turns images into its tokens
    return frozenset(generating)


# Capabilities a Hugging Face folder has only when its model class says so (hf_capabilities.toml).
_BY_CLASS_ONLY = frozenset(
    {Capability.TRANSCRIBE, Capability.EMBED, Capability.SEE, Capability.DRAW, Capability.RERANK}
)


@cache
def _class_suffixes() -> dict[str, frozenset[Capability]]:
    with (Path(__file__).parent / "hf_capabilities.toml").open("rb") as table:
        suffixes = tomllib.load(table)["suffixes"]
    return {suffix: frozenset(Capability(c) for c in caps) for suffix, caps in suffixes.items()}


def model_class(manifest: Manifest, *, store: Store) -> str | None:
    """The model class a stored Hugging Face folder's config.json names (architectures[0])."""
    from owl.formats.hf_folder import model_class_of

    config = _stored_config(manifest, store=store)
    return model_class_of(config) if config is not None else None


def _stored_config(manifest: Manifest, *, store: Store) -> dict[str, Any] | None:
    from owl.formats.hf_folder import read_json

    config = next((f for f in manifest.files if f.filename == "config.json"), None)
    if config is None:
        return None
    try:
        data = read_json(store.blobs.require(config.digest), name="config.json")
    except OwlError:
        return None
    return data if isinstance(data, dict) else None


def hf_capabilities(manifest: Manifest, *, store: Store) -> frozenset[Capability] | None:
    """What a stored Hugging Face folder's model class is made for (hf_capabilities.toml);
    None when no suffix there matches it (it generates text). A sequence classifier of more
    than one label is no reranker, and nothing owl runs: no capabilities."""
    from owl.engine.transformers.cross_encoder import label_count
    from owl.formats.hf_folder import model_class_of

    config = _stored_config(manifest, store=store)
    name = model_class_of(config) if config is not None else None
    if config is None or name is None:
        return None
    for suffix, capabilities in _class_suffixes().items():
        if name.endswith(suffix):
            if Capability.RERANK in capabilities and label_count(config) != 1:
                return frozenset()
            return capabilities
    return None
