"""owl run with MCP servers: the model may call their tools (owl/agents/).

Every call is shown on stderr (stdout keeps only the answer, for pipes); an interactive chat
also asks before each one runs.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from owl.agents.loop import answer_with_tools
from owl.agents.mcp import McpTools
from owl.cli.common import chat_lines
from owl.engine import Model, SamplingParams
from owl.engine.tool_calls import ToolCall
from owl.errors import OwlError

MAX_ROUNDS = 5  # rounds of tool calls per answer before the model must answer in words


def describe(call: ToolCall) -> str:
    """`name(arguments)` as the user sees a call: the arguments as compact JSON."""
    arguments = call.arguments if call.arguments is not None else {}
    return f"{call.name}({json.dumps(arguments, ensure_ascii=False, separators=(',', ':'))})"


def _show(call: ToolCall) -> None:
    typer.secho(f"tool call: {describe(call)}", err=True, fg=typer.colors.CYAN)


def _confirm(call: ToolCall) -> bool:
    return typer.confirm(f"run {describe(call)}?", default=False, err=True)


def run_with_tools(
    model: Model,
    *,
    servers: list[str],
    system: str | None,
    prompt: str | None,
    params: SamplingParams,
) -> None:
    """Answer `prompt` (or chat, when it is None) with the tools of the MCP `servers`."""
    with McpTools.open(servers) as tools:
        names = ", ".join(function["name"] for function in tools.functions) or "none"
        typer.echo(f"tools: {names}", err=True)
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        if prompt is not None:
            messages.append({"role": "user", "content": prompt})
            answer = answer_with_tools(
                model, messages, tools, params=params, max_rounds=MAX_ROUNDS, show=_show
            )
            typer.echo(answer.text)
            return
        _chat(model, messages, tools, params)


def _chat(
    model: Model, history: list[dict[str, Any]], tools: McpTools, params: SamplingParams
) -> None:
    typer.echo(
        f"chatting with {model.name}; each tool call asks first; /clear forgets the "
        "conversation, /bye or Ctrl-D ends it",
        err=True,
    )
    start = len(history)
    for line in chat_lines(history, start):
        asked = [*history, {"role": "user", "content": line}]
        try:
            answer = answer_with_tools(
                model,
                asked,
                tools,
                params=params,
                max_rounds=MAX_ROUNDS,
                show=_show,
                confirm=_confirm,
            )
        except KeyboardInterrupt:  # stop this answer, keep the session
            typer.echo("", err=True)
            continue
        except OwlError as err:  # e.g. the context is full: say so and keep the session
            typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
            continue
        typer.echo(answer.text)
        # The calls and their results stay in the conversation: later questions can use them.
        history[:] = list(answer.messages)
