"""Compressed joblib files: decompress as joblib.load does, then scan the pickle inside.

joblib.load picks a decompressor by the file's first bytes (joblib's compressor registry):
"ZF" (joblib < 0.10: a hex length, then zlib), zlib, gzip, bz2, lzma, xz and lz4. What
comes out is the same stream as an uncompressed joblib file (a pickle with array bytes
inside), scanned with the JOBLIB loader (joblib_arrays); the old "ZF" files hold a plain
pickle whose arrays live in other files (NDArrayWrapper, a finding of its own).

Nothing is decompressed into memory or onto disk whole: the stream is read through
Decompressed, one window at a time, first to its end (its size, and MAX_DECOMPRESSED
against bombs), then again for the scan. lz4 is not in Python's standard library, so an
lz4 file is Unverified.
"""

from __future__ import annotations

import bz2
import io
import lzma
import re
import zlib
from pathlib import Path
from typing import BinaryIO

from owl.scan.findings import Finding, Unverified
from owl.scan.joblib_arrays import JOBLIB
from owl.scan.pickle_ops import PICKLE
from owl.scan.pickles import looks_like_pickle, mislabelled, scan_pickle_stream

# Decompressed bytes owl reads of one file: far above the pickle and arrays of a real
# compressed model, and the bound on what a decompression bomb can cost.
MAX_DECOMPRESSED = 4 * 1024**3
_CHUNK = 1024 * 1024
_WINDOW = 4 * 1024 * 1024  # kept behind the read position, for short backward seeks
_MAX_RESTARTS = 16

# joblib's registry, in the order its _detect_compressor tries them.
_MAGIC = (
    (b"ZF", "compat"),
    (b"\x78", "zlib"),
    (b"\x1f\x8b", "gzip"),
    (b"BZ", "bz2"),
    (b"\x5d\x00", "lzma"),
    (b"\xfd\x37\x7a\x58\x5a", "xz"),
    (b"\x04\x22\x4d\x18", "lz4"),
)
_ZLIB_WBITS = {"zlib": 15, "gzip": 31, "compat": 15}
_COMPAT_HEADER = re.compile(rb"ZF(0x[0-9a-f]+) *")
_COMPAT_LENGTH = 19  # len(hex(2**64)): the hex length is padded to it


def compressor(head: bytes) -> str | None:
    """The joblib compressor whose magic starts `head`, if any."""
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


def looks_like_joblib(path: Path, head: bytes) -> bool:
    """Whether the file is compressed the way joblib compresses and holds a pickle (lz4,
    which owl cannot decompress, counts on its magic alone)."""
    name = compressor(head)
    if name is None or name == "compat" and not _COMPAT_HEADER.match(head):
        return False
    if name == "lz4":
        return True
    try:  # bz2 gives nothing before a whole block: up to 900 kB, within the cap
        with Decompressed(path, name, cap=_CHUNK, sniffing=True) as stream:
            return looks_like_pickle(stream.read(64))
    except (Unverified, OSError, EOFError, zlib.error, lzma.LZMAError):
        return False


def scan_joblib(path: Path, *, file: str) -> list[Finding]:
    """Scan a compressed joblib file: the pickle inside, its arrays stepped over."""
    with path.open("rb") as raw:
        head = raw.read(64)
    name = compressor(head)
    if name is None:
        raise Unverified("not a compressed joblib file (no compressor magic)")
    if name == "lz4":
        raise Unverified(
            "lz4-compressed (joblib's compress='lz4'): lz4 is not in Python's standard "
            "library, so owl cannot decompress it and check the pickle inside"
        )
    where = f"{name}-decompressed"
    mislabel = mislabelled(file, "a compressed pickle")
    try:
        with Decompressed(path, name, cap=MAX_DECOMPRESSED) as stream:
            size = stream.measure()
            declared = stream.declared
            if declared is not None and declared != size:
                raise Unverified(f"the header says {declared} bytes, the stream holds {size}")
            loader = PICKLE if name == "compat" else JOBLIB
            buffered = io.BufferedReader(stream, _CHUNK)  # genops reads an opcode at a time
            found = scan_pickle_stream(buffered, size=size, file=file, where=where, loader=loader)
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as error:
        raise Unverified(f"cannot decompress the {name} stream: {error}") from error
    return found + ([mislabel] if mislabel else [])


