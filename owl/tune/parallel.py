"""Data-parallel training on one machine: N processes, torch.distributed over gloo (CPU).

This process is rank 0 (it reports progress and writes checkpoints and the adapter); N-1
spawned processes take the other shares of every batch. Each computes its share's loss
normalised by the whole batch's learned tokens, and the gradients are summed, so N
processes take the step one process would on the whole batch (owl.tune.train).
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

from owl.errors import TuneError
from owl.tune.data import Encoded
from owl.tune.options import TuneOptions
from owl.tune.train import Progress, TrainResult, train

TIMEOUT = timedelta(minutes=30)  # a step of a big model on a slow CPU, with room


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _join(port: int, process: int, world: int) -> None:
    import torch.distributed as dist

    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",  # loopback only: nothing leaves the machine
        rank=process,
        world_size=world,
        timeout=TIMEOUT,
    )


def _worker(port: int, process: int, world: int, arguments: dict[str, Any]) -> None:
    import torch.distributed as dist

    _join(port, process, world)
    try:
        train(**arguments)
    finally:
        dist.destroy_process_group()


def train_parallel(
    folder: Path,
    train_items: list[Encoded],
    *,
    nproc: int,
    options: TuneOptions,
    run_dir: Path,
    pad_id: int,
    identity: dict[str, Any],
    eval_items: list[Encoded] | None = None,
    threads: int = 1,
    progress: Progress | None = None,
) -> TrainResult:
    """owl.tune.train.train in `nproc` processes (this one and nproc-1 spawned); its result."""
    import torch.distributed as dist

    if nproc < 2:
        raise ValueError("train_parallel needs 2 processes or more")
    if options.batch_size < nproc:
        raise TuneError(
            f"--batch-size {options.batch_size} is smaller than --nproc {nproc}: each process "
            "takes a share of every batch; raise --batch-size"
        )
    if options.device != "cpu" and _cuda():
        raise TuneError(
            "--nproc runs CPU processes (gloo); on a GPU train with one process, or add "
            "--device cpu (multi-GPU training is not supported yet)"
        )
    if dist.is_initialized():
        raise TuneError("a torch.distributed group is already running in this process")
    each = max(1, threads // nproc)
    arguments = {
        "folder": folder,
        "train_items": train_items,
        "options": options,
        "run_dir": run_dir,
        "pad_id": pad_id,
        "identity": identity,
        "eval_items": None,  # rank 0 alone evaluates
        "threads": each,
    }
    port = _free_port()
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch
    workers = [
        context.Process(target=_worker, args=(port, process, nproc, arguments), daemon=True)
        for process in range(1, nproc)
    ]
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    for worker in workers:
        worker.start()
    try:
        _join(port, 0, nproc)
        try:
            result = train(**{**arguments, "eval_items": eval_items, "progress": progress})
        finally:
            dist.destroy_process_group()
    except BaseException:
        for worker in workers:
            worker.kill()
        raise
    finally:
        for worker in workers:
            worker.join(timeout=60)
    failed = [worker.exitcode for worker in workers if worker.exitcode != 0]
    if failed:
        raise TuneError(f"a training process failed (exit {failed[0]}); see its output above")
    return result
