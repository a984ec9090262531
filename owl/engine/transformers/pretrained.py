"""A Hugging Face folder loaded with transformers as every torch backend of owl loads it:
on the CPU in float32 (as sentence-transformers does: half precision there is slow or
emulated, and less exact), from the folder's own files only, safetensors only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from owl.errors import EngineError


def load_pretrained(
    folder: Path, *, auto_class: str, name: str, threads: int | None
) -> tuple[Any, Any, Any]:
    """(torch, the model in eval mode, its tokenizer) of `folder`, with transformers'
    `auto_class` ("AutoModel", "AutoModelForSequenceClassification", …); EngineError saying
    what to do when the folder does not load."""
    import torch
    import transformers

    if threads:
        torch.set_num_threads(threads)  # process-wide, as for the other torch backends
    transformers.utils.logging.disable_progress_bar()
    try:
        model = getattr(transformers, auto_class).from_pretrained(
            folder, local_files_only=True, use_safetensors=True, dtype=torch.float32
        )
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        raise EngineError(
            f"transformers could not load '{name}' ({err}); the folder may be "
            "incomplete or damaged: pull it again"
        ) from None
    return torch, model.eval(), tokenizer
