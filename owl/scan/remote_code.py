"""Code that a model asks its loader to run: `auto_map` in a config, Python files beside it.

transformers imports the modules a config's `auto_map` names (with trust_remote_code, which
many guides tell users to set) and runs them at load time, before any weight is read: the
model is a program. owl never runs such code, but another runtime that loads the same folder
would, so both are high findings, whatever the code says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from owl.scan.findings import Finding, Severity, Unverified
from owl.scan.template_config import MAX_CONFIG_BYTES, key_pattern, read_config, search_text

CODE_KEY = "auto_map"
_CODE_TEXT = key_pattern(CODE_KEY)


def names_code(path: Path) -> bool:
    """Whether the text file at `path` is a JSON or YAML document with a top-level auto_map.

    The cheap byte search comes first: most JSON files of a model never name the key.
    """
    with path.open("rb") as handle:
        data = handle.read(MAX_CONFIG_BYTES + 1)
    if not search_text(data, _CODE_TEXT):
        return False
    if len(data) > MAX_CONFIG_BYTES:
        return True  # too large to read whole: reported unverified by the checker, not skipped
    try:
        document = read_config(path)
    except (Unverified, OSError):
        return False  # no runtime reads an auto_map out of a file that does not parse
    return isinstance(document, dict) and CODE_KEY in document


def code_findings(config: Any, *, file: str) -> list[Finding]:
    """A high finding for each class a parsed config's auto_map maps to code of its own."""
    if not isinstance(config, dict) or CODE_KEY not in config:
        return []
    mapping = config[CODE_KEY]
    targets = mapping.items() if isinstance(mapping, dict) else [("", mapping)]
    findings = []
    for name, target in targets:
        modules = target if isinstance(target, list) else [target]
        shown = ", ".join(str(module) for module in modules if module is not None)[:200]
        findings.append(
            Finding(
                severity=Severity.HIGH,
                check="code.auto_map",
                file=file,
                location=f"{CODE_KEY}.{name}" if name else CODE_KEY,
                reason=f"names Python code of its own ({shown or 'unnamed'}): transformers "
                "imports and runs it on load when trust_remote_code is set; owl never runs "
                "it. Do not load this model with trust_remote_code unless you have read it",
            )
        )
    return findings


def scan_code_config(path: Path, *, file: str) -> list[Finding]:
    """Check a JSON or YAML config that carries an auto_map (config.json, a processor config)."""
    return code_findings(read_config(path), file=file)


def scan_python(path: Path, *, file: str) -> list[Finding]:
    """A Python source file in a model: code that a loader may import, never safe to trust."""
    return [
        Finding(
            severity=Severity.HIGH,
            check="code.python",
            file=file,
            location="",
            reason="Python source in a model: transformers imports such files when a config's "
            "auto_map names them (trust_remote_code), running whatever they hold; owl never "
            "runs it. Read it before you load this model anywhere with trust_remote_code",
        )
    ]
