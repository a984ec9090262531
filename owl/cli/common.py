"""What every command shares: settings from flags, the store, JSON output."""

from __future__ import annotations

import json
from typing import Any

from owl.config import Settings, load_settings
from owl.store import Store, open_store


def settings(**overrides: Any) -> Settings:
    return load_settings(**overrides)


def store_for(config: Settings) -> Store:
    return open_store(config)


def print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, default=str, ensure_ascii=False))
