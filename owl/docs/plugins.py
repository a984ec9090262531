"""Document readers from other packages, through the entry-point group "owl.document_readers".

An entry point's name is the extension it reads ("docx" or ".docx"); its value names a
callable `(path: Path) -> list[Page] | str`. A package declares one in its pyproject.toml:

    [project.entry-points."owl.document_readers"]
    docx = "owl_docx:read"

Extensions owl reads itself (.md .txt .html .pdf …) stay with the built-in readers.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from owl.docs.types import Page
from owl.errors import DocumentError

GROUP = "owl.document_readers"

PluginReader = Callable[[Path], "list[Page] | str"]


def plugin_readers() -> dict[str, EntryPoint]:
    """Extension (lower case, no dot) → the entry point of the plugin that reads it.

    Read afresh on every call, so a package installed since is seen; the first of two
    plugins for one extension wins (in the order importlib.metadata finds them).
    """
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=GROUP):
        extension = point.name.strip().lstrip(".").lower()
        if extension and extension.isalnum() and extension not in found:
            found[extension] = point
    return found


def load_reader(point: EntryPoint) -> PluginReader:
    """The callable an entry point names; DocumentError when it cannot be imported."""
    try:
        reader = point.load()
    except Exception as err:  # a plugin's import can fail in any way; none may crash owl
        raise DocumentError(
            f"the reader plugin for .{point.name} ({point.value}) does not load: "
            f"{type(err).__name__}: {err}; reinstall or remove the package that provides it"
        ) from None
    if not callable(reader):
        raise DocumentError(
            f"the reader plugin for .{point.name} ({point.value}) is not a function; "
            "its package's entry point must name a callable (path) -> list[Page] | str"
        )
    return reader
