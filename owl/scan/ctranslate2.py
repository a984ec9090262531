"""Check a CTranslate2 model.bin: a tensor container that runs no code, if its header is whole.

The layout is read by owl/formats/ctranslate2.py; a header whose counts or sizes do not fit
the file is unverified, never clean: CTranslate2 trusts them when it maps the tensors.
"""

from __future__ import annotations

from pathlib import Path

from owl.errors import ModelFormatError
from owl.formats.ctranslate2 import read_layout
from owl.scan.findings import Finding, Unverified


def scan_ctranslate2(path: Path, *, file: str) -> list[Finding]:
    try:
        read_layout(path)
    except ModelFormatError as err:
        raise Unverified(str(err)) from None
    return []
