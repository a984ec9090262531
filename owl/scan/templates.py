"""Chat templates (GGUF `tokenizer.chat_template`, tokenizer_config.json, .jinja files).

A chat template is a program the engine runs on every request; CVE-2024-34359 was one
that read `cycler.__init__.__globals__.os` and ran a shell. owl renders templates only in
its sandbox (owl.formats.jinja_sandbox), so this checker reports intent and cost:

- static: the parsed template (never its Python code) is walked for private or internal
  attribute access, attribute names built at run time, exploit gadgets and imports of
  other templates, none of which a real chat template uses;
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
import tomllib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError

from owl.formats.jinja_sandbox import RenderLimitExceeded, render_bounded, sandboxed_environment
from owl.scan.findings import Finding, Severity, Unverified

# Real templates are a few KiB (the largest, with tool-calling prose, tens of KiB).
LARGE_TEMPLATE_CHARS = 64 * 1024
MAX_TEMPLATE_CHARS = 1024 * 1024
# A tokenizer_config.json can hold a large added vocabulary; past this it is not read.
MAX_CONFIG_BYTES = 50 * 1024 * 1024
# A sample conversation renders in milliseconds; these only stop a hostile template.
TRIAL_SECONDS = 1.0
TRIAL_MAX_CHARS = 1_000_000

_RULES = Path(__file__).with_name("templates.toml")
# str.format fields that reach a private attribute or key: "{0.__class__}", "{x[_y]}".
_FORMAT_FIELD = re.compile(r"\{[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+|\[[^\]{}]*\])*(?:\.|\[)_")
_DUNDER = re.compile(r"__\w+__|_[A-Za-z]\w*__\w+")  # __class__, or a name-mangled private
# String methods worth following when a template builds an attribute name from pieces.
_FOLDED_METHODS = {"lower", "upper", "strip", "lstrip", "rstrip", "replace", "join"}
_FOLDED_FILTERS = {"lower", "upper", "trim", "reverse", "join", "replace", "string"}
_MAX_FOLDED = 256  # longer strings are not attribute names


@dataclass(frozen=True)
class _Rules:
    internal_attributes: frozenset[str]
    jinja_gadgets: frozenset[str]
    flask_names: frozenset[str]
    attribute_arguments: dict[str, list[int]]
    conversations: list[dict[str, Any]]


@cache
def _rules() -> _Rules:
    with _RULES.open("rb") as table:
        data = tomllib.load(table)
    return _Rules(
        internal_attributes=frozenset(data["internal_attributes"]),
        jinja_gadgets=frozenset(data["jinja_gadgets"]),
        flask_names=frozenset(data["flask_names"]),
        attribute_arguments=data["attribute_arguments"],
        conversations=data["conversations"],
    )


def _attribute_severity(name: str) -> Severity | None:
    """How bad reading attribute `name` is in a chat template; None when it is ordinary."""
    if _DUNDER.fullmatch(name) or name in _rules().internal_attributes:
        return Severity.CRITICAL
    if name.startswith("_"):
        return Severity.HIGH
    return None


def _constants(every: list[nodes.Node]) -> dict[str, Any]:
    """Names the template sets once, to a constant (`{% set n = '__cla' ~ 'ss__' %}`)."""
    stores = Counter(n.name for n in every if isinstance(n, nodes.Name) and n.ctx != "load")
    constants: dict[str, Any] = {}
    for node in every:
        if isinstance(node, nodes.Assign) and isinstance(node.target, nodes.Name):
            if stores[node.target.name] == 1:
                folded = _fold(node.node, constants)
                if folded is not None:
                    constants[node.target.name] = folded
    return constants


def _fold(node: nodes.Node, known: Mapping[str, Any], depth: int = 0) -> str | None:
    """The string an expression always evaluates to, when it is built only from constants
    (`'_' ~ '_class_' ~ '_'`, `['__cla', 'ss__']|join`, a name set once to one); None
    otherwise."""
    if depth > 50:
        return None
    folded: Any = None
    if isinstance(node, nodes.Name) and node.ctx == "load":
        folded = known.get(node.name)
    elif isinstance(node, nodes.Const):
        folded = node.value if isinstance(node.value, str | int) else None
    elif isinstance(node, nodes.Concat):
        parts = [_fold(part, known, depth + 1) for part in node.nodes]
        folded = None if None in parts else "".join(str(part) for part in parts)
    elif isinstance(node, nodes.Add | nodes.Mul):
        left, right = _fold(node.left, known, depth + 1), _fold(node.right, known, depth + 1)
        if isinstance(node, nodes.Add) and isinstance(left, str) and isinstance(right, str):
            folded = left + right
        elif isinstance(node, nodes.Mul) and isinstance(left, str) and isinstance(right, int):
            folded = left * right if 0 <= right <= _MAX_FOLDED else None
    elif isinstance(node, nodes.List | nodes.Tuple):
        return None  # folded only as the value of join below
    elif isinstance(node, nodes.Filter) and node.name in _FOLDED_FILTERS and node.node:
        folded = _fold_call(node.name, node.node, node.args, known, depth)
    elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
        if node.node.attr in _FOLDED_METHODS:
            folded = _fold_call(
                node.node.attr, node.node.node, node.args, known, depth, method=True
            )
    if isinstance(folded, str) and len(folded) > _MAX_FOLDED:
        return None
    return folded


def _fold_call(
    name: str,
    target: nodes.Node,
    args: list[nodes.Node],
    known: Mapping[str, Any],
    depth: int,
    *,
    method: bool = False,
) -> str | None:
    if name == "join":  # items|join(separator), or separator.join(items)
        items = (args[0] if args else None) if method else target
        if method:
            separator = _fold(target, known, depth + 1)
        else:
            separator = _fold(args[0], known, depth + 1) if args else ""
        if not isinstance(items, nodes.List | nodes.Tuple) or not isinstance(separator, str):
            return None
        pieces = [_fold(item, known, depth + 1) for item in items.items]
        return None if None in pieces else separator.join(str(piece) for piece in pieces)
    text = _fold(target, known, depth + 1)
    values = [_fold(arg, known, depth + 1) for arg in args]
    if not isinstance(text, str) or not all(isinstance(value, str) for value in values):
        return None
    if name == "reverse":
        return text[::-1]
    if name in ("trim", "string"):
        return text.strip() if name == "trim" else text
    try:
        return getattr(text, name)(*values)
    except TypeError:  # arguments these methods do not take
        return None


class _Walk:
    """The static checks over one parsed template; findings kept once per reason."""

    def __init__(self, *, file: str, location: str) -> None:
        self.file, self.location = file, location
        self.findings: dict[tuple[str, str], Finding] = {}
        self.consumed: set[int] = set()  # expressions already judged as attribute names
        self.assigned: set[str] = set()  # names the template sets, loops over or takes
        self.known: dict[str, Any] = {}  # names set once to a constant string

    def consume(self, node: nodes.Node) -> None:
        stack = [node]
        while stack:
            item = stack.pop()
            self.consumed.add(id(item))
            stack.extend(item.iter_child_nodes())

    def add(self, severity: Severity, check: str, node: nodes.Node, reason: str) -> None:
        where = f"{self.location}, line {node.lineno}" if node.lineno else self.location
        self.findings.setdefault(
            (check, reason),
            Finding(severity=severity, check=check, file=self.file, location=where, reason=reason),
        )

    def attribute(self, node: nodes.Node, name: str, how: str) -> None:
        severity = _attribute_severity(name)
        if severity is not None:
            self.add(
                severity,
                "template.attribute",
                node,
                f"{how} {name!r}, a Python internal that sandbox escapes go through; "
                "no chat template needs it",
            )

    def attribute_argument(self, filter_node: nodes.Filter, arg: nodes.Node) -> None:
        name = _fold(arg, self.known)
        self.consume(arg)
        if isinstance(name, str):
            for part in name.split("."):
                self.attribute(filter_node, part, f"the {filter_node.name} filter reads")
        elif filter_node.name in ("attr", "map"):
            self.add(
                Severity.HIGH,
                "template.attribute",
                filter_node,
                f"the {filter_node.name} filter reads an attribute whose name is computed "
                "while rendering, a way to hide '__class__'-style access",
            )

    def filter(self, node: nodes.Filter) -> None:
        positions = _rules().attribute_arguments.get(node.name, [])
        named = [arg for index, arg in enumerate(node.args) if index in positions]
        named += [kw.value for kw in node.kwargs if kw.key == "attribute"]
        if node.name == "map" and node.args and _fold(node.args[0], self.known) == "attr":
            named += node.args[1:2]
        if node.name == "attr" and (node.dyn_args or node.dyn_kwargs or not node.args):
            self.add(
                Severity.HIGH,
                "template.attribute",
                node,
                "the attr filter reads an attribute whose name is computed while rendering, "
                "a way to hide '__class__'-style access",
            )
        for arg in named:
            self.attribute_argument(node, arg)

    def visit(self, node: nodes.Node) -> None:
        rules = _rules()
        if isinstance(node, nodes.Getattr):
            self.attribute(node, node.attr, "reads the attribute")
        elif isinstance(node, nodes.Getitem):
            name = _fold(node.arg, self.known)
            self.consume(node.arg)
            if isinstance(name, str):
                self.attribute(node, name, "reads the item")
        elif isinstance(node, nodes.Filter):
            self.filter(node)
        elif isinstance(node, nodes.Name) and node.ctx == "load":
            flask = node.name in rules.flask_names and node.name not in self.assigned
            if node.name in rules.jinja_gadgets or node.name.startswith("__") or flask:
                self.add(
                    Severity.HIGH,
                    "template.gadget",
                    node,
                    f"uses {node.name!r}, a global that exploit payloads start from; "
                    "no chat template needs it",
                )
        elif isinstance(node, nodes.Include | nodes.Import | nodes.FromImport | nodes.Extends):
            keyword = type(node).__name__.lower().replace("fromimport", "from")
            self.add(
                Severity.HIGH,
                "template.import",
                node,
                f"loads another template ({{% {keyword} %}}); a chat template has none to load",
            )
        elif isinstance(node, nodes.Const | nodes.Concat) and id(node) not in self.consumed:
            self.constant(node)

    def constant(self, node: nodes.Const | nodes.Concat) -> None:
        text = _fold(node, self.known)
        if not isinstance(text, str):
            return
        if _FORMAT_FIELD.search(text):
            self.add(
                Severity.CRITICAL,
                "template.attribute",
                node,
                "a format string reaches a private attribute (like '{0.__class__}'), "
                "a sandbox-escape step",
            )
        elif _attribute_severity(text) is Severity.CRITICAL:
            self.add(
                Severity.HIGH,
                "template.attribute",
                node,
                f"builds the string {text!r}, the name of a Python internal; "
                "no chat template needs it",
            )
        if isinstance(node, nodes.Concat):
            self.consume(node)

    def run(self, tree: nodes.Template) -> list[Finding]:
        every = [tree]  # loops, not recursion: trees may be deep
        for node in every:
            every.extend(node.iter_child_nodes())
        self.assigned = {
            node.name for node in every if isinstance(node, nodes.Name) and node.ctx != "load"
        }
        self.known = _constants(every)
        # Parents before children, in source order: a parent consumes what it judged.
        for node in sorted(every, key=lambda node: node.lineno or 0):
            if id(node) not in self.consumed:
                self.visit(node)
        return list(self.findings.values())


_REFUSED_ATTRIBUTE = re.compile(r"access to attribute '(.*?)' of")


def _sandbox_finding(err: SecurityError, *, file: str, where: str) -> Finding | None:
    """A finding for what the sandbox refused; None when it was a list or dict method
    (append, update, …): templates written for engines that allow those are broken here,
    not hostile."""
    refused = _REFUSED_ATTRIBUTE.search(str(err))
    if refused and _attribute_severity(refused.group(1)) is None:
        return None
    reason = f"tried an operation the sandbox refuses while rendering: {err}"
    return _finding(Severity.CRITICAL, "template.sandbox", file, where, reason)


def _trial_render(template: Any, *, file: str, location: str) -> list[Finding]:
    """Render the sample conversations; findings for limits hit or sandbox refusals."""
    rendered = 0
    for conversation in _rules().conversations:
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
    findings = _Walk(file=file, location=location).run(tree)
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
