"""Which checker a file needs, from its first bytes: content decides, never the name.

A pickle named model.safetensors is still a pickle. A JSON or YAML file with a top-level
chat_template is a template file whatever its name (template_config.py), one with an auto_map
a code config (remote_code.py). Names only matter for text with no structure to recognise
(a .jinja template, a .py file that a loader imports by its name), for tokenizer_config.json
(checked even without a template) and to notice a file that is named like a checkpoint but
holds nothing owl recognises. Protobuf has no magic
either: a SentencePiece model is recognised by reading its fields to the end of the file.
"""

from __future__ import annotations

import struct
from enum import StrEnum
from pathlib import Path

_HEAD = 64

# Names that promise model weights or a pickle; a file with such a name whose content owl
# cannot recognise is unverified, not skipped (a custom loader might still read it).
MODEL_SUFFIXES = frozenset(
    {
        ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".npy", ".npz",
        ".safetensors", ".gguf", ".ggml", ".h5", ".onnx", ".msgpack", ".model", ".tar",
    }
)  # fmt: skip
# What joblib.dump appends for its compressors ("model.pkl.gz"): the name before it counts.
COMPRESSED_SUFFIXES = frozenset({".z", ".gz", ".bz2", ".lzma", ".xz", ".lz4"})


class Kind(StrEnum):
    GGUF = "gguf"
    SAFETENSORS = "safetensors"
    ZIP = "zip"  # torch.save archives, .npz
    NPY = "npy"
    PICKLE = "pickle"
    JOBLIB = "joblib"  # a compressed joblib file (zlib, gzip, bz2, lzma, xz, lz4)
    TAR = "tar"  # torch.save's oldest format, and any tar of pickles
    CTRANSLATE2 = "ctranslate2"  # model.bin of CTranslate2 (faster-whisper): not a pickle
    SENTENCEPIECE = "sentencepiece"  # tokenizer.model: a protobuf ModelProto
    ONNX = "onnx"  # an ONNX ModelProto (Piper voices, exported encoders)
    TOKENIZER_CONFIG = "tokenizer-config"
    TEMPLATE_CONFIG = "template-config"  # JSON or YAML with a chat_template, any name
    JINJA = "jinja"
    CODE_CONFIG = "code-config"  # JSON or YAML with an auto_map: code that transformers runs
    PYTHON = "python"  # a .py file, which a loader with trust_remote_code imports
    UNKNOWN = "unknown"


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack_from("<Q", head)
    # The header is JSON; writers pad it with spaces, never with anything before the "{".
    return 2 <= header_len <= size - 8 and head[8:9] == b"{"


def sniff(path: Path, *, name: str | None = None) -> Kind:
    """The kind of model file at `path`, known as `name` (OSError if it cannot be read).

    Store blobs are named by digest, so the caller passes the file's real name.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(_HEAD)
    if head[:4] == b"GGUF":
        return Kind.GGUF
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return Kind.ZIP
    if head[:6] == b"\x93NUMPY":
        return Kind.NPY
    if _is_safetensors(head, size):
        return Kind.SAFETENSORS
    from owl.formats.ctranslate2 import looks_like_ctranslate2

    if looks_like_ctranslate2(head):
        return Kind.CTRANSLATE2
    from owl.formats.onnx import looks_like_onnx

    if looks_like_onnx(head):  # starts 0x08 (ir_version), so never a SentencePiece model
        return Kind.ONNX
    if head[:1] == b"\x0a":  # protobuf field 1, length-delimited: a SentencePiece piece?
        from owl.scan.sentencepiece import MAX_BYTES, looks_like_sentencepiece

        with path.open("rb") as handle:
            if looks_like_sentencepiece(handle.read(MAX_BYTES)):
                return Kind.SENTENCEPIECE
    from owl.scan.torch_tar import looks_like_tar

    if looks_like_tar(path):
        return Kind.TAR
    from owl.scan.pickles import looks_like_pickle

    if looks_like_pickle(head):
        return Kind.PICKLE
    from owl.scan.joblib_files import looks_like_joblib

    if looks_like_joblib(path, head):
        return Kind.JOBLIB
    name = Path(name or path.name).name.lower()
    if name == "tokenizer_config.json":
        return Kind.TOKENIZER_CONFIG
    if name.endswith(".jinja") or name.endswith(".jinja2"):
        return Kind.JINJA
    if name.endswith(".py"):
        return Kind.PYTHON
    from owl.scan.remote_code import names_code
    from owl.scan.template_config import carries_template, is_text

    if carries_template(path, head):
        return Kind.TEMPLATE_CONFIG
    if is_text(head) and names_code(path):
        return Kind.CODE_CONFIG
    return Kind.UNKNOWN


def promises_model(name: str) -> bool:
    """Whether a file name says it holds weights or a pickle (compressed, too)."""
    path = Path(name.lower())
    if path.suffix in COMPRESSED_SUFFIXES:
        path = path.with_suffix("")
    return path.suffix in MODEL_SUFFIXES
