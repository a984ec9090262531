"""What a JSON schema's `pattern` will cost as a llama.cpp grammar, read as the converter
(llama-cpp-python's SchemaConverter._visit_pattern) reads it, token for token.

Measured as in owl/engine/schema_limits.py: optional parts in sequence (`.?.?.?…`) let one
token match along 2^n paths, all walked before llama.cpp refuses it, at every token: 4 took
0.19 s a token, 6 0.52 s, 16 3.2 s, `(.?){16}(.?){16}` over 60 s (a plain string costs
0.12 s). A quantifier on a quantifier (`a{0,1}{0,1}…`) chains rules that llama.cpp descends
recursively: 2,018 of them crash a 512 KB thread stack. A stray `]` or `}` sends the
converter's loop round for ever.
"""

from __future__ import annotations

from dataclasses import dataclass

from owl.errors import InvalidPrompt

MAX_REPEATS = 10_000  # {n}: flat copies
MAX_OPTIONAL_REPEATS = 500  # {n,m}: m − n nested groups
MAX_PATTERN_OPTIONALS = 6
MAX_PATTERN_GROUP_DEPTH = 32
MAX_STACKED_QUANTIFIERS = 4

_NON_LITERAL = set("|.()[]{}*+?")  # the converter's NON_LITERAL_SET


@dataclass(frozen=True)
class PatternCost:
    alternatives: int  # its | and one
    optionals: int  # optional parts in sequence, the exponent of the paths a token may take
    chars: int  # an estimate, from below, of the grammar text it becomes


@dataclass
class _Group:
    """A group being read: the optional parts (?, {n,m}) in sequence so far."""

    done: int = 0  # over the alternatives before the last |
    current: int = 0  # over the items of this alternative before the last
    last: int = 0  # of the last item, which a quantifier multiplies


def pattern_cost(pattern: str, *, where: str, rule: str) -> PatternCost | None:
    """The cost of `pattern` at `where` (a path in the schema) as grammar rule `rule`, or
    None where the converter refuses the pattern itself; InvalidPrompt over a limit."""
    return _Reader(where, rule).read(pattern)


class _Reader:
    def __init__(self, where: str, rule: str) -> None:
        self.where, self.rule, self.chars = where, rule, 0

    def read(self, pattern: str) -> PatternCost | None:
        if not (pattern.startswith("^") and pattern.endswith("$")):
            return None
        body = pattern[1:-1]
        self.chars = len(body) + len(self.rule) + 10
        groups, bars, stacked, item, i = [_Group()], 0, 0, 0, 0  # item: its text, 0 a literal
        while i < len(body):
            char, group = body[i], groups[-1]
            if char in "*+?{":
                stacked += 1
                if stacked > MAX_STACKED_QUANTIFIERS:
                    raise self.refuse(
                        f"has {stacked} quantifiers in a row at index {i + 1}, over owl's limit "
                        f"of {MAX_STACKED_QUANTIFIERS}; merge them"
                    )
                if char != "{":
                    group.last += char == "?"
                    i += 1
                    continue
                end = body.find("}", i)
                quantified = self.repeat(body[i + 1 : end], group.last, item) if end > 0 else None
                if quantified is None:
                    return None
                group.last, i = quantified, end + 1
                continue
            stacked = 0
            if char == "(":
                if len(groups) > MAX_PATTERN_GROUP_DEPTH:
                    raise self.refuse(
                        f"nests groups deeper than owl's limit of {MAX_PATTERN_GROUP_DEPTH}; "
                        "flatten it"
                    )
                groups.append(_Group())
                i += 1
                continue
            group.current, group.last = group.current + group.last, 0
            if char == ")":
                if len(groups) == 1:
                    return None  # unbalanced
                _close(groups)
                item, i = len(self.rule) + 4, i + 1
            elif char == "|":
                bars, group.done, group.current, i = bars + 1, group.done + group.current, 0, i + 1
            elif char == "[":
                end = i + 1
                while end < len(body) and body[end] != "]":
                    end += 2 if body[end] == "\\" else 1
                item, i = len(self.rule) + 4, end + 1
            elif char == ".":
                item, i = len(self.rule) + 4, i + 1
            else:
                item, i = 0, self.literal(body, i)
        while len(groups) > 1:
            _close(groups)
        optionals = groups[0].done + groups[0].current + groups[0].last
        if optionals > MAX_PATTERN_OPTIONALS:
            raise self.refuse(
                f"has {optionals} optional parts in sequence (?, {{n,m}}), over owl's limit of "
                f"{MAX_PATTERN_OPTIONALS}: a token may match along 2^{optionals} paths, and "
                "llama.cpp walks them at every token; make fewer parts optional"
            )
        return PatternCost(bars + 1, optionals, self.chars)

    def repeat(self, text: str, optionals: int, item: int) -> int | None:
        """The optional parts that quantifier {text} makes of an item holding `optionals`,
        or None where the converter refuses the quantifier."""
        nums = [part.strip() for part in text.split(",")]
        try:  # as the converter reads them
            if len(nums) == 1:
                low = high = int(nums[0])
            elif len(nums) == 2:
                low = int(nums[0]) if nums[0] else 0
                high = int(nums[1]) if nums[1] else None
            else:
                return None
        except ValueError:
            return None
        copies, spare = max(low, 0), 0 if high is None else max(high - low, 0)
        shown = "{" + text[:40] + "}"
        if copies > MAX_REPEATS:
            raise self.refuse(
                f"has a quantifier {shown} repeating {copies} times, over owl's limit of "
                f"{MAX_REPEATS}; lower it"
            )
        if spare > MAX_OPTIONAL_REPEATS:
            raise self.refuse(
                f"has a quantifier {shown} allowing {spare} optional repetitions, over owl's "
                f"limit of {MAX_OPTIONAL_REPEATS}: each nests one level deeper in llama.cpp's "
                "grammar parser; lower it"
            )
        # A literal's copies join into one literal; anything else is repeated by a rule name.
        self.chars += copies * (item + 1 if item else 1) + spare * (item + 4 if item else 7)
        if spare:
            return (copies + spare) * optionals + 1
        return (copies + (high is None)) * optionals

    def literal(self, body: str, start: int) -> int:
        """Where the converter's literal run from `start` ends."""
        i, end = start, len(body)
        while i < end:
            if body[i] == "\\" and i < end - 1:
                i += 2
            elif body[i] == '"':
                i += 1
            elif body[i] not in _NON_LITERAL and (
                i in (end - 1, start) or body[i + 1] == "." or body[i + 1] not in _NON_LITERAL
            ):
                i += 1
            else:
                break
        if i == start:  # the converter's loop would spin here for ever
            raise self.refuse(
                f"has an unescaped {body[start]!r} at index {start + 1}; escape it as "
                f"\\{body[start]}"
            )
        return i

    def refuse(self, what: str) -> InvalidPrompt:
        return InvalidPrompt(f"pattern at {self.where} {what}")


def _close(groups: list[_Group]) -> None:
    done = groups.pop()
    parent = groups[-1]
    parent.current, parent.last = parent.current + parent.last, done.done + done.current
