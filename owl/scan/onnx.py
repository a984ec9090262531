"""Check an ONNX model: a graph of operators, which runs no code of its own unless a node
needs a custom-op library, and whose tensors may name files to read their bytes from.

The model is read by owl/formats/onnx.py; a file it cannot read to the end is unverified.
Two things are findings:
- onnx.custom-op: a node in a domain that neither ONNX nor onnxruntime defines
  (onnx_domains.toml) and that no local function of the model defines. onnxruntime runs
  it only with a custom-op library registered: native code from somewhere else.
- onnx.external-data-escape: a tensor whose bytes come from a path outside the model's
  folder (absolute, `..`, a drive or share, a NUL, a symbolic link out, or onnxruntime's
  tag for a memory address). Loading the model would read that file (an SSH key, say)
  into a tensor, where the model's outputs can carry it away.
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from pathlib import Path, PureWindowsPath

from owl.errors import ModelFormatError
from owl.formats.onnx import ExternalData, OnnxModel, read_model
from owl.scan.findings import Finding, Severity, Unverified

_DOMAINS = Path(__file__).with_name("onnx_domains.toml")
# onnxruntime reads a tensor with this location from the memory address in its offset.
_MEMORY_TAG = "*/_ORT_MEM_ADDR_/*"
_SHOWN_OPS = 8


@cache
def builtin_domains() -> frozenset[str]:
    """The operator domains in onnx_domains.toml, read once."""
    with _DOMAINS.open("rb") as table:
        return frozenset(tomllib.load(table)["builtin"])


def scan_onnx(path: Path, *, file: str) -> list[Finding]:
    """Check the ONNX model at `path` (called `file` in findings): findings for custom
    operators and external data outside its folder; Unverified when the file is malformed
    or a data file it names is missing or too short."""
    try:
        model = read_model(path)
    except ModelFormatError as err:
        raise Unverified(str(err)) from None
    except OSError as err:
        raise Unverified(f"cannot read it: {err.strerror or err}") from None
    findings = _custom_ops(model, file=file)
    folder = path.parent
    by_location: dict[str, list[ExternalData]] = {}
    for entry in model.external:
        by_location.setdefault(entry.location, []).append(entry)
    problems = []
    for location, entries in by_location.items():
        why = _escape(location, folder, path.name)
        if why is not None:
            findings.append(_escaping(location, entries, why, file=file))
            continue
        problem = _data_problem(folder / location, location, entries)
        if problem:
            problems.append(problem)
    # A missing or short data file is unverified, not a finding: it is how an incomplete
    # download looks, not an attack (onnxruntime refuses to read past a file's end), but
    # owl has not seen the bytes the model would load, so it cannot call the model clean.
    if problems:
        more = f"; and {len(problems) - 3} more data files" if len(problems) > 3 else ""
        raise Unverified(
            "; ".join(problems[:3]) + more, location="external data", findings=findings
        )
    return findings


def _custom_ops(model: OnnxModel, *, file: str) -> list[Finding]:
    findings = []
    builtin = builtin_domains()
    for domain in sorted(model.operators):
        if domain in builtin:
            continue
        local = {name for defined, name in model.functions if defined == domain}
        ops = sorted(model.operators[domain] - local)
        if not ops:
            continue
        shown = ", ".join(ops[:_SHOWN_OPS])
        if len(ops) > _SHOWN_OPS:
            shown += f" and {len(ops) - _SHOWN_OPS} more"
        findings.append(
            Finding(
                severity=Severity.HIGH,
                check="onnx.custom-op",
                file=file,
                location=f"domain {domain[:80]!r}",
                reason=f"nodes use operators of domain {domain[:80]!r} ({shown}), which neither "
                "ONNX nor onnxruntime defines and the model does not define as functions: "
                "running them needs a custom-op library, native code, loaded into onnxruntime. "
                "Do not load one unless you trust where it comes from; prefer a model exported "
                "with standard operators",
            )
        )
    return findings


def _escape(location: str, folder: Path, model: str) -> str | None:
    """Why reading `location` beside the model (`folder`/`model`) would leave the model's
    folder; None if it stays."""
    if location == _MEMORY_TAG:
        return "is onnxruntime's tag for bytes at a memory address, which no model file needs"
    if "\0" in location:
        return "holds a NUL character, which cuts the path short where C++ reads it"
    windows = PureWindowsPath(location)
    if location.startswith(("/", "\\")) or windows.drive or windows.is_absolute():
        return "is an absolute path, a drive or a network share"
    if ".." in re.split(r"[\\/]", location):  # Windows runtimes split at both
        return "climbs out of the model's folder with '..'"
    try:
        target = (folder / location).resolve()
        # onnxruntime allows the folder of the model file itself, its links followed: so a
        # folder of links into one place (owl's snapshots, into blobs/) reads right.
        roots = {folder.resolve(), (folder / model).resolve().parent}
    except (OSError, RuntimeError):  # a symlink loop: nothing is read, _data_problem says so
        return None
    if not any(target.is_relative_to(root) for root in roots):
        return f"leads through a symbolic link to {str(target)[:200]}, outside the model's folder"
    return None


def _escaping(location: str, entries: list[ExternalData], why: str, *, file: str) -> Finding:
    first = entries[0].tensor[:80]
    who = (
        f"{len(entries)} tensors ({first!r}, ...) read their"
        if len(entries) > 1
        else f"tensor {first!r} reads its"
    )
    return Finding(
        severity=Severity.HIGH,
        check="onnx.external-data-escape",
        file=file,
        location=f"tensor {first!r}",
        reason=f"{who} bytes from {location[:200]!r}, which {why}: "
        "loading the model would read that file into its weights, where its outputs can "
        "carry it away. Do not load it; an honest model's data files sit in its own folder",
    )


def _data_problem(target: Path, location: str, entries: list[ExternalData]) -> str | None:
    """Why the data file cannot hold what `entries` read from it, or None if it can."""
    shown = repr(location[:200])
    try:
        if not target.is_file():
            missing = not target.exists() and not target.is_symlink()
            return (
                f"the model's data file {shown} is missing; copy it beside the .onnx file "
                "and scan again"
                if missing
                else f"the model's data file {shown} is not a regular file"
            )
        size = target.stat().st_size
    except (OSError, RuntimeError) as err:
        return f"cannot read the model's data file {shown}: {err}"
    for entry in entries:
        end = entry.offset + (entry.length or 0)
        if end > size or entry.offset > size:
            return (
                f"the model's data file {shown} has {size:,} bytes, but tensor "
                f"{entry.tensor[:80]!r} reads up to byte {end:,}: it is truncated; download "
                "it again"
            )
    return None
