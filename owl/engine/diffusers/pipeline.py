"""A stored diffusers folder into a diffusers pipeline, asking it for nothing dynamic.

The folder is checked again where it is loaded (owl.formats.diffusers, as at pull time):
the pipeline class is one owl knows and is taken from diffusers by that name, every
component's library is diffusers or transformers, weights load from safetensors only
(`use_safetensors=True`: diffusers refuses a component without them), from the folder only
(`local_files_only`), and no code is trusted (`trust_remote_code=False`). diffusers and torch
are imported here, when a model is loaded: importing owl.engine loads neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from owl.errors import EngineError, OwlError
from owl.formats.diffusers import INDEX, PipelineIndex, check_files, default_size, weight_variant


@dataclass(frozen=True)
class LoadedPipeline:
    """A diffusers pipeline on its device, and what owl read of it."""

    pipeline: Any
    index: PipelineIndex
    device: str
    default_size: tuple[int, int]
    memory_bytes: int
    prompt_tokens: int  # the tokenizer's window: longer prompts are cut there


def folder_files(folder: Path) -> dict[str, Path]:
    """A snapshot folder's files by their names in it ("unet/config.json")."""
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_dir() and not path.is_symlink():
            files.update({f"{path.name}/{child.name}": child for child in sorted(path.iterdir())})
        else:
            files[path.name] = path
    return files


def device_and_dtype() -> tuple[str, Any]:
    """CUDA in half precision where torch has a GPU, else the CPU in float32 (half precision
    is slow or missing on CPUs)."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.float16
    return "cpu", torch.float32


def load_pipeline(folder: Path, *, name: str, threads: int | None) -> LoadedPipeline:
    """The pipeline in the diffusers folder `folder`; OwlError saying why not."""
    if not (folder / INDEX).is_file():
        raise EngineError(f"'{name}' is not a diffusers pipeline folder ({INDEX} is missing)")
    files = folder_files(folder)
    index = check_files(files, where=f"model '{name}'")
    variant = weight_variant(files, index)
    import diffusers
    import torch
    import transformers

    # Their "Loading pipeline components" and "Loading weights" bars: the CLI has its own.
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    if threads:
        torch.set_num_threads(threads)  # process-wide, like OMP_NUM_THREADS
    device, dtype = device_and_dtype()
    pipeline_class = getattr(diffusers, index.pipeline)  # a name diffusers.toml allows
    try:
        pipeline = pipeline_class.from_pretrained(
            str(folder),
            dtype=dtype,
            variant=variant,
            use_safetensors=True,
            local_files_only=True,
            trust_remote_code=False,
        )
    except OwlError:
        raise
    except (OSError, ValueError, RuntimeError, TypeError, KeyError, AttributeError) as err:
        raise EngineError(f"diffusers could not load '{name}': {err}") from None
    pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)  # owl shows its own progress
    side = default_size(files) or 512
    tokenizer = getattr(pipeline, "tokenizer", None)
    return LoadedPipeline(
        pipeline=pipeline,
        index=index,
        device=device,
        default_size=(side, side),
        memory_bytes=_memory(pipeline),
        prompt_tokens=int(getattr(tokenizer, "model_max_length", 77) or 77),
    )


# memory_bytes = the components' weights × this. An estimate, not a measurement on a real
# Stable Diffusion (none could be tried offline): the latents, the UNet's activations and the
# VAE decode at the default size take a fraction of the weights, attention the most.
MEMORY_FACTOR = 1.5


def _memory(pipeline: Any) -> int:
    import torch

    weights = 0
    for component in pipeline.components.values():
        if isinstance(component, torch.nn.Module):
            weights += sum(p.numel() * p.element_size() for p in component.parameters())
            weights += sum(b.numel() * b.element_size() for b in component.buffers())
    return int(weights * MEMORY_FACTOR)
