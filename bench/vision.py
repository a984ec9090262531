"""Image-prompt prefill of owl's mtmd path against llama-cpp-python's MTMDChatHandler used
directly, on the same tiny model and image.

The model is tests/support/tiny_vlm.py's tiny random-weight SmolVLM, converted by llama.cpp's
converter into a GGUF and its projector (mmproj). owl loads both (owl.engine.llama.vision),
encodes one 64×64 image and prefills a prompt holding it; llama-cpp-python's Llama with an
MTMDChatHandler answers one chat message with the same image and max_tokens=1. Both runs
include the image's encode and the prompt's prefill; the handler's also samples one token
and renders its template (a few milliseconds at most, so the ratio leans against it).
Alternating which goes first, `--runs` times, after one warm-up each.

- owl_s, reference_s: seconds per image prompt (the median over runs);
- owl_image_tokens_per_s: the image's tokens over owl_s;
- ratio: reference_s / owl_s (above 1.0: owl is faster; the issue's target is ≥ 0.95).

Prints one JSON line on stdout; progress goes to stderr. Never a timed assert.

    .venv/bin/python bench/vision.py [--runs 20]
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import EMBEDDED, load_average, log, print_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests/support/tiny_vlm.py, the tiny model

from tests.support.tiny_lora import smollm2_tokenizer  # noqa: E402
from tests.support.tiny_vlm import IMAGE_SIZE, build_tiny_vlm_folder, convert_tiny_vlm  # noqa: E402

THREADS = 2
N_CTX = 512


def _image_png() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (30, 90, 200))
    ImageDraw.Draw(image).ellipse((8, 8, 56, 56), fill=(240, 200, 20))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _owl(model_path: Path, projector_path: Path, png: bytes):  # noqa: ANN202
    from owl.engine.images import decode_image
    from owl.engine.llama.context import generation_context
    from owl.engine.llama.model import load_model
    from owl.engine.llama.vision import MARKER, Projector

    model = load_model(model_path)
    projector = Projector(model, projector_path, threads=THREADS)
    context = generation_context(
        model, n_ctx=N_CTX, slots=1, batch=N_CTX, threads=THREADS, name="tiny-vlm"
    )
    prompt = f"<|im_start|>User:{MARKER}What is in the picture?<end_of_utterance>\nAssistant:"

    def once() -> tuple[float, int, int]:
        started = time.perf_counter()
        pixels = decode_image(png, max_bytes=1 << 24, max_pixels=1 << 24)
        chunks = projector.chunks(prompt, [pixels])
        done = projector.prefill(context, chunks, seq=0, n_batch=N_CTX)
        context.logits_at(-1).argmax()
        took = time.perf_counter() - started
        chunks.close()
        context.forget(0, 0)
        return took, done.prompt_tokens, done.image_tokens

    return once


def _reference(model_path: Path, projector_path: Path, png: bytes):  # noqa: ANN202
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import MTMDChatHandler

    handler = MTMDChatHandler(clip_model_path=str(projector_path), verbose=False, use_gpu=False)
    llama = Llama(
        model_path=str(model_path),
        chat_handler=handler,
        n_ctx=N_CTX,
        n_batch=N_CTX,
        n_threads=THREADS,
        n_threads_batch=THREADS,
        verbose=False,
    )
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": url}},
                {"type": "text", "text": "What is in the picture?"},
            ],
        }
    ]

    def once() -> tuple[float, int]:
        started = time.perf_counter()
        answer = llama.create_chat_completion(messages=messages, max_tokens=1, temperature=0.0)
        took = time.perf_counter() - started
        llama.reset()
        return took, int(answer["usage"]["prompt_tokens"])

    return once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    started, load_before = time.perf_counter(), load_average()

    from owl.pull.sources.package import locate
    from owl.quantize.converter import ensure_converter
    from owl.store.ref import parse_ref

    work = Path(tempfile.mkdtemp(prefix="owl-bench-vision-"))
    log("building the tiny SmolVLM and converting it (a minute)…")
    tokenizer = smollm2_tokenizer(work, locate(parse_ref(EMBEDDED)))
    folder = build_tiny_vlm_folder(work, tokenizer)
    made = convert_tiny_vlm(folder, ensure_converter(work / "tools"), work)
    png = _image_png()
    owl_once = _owl(made.model, made.projector, png)
    reference_once = _reference(made.model, made.projector, png)
    owl_once(), reference_once()  # warm-up
    owl_times, reference_times = [], []
    owl_tokens = image_tokens = reference_tokens = 0
    for run in range(args.runs):
        order = (0, 1) if run % 2 == 0 else (1, 0)
        for which in order:
            if which == 0:
                took, owl_tokens, image_tokens = owl_once()
                owl_times.append(took)
            else:
                took, reference_tokens = reference_once()
                reference_times.append(took)
    owl_s, reference_s = statistics.median(owl_times), statistics.median(reference_times)
    results = {
        "model": "tiny random-weight SmolVLM (tests/support/tiny_vlm.py), f32",
        "image": f"{IMAGE_SIZE}x{IMAGE_SIZE} PNG",
        "runs": args.runs,
        "threads": THREADS,
        "owl_prompt_tokens": owl_tokens,
        "reference_prompt_tokens": reference_tokens,
        "image_tokens": image_tokens,
        "owl_s": round(owl_s, 5),
        "reference_s": round(reference_s, 5),
        "owl_image_tokens_per_s": round(image_tokens / owl_s, 1),
        "ratio": round(reference_s / owl_s, 3),
    }
    print_result("vision", results, started=started, load_before=load_before)


if __name__ == "__main__":
    main()
