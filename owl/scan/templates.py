"""Chat templates (GGUF `tokenizer.chat_template`, tokenizer_config.json, .jinja files).

A chat template is a program the engine runs on every request; CVE-2024-34359 was one
that read `cycler.__init__.__globals__.os` and ran a shell. owl renders templates only in
its sandbox (owl.formats.jinja_sandbox), so this checker reports intent and cost:

- static (template_checks.py): the parsed template (never its Python code) is walked for
  private or internal attribute access, attribute names built at run time, exploit gadgets
  and imports of other templates, none of which a real chat template uses;
- dynamic: unless the template is already known hostile, it is rendered in the same
  sandbox as the engine's on a few sample conversations, under tight time and output
  limits, which shows loops and blow-ups no reading of the code would.

A template that does not compile is unverified: owl could not tell what it does (and the
engine refuses it). Templates larger than MAX_TEMPLATE_CHARS are not analysed, also
unverified.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from jinja2.exceptions import SecurityError, TemplateSyntaxError

from owl.formats.jinja_sandbox import RenderLimitExceeded, render_bounded, sandboxed_environment
from owl.scan.findings import Finding, Severity, Unverified
from owl.scan.template_checks import StaticChecks
from owl.scan.template_rules import attribute_severity, rules

# Real templates are a few KiB (the largest, with tool-calling prose, tens of KiB).
LARGE_TEMPLATE_CHARS = 64 * 1024
MAX_TEMPLATE_CHARS = 1024 * 1024
# A tokenizer_config.json can hold a large added vocabulary; past this it is not read.
MAX_CONFIG_BYTES = 50 * 1024 * 1024
# A sample conversation renders in milliseconds; these only stop a hostile template.
TRIAL_SECONDS = 1.0
TRIAL_MAX_CHARS = 1_000_000

_REFUSED_ATTRIBUTE = re.compile(r"access to attribute '(.*?)' of")


def _sandbox_finding(err: SecurityError, *, file: str, where: str) -> Finding | None:
    """A finding for what the sandbox refused; None when it was a list or dict method
    (append, update, …): templates written for engines that allow those are broken here,
    not hostile."""
    refused = _REFUSED_ATTRIBUTE.search(str(err))
    if refused and attribute_severity(refused.group(1)) is None:
        return None
    reason = f"tried an operation the sandbox refuses while rendering: {err}"
    return _finding(Severity.CRITICAL, "template.sandbox", file, where, reason)


def _trial_render(template: Any, *, file: str, location: str) -> list[Finding]:
    """Render the sample conversations; findings for limits hit or sandbox refusals."""
    rendered = 0
    for conversation in rules().conversations:
        context = copy.deepcopy({k: v for k, v in conversation.items() if k != "name"})
        context.update(bos_token="<s>", eos_token="</s>")
        where = f"{location}, rendering {conversation['name']!r}"
        try:
            render_bounded(template, context, seconds=TRIAL_SECONDS, max_chars=TRIAL_MAX_CHARS)
        except RenderLimitExceeded as err:
            reason = f"{err} on a short sample conversation: a resource bomb"
            return [_finding(Severity.HIGH, "template.resource", file, where, reason)]
        except SecurityError as err:
            finding = _sandbox_finding(err, file=file, where=where)
            if finding:
                return [finding]
        except Exception:
            pass  # a refusal (raise_exception) or a conversation shape it does not handle
        else:
            rendered += 1
    if rendered:
        return []
    reason = "renders none of owl's sample conversations; the model may not chat as expected"
    return [_finding(Severity.LOW, "template.render", file, location, reason)]


def _finding(severity: Severity, check: str, file: str, location: str, reason: str) -> Finding:
    return Finding(severity=severity, check=check, file=file, location=location, reason=reason)


def check_template(source: str, *, file: str, location: str) -> list[Finding]:
    """Check one chat template's text; `location` says where it is in `file`
    (e.g. "metadata key 'tokenizer.chat_template'"). Raises Unverified when the template
    does not compile or is too large to analyse."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise Unverified(
            f"the chat template is {len(source):,} characters, too large to analyse",
            location=location,
        )
    env = sandboxed_environment()
    try:
        tree = env.parse(source)
    except Exception as err:  # syntax errors, nesting past the parser's recursion
        raise Unverified(_not_compiled(err), location=_at_line(location, err)) from None
    findings = StaticChecks(file=file, location=location).run(tree)
    if len(source) > LARGE_TEMPLATE_CHARS:
        reason = f"the chat template is {len(source):,} characters, far beyond real ones"
        findings.append(_finding(Severity.LOW, "template.size", file, location, reason))
    try:
        template = env.from_string(tree)
    except Exception as err:  # unknown filters or tests, Python's own compile limits
        raise Unverified(
            _not_compiled(err), location=_at_line(location, err), findings=findings
        ) from err
    if any(finding.severity is Severity.CRITICAL for finding in findings):
        return findings  # known hostile: nothing to learn from running it
    return findings + _trial_render(template, file=file, location=location)


