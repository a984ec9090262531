"""What every command shares: JSON output."""

from __future__ import annotations

import json
from typing import Any


def print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, default=str, ensure_ascii=False))
