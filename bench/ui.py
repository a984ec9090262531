"""The web UI in a real headless chromium against a real `owl serve` on loopback.

Measures, in one run: the time from pressing Send in the page to the first streamed token on
screen, against the same request streamed with httpx (target ≤ 1.2×, issue 17); the bytes the
UI transfers on its first load (target ≤ 300 KB) and that no request leaves 127.0.0.1. With
--screenshots DIR it saves the chat and models pages there (docs/ui-chat.png, ui-models.png).

    .venv/bin/python bench/ui.py [--runs 11] [--screenshots docs]

Prints one JSON line; progress goes to stderr. Never a timed assert.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from common import cpu_name, load_average, run_and_print
from serve import start_server

CHROMIUM = "/usr/bin/chromium"
PROMPT = "Say hello to a new colleague."
MAX_TOKENS = 8
TARGET_RATIO = 1.2
TARGET_BYTES = 300_000

# Runs in the page: press Send, resolve with the milliseconds until the answer shows text.
FIRST_TOKEN_JS = """async (prompt) => {
  const log = document.getElementById("messages");
  const seen = new Promise((resolve) => {
    const observer = new MutationObserver(() => {
      const answer = log.querySelector(".message.assistant:last-child .content");
      if (answer && answer.textContent.length > 0) { observer.disconnect(); resolve(); }
    });
    observer.observe(log, { childList: true, subtree: true, characterData: true });
  });
  const start = performance.now();
  document.getElementById("prompt").value = prompt;
  document.getElementById("composer").requestSubmit();
  await seen;
  return performance.now() - start;
}"""


def log(message: str) -> None:
    print(f"[ui] {message}", file=sys.stderr, flush=True)


def request_body() -> dict:
    return {
        "model": "smollm2",
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "temperature": 0,
        "max_tokens": MAX_TOKENS,
    }


def httpx_first_token(client: httpx.Client) -> float:
    """Seconds from sending the request to the first content delta, streamed with httpx
    (one kept-alive connection, as the page has)."""
    start = time.perf_counter()
    elapsed = None
    with client.stream("POST", "/v1/chat/completions", json=request_body()) as r:
        for line in r.iter_lines():  # read to the end, as the page does
            if elapsed is not None or not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or [{}]
            if choices[0].get("delta", {}).get("content"):
                elapsed = time.perf_counter() - start
    if elapsed is None:
        raise SystemExit("the stream had no content")
    return elapsed


def run(args: argparse.Namespace, home: Path) -> dict:
    from playwright.sync_api import sync_playwright

    process, base = start_server(home, args)
    client = httpx.Client(base_url=base, timeout=120)
    try:
        httpx_first_token(client)  # loads the model: both sides then measure a loaded one
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            finished = []
            page.on("requestfinished", lambda request: finished.append(request))
            load_start = time.perf_counter()
            page.goto(base + "/")
            page.wait_for_selector("body[data-ready=true]")
            load_s = time.perf_counter() - load_start
            first_load = list(finished)
            sizes = [request.sizes() for request in first_load]
            first_load_bytes = sum(s["responseBodySize"] + s["responseHeadersSize"] for s in sizes)
            page.fill("#temperature", "0")
            page.fill("#max-tokens", str(MAX_TOKENS))
            ui_s, api_s = [], []
            for index in range(args.runs):
                if index % 2:  # alternate which goes first: neither always follows the other
                    api_s.append(httpx_first_token(client))
                ui_s.append(page.evaluate(FIRST_TOKEN_JS, PROMPT) / 1000)
                page.wait_for_selector("#chat-status:text('Done.')")
                if not index % 2:
                    api_s.append(httpx_first_token(client))
                page.click("#new-chat")  # the same one-turn prompt each time
                log(f"run {index + 1}: page {ui_s[-1]:.3f}s, httpx {api_s[-1]:.3f}s")
            if args.screenshots:
                folder = Path(args.screenshots)
                delete = page.locator("#conversation-list button:text('Delete')")
                while (left := delete.count()) > 0:  # the timed runs' chats: not for a picture
                    delete.first.click()
                    page.wait_for_function(
                        "n => document.querySelectorAll('#conversation-list li').length < n",
                        arg=left,
                    )
                log(f"chats left after deleting: {delete.count()}")
                page.fill("#prompt", "Write a Python function that adds two numbers.")
                page.fill("#max-tokens", "96")
                page.press("#prompt", "Enter")
                page.wait_for_selector("#chat-status:text('Done.')")
                page.screenshot(path=str(folder / "ui-chat.png"))
                page.click("nav button:text('Models')")
                page.wait_for_selector("#model-table tbody tr")
                page.screenshot(path=str(folder / "ui-models.png"))
            hosts = sorted({urlsplit(request.url).hostname or "" for request in finished})
            browser.close()
    finally:
        client.close()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    ui_median, api_median = statistics.median(ui_s), statistics.median(api_s)
    return {
        "bench": "ui",
        "cpu": cpu_name(),
        "load_average": load_average(),
        "threads": args.threads,
        "runs": args.runs,
        "page_load_s": round(load_s, 3),
        "ui_first_token_s": round(ui_median, 4),
        "httpx_first_token_s": round(api_median, 4),
        "ratio": round(ui_median / api_median, 3),
        # The fastest of each: on a busy machine the medians carry the neighbours' load.
        "ui_first_token_min_s": round(min(ui_s), 4),
        "httpx_first_token_min_s": round(min(api_s), 4),
        "target_ratio": TARGET_RATIO,
        "first_load_requests": len(first_load),
        "first_load_bytes": first_load_bytes,
        "target_bytes": TARGET_BYTES,
        "hosts": hosts,
        "only_loopback": hosts == ["127.0.0.1"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=1024)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--screenshots", type=Path, default=None)
    parser.add_argument("--home", type=Path, default=None)
    run_and_print(run, parser.parse_args())


if __name__ == "__main__":
    main()
