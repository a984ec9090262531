"""Chat templates (GGUF `tokenizer.chat_template`, JSON and YAML configs, .jinja files).

A chat template is a program the engine runs on every request; CVE-2024-34359 was one
that read `cycler.__init__.__globals__.os` and ran a shell. owl renders templates only in
its sandbox (owl.formats.jinja_sandbox), so this checker reports intent and cost:

- static (template_checks.py): the parsed template (never its Python code) is walked for
  private or internal attribute access, attribute names built at run time, exploit gadgets
  and imports of other templates, none of which a real chat template uses;
- dynamic: unless the template is already known hostile, it is rendered in the same
  sandbox as the engine's on a few sample conversations, under tight time, output and
  loop limits, in a child process under OS CPU and memory limits (template_trial.py),
  which shows loops and blow-ups no reading of the code would. A template that cannot be
  rendered within the limits is high: other runtimes have none and hang on it.

A template that does not compile is unverified: owl could not tell what it does (and the
engine refuses it). Templates larger than MAX_TEMPLATE_CHARS are not analysed, also
unverified.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2.exceptions import TemplateSyntaxError

from owl.formats.jinja_sandbox import sandboxed_environment
from owl.scan.findings import Finding, Severity, Unverified, read_capped
from owl.scan.remote_code import code_findings
from owl.scan.template_checks import StaticChecks
from owl.scan.template_config import read_config, templates_in
from owl.scan.template_rules import rules
from owl.scan.template_trial import TRIAL_MAX_CHARS, TRIAL_SECONDS, trial_render_all

__all__ = [
    "TRIAL_MAX_CHARS",
    "TRIAL_SECONDS",
    "check_template",
    "check_templates",
    "rules",
    "scan_jinja_file",
    "scan_template_config",
    "scan_tokenizer_config",
]

# Real templates are a few KiB (the largest, with tool-calling prose, tens of KiB).
LARGE_TEMPLATE_CHARS = 64 * 1024
MAX_TEMPLATE_CHARS = 1024 * 1024


def _finding(severity: Severity, check: str, file: str, location: str, reason: str) -> Finding:
    return Finding(severity=severity, check=check, file=file, location=location, reason=reason)


def _static(source: Any, *, file: str, location: str, before: list[Finding]) -> list[Finding]:
    """The static findings of one template; Unverified (carrying `before` and what this one
    found) when it is not text, too large, or does not compile."""
    if not isinstance(source, str):
        raise Unverified(
            "a chat template entry has no template text", location=location, findings=before
        )
    if len(source) > MAX_TEMPLATE_CHARS:
        raise Unverified(
            f"the chat template is {len(source):,} characters, too large to analyse",
            location=location,
            findings=before,
        )
    env = sandboxed_environment()
    try:
        tree = env.parse(source)
    except Exception as err:  # syntax errors, nesting past the parser's recursion
        raise Unverified(
            _not_compiled(err), location=_at_line(location, err), findings=before
        ) from None
    findings = StaticChecks(file=file, location=location).run(tree)
    if len(source) > LARGE_TEMPLATE_CHARS:
        reason = f"the chat template is {len(source):,} characters, far beyond real ones"
        findings.append(_finding(Severity.LOW, "template.size", file, location, reason))
    try:
        env.from_string(tree)
    except Exception as err:  # unknown filters or tests, Python's own compile limits
        raise Unverified(
            _not_compiled(err), location=_at_line(location, err), findings=[*before, *findings]
        ) from err
    return findings


def check_templates(templates: list[tuple[str, Any]], *, file: str) -> list[Finding]:
    """Check the (location, text) chat templates of one file, rendering them in one child
    process. Raises Unverified, with the findings made so far, when one is not text, does
    not compile or is too large to analyse."""
    findings: list[Finding] = []
    to_render: list[tuple[str, str]] = []
    for location, source in templates:
        found = _static(source, file=file, location=location, before=findings)
        findings += found
        if not any(finding.severity is Severity.CRITICAL for finding in found):
            to_render.append((location, source))  # known hostile: nothing to learn from running it
    if to_render:
        try:
            rendered = trial_render_all(to_render, file=file)
        except Unverified as err:
            raise Unverified(
                err.reason, location=err.location, findings=[*findings, *err.findings]
            ) from err
        findings += [finding for found in rendered for finding in found]
    return findings


def check_template(source: str, *, file: str, location: str) -> list[Finding]:
    """Check one chat template's text; `location` says where it is in `file`
    (e.g. "metadata key 'tokenizer.chat_template'"). Raises Unverified when the template
    does not compile or is too large to analyse."""
    return check_templates([(location, source)], file=file)


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


def scan_jinja_file(path: Path, *, file: str) -> list[Finding]:
    """Check a standalone chat template file (chat_template.jinja in newer HF repos)."""
    data = read_capped(path, MAX_TEMPLATE_CHARS)
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Unverified(f"the template is not UTF-8 text (byte {err.start})") from err
    return check_template(source, file=file, location="chat template")


def scan_tokenizer_config(path: Path, *, file: str) -> list[Finding]:
    """Check the chat templates in a tokenizer_config.json (JSON, by its name): one string,
    or a list of {"name", "template"} entries."""
    config = read_config(path, json_only=True)
    return check_templates(templates_in(config), file=file) + code_findings(config, file=file)


def scan_template_config(path: Path, *, file: str) -> list[Finding]:
    """Check the chat templates in any JSON or YAML file with a top-level chat_template
    (chat_template.json, a processor config, a renamed tokenizer_config.json)."""
    config = read_config(path)
    return check_templates(templates_in(config), file=file) + code_findings(config, file=file)
