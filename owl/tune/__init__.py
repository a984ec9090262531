"""tune: LoRA fine-tuning of a stored model on the user's data, exported as a GGUF adapter.

    from owl.tune import TuneOptions, tune
    adapter = tune(base_manifest, data=Path("train.jsonl"), options=TuneOptions(max_steps=100),
                   store=store, settings=settings)

torch, transformers and peft (owl[tune]) are imported only when a run starts.
"""

from owl.tune.options import TuneOptions
from owl.tune.pipeline import default_name, run_dir, tune

__all__ = ["TuneOptions", "default_name", "run_dir", "tune"]
