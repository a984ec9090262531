"""Run the trial render of a file's chat templates in one child process under OS limits.

jinja_sandbox's limits stop Python code; one C call (comparing two deeply shared lists,
2**60 steps) runs on where no trace function can stop it, and an allocation the charges
undercount can take the memory. So the render runs in `python -m owl.scan.template_worker`
with RLIMIT_CPU and RLIMIT_AS: a template that gets it killed is a high finding naming the
limit, and owl carries on. One process per file (not per conversation) keeps the cost to
one interpreter start.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

from owl.scan.findings import Finding, Severity, Unverified
from owl.scan.template_worker import limit_finding

# A sample conversation renders in milliseconds; these only stop a hostile template.
TRIAL_SECONDS = 1.0
TRIAL_MAX_CHARS = 1_000_000
# CPU time for the interpreter to start, then per template: its renders stop at the first
# limit they hit, so one template never needs much more than TRIAL_SECONDS.
STARTUP_CPU_SECONDS = 3.0
CPU_SECONDS_PER_TEMPLATE = TRIAL_SECONDS + 1.0
# Address space beyond what the interpreter maps at start: far above what the size guards
# let a render make (a few times MAX_VALUE_CHARS), far below what hurts a machine.
TRIAL_MEMORY_BYTES = 1024 * 2**20
# Only a child that stops using CPU (a machine swapping, a stopped process) gets this far.
WALL_SECONDS_PER_CPU_SECOND = 10

_OWL_ROOT = str(Path(__file__).resolve().parents[2])
_KILLED_BY = {
    getattr(signal, "SIGXCPU", None): "CPU-time",
    # The hard CPU limit, or the kernel's OOM killer.
    getattr(signal, "SIGKILL", None): "CPU-time or memory",
}


def _run(file: str, batch: list[tuple[str, str]]) -> tuple[list[list[Finding]], int, str]:
    """One child for `batch`: the findings of the templates it finished, its exit status and
    the end of what it wrote on stderr."""
    cpu = math.ceil(STARTUP_CPU_SECONDS + CPU_SECONDS_PER_TEMPLATE * len(batch))
    request = {
        "file": file,
        "templates": [{"location": where, "source": source} for where, source in batch],
        "cpu_seconds": cpu,
        "memory_bytes": TRIAL_MEMORY_BYTES,
        "seconds": TRIAL_SECONDS,
        "max_chars": TRIAL_MAX_CHARS,
    }
    # -P: the working folder (often the model folder being scanned, a json.py in it) must
    # not come first on the child's import path; owl's own root does, without empty entries.
    paths = [_OWL_ROOT, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")  # no thread pools to map
    try:
        done = subprocess.run(
            [sys.executable, "-P", "-m", "owl.scan.template_worker"],
            input=json.dumps(request).encode(),
            capture_output=True,
            env=env,
            timeout=cpu * WALL_SECONDS_PER_CPU_SECOND,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise Unverified(
            f"the trial render of the chat templates did not finish in {err.timeout:g} s of "
            "wall-clock time (the machine may be overloaded)"
        ) from None
    except OSError as err:
        raise Unverified(f"owl could not start its trial render: {err}") from err
    results = []
    for line in done.stdout.decode("utf-8", errors="replace").splitlines():
        try:
            results.append([Finding.model_validate(item) for item in json.loads(line)])
        except ValueError:
            break  # a line cut off when the child was killed
    return results, done.returncode, done.stderr.decode("utf-8", errors="replace")[-500:]


def trial_render_all(templates: list[tuple[str, str]], *, file: str) -> list[list[Finding]]:
    """The trial-render findings of each (location, source) template of `file`, in order.

    A template that gets the child killed by a limit gets a high finding; the templates after
    it are rendered in a fresh child. Unverified when the child fails for any other reason
    (owl's fault, not the template's, so nothing is called clean or unsafe on it).
    """
    findings: list[list[Finding]] = []
    while len(findings) < len(templates):
        batch = templates[len(findings) :]
        results, status, stderr = _run(file, batch)
        findings += results[: len(batch)]
        if len(results) >= len(batch):
            break
        where = batch[len(results)][0]
        if status >= 0:
            reason = stderr.strip().splitlines()[-1:] or [f"exit status {status}"]
            raise Unverified(
                f"owl's trial render of the chat template failed: {reason[0]}", location=where
            )
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = str(-status)
        limit = _KILLED_BY.get(-status)
        if limit is None:  # a signal no limit sends (SIGSEGV, SIGABRT)
            reason = f"crashed owl's trial renderer ({name}): no chat template can do that"
            crash = Finding(
                severity=Severity.HIGH,
                check="template.resource",
                file=file,
                location=where,
                reason=reason,
            )
            findings.append([crash])
            continue
        detail = f"the renderer was killed by {name}"
        findings.append([limit_finding(limit, detail, file=file, where=where)])
    return findings
