"""The context window a stored model is loaded with."""

from __future__ import annotations

from owl.config import Settings
from owl.store import Manifest


def context_size(manifest: Manifest, settings: Settings) -> int:
    """settings.ctx, capped by what the model was trained for (0: the model's own)."""
    trained = manifest.info.get("context_length") or 0
    if settings.ctx == 0:
        return trained
    return min(settings.ctx, trained) if trained else settings.ctx
