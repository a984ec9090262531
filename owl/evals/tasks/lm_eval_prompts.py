"""How lm-eval (0.4.13) turns a row into prompt text, field for field, without its code.

A parity test compares owl's per-question predictions with lm-eval's, so these follow
`ConfigurableTask.doc_to_text/target/choice`, `fewshot_context` and `build_qa_turn` to the
character: a few-shot example is `text + target_delimiter + answer + fewshot_delimiter`,
the question is `text` alone, a description goes first with nothing after it, and a
gen_prefix is joined with a space only where neither side has whitespace at the joint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from owl.errors import EvalError
from owl.evals.tasks.templates import literal, render

Row = dict[str, Any]


@dataclass(frozen=True)
class Fields:
    """The templates of one turn (the question's, or the few-shot examples' overrides)."""

    doc_to_text: Any
    doc_to_target: Any
    doc_to_choice: Any
    gen_prefix: Any
    target_delimiter: str
    fewshot_delimiter: str


class Prompts:
    """The text, target and choices of a row, as lm-eval renders them."""

    def __init__(self, *, task: str, features: frozenset[str], description: Any) -> None:
        self.task = task
        self.features = features
        self.description = description

    def text(self, doc: Row, spec: Any, *, has_choices: bool) -> Any:
        if isinstance(spec, int) and not isinstance(spec, bool):
            return spec
        if not isinstance(spec, str):
            raise EvalError(f"task {self.task}: doc_to_text must be a field name or a template")
        if spec in self.features:
            return doc[spec]
        text = render(spec, doc, where=f"task {self.task}: doc_to_text")
        # lm-eval: a text of digits with choices is the index of the right context
        return int(text) if text.isdigit() and has_choices else text

    def target(self, doc: Row, spec: Any, *, has_choices: bool) -> Any:
        if isinstance(spec, int | list) and not isinstance(spec, bool):
            return spec
        if not isinstance(spec, str):
            raise EvalError(f"task {self.task}: doc_to_target must be a field name or a template")
        if spec in self.features:
            return doc[spec]
        text = render(spec, doc, where=f"task {self.task}: doc_to_target")
        if text.isdigit() and has_choices:
            return int(text)
        if len(text) >= 2 and text[0] == "[" and text[-1] == "]":
            try:
                return literal(text, where=f"task {self.task}: doc_to_target")
            except EvalError:
                return text
        return text

    def choices(self, doc: Row, spec: Any) -> list[Any]:
        where = f"task {self.task}: doc_to_choice"
        if isinstance(spec, list):
            value: Any = spec
        elif isinstance(spec, dict):
            value = list(spec.values())
        elif isinstance(spec, str):
            value = (
                doc[spec]
                if spec in self.features
                else literal(render(spec, doc, where=where), where=where)
            )
        else:
            raise EvalError(f"{where} must be a list, a field name or a template giving a list")
        if not isinstance(value, list) or not value:
            raise EvalError(
                f"{where} gave {value!r} for row {_brief(doc)}; it must give a list of choices"
            )
        return value

    def resolve(self, doc: Row, spec: Any, *, what: str) -> str | None:
        """lm-eval's resolve_field: a row's field when `spec` names one, else a template."""
        if not spec:
            return None
        if not isinstance(spec, str):
            raise EvalError(f"task {self.task}: {what} must be text")
        value = doc[spec] if spec in doc else render(spec, doc, where=f"task {self.task}: {what}")
        return str(value)

    def turn(
        self, doc: Row, fields: Fields, *, answered: bool
    ) -> tuple[Any, list[Any] | None, Any, str | None]:
        """(text, choices or None, target, gen_prefix) of a row under `fields`."""
        has_choices = fields.doc_to_choice is not None
        text = self.text(doc, fields.doc_to_text, has_choices=has_choices)
        choices = self.choices(doc, fields.doc_to_choice) if has_choices else None
        target = (
            self.target(doc, fields.doc_to_target, has_choices=has_choices) if answered else None
        )
        return text, choices, target, self.resolve(doc, fields.gen_prefix, what="gen_prefix")

    def context_head(
        self, doc: Row, fewshot: list[Row], fields: Fields, *, multiple_input: bool
    ) -> str:
        """The description and the few-shot examples that come before the question."""
        parts = [self.resolve(doc, self.description, what="description") or ""]
        for shot in fewshot:
            text, choices, target, prefix = self.turn(shot, fields, answered=True)
            if multiple_input:
                text, choices = _pick(choices, text, self.task), None
            parts.append(
                qa_turn(
                    text,
                    choices,
                    target,
                    gen_prefix=prefix,
                    target_delimiter=fields.target_delimiter,
                    fewshot_delimiter=fields.fewshot_delimiter,
                    task=self.task,
                )
            )
        return "".join(parts)


def _pick(choices: list[Any] | None, index: Any, task: str) -> Any:
    if not isinstance(index, int) or choices is None or not 0 <= index < len(choices):
        raise EvalError(f"task {task}: doc_to_text gave {index!r}, not an index into the choices")
    return choices[index]


def _brief(doc: Row) -> str:
    text = repr(doc)
    return text if len(text) <= 120 else text[:117] + "..."


def maybe_delimit(prefix: str | None, suffix: str | None, delimiter: str = " ") -> str:
    if not prefix:
        return suffix or ""
    if not suffix:
        return prefix
    if prefix[-1].isspace() or suffix[0].isspace():
        return prefix + suffix
    return prefix + delimiter + suffix


def requires_delimiter(prefix: str, suffix: str) -> bool:
    if prefix == "":
        return False
    return not (prefix[-1].isspace() or suffix[0].isspace())


def qa_turn(
    text: Any,
    choices: list[Any] | None,
    target: Any,
    *,
    gen_prefix: str | None,
    target_delimiter: str,
    fewshot_delimiter: str,
    task: str,
) -> str:
    """lm-eval's build_qa_turn rendered as plain text (no chat template)."""
    if not isinstance(text, str):
        raise EvalError(f"task {task}: doc_to_text gave {text!r}, not text")
    has_answer = target is not None and target != ""
    if has_answer and not gen_prefix:
        joint = target_delimiter
    elif gen_prefix and requires_delimiter(text, gen_prefix):
        joint = target_delimiter
    else:
        joint = ""
    out = text + joint
    if has_answer:
        if choices and isinstance(target, int):
            if not 0 <= target < len(choices):
                raise EvalError(f"task {task}: a few-shot target {target} is not a choice index")
            answer = choices[target]
        elif isinstance(target, list):
            answer = target[0]
        else:
            answer = target
        out += maybe_delimit(gen_prefix, str(answer), " ") + fewshot_delimiter
    elif gen_prefix:
        out += gen_prefix
    return out
