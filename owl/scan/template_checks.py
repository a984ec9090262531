"""The static checks of a chat template: its parsed tree (never its Python code) is walked for
private or internal attribute access, attribute names built at run time, exploit gadgets and
imports of other templates, none of which a real chat template uses.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import nodes

from owl.scan.findings import Finding, Severity
from owl.scan.template_folding import constants, fold
from owl.scan.template_rules import attribute_severity, rules

# str.format fields that reach a private attribute or key: "{0.__class__}", "{x[_y]}".
_FORMAT_FIELD = re.compile(r"\{[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+|\[[^\]{}]*\])*(?:\.|\[)_")


class StaticChecks:
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
        severity = attribute_severity(name)
        if severity is not None:
            self.add(
                severity,
                "template.attribute",
                node,
                f"{how} {name!r}, a Python internal that sandbox escapes go through; "
                "no chat template needs it",
            )

    def attribute_argument(self, filter_node: nodes.Filter, arg: nodes.Node) -> None:
        name = fold(arg, self.known)
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
        positions = rules().attribute_arguments.get(node.name, [])
        named = [arg for index, arg in enumerate(node.args) if index in positions]
        named += [kw.value for kw in node.kwargs if kw.key == "attribute"]
        if node.name == "map" and node.args and fold(node.args[0], self.known) == "attr":
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
        table = rules()
        if isinstance(node, nodes.Getattr):
            self.attribute(node, node.attr, "reads the attribute")
        elif isinstance(node, nodes.Getitem):
            name = fold(node.arg, self.known)
            self.consume(node.arg)
            if isinstance(name, str):
                self.attribute(node, name, "reads the item")
        elif isinstance(node, nodes.Filter):
            self.filter(node)
        elif isinstance(node, nodes.Name) and node.ctx == "load":
            flask = node.name in table.flask_names and node.name not in self.assigned
            if node.name in table.jinja_gadgets or node.name.startswith("__") or flask:
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
        text = fold(node, self.known)
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
        elif attribute_severity(text) is Severity.CRITICAL:
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
        self.known = constants(every)
        # Parents before children, in source order: a parent consumes what it judged.
        for node in sorted(every, key=lambda node: node.lineno or 0):
            if id(node) not in self.consumed:
                self.visit(node)
        return list(self.findings.values())
