"""Speed of owl's drawing against diffusers used directly, on the same pipeline.

The pipeline is tests/support/tiny_diffusion.py's tiny random-weight Stable Diffusion (or
--folder, any Stable Diffusion folder in diffusers' layout), pulled into a temporary
OWL_HOME and loaded for DRAW as `owl draw` does; diffusers loads the same folder itself.
Both draw PROMPT with the same steps, size and seeds, alternating which goes first, `--runs`
times, after one warm-up drawing each. The images must be the same bytes (owl passes
diffusers its own arguments and generators); the line says whether they were.

- owl_s_per_image, diffusers_s_per_image: seconds per image (the median over runs);
- ratio: owl's / diffusers' (above 1.0: owl is slower).

Prints one JSON line on stdout; progress goes to stderr. Never a timed assert.

    .venv/bin/python bench/draw.py [--runs 5] [--steps 4] [--size 64] [--folder DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from common import load_average, log, print_result

from owl import engine
from owl.config import Settings
from owl.engine.drawing import DrawOptions
from owl.pull import open_store, pull

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests/support/tiny_diffusion.py, the tiny pipeline

from tests.support.tiny_diffusion import build_tiny_sd  # noqa: E402

PROMPT = "a watercolour of an owl on a branch"


def _diffusers_pipeline(folder: Path, threads: int):  # noqa: ANN202 (a diffusers pipeline)
    import diffusers
    import torch

    torch.set_num_threads(threads)
    index = json.loads((folder / "model_index.json").read_text())
    pipeline = getattr(diffusers, index["_class_name"]).from_pretrained(
        folder, use_safetensors=True, local_files_only=True
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _diffusers_draw(pipeline, *, steps: int, size: int, seed: int) -> bytes:  # noqa: ANN001
    import numpy as np
    import torch

    with torch.inference_mode():
        result = pipeline(
            PROMPT,
            num_inference_steps=steps,
            width=size,
            height=size,
            generator=[torch.Generator().manual_seed(seed)],
            output_type="np",
        )
    return (np.asarray(result.images) * 255).round().astype(np.uint8)[0].tobytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=64, help="pixels a side, a multiple of 8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--folder", type=Path, help="a diffusers folder (default: the tiny SD)")
    parser.add_argument("--home", type=Path, help="OWL_HOME to use (default: a temp folder)")
    args = parser.parse_args()
    started, load_before = time.perf_counter(), load_average()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="owl-bench-draw-") as scratch:
        home = args.home or Path(scratch) / "owl-home"
        folder = args.folder or build_tiny_sd(Path(scratch) / "tiny-sd")
        config = Settings(home=home, threads=args.threads)
        store = open_store(config)
        manifest = pull(str(folder), store=store, settings=config)
        drawer = engine.load(
            manifest, store=store, settings=config, capability=engine.Capability.DRAW
        )
        reference = _diffusers_pipeline(folder, args.threads)
        times: dict[str, list[float]] = {"owl": [], "diffusers": []}
        same = True

        def owl_draw(seed: int) -> bytes:
            options = DrawOptions(
                prompt=PROMPT, width=args.size, height=args.size, steps=args.steps, seed=seed
            )
            return drawer.draw(options).images[0].rgb

        def direct(seed: int) -> bytes:
            return _diffusers_draw(reference, steps=args.steps, size=args.size, seed=seed)

        owl_draw(0), direct(0)  # warm-up: first-call allocations and kernel choices
        for run in range(args.runs):
            order = [("owl", owl_draw), ("diffusers", direct)]
            if run % 2:
                order.reverse()
            drawn = {}
            for name, draw in order:
                began = time.perf_counter()
                drawn[name] = draw(run + 1)
                times[name].append(time.perf_counter() - began)
            same = same and drawn["owl"] == drawn["diffusers"]
            owl_run, direct_run = times["owl"][-1], times["diffusers"][-1]
            log(f"run {run + 1}: owl {owl_run:.3f}s, diffusers {direct_run:.3f}s")
        drawer.close()
    owl_s, diffusers_s = statistics.median(times["owl"]), statistics.median(times["diffusers"])
    results = {
        "model": str(args.folder) if args.folder else "tiny-sd (tests/support/tiny_diffusion.py)",
        "steps": args.steps,
        "size": f"{args.size}x{args.size}",
        "runs": args.runs,
        "threads": args.threads,
        "owl_s_per_image": round(owl_s, 4),
        "diffusers_s_per_image": round(diffusers_s, 4),
        "ratio": round(owl_s / diffusers_s, 3),
        "same_bytes": same,
    }
    print_result("draw", results, started=started, load_before=load_before)


if __name__ == "__main__":
    main()
