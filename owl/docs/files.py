"""Which files under the folders named are documents owl may read, and which are skipped, why.

Documents are untrusted input. The walk never reads outside the folders (and files) it was
given: a symlink is followed only when it resolves inside one of them. It reads only regular
files, checks a file's size by stat before opening it, and names a file's kind by its extension
and its first bytes together. Hidden files and folders (a leading dot: .git, .venv, .DS_Store)
are passed over without a word, as `ls` and `rg` do; a root that is itself hidden is walked.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import owl.docs.sniff as sniff
from owl.docs.plugins import plugin_readers
from owl.docs.types import Skipped
from owl.errors import ConfigError, DocumentError

MiB = 1024 * 1024

# Extension → the kind of the built-in reader for it. A plugin cannot replace these: the
# built-in readers are the ones hardened against hostile files.
BUILTIN_KINDS: Mapping[str, str] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}
TEXT_KINDS = frozenset({"markdown", "text", "html"})


@dataclass(frozen=True)
class Limits:
    """How much of a document owl will read before it skips the file as too much."""

    max_file_bytes: int = 64 * MiB
    max_pdf_pages: int = 2000
    max_chars: int = 20_000_000  # characters of text in one file, all pages together
    # A PDF's streams are compressed: these cap what one stream may inflate to (the bomb),
    # and the bytes decoded for one stream across its chain of filters.
    pdf_max_stream_bytes: int = 32 * MiB
    pdf_max_decode_work: int = 128 * MiB
    # The decoded content streams of all pages together: pypdf parses them in Python at a few
    # MB a second, so this bounds the time a PDF of many small, dense bombs can take.
    pdf_max_content_bytes: int = 256 * MiB

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"document limit {field.name} must be a positive integer")


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Candidate:
    """A file to read: `path` resolved, `display` as the user would name it, its `kind`."""

    path: Path
    display: str
    kind: str
    size: int


@dataclass(frozen=True)
class _Root:
    resolved: Path
    display: str
    is_dir: bool


def walk(
    roots: Sequence[Path], *, limits: Limits = DEFAULT_LIMITS
) -> Iterator[Candidate | Skipped]:
    """Every file under `roots` (folders recursively, in sorted order) as a Candidate to read
    or a Skipped with its reason. A file reached twice (two roots, a symlink) comes once.

    Raises DocumentError at once for a root that does not exist.
    """
    named = _roots(roots)
    plugins = frozenset(ext for ext in plugin_readers() if f".{ext}" not in BUILTIN_KINDS)
    return _walk(named, limits=limits, plugins=plugins)


def read_bytes(candidate: Candidate, *, limits: Limits) -> bytes:
    """The bytes of a candidate, read without following a symlink swapped in since the walk
    and never more than `limits.max_file_bytes`; DocumentError if that cannot be done."""
    try:
        fd, size = _open_regular(candidate.path)
    except OSError as err:
        raise DocumentError(f"cannot read it: {err.strerror or err}") from None
    limit = limits.max_file_bytes
    with os.fdopen(fd, "rb") as file:
        # read(n) allocates n bytes up front: ask for what stat says, not for the limit.
        data = file.read(min(size, limit) + 1)
        if len(data) > size:  # it grew since: read on, still no further than the limit
            data += file.read(limit + 1 - len(data))
    if len(data) > limit:
        raise DocumentError(_too_large(len(data), limits, grew=True))
    return data


def too_much_text(limits: Limits) -> str:
    """The skip reason of a file with more text than `limits.max_chars`."""
    return f"too much text (over {limits.max_chars:,} characters in one file); split it"


def supported_extensions(plugins: frozenset[str] = frozenset()) -> str:
    """The extensions owl reads, for a skip reason: '.md .txt … .pdf' and the plugins'."""
    names = list(dict.fromkeys(BUILTIN_KINDS)) + sorted(f".{p}" for p in plugins)
    return " ".join(names)


def _roots(roots: Sequence[Path]) -> list[_Root]:
    given = [Path(os.path.normpath(Path(root).expanduser().absolute())) for root in roots]
    names = [path.name or str(path) for path in given]
    named = []
    for path, name in zip(given, names, strict=True):
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise DocumentError(f"no such file or folder: {path}; check the path") from None
        # Two roots called alike (a/notes, b/notes) would give their files the same names.
        display = name if names.count(name) == 1 else str(path)
        named.append(_Root(resolved=resolved, display=display, is_dir=resolved.is_dir()))
    return named


