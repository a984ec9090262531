"""Settings: the one place that reads the environment (OWL_*).

CLI flags override these; the server receives them through `create_app(settings)`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".owl"


# Go's time.ParseDuration units, which Ollama's keep_alive takes ("5m", "1h30m", "-1").
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def duration_seconds(value: float | str) -> float:
    """Seconds from a number or a Go-style duration ("5m", "1h30m", "-1"), as Ollama reads them."""
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    parts = _DURATION_PART.findall(body)
    if not body or "".join(number + unit for number, unit in parts) != body:
        raise ValueError(f'\'{value}\' is not a duration; use e.g. 300, "5m", "1h" or -1')
    return sign * sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _default_max_memory() -> int:
    # Three quarters of the RAM: room for the OS, the server itself and the page cache.
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        total = 8 << 30
    return int(total * 0.75)


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
    # Server operations (docs/serve.md). Lists come comma-separated: OWL_API_KEYS=k1,k2.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Keys a client must send; none = no auth."
    )
    api_keys_file: Path | None = Field(
        default=None, description="More keys, one a line (keeps them out of the environment)."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Browser origins allowed to call the API; '*' = any."
    )
    max_body: int = Field(default=8 << 20, ge=1, description="Largest request body, in bytes.")
    max_tokens: int | None = Field(
        default=None, ge=1, description="Most tokens one request may generate; none = no cap."
    )
    max_queue: int = Field(
        default=64, ge=0, description="Generations that may wait for a slot; more get 429."
    )
    shutdown_timeout: float = Field(
        default=10.0, ge=0, description="Seconds open streams get to end after SIGTERM."
    )
    tools: Path | None = Field(
        default=None,
        description="Tools owl fetches on demand (llama.cpp's converter); default HOME/tools.",
    )
    keep_alive: float = Field(
        default=300.0,
        description="Seconds a served model stays loaded after its last request "
        '(or "5m"; negative: forever; 0: unload after each request).',
    )
    max_memory: int = Field(
        default_factory=_default_max_memory,
        gt=0,
        description='Memory the loaded models may use together (bytes or "8GB").',
    )
    max_loaded: int = Field(default=3, ge=1, description="Models loaded at once, at most.")
    load_wait: float = Field(
        default=30.0,
        ge=0,
        description="Seconds a load waits for busy models to make room before a 503.",
    )

    @property
    def tools_dir(self) -> Path:
        return self.tools.expanduser().resolve() if self.tools else self.home / "tools"

    @field_validator("keep_alive", "load_wait", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return duration_seconds(value) if isinstance(value, str) else value

    @field_validator("max_memory", mode="before")
    @classmethod
    def _memory_size(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip().isdigit():
            from owl.quantize.fit import parse_size  # a pure function; importing it loads no model

            return parse_size(value)
        return value

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with non-None `overrides` (CLI flags) on top."""
    return Settings(**{key: value for key, value in overrides.items() if value is not None})
