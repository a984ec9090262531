"""Check a GGUF file before the engine loads it: its structure, then its chat templates.

A GGUF file holds no code, but llama.cpp trusts its counts and offsets, and its chat
template is a program the engine runs on every request. The structure is read by
owl.formats.gguf.read_gguf_header with llama.cpp's own rules (anything it would refuse, or
misread, is unverified); every chat template goes to the template checker.
"""

from __future__ import annotations

from pathlib import Path

from owl.formats.gguf import read_gguf_header
from owl.formats.gguf_layout import GGUFArray, GGUFError, LongString, Value, shown
from owl.scan.findings import Finding, Unverified

TEMPLATE_KEY = "tokenizer.chat_template"


def is_template_key(key: str) -> bool:
    """Whether a metadata key holds a chat template (the default or a named variant)."""
    return key == TEMPLATE_KEY or key.startswith(TEMPLATE_KEY + ".")


def _template_findings(kv: dict[str, Value], *, file: str, partial: bool) -> list[Finding]:
    """The template checker's findings for every chat template in `kv`.

    A template that is not text cannot be checked, so the file is unverified; when `kv` is
    what came before a defect (`partial`), the defect is the reason and this only collects.
    """
    findings: list[Finding] = []
    for key, value in kv.items():
        if not is_template_key(key):
            continue
        location = f"metadata key {shown(key)}"
        if not isinstance(value, str):
            if partial:
                continue
            raise Unverified(
                f"the chat template is {_describe(value)}, not text; owl cannot check what an "
                "engine would make of it",
                location=location,
                findings=findings,
            )
        from owl.scan.templates import check_template  # on use: most files have one at most

        try:
            findings += check_template(value, file=file, location=location)
        except Unverified as err:
            if not partial:
                raise Unverified(
                    err.reason,
                    location=err.location or location,
                    findings=[*findings, *err.findings],
                ) from err
            findings += err.findings
    return findings


def _describe(value: Value) -> str:
    if isinstance(value, bytes):
        return "bytes that are not valid UTF-8"
    if isinstance(value, LongString):
        return f"a string of {value.length:,} bytes, too long to check"
    if isinstance(value, GGUFArray):
        return f"an array of {value.count:,} items"
    return "a boolean" if isinstance(value, bool) else "a number"


def _unverified(reason: str, location: str, kv: dict[str, Value], *, file: str) -> Unverified:
    """Unverified for a defect, keeping the findings of the templates read before it."""
    findings = _template_findings(kv, file=file, partial=True)
    return Unverified(reason, location=location, findings=findings)


def scan_gguf(path: Path, *, file: str) -> list[Finding]:
    """Check the GGUF file at `path` (called `file` in findings) before anything loads it.

    Returns the chat templates' findings; raises Unverified when the file breaks a rule of
    the format, carrying the findings of any template read before the defect.
    """
    kv: dict[str, Value] = {}
    try:
        header = read_gguf_header(path, kv=kv)
    except GGUFError as err:
        raise _unverified(err.reason, err.location, kv, file=file) from err
    except OSError as err:
        raise _unverified(f"cannot read it: {err}", "", kv, file=file) from err
    return _template_findings(header.kv, file=file, partial=False)
