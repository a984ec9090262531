"""owl.quantize.calibrate on the real bundled model (SmolLM2-135M): llama-imatrix's importance
matrix computed through llama.cpp's eval callback, its GGUF file, and `owl quantize
--calibrate` making IQ4_XS. Agreement with llama-imatrix itself is bench/imatrix_reference.py
(max relative difference 9e-6 over 210 tensors, GPL-3, ctx 128, 8 chunks)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import gguf
import numpy as np
import pytest

from owl import engine
from owl.config import Settings
from owl.errors import QuantizationError
from owl.formats.gguf import read_gguf_header
from owl.pull import open_store, resolve
from owl.quantize import Imatrix, load_imatrix, quantize
from owl.quantize.calibrate import calibrate, compute_imatrix
from owl.quantize.ggml_tensor import weight_name
from owl.store import Store
from tests.support.cli import owl

TEXT = Path("/usr/share/common-licenses/GPL-3")
CTX, CHUNKS = 128, 3


@pytest.fixture(scope="module")
def computed(bundled_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Imatrix, Path]:
    out = tmp_path_factory.mktemp("imatrix") / "smollm2.imatrix.gguf"
    matrix = compute_imatrix(bundled_gguf, text=TEXT, ctx=CTX, chunks=CHUNKS, threads=1, out=out)
    return matrix, out


@pytest.mark.slow
def test_every_layer_weight_gets_its_input_columns(computed, bundled_gguf: Path) -> None:
    matrix, _ = computed
    weights = {
        t.name: t.shape
        for t in read_gguf_header(bundled_gguf).tensors
        if t.name.startswith("blk.") and len(t.shape) == 2
    }
    assert set(matrix.values) == set(weights) and len(weights) == 30 * 7
    for name, shape in weights.items():
        assert matrix.values[name].shape == (shape[0],), name  # ne0: n_embd or n_ff columns
    assert matrix.values["blk.3.attn_q.weight"].size == 576
    assert matrix.values["blk.3.ffn_down.weight"].size == 1536
    for name, values in matrix.values.items():
        assert np.all(np.isfinite(values)) and np.all(values >= 0), name
        assert values.std() > 0, name  # columns differ: real activations, not a constant
    # Weights fed by the same activations get the same matrix, others a different one: the
    # callback read each multiplication's input, not its weight or output.
    for layer in (0, 17, 29):
        q = matrix.values[f"blk.{layer}.attn_q.weight"]
        assert np.array_equal(q, matrix.values[f"blk.{layer}.attn_k.weight"])
        assert np.array_equal(q, matrix.values[f"blk.{layer}.attn_v.weight"])
        up = matrix.values[f"blk.{layer}.ffn_up.weight"]
        assert np.array_equal(up, matrix.values[f"blk.{layer}.ffn_gate.weight"])
        assert not np.allclose(q, up)


@pytest.mark.slow
def test_the_file_is_llama_imatrix_gguf_and_reloads_equal(computed) -> None:
    matrix, path = computed
    reloaded = load_imatrix(path)
    assert reloaded.values.keys() == matrix.values.keys()
    for name, values in matrix.values.items():
        assert np.array_equal(reloaded.values[name], values), name
    assert reloaded.digest == matrix.digest and reloaded.chunks == CHUNKS
    assert reloaded.datasets == ("GPL-3",)
    reader = gguf.GGUFReader(path)
    assert reader.fields["general.type"].contents() == "imatrix"
    assert "general.architecture" not in reader.fields  # as llama-imatrix writes it
    assert reader.fields["imatrix.chunk_size"].contents() == CTX
    counts = {t.name: np.array(t.data) for t in reader.tensors if t.name.endswith(".counts")}
    assert len(counts) == 210 and all(np.all(c == CHUNKS * CTX) for c in counts.values())
    record = matrix.record()
    assert record["calibration"] == {
        "text": "GPL-3",
        "text_digest": "sha256:" + hashlib.sha256(TEXT.read_bytes()[:-1]).hexdigest(),
        "tokens": record["calibration"]["tokens"],
        "chunks": CHUNKS,
        "ctx": CTX,
    }
    assert record["calibration"]["tokens"] > CHUNKS * CTX


@pytest.mark.slow
def test_the_same_text_gives_the_same_matrix(computed, bundled_gguf: Path, tmp_path) -> None:
    matrix, _ = computed
    again = compute_imatrix(bundled_gguf, text=TEXT, ctx=CTX, chunks=CHUNKS, threads=1)
    assert again.digest == matrix.digest and again.filename.endswith(".imatrix.gguf")
    other = tmp_path / "other.txt"
    other.write_text(TEXT.read_text()[5000:])
    shifted = compute_imatrix(bundled_gguf, text=other, ctx=CTX, chunks=CHUNKS, threads=1)
    assert shifted.digest != matrix.digest


def test_a_text_that_cannot_calibrate_is_refused(bundled_gguf: Path, tmp_path: Path) -> None:
    empty, binary, short = tmp_path / "empty.txt", tmp_path / "bin.txt", tmp_path / "short.txt"
    empty.write_text("  \n")
    binary.write_bytes(bytes(range(256)) * 4)
    short.write_text("Once upon a time there was a model.")
    with pytest.raises(QuantizationError, match="cannot calibrate on empty.txt.*empty"):
        compute_imatrix(bundled_gguf, text=empty, ctx=CTX)
    with pytest.raises(QuantizationError, match="not UTF-8"):
        compute_imatrix(bundled_gguf, text=binary, ctx=CTX)
    with pytest.raises(QuantizationError, match="only \\d+ tokens.*--calibrate-ctx"):
        compute_imatrix(bundled_gguf, text=short, ctx=CTX, threads=1)
    with pytest.raises(QuantizationError, match="at least 16"):
        compute_imatrix(bundled_gguf, text=TEXT, ctx=8)
    with pytest.raises(QuantizationError, match="--calibrate-chunks"):
        compute_imatrix(bundled_gguf, text=TEXT, ctx=CTX, chunks=0)


def test_llama_imatrix_names_are_filtered_as_it_does() -> None:
    assert weight_name(b"CUDA0#blk.0.attn_k.weight#0") == "blk.0.attn_k.weight"
    assert weight_name(b"blk.1.ffn_up.weight") == "blk.1.ffn_up.weight"


def test_iq4_xs_without_an_imatrix_names_both_ways(store: Store, settings: Settings) -> None:
    parent = resolve("smollm2", store=store, settings=settings)
    with pytest.raises(QuantizationError, match="IQ4_XS needs.*--calibrate TEXT.*--imatrix FILE"):
        quantize(parent, store=store, settings=settings, qtype="IQ4_XS")
    assert len(store.list()) == 1


def test_owl_quantize_refuses_iq4_xs_without_either_flag(owl_env: Path) -> None:
    result = owl(owl_env, "quantize", "smollm2", "-t", "Q8_0", "-t", "IQ4_XS")
    assert result.returncode == 1
    assert "--calibrate TEXT" in result.stderr and "--imatrix FILE" in result.stderr
    assert "smollm2:q8_0" not in owl(owl_env, "list").stdout  # refused before any work
    both = owl(owl_env, "quantize", "smollm2", "-t", "IQ4_XS", "--calibrate", str(TEXT),
               "--imatrix", str(TEXT))  # fmt: skip
    assert both.returncode == 2 and "not both" in both.stderr


@pytest.mark.slow
def test_calibrating_a_stored_model_on_too_short_a_text_is_refused(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    parent = resolve("smollm2", store=store, settings=settings)
    short = tmp_path / "short.txt"
    short.write_text("word " * 50)
    with pytest.raises(QuantizationError, match="short.txt has only"):
        calibrate(parent, store=store, settings=settings, text=short, ctx=CTX)


@pytest.mark.slow
def test_owl_quantize_calibrate_makes_iq4_xs_that_runs(owl_env: Path, tmp_path: Path) -> None:
    out = tmp_path / "smollm2.imatrix.gguf"
    result = owl(
        owl_env, "quantize", "smollm2", "-t", "IQ4_XS", "-t", "Q4_K_M", "--calibrate", str(TEXT),
        "--calibrate-ctx", str(CTX), "--calibrate-chunks", "2", "--imatrix-out", str(out),
        "--json", timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "smollm2 is Q4_1; its activations carry" in result.stderr  # calibrate on f16
    stream, rows, at = result.stdout, [], 0
    while stream[at:].strip():  # one indented JSON object per model
        at += len(stream[at:]) - len(stream[at:].lstrip())
        row, at = json.JSONDecoder().raw_decode(stream, at)
        rows.append(row)
    assert [row["name"] for row in rows] == ["smollm2:iq4_xs", "smollm2:q4_k_m"]
    matrix = load_imatrix(out)
    for row in rows:  # one matrix, computed once, recorded in each child
        record = row["imatrix"]
        assert record["digest"] == matrix.digest and record["file"] == out.name
        assert record["entries"] == 210 and record["chunks"] == 2
        assert record["calibration"]["ctx"] == CTX and record["calibration"]["chunks"] == 2
        assert record["calibration"]["text_digest"].startswith("sha256:")
    settings = Settings(home=owl_env, ctx=256, threads=1)
    store = open_store(settings)
    child = resolve("smollm2:iq4_xs", store=store, settings=settings)
    assert "IQ4_XS" in child.info["quantize"]["tensor_types"]
    assert child.info["quantize"]["imatrix"]["digest"] == matrix.digest
    fields = gguf.GGUFReader(store.weights_path(child)).fields
    assert fields["quantize.imatrix.file"].contents() == out.name
    assert fields["quantize.imatrix.chunks_count"].contents() == 2
    model = engine.load(child, store=store, settings=settings)
    try:
        params = engine.SamplingParams(temperature=0, max_tokens=6)
        text = "".join(delta.text for delta in model.complete("Once upon a time", params))
    finally:
        model.close()
    assert text.strip()


@pytest.mark.slow
def test_moe_experts_get_a_row_each_counted_by_routing(
    store: Store, settings: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """A tiny random Mixtral (4 experts, 2 per token), converted to f16: MUL_MAT_ID's path."""
    from owl.pull.sources.package import locate
    from owl.quantize.convert import convert
    from owl.store.ref import parse_ref
    from tests.conftest import EMBEDDED_REF
    from tests.quantize.test_convert import shared_tools
    from tests.support.tiny_lora import smollm2_tokenizer
    from tests.support.tiny_models import build_tiny_folder, tiny_config

    work = tmp_path_factory.getbasetemp()  # shares SmolLM2's tokenizer and the converter
    tokenizer = smollm2_tokenizer(work, locate(parse_ref(EMBEDDED_REF)))
    folder = build_tiny_folder("mixtral", work, tokenizer)
    model = convert(folder, store=store, settings=settings, tools=shared_tools(work))
    config = tiny_config("mixtral")
    experts, used = config.num_local_experts, config.num_experts_per_tok
    out = tmp_path / "moe.imatrix.gguf"
    matrix = compute_imatrix(
        store.weights_path(model), text=TEXT, ctx=64, chunks=2, threads=1, out=out
    )
    assert matrix.values["blk.0.ffn_up_exps.weight"].size == experts * config.hidden_size
    down = matrix.values["blk.0.ffn_down_exps.weight"]
    assert down.size == experts * config.intermediate_size and np.all(down >= 0)
    assert "blk.0.ffn_gate_inp.weight" in matrix.values  # the router is a plain MUL_MAT
    counts = {t.name: np.array(t.data).ravel() for t in gguf.GGUFReader(out).tensors}
    routed = counts["blk.0.ffn_up_exps.weight.counts"]
    assert routed.size == experts and routed.sum() == 2 * 64 * used  # each token, `used` times
    assert np.all(counts["blk.0.attn_q.weight.counts"] == 2 * 64)
