"""Admission: from "published somewhere" to a model in the store, the same way for every source.

    manifest = pull("hf:Org/Repo/model.gguf", store=store, settings=settings)
    manifest = resolve("smollm2", store=store, settings=settings)

A source (sources/: a file, a URL, a Hub file, a file inside an installed package) or a
model folder (folder.py) puts the bytes into the blob store; admission.py then scans them,
refuses what it cannot verify, inspects them, finds the license and saves the manifest.
lineage.py walks a stored model's parents for owl.licenses; projector.py pulls a vision
GGUF's projector (mmproj) with its model, or adds one to a stored model.
"""

from owl.pull.lineage import check_model, lineage_of
from owl.pull.locked import pull_locked
from owl.pull.projector import Pulled, add_projector, pull_vision
from owl.pull.references import open_store, pull, register_embedded, resolve

__all__ = [
    "Pulled",
    "add_projector",
    "check_model",
    "lineage_of",
    "open_store",
    "pull",
    "pull_locked",
    "pull_vision",
    "register_embedded",
    "resolve",
]
