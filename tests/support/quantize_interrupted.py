"""Ctrl-C in the middle of a quantization, at a known point, however busy the machine is.

`python tests/support/quantize_interrupted.py quantize-interrupted MODEL TYPE IMATRIX` runs
the stage function `owl.quantize.quantize`, as `owl quantize` does, in a command of owl's own
CLI app started by its entry point `owl.cli.main.main`, which turns Ctrl-C into exit 130. Its
progress callback, at the first tensor, prints the temp files in the blob folder, sends
SIGINT to this process as a terminal's Ctrl-C does, and then holds the quantizing thread in
llama.cpp's log callback: the quantization cannot finish before the interrupt is felt, so
each run tests a KeyboardInterrupt that arrives while `llama_model_quantize` is in flight.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from owl.cli import main as cli
from owl.config import load_settings
from owl.pull import open_store, resolve
from owl.quantize import quantize

# Only a broken interrupt path waits this long; the quantization then goes on and finishes,
# and the test sees exit 0 instead of 130.
HOLD_S = 60


def quantize_interrupted(model: str, qtype: str, imatrix: Path) -> None:
    """Quantize MODEL to TYPE with IMATRIX, and Ctrl-C it at its first tensor."""
    settings = load_settings()
    store = open_store(settings)
    parent = resolve(model, store=store, settings=settings)

    def interrupt(done: int, total: int | None) -> None:
        if done != 1:
            return
        partial = sorted(path.name for path in store.blobs.root.glob("partial-*"))
        print(f"interrupting at tensor {done} of {total}; temp files: {partial}", flush=True)
        os.kill(os.getpid(), signal.SIGINT)
        threading.Event().wait(HOLD_S)

    quantize(
        parent, store=store, settings=settings, qtype=qtype, imatrix=imatrix, progress=interrupt
    )


if __name__ == "__main__":
    cli.app.command("quantize-interrupted")(quantize_interrupted)
    cli.main()
