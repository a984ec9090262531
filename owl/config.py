"""Settings: the one place that reads the environment (OWL_*).

CLI flags override these; the server receives them through `create_app(settings)`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from owl.errors import ConfigError


def _default_home() -> Path:
    return Path.home() / ".owl"


# Go's time.ParseDuration units, which Ollama's keep_alive takes ("5m", "1h30m", "-1").
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


# Any longer is "forever": a century outlives the machine, and larger values would overflow
# the datetimes and timers that keep_alive becomes (`/api/ps`'s expires_at, the pool's sweep).
FOREVER_AFTER_S = 100 * 365.25 * 24 * 3600
_FOREVER_WORDS = {"forever", "inf", "+inf", "infinite", "infinity", "+infinity"}
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# What an OWL_ALLOWED_SOURCES pattern may start with: the reference kinds owl pulls from.
SOURCE_PATTERN_PREFIXES = ("hf:", "https://", "http://", "package:", "file:")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'8GB', '8 GiB', '512M', '2.5g' → bytes (binary units, as RAM is sold)."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a memory size; write e.g. 8GB, 512MB or 16G")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


def duration_seconds(value: float | str) -> float:
    """Seconds from a number or a Go-style duration ("5m", "1h30m", "-1"), as Ollama reads them.

    -1.0 (forever) for "forever", "inf" and anything longer than a century; a negative number
    is forever too and is kept as given. ValueError for NaN and for what is not a duration.
    """
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf if value > 0 else -math.inf
        return _bounded(seconds, value)
    text = value.strip()
    if text.lower() in _FOREVER_WORDS:
        return -1.0
    try:
        seconds = float(text)  # also "1e308", "nan": _bounded sorts them out
    except ValueError:
        seconds = _go_duration(text)
    return _bounded(seconds, value)


def _go_duration(text: str) -> float:
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    parts = _DURATION_PART.findall(body)
    if not body or "".join(number + unit for number, unit in parts) != body:
        raise ValueError(
            f'\'{text}\' is not a duration; use e.g. 300, "5m", "1h", or -1 or "forever"'
        )
    return sign * sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _bounded(seconds: float, given: object) -> float:
    if math.isnan(seconds):
        raise ValueError(
            f"{given!r} is NaN, not a duration; use a number of seconds, e.g. 300, or -1 "
            'or "forever" to keep the model loaded'
        )
    if seconds > FOREVER_AFTER_S or seconds == -math.inf:
        return -1.0
    return seconds


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
    # llama-server's --cache-type-k/-v: the KV cache's element types (owl/engine/kv_cache.py).
    cache_type_k: Literal["f16", "q8_0", "q4_0"] = Field(
        default="f16", description="The K cache's type: f16, q8_0 or q4_0."
    )
    cache_type_v: Literal["f16", "q8_0", "q4_0"] = Field(
        default="f16", description="The V cache's type: f16, q8_0 or q4_0 (needs flash attention)."
    )
    embedding_model: str = Field(
        default="minilm", description="The model new document collections embed with."
    )
    docs_folder: Path | None = Field(
        default=None,
        description="A folder the server may index documents from (POST /v1/documents/NAME); "
        "none = the server reads no folders.",
    )
    ui: bool = Field(default=True, description="Serve the web UI at / (owl ui opens it).")
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
    max_audio_bytes: int = Field(
        default=25 << 20, ge=1, description="Largest audio upload, in bytes (OpenAI's 25 MB)."
    )
    max_audio_seconds: float = Field(
        default=1800.0, gt=0, description="Longest audio a request may transcribe, in seconds."
    )
    max_image_bytes: int = Field(
        default=20 << 20, ge=1, description="Largest image in a request, in bytes (decoded)."
    )
    max_image_pixels: int = Field(
        default=4096 * 4096,
        ge=1,
        description="Most pixels an image may have (width × height); more is refused.",
    )
    max_images: int = Field(
        default=8, ge=0, le=64, description="Most images one chat request may send."
    )
    image_folder: Path | None = Field(
        default=None,
        description="A folder whose files requests may name as images; none = no files.",
    )
    # Drawing (owl draw, /v1/images/generations): what one request may ask for.
    max_draw_pixels: int = Field(
        default=1536 * 1536, ge=64, description="Most pixels a drawn image may have (W × H)."
    )
    max_draw_steps: int = Field(
        default=150, ge=1, le=1000, description="Most denoising steps a drawing may take."
    )
    max_draw_images: int = Field(
        default=4, ge=1, le=64, description="Most images one request may ask for (n)."
    )
    image_files: int = Field(
        default=256,
        ge=0,
        description="Drawn images the server keeps for response_format=url (the oldest go "
        "first); 0 = no url responses.",
    )
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

    max_pulls: int = Field(
        default=4, ge=1, le=64, description="Pulls the server runs at once; more get 429."
    )
    allowed_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Where pulls may fetch from: patterns such as hf:MyOrg/*, "
        "https://models.example/*, package:*, file:* (any given: a source that matches none "
        "is refused), and 'private', which lets a server-side pull name loopback and "
        "private-network hosts (a mirror on the LAN).",
    )
    # owl run's tools (docs/agents.md): MCP servers, each a command line or an http(s) URL.
    mcp_servers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="MCP servers whose tools owl run offers the model (command lines or "
        "http(s) URLs, comma-separated).",
    )
    advisories: Path | None = Field(
        default=None,
        description="An advisory file (TOML, as owl's own) whose entries are added to owl's.",
    )

    @field_validator("allowed_sources")
    @classmethod
    def _known_sources(cls, value: list[str]) -> list[str]:
        for entry in value:
            if entry != "private" and not entry.lower().startswith(SOURCE_PATTERN_PREFIXES):
                raise ValueError(
                    f"unknown source {entry!r}; write 'private' or patterns that start with "
                    "hf:, https://, http://, package: or file: (e.g. hf:MyOrg/*,package:*)"
                )
        return value

    @property
    def allows_private_sources(self) -> bool:
        """Whether a request may make the server fetch from loopback or private addresses."""
        return "private" in self.allowed_sources

    @property
    def source_patterns(self) -> list[str]:
        """The allowlist of pull sources (empty: every source is allowed)."""
        return [entry for entry in self.allowed_sources if entry != "private"]

    @property
    def tools_dir(self) -> Path:
        return self.tools.expanduser().resolve() if self.tools else self.home / "tools"

    @field_validator("keep_alive", "load_wait", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        # Numbers too: NaN and 1e308 must not reach the pool as they are.
        return duration_seconds(value) if isinstance(value, str | int | float) else value

    @field_validator("max_memory", mode="before")
    @classmethod
    def _memory_size(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip().isdigit():
            return parse_size(value)
        return value

    @field_validator("api_keys", "cors_origins", "allowed_sources", "mcp_servers", mode="before")
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
    """Settings from the environment, with non-None `overrides` (CLI flags) on top.

    ConfigError (one line naming the flag or the OWL_* variable) when a value is invalid.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as err:
        raise settings_error(err, flags=given.keys()) from None


