"""Chat templates inside JSON and YAML files, found by content: a top-level `chat_template`.

transformers reads a chat template from any of tokenizer_config.json, chat_template.json and
a processor config, and a renamed copy still loads, so a file is a template file because of
what it holds, not what it is called. Files are untrusted input: at most MAX_CONFIG_BYTES
(MAX_YAML_BYTES for YAML, whose parser is slower) are read, and a key spelled with escapes
(`"ch\\u0061t_template"`, which a JSON or YAML parser reads as `chat_template`) is found too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from owl.scan.findings import Unverified, read_capped

# A tokenizer_config.json can hold a large added vocabulary; past this it is not read.
MAX_CONFIG_BYTES = 50 * 1024 * 1024
# YAML template files are a template and a few settings; its parser is far slower than JSON's.
MAX_YAML_BYTES = 4 * 1024 * 1024
KEY = "chat_template"


def _spelled(char: str) -> bytes:
    # The character itself, or a JSON (\u0063) or YAML (\x63, \u0063, \U00000063) escape of it.
    digits = "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{ord(char):02x}")
    return f"(?:{re.escape(char)}|\\\\(?:x|u00|U000000){digits})".encode()


def key_pattern(key: str) -> re.Pattern[bytes]:
    """A pattern for `key` as it may be written in JSON or YAML, escapes included."""
    return re.compile(b"".join(_spelled(char) for char in key))


_KEY_TEXT = key_pattern(KEY)


def is_text(head: bytes) -> bool:
    """Whether a file starting with `head` may be JSON or YAML text (UTF-16/32 JSON too)."""
    return not (b"\0" in head and json.detect_encoding(head) in ("utf-8", "utf-8-sig"))


def search_text(data: bytes, pattern: re.Pattern[bytes]) -> bool:
    """Whether `pattern` occurs in the text `data`, whatever JSON encoding it is in."""
    return pattern.search(_text(data)) is not None


def _text(data: bytes) -> bytes:
    """UTF-8 bytes to search: JSON may also be UTF-16 or UTF-32 (json.loads reads those)."""
    encoding = json.detect_encoding(data)
    if encoding in ("utf-8", "utf-8-sig"):
        return data
    return data.decode(encoding, errors="replace").encode("utf-8")


def _is_json(data: bytes) -> bool:
    return _text(data[:64]).lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


def parse(data: bytes, *, json_only: bool = False) -> Any:
    """The JSON (when it starts like an object, or `json_only`) or YAML document in `data`;
    Unverified when it is neither."""
    if json_only or _is_json(data):
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as err:  # bad JSON or UTF-8; nesting past limits
            raise Unverified(f"not valid JSON: {err}") from err
    if len(data) > MAX_YAML_BYTES:
        raise Unverified(f"the YAML file is larger than {MAX_YAML_BYTES:,} bytes; not analysed")
    try:
        import yaml
    except ImportError:  # PyYAML comes with huggingface-hub; without it YAML is unread
        raise Unverified("a YAML file with a chat_template, and PyYAML is not installed") from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # safe: builds no Python objects
    try:
        return yaml.load(data, Loader=loader)  # noqa: S506 (a safe loader)
    except (yaml.YAMLError, ValueError, RecursionError) as err:
        raise Unverified(f"not valid YAML: {str(err).splitlines()[0]}") from err


def carries_template(path: Path, head: bytes) -> bool:
    """Whether the text file at `path` (starting with `head`) is JSON or YAML with a top-level
    chat_template. A file too large to read whole counts when its key shows in the part read,
    so that it is reported unverified rather than skipped."""
    if not is_text(head):
        return False  # binary, not text
    with path.open("rb") as handle:
        data = handle.read(MAX_CONFIG_BYTES + 1)
    if not _KEY_TEXT.search(_text(data)):
        return False  # cheap: most JSON (tokenizer.json, config.json) never names the key
    if len(data) > MAX_CONFIG_BYTES or (len(data) > MAX_YAML_BYTES and not _is_json(data)):
        return True
    try:
        document = parse(data)
    except Unverified:
        return False  # no runtime reads a template out of a file that does not parse
    return isinstance(document, dict) and KEY in document


def read_config(path: Path, *, json_only: bool = False) -> Any:
    """The parsed JSON (or YAML) at `path`, read within MAX_CONFIG_BYTES; Unverified otherwise."""
    data = read_capped(path, MAX_CONFIG_BYTES)
    return parse(data, json_only=json_only)


def templates_in(config: Any) -> list[tuple[str, str]]:
    """(location, template text) for each chat template in a parsed config: one string, a
    list of {"name", "template"} entries, or a name → template mapping."""
    if not isinstance(config, dict):
        raise Unverified("not a tokenizer configuration (the document is not an object)")
    templates = config.get(KEY)
    if templates is None:
        return []
    if isinstance(templates, str):
        return [(KEY, templates)]
    if isinstance(templates, dict):  # name → template, as transformers holds them
        templates = [{"name": k, "template": v} for k, v in templates.items()]
    if not isinstance(templates, list):
        raise Unverified("chat_template is neither text nor a list", location=KEY)
    found: list[tuple[str, str]] = []
    for index, entry in enumerate(templates):
        name = entry.get("name") if isinstance(entry, dict) else None
        source = entry.get("template") if isinstance(entry, dict) else None
        found.append((f"{KEY}[{name if isinstance(name, str) else index}]", source))
    return found
