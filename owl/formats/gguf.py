"""Read a GGUF file's metadata and tensor table (with the `gguf` package) into ModelInfo.

A GGUF file is untrusted input: anything the reader trips over, and any tensor whose
bytes lie past the end of the file, becomes a ModelFormatError, never a traceback.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from owl.errors import ModelFormatError
from owl.formats.info import ModelInfo

MAGIC = b"GGUF"
# Arrays (token lists, merges) are large and say nothing a person reads; keep scalars.
_MAX_METADATA_STRING = 512
_TEMPLATE = "tokenizer.chat_template"


def _file_type_name(value: Any) -> str | None:
    from gguf import LlamaFileType

    try:
        return LlamaFileType(int(value)).name.removeprefix("MOSTLY_")
    except (ValueError, TypeError):
        return None


def _reader_class() -> type:
    """GGUFReader that measures arrays instead of parsing them element by element.

    The stock reader builds one numpy view per array element: 2 s for a 49k-token
    vocabulary. owl only needs an array's length, so arrays of scalars become one view
    and arrays of strings are skipped over by their length prefixes. This overrides a
    helper of the pinned gguf version; tests/formats run it against that version.
    """
    import numpy as np
    from gguf import GGUFReader, GGUFValueType

    class LengthOnlyArrays(GGUFReader):
        def _get_field_parts(self, orig_offs: int, raw_type: int):  # type: ignore[override]
            if GGUFValueType(raw_type) != GGUFValueType.ARRAY:
                return super()._get_field_parts(orig_offs, raw_type)
            raw_itype = self._get(orig_offs, np.uint32)
            count = self._get(orig_offs + 4, np.uint64)
            item_type = GGUFValueType(int(raw_itype[0]))
            offs = orig_offs + 12
            if item_type == GGUFValueType.STRING:
                lengths = self.data
                for _ in range(int(count[0])):
                    length = int(lengths[offs : offs + 8].view(np.uint64)[0])
                    offs += 8 + length
                    if offs > len(lengths):
                        raise ValueError("string array runs past the end of the file")
            elif item_type in self.gguf_scalar_to_np:
                itemsize = np.dtype(self.gguf_scalar_to_np[item_type]).itemsize
                offs += itemsize * int(count[0])
                if offs > len(self.data):
                    raise ValueError("array runs past the end of the file")
            else:
                return super()._get_field_parts(orig_offs, raw_type)
            return offs - orig_offs, [raw_itype, count], [], [GGUFValueType.ARRAY, item_type]

    return LengthOnlyArrays


def _value(field: Any) -> Any:
    """A scalar's value, or an array's length (see _reader_class)."""
    from gguf import GGUFValueType

    if field.types and field.types[0] == GGUFValueType.ARRAY and not field.data:
        return ArrayLength(int(field.parts[-1][0]))
    try:
        return field.contents()
    except (ValueError, IndexError, UnicodeDecodeError):
        return None


class ArrayLength(int):
    """Stands for an array value that owl measured but did not read."""


def read_gguf(path: Path) -> ModelInfo:
    """Parse `path` as GGUF; raise ModelFormatError when it is not a whole, valid file."""
    try:
        reader = _reader_class()(path, "r")
        fields = {
            key: _value(field)
            for key, field in reader.fields.items()
            if not key.startswith("GGUF.")
        }
        tensors = list(reader.tensors)
    except ModelFormatError:
        raise
    except Exception as err:  # the gguf reader signals damage with many exception types
        raise ModelFormatError(
            f"{path.name} is not a valid GGUF file ({type(err).__name__}: {err}); "
            "it may be truncated or corrupt: download it again"
        ) from err

    file_size = path.stat().st_size
    for tensor in tensors:
        if tensor.data_offset + tensor.n_bytes > file_size:
            raise ModelFormatError(
                f"{path.name} is truncated: tensor {tensor.name!r} ends at byte "
                f"{tensor.data_offset + tensor.n_bytes:,} but the file has {file_size:,}; "
                "download it again"
            )

    arch = fields.get("general.architecture")
    arch_key = str(arch) if arch else ""

    def arch_int(suffix: str) -> int | None:
        value = fields.get(f"{arch_key}.{suffix}")
        return int(value) if isinstance(value, (int, float)) else None

    tokens = fields.get("tokenizer.ggml.tokens")
    template = fields.get(_TEMPLATE)
    license_id = fields.get("general.license")
    scalars = {
        key: value
        for key, value in fields.items()
        if (isinstance(value, (int, float, bool)) and not isinstance(value, ArrayLength))
        or (isinstance(value, str) and len(value) <= _MAX_METADATA_STRING and key != _TEMPLATE)
    }
    return ModelInfo(
        format="gguf",
        architecture=arch_key or None,
        name=fields.get("general.name") if isinstance(fields.get("general.name"), str) else None,
        parameters=sum(int(tensor.n_elements) for tensor in tensors),
        quantization=_file_type_name(fields.get("general.file_type")),
        tensor_types=dict(Counter(tensor.tensor_type.name for tensor in tensors)),
        context_length=arch_int("context_length"),
        embedding_length=arch_int("embedding_length"),
        block_count=arch_int("block_count"),
        head_count=arch_int("attention.head_count"),
        vocab_size=int(tokens) if isinstance(tokens, ArrayLength) else None,
        chat_template=template if isinstance(template, str) else None,
        license=license_id if isinstance(license_id, str) else None,
        metadata=scalars,
    )
