"""Any OpenAI-compatible server as an EvalModel: owl serve, vLLM, llama-server, a closed API.

Log-likelihoods come from the completions API's echo: the prompt context+continuation is
sent with {"max_tokens": 0, "echo": true, "logprobs": 1}, and the continuation's tokens are
those whose `text_offset` lies at or after the context's end — no tokenizer needed, so the
server tokenizes the whole string (as lm-eval's tokenizer-free mode does; owl's engine path
tokenizes the context apart, so where a token spans the boundary the two can differ). Greedy
is lm-eval's test: each token's logprob is the best of its top_logprobs. Several prompts go
in one request (`prompt` as a list) where the server takes that, one at a time where not.
A rolling text, or a continuation with no context, is scored after the model's BOS (else EOS)
token, as lm-eval and owl's engine score it: its text, from the server's GET /tokenizer_info
(vLLM's, and owl's), goes in front of the prompt; a server without one leaves the first
token unscored (rolling), or cannot score a continuation alone (EvalError).
Generations go to /chat/completions (chat, schema, tools) or /completions (raw text, stop at
`until`), greedily (temperature 0). 429, 502 and 503 are retried with backoff.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import httpx

from owl.errors import EvalError
from owl.evals.tasks.request import Answer, Request

BATCH = 8  # prompts per completions request (lm-eval's local-completions sends batches too)
RETRIES = 5
BACKOFF_S = 0.5  # doubled after each retry, unless the server says Retry-After
MAX_BACKOFF_S = 20.0
TIMEOUT_S = 600.0  # a long generation on a slow machine
RETRIED = frozenset({429, 502, 503})


class EndpointModel:
    """`model` behind the OpenAI-compatible `base` URL (ending in /v1, as OpenAI's)."""

    digest: str | None = None  # a remote model's weights are not ours to hash

    def __init__(
        self,
        base: str,
        model: str,
        *,
        api_key: str | None = None,
        price_per_1k_tokens: float | None = None,
        batch: int = BATCH,
    ) -> None:
        self.base = base.rstrip("/")
        self.model = model
        self.label = f"{self.base}/{model}"
        self.price_per_1k_tokens = price_per_1k_tokens
        self._batch = max(1, batch)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.base, headers=headers, timeout=TIMEOUT_S)
        self._prefix: str | None = None
        self._prefix_asked = False

    def answer(self, requests: Sequence[Request]) -> list[Answer]:
        """An Answer per request, in order."""
        answers: list[Answer | None] = [None] * len(requests)
        scored = [i for i, r in enumerate(requests) if r.kind != "generate_until"]
        start = 0
        while start < len(scored):  # the batch shrinks to 1 for a server that takes one
            group = scored[start : start + self._batch]
            for index, answer in zip(group, self._score([requests[i] for i in group]), strict=True):
                answers[index] = answer
            start += len(group)
        for index, request in enumerate(requests):
            if request.kind == "generate_until":
                answers[index] = self._generate(request)
        return answers  # type: ignore[return-value]

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> EndpointModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- log-likelihoods -------------------------------------------------------------------

    def _score(self, requests: Sequence[Request]) -> list[Answer]:
        prompts = [self._with_prefix(*_split(request)) for request in requests]
        texts = [context + continuation for context, continuation in prompts]
        choices = self._echo(texts)
        return [
            _scored(choice, context=context, text=text, rolling=request.kind != "loglikelihood")
            for choice, (context, _), text, request in zip(
                choices, prompts, texts, requests, strict=True
            )
        ]

    def _with_prefix(self, context: str, continuation: str) -> tuple[str, str]:
        """An empty context as the prefix token's text, where the server tells it."""
        if context:
            return context, continuation
        prefix = self._prefix_text()
        return (prefix, continuation) if prefix else (context, continuation)

    def _prefix_text(self) -> str | None:
        """The BOS (else EOS) token's text from GET /tokenizer_info, asked once."""
        if not self._prefix_asked:
            self._prefix_asked = True
            root = self.base.removesuffix("/v1")  # vLLM's tokenizer routes sit beside /v1
            try:
                reply = self._client.get(f"{root}/tokenizer_info", params={"model": self.model})
                info = reply.json() if reply.status_code == 200 else {}
            except (httpx.HTTPError, ValueError):
                info = {}
            if isinstance(info, dict):
                token = info.get("bos_token") or info.get("eos_token")
                self._prefix = token if isinstance(token, str) and token else None
        return self._prefix

    def _echo(self, texts: list[str]) -> list[dict[str, Any]]:
        """The completions choices that echo each text with its logprobs, in order."""
        body = {
            "model": self.model,
            "max_tokens": 0,
            "echo": True,
            "logprobs": 1,
            "temperature": 0,
        }
        if len(texts) > 1 and self._batch > 1:
            try:
                reply = self._post("/completions", {**body, "prompt": texts})
            except _Refused as err:  # a server that takes one prompt per request
                self._batch = 1
                if err.status not in (400, 422):
                    raise EvalError(err.message) from None
            else:
                choices = sorted(reply.get("choices") or [], key=lambda c: c.get("index", 0))
                if len(choices) == len(texts):
                    return choices
                self._batch = 1
        return [self._one_echo(body, text) for text in texts]

    def _one_echo(self, body: dict[str, Any], text: str) -> dict[str, Any]:
        try:
            reply = self._post("/completions", {**body, "prompt": text})
        except _Refused as err:
            raise EvalError(err.message) from None
        choices = reply.get("choices") or []
        if not choices:
            raise EvalError(f"{self.label} answered a completion with no choices")
        return choices[0]

    # --- generation ------------------------------------------------------------------------

    def _generate(self, request: Request) -> Answer:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "temperature": 0,
        }
        until = [text for text in request.until if text]
        if until:
            body["stop"] = until
        chat = request.chat or request.schema is not None or bool(request.tools)
        try:
            if not chat:
                reply = self._post("/completions", {**body, "prompt": request.context})
                choice = (reply.get("choices") or [{}])[0]
                return Answer(text=choice.get("text") or "", tokens=_total(reply))
            body["messages"] = [{"role": "user", "content": request.context}]
            if request.schema is not None:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": request.schema},
                }
            if request.tools:
                body["tools"] = [_tool(tool) for tool in request.tools]
            reply = self._post("/chat/completions", body)
        except _Refused as err:
            raise EvalError(err.message) from None
        message = ((reply.get("choices") or [{}])[0]).get("message") or {}
        calls = None
        if request.tools:
            calls = [_call(call) for call in message.get("tool_calls") or []]
        return Answer(text=message.get("content") or "", tool_calls=calls, tokens=_total(reply))

    # --- HTTP ------------------------------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """The JSON reply; retried with backoff on 429/502/503; _Refused for another 4xx."""
        delay = BACKOFF_S
        for attempt in range(RETRIES + 1):
            try:
                response = self._client.post(path, json=body)
            except httpx.ConnectError:
                raise EvalError(
                    f"cannot connect to {self.base}: is the server running? (`owl serve`, "
                    "or check the --endpoint URL)"
                ) from None
            except httpx.TimeoutException:
                raise EvalError(
                    f"{self.base} did not answer within {TIMEOUT_S:.0f}s; try fewer questions "
                    "(--limit) or a faster server"
                ) from None
            except httpx.HTTPError as err:
                raise EvalError(f"the request to {self.base}{path} failed: {err}") from None
            if response.status_code in RETRIED and attempt < RETRIES:
                time.sleep(_retry_after(response, delay))  # the server asked to wait
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            return self._reply(response, path)
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _reply(self, response: httpx.Response, path: str) -> dict[str, Any]:
        status = response.status_code
        detail = _detail(response)
        if status in (401, 403):
            raise EvalError(
                f"{self.base} refused the API key ({status}: {detail}); put a valid key in "
                "the environment variable named by --api-key-env"
            )
        if status == 404:
            raise EvalError(
                f"{self.base}{path} answered 404 ({detail}): check that the URL ends in /v1 "
                f"and that the server has the model '{self.model}'"
            )
        if 400 <= status < 500:
            raise _Refused(status, f"{self.label} refused the request ({status}: {detail})")
        if status >= 300:
            raise EvalError(f"{self.label} failed ({status}: {detail}); try again later")
        try:
            return response.json()
        except ValueError:
            raise EvalError(
                f"{self.base}{path} did not answer JSON; is it an OpenAI API?"
            ) from None