class _AdvisorySetting(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OWL_", extra="ignore")

    advisories: Path | None = Settings.model_fields["advisories"]


def advisory_file() -> Path | None:
    """OWL_ADVISORIES alone: the load gate reads it where no Settings were handed in, and an
    unrelated setting that does not validate must not stop a load there."""
    try:
        return _AdvisorySetting().advisories
    except ValidationError as err:
        raise settings_error(err) from None


def settings_error(err: ValidationError, *, flags: Iterable[str] = ()) -> ConfigError:
    """The first problem of a Settings ValidationError as one line a person can act on.

    A field in `flags` was given as a command-line flag (`--max-body`); any other came from
    the environment (`OWL_MAX_BODY`).
    """
    problem = err.errors(include_url=False)[0]
    field = str(problem["loc"][0]) if problem["loc"] else ""
    message = str(problem["msg"])
    info = Settings.model_fields.get(field)
    if problem["type"] == "value_error":  # our validators' own words, which say what to write
        message = message.removeprefix("Value error, ")
    elif info is not None and info.description:  # pydantic's words: say what the setting is
        message += f" ({_lower_first(info.description.rstrip('.'))})"
    message = _lower_first(message)
    if field in flags:
        return ConfigError(f"invalid --{field.replace('_', '-')} {problem['input']}: {message}")
    variable = field if field.isupper() else f"OWL_{field.upper()}"  # an alias is already one
    given = problem["input"]
    if isinstance(given, list):  # a comma-separated setting, already split: show it as written
        given = ",".join(str(part) for part in given)
    default = info.get_default(call_default_factory=False) if info else None
    usual = (
        f" ({default})" if default not in (None, "") and info and not info.default_factory else ""
    )
    return ConfigError(
        f"invalid {variable}={given!r}: {message}; "
        f"fix {variable}, or unset it for the default{usual}"
    )


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