def _not_compiled(err: Exception) -> str:
    if isinstance(err, RecursionError):
        detail = "it nests deeper than the parser can follow"
    else:
        detail = getattr(err, "message", None) or str(err) or type(err).__name__
    return f"the chat template does not compile ({detail}); owl cannot tell what it does"


def _at_line(location: str, err: Exception) -> str:
    # Only Jinja's errors count lines of the template (Python's count the generated code).
    line = err.lineno if isinstance(err, TemplateSyntaxError) else None
    return f"{location}, line {line}" if line else location


def _read(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as err:
        raise Unverified(f"cannot read the file: {err.strerror or err}") from err
    if len(data) > limit:
        raise Unverified(f"the file is larger than {limit:,} bytes; owl does not analyse it")
    return data


def scan_jinja_file(path: Path, *, file: str) -> list[Finding]:
    """Check a standalone chat template file (chat_template.jinja in newer HF repos)."""
    try:
        source = _read(path, MAX_TEMPLATE_CHARS).decode("utf-8")
    except UnicodeDecodeError as err:
        raise Unverified(f"the template is not UTF-8 text (byte {err.start})") from err
    return check_template(source, file=file, location="chat template")


def scan_tokenizer_config(path: Path, *, file: str) -> list[Finding]:
    """Check the chat templates in a tokenizer_config.json (or chat_template.json): one
    string, or a list of {"name", "template"} entries."""
    try:
        config = json.loads(_read(path, MAX_CONFIG_BYTES))
    except (ValueError, RecursionError) as err:  # bad JSON or UTF-8; nesting past limits
        raise Unverified(f"not valid JSON: {err}") from err
    if not isinstance(config, dict):
        raise Unverified("not a tokenizer configuration (the JSON is not an object)")
    templates = config.get("chat_template")
    if templates is None:
        return []
    if isinstance(templates, str):
        return check_template(templates, file=file, location="chat_template")
    if isinstance(templates, dict):  # name → template, as transformers holds them
        templates = [{"name": k, "template": v} for k, v in templates.items()]
    if not isinstance(templates, list):
        raise Unverified("chat_template is neither text nor a list", location="chat_template")
    findings: list[Finding] = []
    for index, entry in enumerate(templates):
        name = entry.get("name") if isinstance(entry, dict) else None
        source = entry.get("template") if isinstance(entry, dict) else None
        location = f"chat_template[{name if isinstance(name, str) else index}]"
        if not isinstance(source, str):
            raise Unverified(
                "a chat template entry has no template text", location=location, findings=findings
            )
        try:
            findings += check_template(source, file=file, location=location)
        except Unverified as err:
            raise Unverified(
                err.reason, location=err.location, findings=[*findings, *err.findings]
            ) from err
    return findings