def _walk(
    roots: list[_Root], *, limits: Limits, plugins: frozenset[str]
) -> Iterator[Candidate | Skipped]:
    seen_files: set[Path] = set()
    seen_dirs: set[Path] = set()
    for root in roots:
        if not root.is_dir:
            if root.resolved not in seen_files:
                seen_files.add(root.resolved)
                yield _classify(root.resolved, root.display, limits=limits, plugins=plugins)
            continue
        if root.resolved in seen_dirs:
            continue
        seen_dirs.add(root.resolved)
        # An explicit stack, not recursion: a deep tree must not hit Python's recursion limit.
        stack = [(root.resolved, root.display, iter(_entries(root.resolved)))]
        while stack:
            folder, display, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                continue
            if isinstance(entry, OSError):
                yield Skipped(display, f"cannot list this folder: {entry.strerror or entry}")
                continue
            shown = f"{display.rstrip('/')}/{entry}"
            target = _target(folder / entry, roots)
            if isinstance(target, Skipped):
                yield Skipped(shown, target.reason)
                continue
            path, mode = target
            if stat.S_ISDIR(mode):
                if any(path == above for above, _, _ in stack):
                    yield Skipped(shown, f"symlink loop: it points back to {path}")
                elif path not in seen_dirs:
                    seen_dirs.add(path)
                    stack.append((path, shown, iter(_entries(path))))
            elif path not in seen_files:
                seen_files.add(path)
                yield _classify(path, shown, limits=limits, plugins=plugins)


def _entries(folder: Path) -> list[str] | list[OSError]:
    try:
        names = os.listdir(folder)
    except OSError as err:
        return [err]
    return sorted(name for name in names if not name.startswith("."))


def _target(path: Path, roots: list[_Root]) -> tuple[Path, int] | Skipped:
    """Where `path` leads (itself, or a symlink's resolved target) and its mode; Skipped when
    it is a symlink out of the roots, a broken one, or cannot be stat'ed."""
    try:
        mode = path.lstat().st_mode
    except OSError as err:
        return Skipped(str(path), f"cannot stat it: {err.strerror or err}")
    if not stat.S_ISLNK(mode):
        return path, mode
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return Skipped(str(path), f"broken symlink (to {os.readlink(path)})")
    if not any(_inside(resolved, root) for root in roots):
        return Skipped(str(path), f"symlink to {resolved} outside the folders named")
    try:
        return resolved, resolved.stat().st_mode
    except OSError as err:
        return Skipped(str(path), f"cannot stat it: {err.strerror or err}")


def _inside(path: Path, root: _Root) -> bool:
    return path.is_relative_to(root.resolved) if root.is_dir else path == root.resolved


def _classify(
    path: Path, display: str, *, limits: Limits, plugins: frozenset[str]
) -> Candidate | Skipped:
    try:
        info = path.stat()
    except OSError as err:
        return Skipped(display, f"cannot stat it: {err.strerror or err}")
    if not stat.S_ISREG(info.st_mode):
        return Skipped(display, f"not a regular file ({_file_type(info.st_mode)})")
    # The name the user sees (a symlink's own) gives the kind; the bytes must agree with it.
    suffix = Path(display).suffix.lower()
    kind = BUILTIN_KINDS.get(suffix) or (suffix[1:] if suffix[1:] in plugins else None)
    if kind is None:
        what = f"type {suffix}" if suffix else "type (no extension)"
        return Skipped(display, f"unsupported {what} (owl reads {supported_extensions(plugins)})")
    if info.st_size > limits.max_file_bytes:
        return Skipped(display, _too_large(info.st_size, limits, grew=False))
    if info.st_size == 0:
        return Skipped(display, "empty file")
    if kind in TEXT_KINDS or kind == "pdf":
        reason = _sniff(path, kind, size=info.st_size)
        if reason is not None:
            return Skipped(display, reason)
    return Candidate(path=path, display=display, kind=kind, size=info.st_size)


def _sniff(path: Path, kind: str, *, size: int) -> str | None:
    """The reason a file's first bytes contradict its kind, or None when they agree."""
    try:
        fd, _ = _open_regular(path)
    except OSError as err:
        return f"cannot read it: {err.strerror or err}"
    with os.fdopen(fd, "rb") as file:
        head = file.read(sniff.HEAD_BYTES)
    try:
        if kind == "pdf":
            sniff.check_pdf_head(head)
        else:
            sniff.check_text_head(head, whole=size <= len(head))
    except DocumentError as err:
        return str(err)
    return None


def _open_regular(path: Path) -> tuple[int, int]:
    """An fd of `path` opened read-only, and its size; refuses a symlink and anything but a
    regular file. O_NONBLOCK: a fifo swapped in after the walk must not hang the open."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise OSError(0, "not a regular file any more")
    return fd, info.st_size


def _file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a fifo"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "a special file"


def _too_large(size: int, limits: Limits, *, grew: bool) -> str:
    what = "it grew past" if grew else f"{_human(size)}, over"
    return f"too large ({what} the limit of {_human(limits.max_file_bytes)} a file); split it"


def _human(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    scaled = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        scaled /= 1024
        if scaled < 1024 or unit == "GiB":
            break
    return f"{scaled:.1f} {unit}"
