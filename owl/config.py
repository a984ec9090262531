"""Settings: the one place that reads the environment (OWL_*).

CLI flags override these; the server receives them through `create_app(settings)`.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".owl"


class Settings(BaseSettings):
    """Everything owl reads from its environment, with defaults that work offline."""

    model_config = SettingsConfigDict(env_prefix="OWL_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="All of owl's state.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    ctx: int = Field(default=4096, ge=0, description="Context window; 0 = the model's own.")
    parallel: int = Field(
        default=4, ge=1, le=64, description="Generations the server batches at once (slots)."
    )
    hf_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OWL_HF_ENDPOINT", "HF_ENDPOINT")
    )
    hf_offline: bool = Field(
        default=False, validation_alias=AliasChoices("OWL_HF_OFFLINE", "HF_HUB_OFFLINE")
    )
    default_model: str = "smollm2"
    tools: Path | None = Field(
        default=None,
        description="Tools owl fetches on demand (llama.cpp's converter); default HOME/tools.",
    )

    @property
    def tools_dir(self) -> Path:
        return self.tools.expanduser().resolve() if self.tools else self.home / "tools"

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with non-None `overrides` (CLI flags) on top."""
    return Settings(**{key: value for key, value in overrides.items() if value is not None})
