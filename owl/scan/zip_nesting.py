"""Zips inside zips: how deep owl follows them and how much it decompresses on the way.

A zip member that is itself a zip (any name: a bundle of checkpoints, an .npz inside a
zip) is scanned like the outer one (archives.py), down to MAX_ZIP_DEPTH levels. Every
byte owl decompresses from one outermost zip, the copies of inner zips and the members it
reads inside any of them, comes out of one budget of MAX_ARCHIVE_BYTES, so a nested zip
bomb is Unverified, naming the limit, long before it fills memory or disk. Locations name
the way in: "inner.zip → data.pkl, opcode offset 12".

An inner zip is copied out of its member first (in memory up to a few MiB, then to a
temporary file): zipfile reads the central directory at the end and then seeks back to
each member, which on a compressed member would mean decompressing it again each time.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from owl.scan.findings import Unverified

MAX_ZIP_DEPTH = 3  # zips inside the outermost one, one within the other
MAX_ARCHIVE_BYTES = 4 * 1024**3  # decompressed from one outermost zip, all levels together
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty zip's end
_IN_MEMORY = 8 * 1024 * 1024
_COPY_CHUNK = 1024 * 1024


@dataclass
class _Budget:
    left: int


@dataclass(frozen=True)
class Nesting:
    """Where in the nesting a zip is (the names of the zips around it) and the budget."""

    names: tuple[str, ...]
    budget: _Budget

    @classmethod
    def outermost(cls) -> Nesting:
        return cls((), _Budget(MAX_ARCHIVE_BYTES))

    @property
    def prefix(self) -> str:
        """What a location inside this zip starts with: "" in the outermost one."""
        return "".join(f"{name} → " for name in self.names)

    def charge(self, size: int, where: str) -> None:
        """Take `size` decompressed bytes out of the budget, or raise Unverified."""
        if size > self.budget.left:
            raise Unverified(
                f"reading it would take owl past {MAX_ARCHIVE_BYTES:,} decompressed bytes "
                "for one zip and the zips inside it (a nested zip bomb?)",
                location=where,
            )
        self.budget.left -= size


@contextmanager
def open_inner(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, nesting: Nesting
) -> Iterator[tuple[zipfile.ZipFile, Nesting]]:
    """The zip held in member `info`, and its place in the nesting; Unverified when it is
    nested too deep or too large for what is left of the budget."""
    where = nesting.prefix + info.filename
    if len(nesting.names) >= MAX_ZIP_DEPTH:
        raise Unverified(
            f"a zip nested more than {MAX_ZIP_DEPTH} deep; owl follows zips no deeper",
            location=where,
        )
    # zipfile stops a member at its declared size (and then checks the CRC), so the
    # declared size bounds what this copy decompresses.
    nesting.charge(info.file_size, where)
    with tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY) as copy:
        with archive.open(info) as member:
            shutil.copyfileobj(member, copy, _COPY_CHUNK)
        copy.seek(0)
        with zipfile.ZipFile(copy) as inner:
            yield inner, Nesting((*nesting.names, info.filename), nesting.budget)
