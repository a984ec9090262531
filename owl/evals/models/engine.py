"""A stored GGUF model evaluated in this process, through owl's engine.

Log-likelihoods come from a Scorer (owl/evals/models/scoring.py: lm-eval's arithmetic, the
shared context decoded once per question); generations from the engine's Model, greedily,
through the model's chat template when a request asks for chat, constrained by owl's JSON
schema grammar or its tool-call format (owl/engine/tool_calls.py, as `owl serve` offers
tools). Each is loaded on first use, so a run of only one kind of task loads one; LoRA
adapters apply to both. Every decode runs on the engine thread (owl/engine/worker.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from owl.config import Settings
from owl.engine import Model, SamplingParams
from owl.engine.context_window import context_size
from owl.engine.grammar import json_grammar
from owl.engine.llama.scorer import Scorer
from owl.engine.tool_calls import Tools, parse, with_tools
from owl.engine.tool_calls import grammar as tool_grammar
from owl.engine.worker import engine_thread
from owl.errors import EvalError
from owl.evals.models.scoring import score_choices, score_rolling
from owl.evals.scorer import open_scorer
from owl.evals.tasks.request import Answer, Request
from owl.store import Manifest, Store

MAX_STOP = 16  # stop strings the engine takes (owl/engine/sampling.py)


class EngineModel:
    """`manifest` with `adapters` applied (at scale 1.0), as an EvalModel.

    Its context is the one `owl run` would load it with (settings.ctx, capped by what the
    model was trained for); lm-eval's max_length is that too.
    """

    price_per_1k_tokens: float | None = None

    def __init__(
        self,
        manifest: Manifest,
        *,
        label: str,
        adapters: Sequence[Manifest] = (),
        store: Store,
        settings: Settings,
        allow_unsafe: bool = False,
        by: str = "owl eval",
    ) -> None:
        self.label = label
        self.manifest = manifest
        self.adapters = list(adapters)
        # The adapters change the numbers: their digests are part of what was evaluated.
        self.digest = "+".join(m.weights.digest for m in [manifest, *self.adapters])
        self.n_ctx = context_size(manifest, settings)
        self._store, self._settings = store, settings
        self._allow_unsafe, self._by = allow_unsafe, by
        self._scorer: Scorer | None = None
        self._model: Model | None = None

    def answer(self, requests: Sequence[Request]) -> list[Answer]:
        """An Answer per request, in order; loglikelihood requests of one context are
        scored with the context decoded once."""
        answers: list[Answer | None] = [None] * len(requests)
        contexts: dict[str, list[int]] = {}
        generating: list[int] = []
        for index, request in enumerate(requests):
            if request.kind == "loglikelihood":
                contexts.setdefault(request.context, []).append(index)
            elif request.kind == "loglikelihood_rolling":
                scored = self._on_engine(score_rolling, self._scoring(), request.context)
                answers[index] = Answer(
                    logprob=scored.logprob, greedy=scored.greedy, tokens=scored.tokens
                )
            elif request.kind == "generate_until":
                generating.append(index)
            else:
                raise EvalError(f"unknown request kind '{request.kind}'")
        for context, members in contexts.items():
            continuations = [requests[index].continuation for index in members]
            results = self._on_engine(score_choices, self._scoring(), context, continuations)
            for index, scored in zip(members, results, strict=True):
                answers[index] = Answer(
                    logprob=scored.logprob, greedy=scored.greedy, tokens=scored.tokens
                )
        if generating:
            generated = self._generate([requests[index] for index in generating])
            for index, answer in zip(generating, generated, strict=True):
                answers[index] = answer
        assert all(answer is not None for answer in answers)
        return answers  # type: ignore[return-value]

    def close(self) -> None:
        """Free what was loaded (safe to call twice)."""
        if self._scorer is not None:
            self._on_engine(self._scorer.close)
            self._scorer = None
        if self._model is not None:
            self._model.close()
            self._model = None

    def __enter__(self) -> EngineModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- loading ---------------------------------------------------------------------------

    @staticmethod
    def _on_engine(function: Any, *args: Any) -> Any:
        # llama.cpp's OpenMP threads slow down threefold once decodes come from two threads.
        return engine_thread().submit(function, *args).result()

    def _scoring(self) -> Scorer:
        if self._scorer is None:
            self._scorer = open_scorer(
                self.manifest,
                n_ctx=self.n_ctx,
                store=self._store,
                settings=self._settings,
                allow_unsafe=self._allow_unsafe,
                by=self._by,
                adapters=self.adapters,
            )
        return self._scorer

    def _generating(self) -> Model:
        if self._model is None:
            from owl import engine

            self._model = engine.load(  # type: ignore[assignment]  (CHAT: a Model)
                self.manifest,
                store=self._store,
                settings=self._settings.model_copy(update={"ctx": self.n_ctx}),
                allow_unsafe=self._allow_unsafe,
                by=self._by,
                slots=1,  # a batch's arithmetic differs from a lone sequence's: reproducible
                adapters=self.adapters,
            )
        assert self._model is not None
        return self._model

    # --- generation ------------------------------------------------------------------------

    def _generate(self, requests: Sequence[Request]) -> list[Answer]:
        model = self._generating()
        # Every request's grammar and prompt first (a bad schema fails before any runs),
        # then all submitted at once: they queue on the one slot, each buffering its output.
        prepared = [_prepared(request) for request in requests]
        streams = [
            model.complete(request.context, params)
            if messages is None
            else model.chat(messages, params)
            for request, (params, messages, _) in zip(requests, prepared, strict=True)
        ]
        answers = []
        for stream, (_, _, tools) in zip(streams, prepared, strict=True):
            with stream:
                text, tokens = "", 0
                for delta in stream:
                    text += delta.text
                    if delta.usage is not None:
                        tokens = delta.usage.total_tokens
            answers.append(_answer(text, tokens, tools=tools))
        return answers


def _prepared(
    request: Request,
) -> tuple[SamplingParams, list[dict[str, Any]] | None, Tools | None]:
    """(sampling, the chat messages or None for raw text, the tools offered)."""
    tools = _tools(request.tools)
    grammar = None
    if tools is not None:
        grammar = tool_grammar(tools)
    elif request.schema is not None:
        grammar = json_grammar(request.schema)
    params = greedy(request, grammar=grammar)
    if not (request.chat or tools is not None):
        return params, None, None
    messages = [{"role": "user", "content": request.context}]
    if tools is not None:
        messages = with_tools(messages, tools)
    return params, messages, tools


def greedy(request: Request, *, grammar: str | None = None) -> SamplingParams:
    """Greedy decoding as lm-eval's (temperature 0, no penalties, whatever the model's
    defaults), stopped by the request's `until` and `max_tokens`."""
    until = tuple(text for text in request.until if text)
    if len(until) > MAX_STOP:
        raise EvalError(
            f"the task gives {len(until)} stop sequences (until); owl takes at most {MAX_STOP}"
        )
    try:
        return SamplingParams(
            temperature=0.0, stop=until, max_tokens=request.max_tokens, grammar=grammar
        )
    except ValidationError as err:  # a task file's values
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise EvalError(
            f"the task's generation settings are not valid ({where}: {first['msg']}); fix "
            "generation_kwargs in the task file"
        ) from None


def _tools(tools: list[dict[str, Any]] | None) -> Tools | None:
    """OpenAI function tools ({"type": "function", "function": {…}}, or the function
    itself) as the engine offers them."""
    if not tools:
        return None
    functions = []
    for tool in tools:
        function = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise EvalError(f"a task's tool needs a function with a name, not {tool!r}")
        functions.append(function)
    return Tools(tuple(functions), may_answer=True)


def _answer(text: str, tokens: int, *, tools: Tools | None) -> Answer:
    if tools is None:
        return Answer(text=text, tokens=tokens)
    content, calls = parse(text)
    return Answer(
        text=content or "",
        tool_calls=[{"name": call.name, "arguments": call.arguments} for call in calls],
        tokens=tokens,
    )
