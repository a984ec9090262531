"""The trial render of chat templates, in a process of its own under OS limits.

Run as `python -m owl.scan.template_worker` by template_trial: it reads a JSON request
({"file", "templates": [{"source", "location"}], "cpu_seconds", "memory_bytes", "seconds",
"max_chars"}) on stdin, limits its own CPU time and address space, and writes one JSON line
of findings per template, flushed, so that when a limit kills it the parent knows which
template was rendering. In-process limits (jinja_sandbox) stop what Python code does; the
OS limits stop what one C call does (comparing or hashing deeply shared lists).
"""

from __future__ import annotations

import copy
import json
import re
import sys
from typing import Any

from jinja2.exceptions import SecurityError

from owl.formats.jinja_sandbox import RenderLimitExceeded, render_bounded, sandboxed_environment
from owl.scan.findings import Finding, Severity
from owl.scan.template_rules import attribute_severity, rules

_REFUSED_ATTRIBUTE = re.compile(r"access to attribute '(.*?)' of")
# Other runtimes that load the same model render templates with no such limits.
_HANGS_ELSEWHERE = (
    "transformers' apply_chat_template and llama-cpp-python have no such limit and hang or "
    "run out of memory on it: a denial-of-service payload"
)


def _finding(severity: Severity, check: str, file: str, location: str, reason: str) -> Finding:
    return Finding(severity=severity, check=check, file=file, location=location, reason=reason)


def _sandbox_finding(err: SecurityError, *, file: str, where: str) -> Finding | None:
    """A finding for what the sandbox refused; None when it was a list or dict method
    (append, update, …): templates written for engines that allow those are broken here,
    not hostile."""
    refused = _REFUSED_ATTRIBUTE.search(str(err))
    if refused and attribute_severity(refused.group(1)) is None:
        return None
    reason = f"tried an operation the sandbox refuses while rendering: {err}"
    return _finding(Severity.CRITICAL, "template.sandbox", file, where, reason)


def limit_finding(limit: str, detail: str, *, file: str, where: str) -> Finding:
    """The high finding for a template that a trial render could not finish within `limit`."""
    reason = f"past the trial render's {limit} limit ({detail}) on a short sample conversation; "
    return _finding(Severity.HIGH, "template.resource", file, where, reason + _HANGS_ELSEWHERE)


def trial_render(
    source: str, *, file: str, location: str, seconds: float, max_chars: int, memory: str = ""
) -> list[Finding]:
    """Render the sample conversations; findings for limits hit or sandbox refusals.
    `memory` describes the OS memory limit the render runs under, if any."""
    template = sandboxed_environment().from_string(source)
    rendered = 0
    for conversation in rules().conversations:
        context = copy.deepcopy({k: v for k, v in conversation.items() if k != "name"})
        context.update(bos_token="<s>", eos_token="</s>")
        where = f"{location}, rendering {conversation['name']!r}"
        try:
            render_bounded(template, context, seconds=seconds, max_chars=max_chars)
        except RenderLimitExceeded as err:
            detail = memory if err.limit == "memory" and memory else str(err)
            return [limit_finding(err.limit, detail, file=file, where=where)]
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


def _limit_self(cpu_seconds: int, memory_bytes: int) -> None:
    try:
        import resource
    except ImportError:  # Windows: the process is still apart from owl's
        return

    def lower(which: int, soft: int, hard: int) -> None:
        _, current = resource.getrlimit(which)  # never above a limit set from outside
        if current != resource.RLIM_INFINITY:
            soft, hard = min(soft, current), min(hard, current)
        resource.setrlimit(which, (soft, hard))

    # SIGXCPU at the soft limit; the hard one, a second later, is a SIGKILL.
    lower(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)
    try:
        with open("/proc/self/status") as status:  # what the interpreter already maps
            mapped = next(
                int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize")
            )
    except (OSError, StopIteration, ValueError):
        mapped = 0
    lower(resource.RLIMIT_AS, mapped + memory_bytes, mapped + memory_bytes)


def main() -> None:
    request: dict[str, Any] = json.load(sys.stdin)
    _limit_self(request["cpu_seconds"], request["memory_bytes"])
    memory = f"{request['memory_bytes'] // 2**20:,} MiB of memory"
    for entry in request["templates"]:
        where = entry["location"]
        try:
            findings = trial_render(
                entry["source"],
                file=request["file"],
                location=where,
                seconds=request["seconds"],
                max_chars=request["max_chars"],
                memory=memory,
            )
        except MemoryError:  # outside a render: compiling, or a copy of a conversation
            findings = [limit_finding("memory", memory, file=request["file"], where=where)]
        line = json.dumps([finding.model_dump(mode="json") for finding in findings])
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
