"""Write CTranslate2 model.bin bytes by hand (the layout of ctranslate2's own serializer), so
tests can build whole, truncated and lying files."""

from __future__ import annotations

import math
import struct

WIDTHS = (4, 1, 2, 4, 2, 2)  # float32, int8, int16, int32, float16, bfloat16


def name(text: str | bytes) -> bytes:
    raw = (text.encode() if isinstance(text, str) else text) + b"\0"
    return struct.pack("<H", len(raw)) + raw


def variable(
    label: str, shape: tuple[int, ...], dtype: int = 0, *, size: int | None = None
) -> bytes:
    data = bytes(math.prod(shape) * WIDTHS[dtype])
    declared = len(data) if size is None else size
    head = (
        name(label) + struct.pack("<B", len(shape)) + b"".join(struct.pack("<I", d) for d in shape)
    )
    return head + struct.pack("<BI", dtype, declared) + data


def model_bin(
    variables: list[bytes] | None = None,
    aliases: list[tuple[str, str]] = (),  # type: ignore[assignment]
    *,
    version: int = 6,
    spec: str = "WhisperSpec",
) -> bytes:
    if variables is None:
        variables = [variable("encoder/conv1/weight", (4, 2)), variable("decoder/alibi", (), 1)]
    body = struct.pack("<I", version) + name(spec) + struct.pack("<II", 3, len(variables))
    body += b"".join(variables) + struct.pack("<I", len(aliases))
    return body + b"".join(name(alias) + name(target) for alias, target in aliases)
