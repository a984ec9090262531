"""The bundled SmolLM2 as one float32 Hugging Face folder per test session, for every module
that needs its weights in transformers' form (convert, pull of a folder, the transformers
backend, owl tune's dequantized cache).

Dequantizing the 135M model takes most of a minute, and the convert and tune tests made it
twice, once each way, though both ways are owl.tune.base.dequantize's: transformers loads the
GGUF and saves it. Now one folder, under the session's base temp folder, read-only to all.
"""

from __future__ import annotations

import shutil
from pathlib import Path

# The model card: owl convert takes a folder's license from it.
CARD = "---\nlicense: apache-2.0\n---\n# SmolLM2-135M-Instruct, dequantized from Q4_1\n"


def smollm2_hf_folder(base: Path, bundled: Path) -> Path:
    """The bundled GGUF as a float32 safetensors folder with its chat template and a model
    card, built once under `base` (the session's base temp folder)."""
    folder = base / "smollm2-hf"
    if (folder / "config.json").is_file():
        return folder
    from owl.formats import inspect
    from owl.tune.base import dequantize

    staging = base / "smollm2-hf.partial"
    shutil.rmtree(staging, ignore_errors=True)
    dequantize(bundled, staging, chat_template=inspect(bundled).chat_template)
    (staging / "README.md").write_text(CARD)
    staging.rename(folder)
    return folder
