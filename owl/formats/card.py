"""A model card (README.md): its YAML front matter, and the license field as written there.

Raw facts only: what the license id means, and which of several sources wins, is
owl.licenses' business (it reads the same front matter through `card_metadata`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CARD = "README.md"
MAX_CARD = 1 << 20  # bytes of a card read from a file
_MAX_TEXT = 1_000_000  # characters of a card searched for its front matter


def read_card(path: Path) -> str:
    """The card at `path`, its first MAX_CARD bytes, as text (undecodable bytes replaced)."""
    with path.open("rb") as handle:
        return handle.read(MAX_CARD).decode("utf-8", errors="replace")


def card_metadata(text: str) -> dict[str, Any]:
    """The YAML front matter of a model card (README.md): {} when it has none or is broken."""
    import yaml
    from huggingface_hub.repocard import REGEX_YAML_BLOCK  # the Hub's own rule; slow to import

    match = REGEX_YAML_BLOCK.search(text[:_MAX_TEXT])
    if match is None:
        return {}
    try:
        data = yaml.safe_load(match.group(2))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def card_license(text: str) -> str | None:
    """The `license` field of a card's front matter as written (a list joined by ", ")."""
    value = card_metadata(text).get("license")
    items = value if isinstance(value, list) else [value]
    named = [item.strip() for item in items if isinstance(item, str) and item.strip()]
    return ", ".join(named) if named else None
