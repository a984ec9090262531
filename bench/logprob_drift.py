"""How far generated tokens' logprobs move when a request shares the batch with others.

Prompt scoring (echo / max_tokens 0) is read alone, so its numbers never depend on what
else runs (owl/engine/scheduler.py); generation is batched, and llama.cpp's numbers depend
on a micro-batch's size and what shares it. This measures that: each of `--prompts` prompts
generated greedily alone, then the same prompts 4 at a time (`--parallel` slots), with the
prompt cache off so that only the batching differs. Twice: short prompts (four fit one
batch whole) and long ones (a ~300-token system message: four are read in chunks that
start elsewhere than alone). Per generated position (while both runs chose the same
tokens): the largest and mean |Δ logprob|, the share of positions that moved at all, and
how many generations chose different tokens.

    .venv/bin/python bench/logprob_drift.py [--tokens 48] [--threads 2]

Prints one JSON line; progress goes to stderr. Never a timed assert.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import EMBEDDED, cpu_name, load_average, log, run_and_print

PROMPTS = [
    "Write a short story about a dragon who learns to cook.",
    "Explain how a steam engine works.",
    "Describe a walk through a busy market.",
    "Write a letter to a friend about the mountains.",
    "List the planets of the solar system and one fact about each.",
    "What makes bread rise?",
    "Give three tips for learning a new language.",
    "Summarise the water cycle for a child.",
]


SYSTEM = " ".join(
    f"Rule {n}: answer plainly, cite no sources, and keep to {n + 2} sentences at most."
    for n in range(1, 19)
)  # about 300 tokens


def _generate(
    model, prompts: list[str], tokens: int, system: str | None
) -> list[list[tuple[int, float]]]:
    """Greedy (token, logprob) pairs of each prompt, all submitted at once."""
    from owl.engine import SamplingParams

    params = SamplingParams(temperature=0, max_tokens=tokens, logprobs=0)
    head = [{"role": "system", "content": system}] if system else []
    streams = [
        model.generate(model.chat_tokens([*head, {"role": "user", "content": p}]), params,
                       cache_prompt=False)
        for p in prompts
    ]  # fmt: skip
    return [
        [(entry.token, entry.logprob) for delta in stream for entry in delta.logprobs]
        for stream in streams
    ]


def run(args: argparse.Namespace, home: Path) -> dict:
    from owl.engine.llama.backend import LlamaCppBackend
    from owl.engine.model import Model
    from owl.pull.sources.package import locate
    from owl.store.ref import parse_ref

    path = locate(parse_ref(EMBEDDED))
    backend = LlamaCppBackend(path, n_ctx=1024, threads=args.threads, slots=args.parallel)
    model = Model(backend, name="smollm2")
    prompts = PROMPTS[: args.prompts]
    result: dict = {"bench": "logprob_drift", "model": "smollm2 (Q4_1, embedded)"}
    try:
        for case, system in (("short_prompts", None), ("long_prompts", SYSTEM)):
            log(f"{case}: alone")
            alone = [_generate(model, [prompt], args.tokens, system)[0] for prompt in prompts]
            log(f"{case}: {args.parallel} at a time")
            together: list[list[tuple[int, float]]] = []
            for start in range(0, len(prompts), args.parallel):
                batch = prompts[start : start + args.parallel]
                together += _generate(model, batch, args.tokens, system)
            result[case] = _compared(alone, together)
    finally:
        model.close()
    return {
        **result,
        "prompts": len(prompts),
        "parallel": args.parallel,
        "threads": args.threads,
        "cpu": cpu_name(),
        "load": load_average(),
    }


def _compared(
    alone: list[list[tuple[int, float]]], together: list[list[tuple[int, float]]]
) -> dict:
    deltas: list[float] = []
    diverged = 0
    for one, many in zip(alone, together, strict=True):
        for (token_a, logprob_a), (token_b, logprob_b) in zip(one, many, strict=False):
            if token_a != token_b:
                diverged += 1
                break
            deltas.append(abs(logprob_a - logprob_b))
        else:
            diverged += len(one) != len(many)
    return {
        "tokens_compared": len(deltas),
        "max_abs_delta": max(deltas, default=0.0),
        "mean_abs_delta": sum(deltas) / len(deltas) if deltas else 0.0,
        "moved_share": sum(delta > 0 for delta in deltas) / len(deltas) if deltas else 0.0,
        "generations_diverged": diverged,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--prompts", type=int, default=len(PROMPTS))
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--home", type=Path, default=None)
    run_and_print(run, parser.parse_args())


if __name__ == "__main__":
    main()
