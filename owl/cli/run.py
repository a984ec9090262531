"""owl run: one answer streamed to stdout, or an interactive chat."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from owl.cli.common import CacheTypeK, CacheTypeV, chat_lines, require_utf8
from owl.config import load_settings
from owl.engine import Model, SamplingParams
from owl.errors import InvalidParameter, InvalidPrompt, OwlError
from owl.pull import open_store, resolve


def _stream(
    model: Model,
    messages: list[dict[str, str]],
    params: SamplingParams,
    *,
    tokens: list[int] | None = None,
    media: object = None,
) -> str:
    parts = []
    stream = (
        model.chat(messages, params)
        if tokens is None
        else model.generate(tokens, params, media=media)
    )
    try:
        with stream as deltas:  # Ctrl-C stops the generation too
            for delta in deltas:
                if delta.text:
                    sys.stdout.write(delta.text)
                    sys.stdout.flush()
                    parts.append(delta.text)
    finally:
        sys.stdout.write("\n")
        sys.stdout.flush()
    return "".join(parts)


def _chat(model: Model, system: str | None, params: SamplingParams) -> None:
    typer.echo(
        f"chatting with {model.name}; /clear forgets the conversation, /bye or Ctrl-D ends it",
        err=True,
    )
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    start = len(history)
    for line in chat_lines(history, start):
        history.append({"role": "user", "content": line})
        try:
            reply = _stream(model, history, params)
        except KeyboardInterrupt:  # stop this answer, keep the session (as ollama does)
            history.pop()
            continue
        except OwlError as err:  # e.g. the context is full: say so and keep the session
            history.pop()
            typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
            continue
        history.append({"role": "assistant", "content": reply})


def _read_stdin() -> str:
    try:
        return sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidPrompt(
            f"the prompt on stdin is not valid UTF-8 (byte {err.start}); convert it, e.g. "
            "with `iconv -t UTF-8`"
        ) from None


def _scales(given: list[float] | None, adapters: int) -> list[float] | None:
    """--adapter-scale values, one per adapter: a single value applies to every adapter."""
    if not given:
        return None
    if not adapters:
        raise typer.BadParameter("--adapter-scale needs an --adapter")
    if len(given) == 1:
        return given * adapters
    if len(given) != adapters:
        raise typer.BadParameter(
            f"--adapter-scale: {len(given)} values for {adapters} adapters; give one, or one "
            "per --adapter"
        )
    return given


def run_command(
    model: Annotated[str, typer.Argument(help="A model name, file, URL or hf: reference.")],
    prompt: Annotated[str | None, typer.Argument(help="Omit for an interactive chat.")] = None,
    system: Annotated[str | None, typer.Option(help="A system message.")] = None,
    temperature: Annotated[float | None, typer.Option(help="0 = greedy.")] = None,
    top_p: Annotated[float | None, typer.Option()] = None,
    top_k: Annotated[int | None, typer.Option()] = None,
    min_p: Annotated[float | None, typer.Option()] = None,
    repeat_penalty: Annotated[
        float, typer.Option(help="1.0 = off. Ollama's 1.1 keeps small models from looping.")
    ] = 1.1,
    seed: Annotated[int | None, typer.Option()] = None,
    max_tokens: Annotated[int | None, typer.Option()] = None,
    stop: Annotated[list[str] | None, typer.Option(help="Stop at this text (repeatable).")] = None,
    ctx: Annotated[
        int | None, typer.Option(help="Context window in tokens (0 = the model's).")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: all cores).")] = None,
    cache_type_k: CacheTypeK = None,
    cache_type_v: CacheTypeV = None,
    adapter: Annotated[
        list[str] | None,
        typer.Option(
            help="Apply this LoRA adapter (a stored name or a .gguf file; repeatable).",
        ),
    ] = None,
    adapter_scale: Annotated[
        list[float] | None,
        typer.Option(
            help="How strongly to apply the adapter (1.0 = as tuned, 0 = off): one for all "
            "adapters, or one per --adapter in order.",
        ),
    ] = None,
    allow_unsafe: Annotated[
        bool,
        typer.Option(
            "--allow-unsafe",
            help="Load MODEL although its scan found it unsafe or could not verify it "
            "(experts only; recorded in its manifest).",
        ),
    ] = False,
    image: Annotated[
        list[Path] | None,
        typer.Option(help="An image for a vision model to look at (repeatable)."),
    ] = None,
    mcp: Annotated[
        list[str] | None,
        typer.Option(
            "--mcp",
            help="An MCP server whose tools the model may call: a command line (stdio) or an "
            "http(s) URL (repeatable; default OWL_MCP_SERVERS). Calls are shown on stderr; a "
            "chat asks before each.",
        ),
    ] = None,
) -> None:
    """Answer PROMPT with MODEL, streaming the reply; without PROMPT, chat.

    MODEL may be a LoRA adapter (its base is loaded with it), or BASE+ADAPTER.
    """
    from owl import engine
    from owl.engine.adapters import is_adapter, split_combination

    # Before the model loads: a non-UTF-8 byte in argv would fail only at tokenizing.
    require_utf8(prompt, "the prompt")
    require_utf8(system, "--system")
    for text in stop or ():
        require_utf8(text, "--stop")
    config = load_settings(
        ctx=ctx, threads=threads, cache_type_k=cache_type_k, cache_type_v=cache_type_v
    )
    store = open_store(config)
    # "BASE+ADAPTER[+…]", the server's spelling, is taken too (a file's path is never split).
    names = [model] if Path(model).expanduser().exists() else split_combination(model)
    manifest = resolve(names[0], store=store, settings=config, pull_missing=True)
    adapters = [
        resolve(name, store=store, settings=config, pull_missing=True)
        for name in [*names[1:], *(adapter or [])]
    ]
    loaded = engine.load(
        manifest,
        store=store,
        settings=config,
        allow_unsafe=allow_unsafe,
        by="owl run --allow-unsafe",
        adapters=adapters,
        scales=_scales(adapter_scale, len(adapters) + is_adapter(manifest, store=store)),
    )
    try:
        params = loaded.sampling(
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            min_p=min_p,
            repeat_penalty=repeat_penalty,
            seed=seed,
            max_tokens=max_tokens,
            stop=tuple(stop) if stop else None,
        )
    except InvalidParameter as err:  # a flag's value: a usage error that names the flag
        option = "--" + err.param.replace("_", "-")
        raise typer.BadParameter(f"{option}: {err.reason}") from None
    if prompt is None and not sys.stdin.isatty():
        prompt = _read_stdin()
    if prompt is None and image:
        raise typer.BadParameter("--image needs a PROMPT to answer about it")
    servers = mcp or config.mcp_servers
    if servers:
        from owl.cli.agents import run_with_tools

        if image:
            raise typer.BadParameter("--image and MCP tools (--mcp) do not combine yet")
        run_with_tools(loaded, servers=servers, system=system, prompt=prompt, params=params)
        return
    if prompt is None:
        _chat(loaded, system, params)
        return
    messages = [{"role": "system", "content": system}] if system else []
    if image:
        from owl.engine.images import IMAGE_MARKER

        loaded.require_sight()
        pixels = [_read_image(path, config) for path in image]
        messages.append({"role": "user", "content": IMAGE_MARKER * len(pixels) + prompt})
        tokens, media = loaded.chat_media(messages, pixels)
        _stream(loaded, messages, params, tokens=tokens, media=media)
        return
    messages.append({"role": "user", "content": prompt})
    _stream(loaded, messages, params)


def _read_image(path: Path, config) -> object:  # noqa: ANN001 (Settings) — owl Pixels
    from owl.engine.images import decode_image
    from owl.errors import InvalidImage

    try:
        data = path.expanduser().read_bytes()
    except OSError as err:
        raise InvalidImage(f"cannot read the image {path}: {err.strerror or err}") from None
    return decode_image(data, max_bytes=config.max_image_bytes, max_pixels=config.max_image_pixels)


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
