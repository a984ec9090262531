"""Text decode speed in `owl serve` while image requests run beside it, against without.

One real `owl serve --parallel 2` over a temporary OWL_HOME holds the embedded SmolLM2 and
tests/support/tiny_vlm.py's tiny SmolVLM pulled with its projector. A streamed chat to
SmolLM2 (temperature 0, so the same tokens every time) is timed from its first token to its
last, alone and while a loop of image chats to the VLM (each one image, one token) runs
beside it, alternating which goes first, `--runs` times after a warm-up. Both models share
the server's one engine thread, as any two models a server holds do.

- decode_tok_s_alone, decode_tok_s_beside: the text's tokens per second (medians);
- ratio: beside / alone (the images issue's target is ≥ 0.8); image_requests: how many image
  requests completed during the timed text generations;
- ratio_text_control: the same with the VLM's chats sent without their image, which tells
  what the images cost from what any stream of requests to a second model costs.

Prints one JSON line on stdout; progress goes to stderr. Never a timed assert.

    .venv/bin/python bench/vision_beside.py [--runs 5] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import EMBEDDED, load_average, log, print_result
from serve import start_server

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests/support/tiny_vlm.py, the tiny model

from vision import _image_png  # noqa: E402

from tests.support.tiny_lora import smollm2_tokenizer  # noqa: E402
from tests.support.tiny_vlm import build_tiny_vlm_folder, convert_tiny_vlm  # noqa: E402

PROMPT = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}]


async def text_decode(client: httpx.AsyncClient, max_tokens: int) -> tuple[float, int]:
    """Seconds from the first streamed token to the last, and the tokens streamed."""
    body = {
        "model": "smollm2",
        "messages": PROMPT,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    first = last = None
    tokens = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage") and not event.get("choices"):
                tokens = event["usage"]["completion_tokens"]
            if any(c.get("delta", {}).get("content") for c in event.get("choices", [])):
                last = time.perf_counter()
                first = first or last
    return (last or 0.0) - (first or 0.0), tokens


async def chats_until(client: httpx.AsyncClient, done: asyncio.Event, png: bytes | None) -> int:
    """One-token chats to the VLM, one after another until `done`: with the image, or
    (png None, the control) its text alone."""
    url = "data:image/png;base64," + base64.b64encode(png or b"").decode()
    content: list[dict] = [{"type": "text", "text": "?"}]
    if png is not None:
        content.insert(0, {"type": "image_url", "image_url": {"url": url}})
    body = {"model": "vlm", "messages": [{"role": "user", "content": content}], "max_tokens": 1}
    count = 0
    while not done.is_set():
        answer = await client.post("/v1/chat/completions", json=body)
        answer.raise_for_status()
        count += 1
    return count


async def measure(base: str, args: argparse.Namespace, png: bytes) -> dict:
    speeds: dict[str, list[float]] = {"alone": [], "beside": [], "beside_text": []}
    requests = {"beside": 0, "beside_text": 0}
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:
        await text_decode(client, 8)  # warm-up: both models loaded
        await client.post("/v1/chat/completions", json={"model": "vlm", "max_tokens": 1,
            "messages": [{"role": "user", "content": "?"}]})  # fmt: skip
        modes = list(speeds)
        for run in range(args.runs):
            for mode in modes[run % 3 :] + modes[: run % 3]:  # each mode first in turn
                if mode == "alone":
                    seconds, tokens = await text_decode(client, args.max_tokens)
                    speeds[mode].append(tokens / seconds)
                    continue
                done = asyncio.Event()
                loop = asyncio.create_task(
                    chats_until(client, done, png if mode == "beside" else None)
                )
                seconds, tokens = await text_decode(client, args.max_tokens)
                done.set()
                requests[mode] += await loop
                speeds[mode].append(tokens / seconds)
            log(
                f"run {run + 1}/{args.runs}: "
                + ", ".join(f"{mode} {values[-1]:.1f}" for mode, values in speeds.items())
                + " tok/s"
            )
    median = {mode: statistics.median(values) for mode, values in speeds.items()}
    return {
        "decode_tok_s_alone": round(median["alone"], 2),
        "decode_tok_s_beside": round(median["beside"], 2),
        "decode_tok_s_beside_text": round(median["beside_text"], 2),
        "ratio": round(median["beside"] / median["alone"], 3),
        "ratio_text_control": round(median["beside_text"] / median["alone"], 3),
        "ratio_runs": [
            round(b / a, 3) for a, b in zip(speeds["alone"], speeds["beside"], strict=True)
        ],
        "image_requests": requests["beside"],
        "text_requests": requests["beside_text"],
        "text_tokens": tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=1024)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    from owl.pull.sources.package import locate
    from owl.quantize.converter import ensure_converter
    from owl.store.ref import parse_ref

    before = load_average()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="owl-bench-vision-") as tmp:
        work, home = Path(tmp) / "work", Path(tmp) / "home"
        work.mkdir()
        log("building and converting the tiny SmolVLM")
        folder = build_tiny_vlm_folder(work, smollm2_tokenizer(work, locate(parse_ref(EMBEDDED))))
        made = convert_tiny_vlm(folder, ensure_converter(work / "tools"), work)
        owl = str(Path(sys.executable).with_name("owl"))
        env_home = {"OWL_HOME": str(home), "PATH": str(Path(sys.executable).parent)}
        subprocess.run(
            [owl, "pull", str(made.model), "--mmproj", str(made.projector), "--name", "vlm"],
            check=True, env=env_home, capture_output=True,
        )  # fmt: skip
        process, base = start_server(home, args)
        try:
            result = asyncio.run(measure(base, args, _image_png()))
        finally:
            process.terminate()
            process.wait(timeout=30)
    result.update(runs=args.runs, parallel=args.parallel)
    print_result("vision_beside", result, started=started, load_before=before)


if __name__ == "__main__":
    main()