class _Refused(Exception):
    """A 4xx other than 401/403/404: the request's fault, or the server's limits."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _split(request: Request) -> tuple[str, str]:
    """(context, continuation) with the context's trailing spaces moved onto the
    continuation (lm-eval's _encode_pair); a rolling text is all continuation."""
    if request.kind != "loglikelihood":
        return "", request.context
    context, continuation = request.context, request.continuation
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    return context, continuation


def _scored(choice: dict[str, Any], *, context: str, text: str, rolling: bool) -> Answer:
    logprobs = choice.get("logprobs") or {}
    tokens = logprobs.get("tokens") or []
    values = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or [None] * len(values)
    offsets = logprobs.get("text_offset") or []
    if not values or len(offsets) != len(values):
        raise EvalError(
            "the endpoint does not return the prompt's log-probabilities (completions with "
            "echo and logprobs); log-likelihood tasks need a server that does (owl serve, "
            "vLLM, llama-server): run generation tasks only against this one"
        )
    shift = _leading_special(tokens, offsets, text)
    total, greedy, count = 0.0, True, 0
    for value, top, offset in zip(values, tops, offsets, strict=False):
        position = offset - shift
        # At or past the context's end, inside the prompt (a generated token comes after it).
        if position < len(context) or position >= len(text) or value is None:
            if value is None and not rolling and position >= len(context):
                raise EvalError(
                    "the endpoint gave no log-probability for the continuation's first token: "
                    "a continuation without a context needs the server's BOS token (GET "
                    "/tokenizer_info), which this server does not tell; give the task a context"
                )
            continue
        total += float(value)
        count += 1
        if top and float(value) < max(float(v) for v in top.values()):
            greedy = False
    if count == 0 and text[len(context) :]:
        raise EvalError(
            "the endpoint's text offsets put no token in the continuation; it must give "
            "text_offset for each echoed token"
        )
    return Answer(logprob=total, greedy=greedy, tokens=len(values))


def _leading_special(tokens: list[Any], offsets: list[int], text: str) -> int:
    """The length of a token the server prepended that is not in the text (a BOS whose
    text it counts in the offsets), else 0."""
    first = tokens[0] if tokens and isinstance(tokens[0], str) else ""
    if first and not text.startswith(first) and "".join(map(str, tokens)) == first + text:
        return len(first)
    return 0


def _total(reply: dict[str, Any]) -> int:
    usage = reply.get("usage") or {}
    return int(usage.get("total_tokens") or 0)


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI function tool, given as one or as the bare function."""
    return tool if "function" in tool else {"type": "function", "function": tool}


def _call(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            pass  # kept as written: a task scores it as wrong arguments
    return {"name": function.get("name"), "arguments": arguments}


def _detail(response: httpx.Response) -> str:
    """The server's error message, short."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:300]
    if isinstance(body, dict) and body.get("detail"):
        return str(body["detail"])[:300]
    return json.dumps(body)[:300]


def _retry_after(response: httpx.Response, delay: float) -> float:
    try:
        asked = float(response.headers.get("retry-after", ""))
    except ValueError:
        return delay
    return min(max(asked, 0.0), MAX_BACKOFF_S)
