"""TuneOptions: the knobs of one LoRA fine-tuning run (`owl tune`'s flags)."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

# What must be equal for `--resume` to continue a run rather than start a different one.
# max_steps and epochs may grow: they say where to stop, not how each step is taken.
RUN_KEYS = (
    "rank",
    "alpha",
    "dropout",
    "lr",
    "warmup_steps",
    "weight_decay",
    "batch_size",
    "max_len",
    "seed",
)


class TuneOptions(BaseModel):
    """How to train: LoRA shape, optimiser, data handling, where to stop, checkpoints."""

    epochs: int = Field(default=1, ge=1, le=1000)
    max_steps: int | None = Field(
        default=None, ge=1, description="Stop after this many optimizer steps in all."
    )
    rank: int = Field(default=8, ge=1, le=1024)
    alpha: float | None = Field(default=None, gt=0, description="LoRA alpha; default 2 × rank.")
    dropout: float = Field(default=0.05, ge=0, lt=1)
    lr: float = Field(default=2e-4, gt=0, le=1)
    # Constant rate after a fixed warmup: the schedule does not depend on where the run
    # stops, so a run stopped early (max_steps, Ctrl-C) resumes onto the same curve.
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    batch_size: int = Field(default=4, ge=1, le=4096)
    max_len: int = Field(default=512, ge=8, le=1 << 20)
    seed: int = 0
    checkpoint_every: int = Field(default=50, ge=1, description="Steps between checkpoints.")
    resume: bool = False
    nproc: int = Field(default=1, ge=1, le=64, description="Data-parallel processes (gloo).")
    threads: int | None = Field(default=None, ge=1, description="Default: settings.threads.")
    device: str | None = Field(
        default=None, pattern=r"^(cpu|cuda(:\d+)?)$", description="Default: cuda if present."
    )
    outtype: str = Field(default="f16", pattern="^(f16|f32|bf16|q8_0)$")

    @model_validator(mode="after")
    def _default_alpha(self) -> TuneOptions:
        if self.alpha is None:
            self.alpha = float(2 * self.rank)
        return self

    def run_identity(self) -> dict:
        """The options a checkpoint must share with a run that resumes it."""
        return {key: getattr(self, key) for key in RUN_KEYS}
