"""Training checkpoints: everything a run needs to continue exactly where it stopped.

    RUN/checkpoints/step-000050/adapter_model.safetensors   the LoRA weights
                                optimizer.pt, scheduler.pt   their state dicts
                                rng.pt                       torch's random state(s)
                                state.json                   step, options, data digest

A checkpoint is written to a temp folder and renamed into place, so one by its final
name is whole; only the newest KEEP are kept.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from owl.errors import TuneError

KEEP = 2
_NAME = re.compile(r"^step-(\d{6,})$")
ADAPTER = "adapter_model.safetensors"


@dataclass(frozen=True)
class Checkpoint:
    """One saved step of a run."""

    path: Path
    step: int

    @property
    def state(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "state.json").read_text())
        except (OSError, ValueError) as err:
            raise TuneError(
                f"checkpoint {self.path} is unreadable ({err}); delete it and resume again"
            ) from err


def checkpoints(folder: Path) -> list[Checkpoint]:
    """The complete checkpoints in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match and (path / "state.json").is_file():
            found.append(Checkpoint(path, int(match.group(1))))
    return sorted(found, key=lambda checkpoint: checkpoint.step)


def latest(folder: Path) -> Checkpoint | None:
    """The newest complete checkpoint in `folder`, if any."""
    found = checkpoints(folder)
    return found[-1] if found else None


def save(
    folder: Path,
    *,
    step: int,
    adapter: dict[str, Any],
    optimizer: dict[str, Any],
    scheduler: dict[str, Any],
    rng: dict[str, Any],
    state: dict[str, Any],
) -> Checkpoint:
    """Write the checkpoint of `step` into `folder`; older ones beyond KEEP are removed."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"step-{step:06d}"
    work = Path(tempfile.mkdtemp(dir=folder, prefix=".tmp-"))
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in adapter.items()}, work / ADAPTER)
        torch.save(optimizer, work / "optimizer.pt")
        torch.save(scheduler, work / "scheduler.pt")
        torch.save(rng, work / "rng.pt")
        (work / "state.json").write_text(json.dumps({**state, "step": step}, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    for old in checkpoints(folder)[:-KEEP]:
        shutil.rmtree(old.path, ignore_errors=True)
    return Checkpoint(target, step)


def load(checkpoint: Checkpoint) -> dict[str, Any]:
    """The saved tensors and states of `checkpoint` (tensors only: weights_only loading)."""
    import torch
    from safetensors.torch import load_file

    try:
        return {
            "adapter": load_file(checkpoint.path / ADAPTER),
            "optimizer": torch.load(checkpoint.path / "optimizer.pt", weights_only=True),
            "scheduler": torch.load(checkpoint.path / "scheduler.pt", weights_only=True),
            "rng": torch.load(checkpoint.path / "rng.pt", weights_only=True),
            "state": checkpoint.state,
        }
    # torch.load of a damaged file raises whichever of these its reader hits first.
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as err:
        raise TuneError(
            f"checkpoint {checkpoint.path} is unreadable ({err}); delete it and resume again"
        ) from err