class Decompressed(io.RawIOBase):
    """The decompressed stream of a joblib file, seekable: reads decompress forward, a
    backward seek within the last _WINDOW bytes is served from memory, a longer one
    decompresses again from the start. Past `cap` decompressed bytes it raises Unverified
    (a bomb, or more than owl reads). `declared` is the length a "ZF" header gives.
    `sniffing` reads a head only, and does not mind what follows the stream."""

    def __init__(self, path: Path, name: str, *, cap: int, sniffing: bool = False) -> None:
        self._path, self._name, self._cap, self._sniffing = path, name, cap, sniffing
        self._restarts = -1
        self.declared: int | None = None
        self._start()

    def _start(self) -> None:
        self._restarts += 1
        if self._restarts > _MAX_RESTARTS:
            raise Unverified(f"owl had to decompress the stream more than {_MAX_RESTARTS} times")
        self._file = self._path.open("rb")
        try:
            self._inner = self._open_inner()
        except BaseException:
            self._file.close()
            raise
        self._buffer = bytearray()
        self._buffer_start = 0  # the stream offset of _buffer[0]
        self._pos = 0
        self._at_end = False

    def _open_inner(self) -> BinaryIO | _OneZlibStream:
        if self._name == "compat":
            header = self._file.read(2 + _COMPAT_LENGTH)
            match = _COMPAT_HEADER.match(header)
            if not match:
                raise Unverified("a joblib 'ZF' file whose length header is not hex")
            self.declared = int(match.group(1), 16)
            if self.declared > self._cap:
                raise Unverified(f"the header promises {self.declared} bytes; {self._limit()}")
            if self._file.read(1) != b" ":  # a wider header of joblib <= 0.8.4, or not
                self._file.seek(2 + _COMPAT_LENGTH)
        if self._name in _ZLIB_WBITS:
            # joblib < 0.10 read "ZF" files with zlib.decompress, which ignores what follows
            strict = not self._sniffing and self._name != "compat"
            return _OneZlibStream(self._file, _ZLIB_WBITS[self._name], self._name, strict)
        if self._name == "bz2":
            return bz2.BZ2File(self._file)  # what joblib reads with: streams back to back
        return lzma.LZMAFile(self._file)  # lzma and xz alike, as joblib opens both

    def _limit(self) -> str:
        return f"owl decompresses at most {self._cap:,} bytes of a file (a decompression bomb?)"

    def _fill(self, upto: int) -> None:
        """Decompress until the buffer reaches offset `upto` or the stream ends."""
        while not self._at_end and self._buffer_start + len(self._buffer) < upto:
            # no more than asked: bz2 and lzma raise on a cut stream rather than return
            # what they had, so a head is read even from a cut file
            wanted = upto - self._buffer_start - len(self._buffer)
            chunk = self._inner.read(min(wanted, _CHUNK))
            if not chunk:
                self._at_end = True
                break
            self._buffer += chunk
            if self._buffer_start + len(self._buffer) > self._cap:
                raise Unverified(f"the {self._name} stream decompresses past {self._limit()}")
            behind = min(self._pos - _WINDOW - self._buffer_start, len(self._buffer))
            if behind > 0:
                del self._buffer[:behind]
                self._buffer_start += behind

    def measure(self) -> int:
        """Decompress to the end (checking the cap and the stream), then rewind."""
        self._pos = self._cap + 1
        self._fill(self._cap + 1)
        size = self._buffer_start + len(self._buffer)
        self.seek(0)
        return size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self._pos + offset
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target < 0:
            raise OSError("Decompressed seeks only to an offset from the start or here")
        if target < self._buffer_start:
            self._close_inner()
            self._start()
        self._pos = target
        return target

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        self._fill(self._pos + len(buffer))
        start = self._pos - self._buffer_start
        data = self._buffer[start : start + len(buffer)]
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def _close_inner(self) -> None:
        self._inner.close()
        self._file.close()

    def close(self) -> None:
        if not self.closed:
            self._close_inner()
        super().close()


class _OneZlibStream:
    """One zlib (or gzip) stream, as joblib's BinaryZlibFile reads it. joblib feeds bytes
    after the end of the stream back to the finished decompressor for ever (it never
    returns), so such bytes make the file Unverified rather than ignored."""

    def __init__(self, file: BinaryIO, wbits: int, name: str, strict: bool) -> None:
        self._file, self._name, self._strict = file, name, strict
        self._decompressor = zlib.decompressobj(wbits)

    def read(self, n: int) -> bytes:
        while not self._decompressor.eof:
            data = self._decompressor.unconsumed_tail or self._file.read(_CHUNK)
            if not data:
                raise EOFError(f"the {self._name} stream is cut off before its end")
            out = self._decompressor.decompress(data, n)
            if out:
                self._check_end()
                return out
        self._check_end()
        return b""

    def _check_end(self) -> None:
        if (
            self._strict
            and self._decompressor.eof
            and (self._decompressor.unused_data or self._file.read(1))
        ):
            raise Unverified(
                f"bytes follow the end of the {self._name} stream: joblib.load never "
                "finishes reading such a file"
            )

    def close(self) -> None:
        pass
