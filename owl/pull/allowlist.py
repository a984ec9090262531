"""The registry allowlist: OWL_ALLOWED_SOURCES=hf:MyOrg/*,https://models.example/*,package:*.

For teams that trust only their own mirror. When any pattern is set, a pull whose source
matches none is refused before a byte is fetched; `pull()` calls `check_source` for every
reference it fetches (a built-in name or a catalog entry is checked as the source it resolves
to), so the CLI, the server's /api/pull and `pull --locked` all pass the same gate.

A source is matched as one canonical string, so that the spellings of one place agree:
    hf:Org/Repo/file.gguf          (hf:// and the Hub's case-insensitive repository ids)
    https://host[:port]/path?query (no user info, the default port dropped, host lower case)
    package:dist/path/in/dist.gguf
    file:/absolute/resolved/path
Patterns are shell-style (fnmatch: `*` also matches `/`). The URL first asked for is checked,
not its redirects: the mirror the team trusts chooses where it sends a download.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from owl.config import Settings
from owl.errors import SourceNotAllowed
from owl.store.ref import ModelRef, RefKind

_DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_source(ref: ModelRef) -> str:
    """The one string an allowlist pattern is matched against (see the module docstring)."""
    if ref.kind is RefKind.HF:
        return f"hf:{ref.repo_id}/{ref.filename or ''}".lower()
    if ref.kind is RefKind.URL:
        assert ref.url is not None
        parts = urlsplit(ref.url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        if ":" in host:  # an IPv6 literal keeps its brackets
            host = f"[{host}]"
        port = parts.port
        netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
        query = f"?{parts.query}" if parts.query else ""
        return f"{scheme}://{netloc}{parts.path}{query}"
    if ref.kind is RefKind.PACKAGE:
        return f"package:{ref.distribution}/{ref.filename}"
    if ref.kind is RefKind.FILE:
        assert ref.path is not None
        return f"file:{ref.path.expanduser().resolve().as_posix()}"
    raise ValueError(f"a {ref.kind} reference is not a source")  # names resolve to one first


def _canonical_pattern(pattern: str) -> str:
    # The parts matched without regard to case are lowered in the pattern as well.
    lowered = pattern.lower()
    if lowered.startswith("hf:"):
        return lowered
    for scheme in ("http://", "https://"):
        if lowered.startswith(scheme):
            host, slash, rest = pattern[len(scheme) :].partition("/")
            return scheme + host.lower() + slash + rest
    if lowered.startswith("package:"):
        return "package:" + pattern[len("package:") :]
    if lowered.startswith("file:"):
        return "file:" + pattern[len("file:") :]
    return pattern


def source_allowed(ref: ModelRef, patterns: list[str]) -> bool:
    """Whether `ref` matches one of `patterns` (no patterns: every source is allowed)."""
    if not patterns:
        return True
    source = canonical_source(ref)
    return any(fnmatchcase(source, _canonical_pattern(pattern)) for pattern in patterns)


def check_source(ref: ModelRef, *, settings: Settings, via: str | None = None) -> None:
    """Raise SourceNotAllowed when OWL_ALLOWED_SOURCES has patterns and `ref` matches none.

    `via` is the name the user gave when the source came from a built-in name or the catalog.
    """
    patterns = settings.source_patterns
    # A name (a catalog entry naming an alias) is checked as the source it resolves to.
    if ref.kind is RefKind.NAME or source_allowed(ref, patterns):
        return
    what = f"'{via}' comes from {ref.raw}, which" if via else f"{ref.raw}"
    canonical = canonical_source(ref)
    # The matched spelling is worth showing only where it differs from what the user wrote.
    matched = f" (matched as {canonical})" if canonical != ref.raw else ""
    raise SourceNotAllowed(
        f"{what} is not an allowed source: OWL_ALLOWED_SOURCES allows only "
        f"{', '.join(patterns)}{matched}; pull from one of those, or add a pattern that "
        "matches it to OWL_ALLOWED_SOURCES"
    )
