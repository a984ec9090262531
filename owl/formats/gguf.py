"""Read a GGUF file's header: checked against llama.cpp's rules, then into ModelInfo.

A GGUF file is untrusted input. read_gguf_header reads it with the bounded reader of
owl.formats.gguf_layout and raises GGUFError for anything llama.cpp would refuse or misread,
including a tensor whose bytes lie past the end of the file; read_gguf turns that into a
ModelFormatError that names the file, never a traceback. Neither reads tensor data.
"""

from __future__ import annotations

import math
import mmap
from collections import Counter
from pathlib import Path
from typing import Any

from owl.errors import ModelFormatError
from owl.formats.gguf_layout import (
    CORRUPT,
    MAGIC,
    GGUFArray,
    GGUFError,
    GGUFHeader,
    Reader,
    TensorInfo,
    TensorPastEnd,
    Value,
    pad,
    read_metadata,
    read_tensor_info,
    shown,
    type_name,
)
from owl.formats.info import ModelInfo

__all__ = ["MAGIC", "read_gguf", "read_gguf_header"]

# Arrays (token lists, merges) are large and say nothing a person reads; keep scalars.
_MAX_METADATA_STRING = 512
_TEMPLATE = "tokenizer.chat_template"


def read_gguf_header(path: Path, *, kv: dict[str, Value] | None = None) -> GGUFHeader:
    """Read and check the header of the GGUF file at `path`; raise GGUFError if it is bad.

    Reads the metadata (arrays measured, not read) and the tensor table, and checks that
    every tensor's data lies, aligned and in order, inside the file; never reads tensor
    data. `kv`, when given, is filled as the metadata is read, so that a caller still has
    the entries before a defect (a chat template to check) when this raises. A file that
    cannot be opened or read raises OSError.
    """
    kv = {} if kv is None else kv
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        if size <= len(MAGIC):
            raise GGUFError(
                f"the file has {size} bytes, too few for a GGUF header; {CORRUPT}",
                location="header",
            )
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            reader = Reader(data, size)
            version, n_tensors, alignment = read_metadata(reader, kv)
            tensors = [read_tensor_info(reader, index) for index in range(n_tensors)]
            data_offset = _check_data_layout(reader, tensors, alignment)
    return GGUFHeader(version, alignment, kv, tensors, data_offset, size)


def _check_data_layout(reader: Reader, tensors: list[TensorInfo], alignment: int) -> int:
    """Where the data section starts, once every tensor is where llama.cpp expects it."""
    names: set[str] = set()
    for tensor in tensors:
        if tensor.name in names:
            reader.where = f"tensor {shown(tensor.name)}"
            raise reader.fail(f"two tensors are named {shown(tensor.name)}")
        names.add(tensor.name)
    if not tensors:
        return reader.pos
    reader.where = "header"
    start = pad(reader.pos, alignment)
    if start > reader.size:
        raise reader.fail(
            f"the tensor data should start at byte {start:,}, past the end of the "
            f"{reader.size:,}-byte file; {CORRUPT}"
        )
    expected = 0
    for tensor in tensors:
        reader.where = f"tensor {shown(tensor.name)}"
        if tensor.offset % alignment:
            raise reader.fail(
                f"its data offset {tensor.offset:,} is not a multiple of the file's "
                f"alignment ({alignment})"
            )
        if tensor.offset != expected:
            raise reader.fail(
                f"its data starts at offset {tensor.offset:,}, but the tensors before it end "
                f"at {expected:,}; llama.cpp requires tensors in order, without gaps or overlaps"
            )
        end = start + tensor.offset + tensor.n_bytes
        if end > reader.size:
            raise TensorPastEnd(
                f"tensor {shown(tensor.name)} claims {tensor.n_bytes:,} bytes at offset "
                f"{start + tensor.offset:,}, past the end of the {reader.size:,}-byte file; "
                f"{CORRUPT}",
                location=reader.where,
                tensor=tensor.name,
                end=end,
                size=reader.size,
            )
        expected += pad(tensor.n_bytes, alignment)
    return start


def read_gguf(path: Path) -> ModelInfo:
    """Parse `path` as GGUF; raise ModelFormatError when it is not a whole, valid file."""
    try:
        header = read_gguf_header(path)
    except TensorPastEnd as err:
        raise ModelFormatError(
            f"{path.name} is truncated: tensor {shown(err.tensor)} ends at byte {err.end:,} "
            f"but the file has {err.size:,}; download it again"
        ) from err
    except GGUFError as err:
        where = f"{err.location}: " if err.location else ""
        reason = err.reason.removesuffix(f"; {CORRUPT}")  # said once, below
        raise ModelFormatError(
            f"{path.name} is not a valid GGUF file ({where}{reason}); "
            "it may be truncated or corrupt: download it again"
        ) from err
    except OSError as err:
        raise ModelFormatError(f"cannot read {path}: {err.strerror or err}") from err
    return _model_info(header)


def _model_info(header: GGUFHeader) -> ModelInfo:
    fields = header.kv
    arch = fields.get("general.architecture")
    arch_key = arch if isinstance(arch, str) else ""

    def arch_int(suffix: str) -> int | None:
        return _whole_number(fields.get(f"{arch_key}.{suffix}"))

    tokens = fields.get("tokenizer.ggml.tokens")
    scalars = {
        key: value
        for key, value in fields.items()
        if isinstance(value, (int, float, bool))
        or (isinstance(value, str) and len(value) <= _MAX_METADATA_STRING and key != _TEMPLATE)
    }
    return ModelInfo(
        format="gguf",
        architecture=arch_key or None,
        name=_text(fields.get("general.name")),
        parameters=sum(math.prod(tensor.shape) for tensor in header.tensors),
        quantization=_file_type_name(fields.get("general.file_type")),
        tensor_types=dict(Counter(type_name(tensor.type) for tensor in header.tensors)),
        context_length=arch_int("context_length"),
        embedding_length=arch_int("embedding_length"),
        block_count=arch_int("block_count"),
        head_count=arch_int("attention.head_count"),
        vocab_size=tokens.count if isinstance(tokens, GGUFArray) else None,
        # A template over gguf_layout.MAX_DECODED_STRING is measured, not read: none here,
        # and `owl scan` calls such a file unverified.
        chat_template=_text(fields.get(_TEMPLATE)),
        license=_text(fields.get("general.license")),
        metadata=scalars,
    )


def _text(value: Value | None) -> str | None:
    return value if isinstance(value, str) else None


def _whole_number(value: Value | None) -> int | None:
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return int(value)
    return None


def _file_type_name(value: Any) -> str | None:
    from gguf import LlamaFileType

    number = _whole_number(value)
    try:
        return LlamaFileType(number).name.removeprefix("MOSTLY_") if number is not None else None
    except ValueError:
        return None
