"""What the distill tests share: the extraction prompts and schema, a user turn."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
EXTRACTION = ROOT / "data" / "extraction"
SCHEMA = {
    "type": "object",
    "required": ["name", "amount"],
    "properties": {"name": {"type": "string"}, "amount": {"type": "number"}},
}


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def prompts_file(tmp_path: Path, count: int) -> Path:
    lines = (EXTRACTION / "prompts.txt").read_text().splitlines()[:count]
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(lines) + "\n\n")
    return path
