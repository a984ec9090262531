"""owl.quantize on the real bundled model (SmolLM2-135M, Q4_1): llama.cpp's quantizer into the
store, lineage and license, running the result, failures that leave the store as it was,
and quantizing with an importance matrix (its file formats: test_imatrix.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import gguf
import pytest

from owl import engine
from owl.config import Settings
from owl.errors import InsufficientSpace, NameClash, QuantizationError
from owl.formats import inspect
from owl.formats.gguf import read_gguf_header
from owl.pull import check_model, pull, resolve
from owl.quantize import load_imatrix, quantize
from owl.store import Manifest, RefKind, Store, parse_name
from tests.conftest import EMBEDDED_REF
from tests.quantize.test_imatrix import COUNTS, SUMS, write_gguf_imatrix

GREEDY = engine.SamplingParams(temperature=0, max_tokens=6)


@pytest.fixture
def parent(store: Store, settings: Settings) -> Manifest:
    return resolve("smollm2", store=store, settings=settings)


def _texts(manifest: Manifest, store: Store, settings: Settings, *prompts: str) -> list[str]:
    """The model's greedy continuation of each prompt."""
    # One thread: llama.cpp's OpenMP threads spin, and crawl on a machine others keep busy.
    small = settings.model_copy(update={"ctx": 256, "threads": 1})
    model = engine.load(manifest, store=store, settings=small)
    try:
        return ["".join(delta.text for delta in model.complete(p, GREEDY)) for p in prompts]
    finally:
        model.close()


def _leftovers(store: Store) -> list[str]:
    return sorted(path.name for path in store.blobs.root.glob("partial-*"))


def _blobs(store: Store) -> set[str]:
    return store.blobs.digests()


def test_an_unknown_type_is_refused_with_the_list(parent: Manifest, store: Store, settings) -> None:
    before = _blobs(store)
    with pytest.raises(QuantizationError) as caught:
        quantize(parent, store=store, settings=settings, qtype="Q4_K_X")
    assert "'Q4_K_X'" in str(caught.value)
    assert "Q8_0" in str(caught.value) and "IQ4_XS" in str(caught.value)
    assert _blobs(store) == before and len(store.list()) == 1


# --- a quantization into the store -------------------------------------------------------------


@pytest.mark.slow
def test_q8_0_is_a_new_model_with_lineage(parent: Manifest, store: Store, settings) -> None:
    result = quantize(parent, store=store, settings=settings, qtype="q8_0")
    assert result.display_name == "smollm2:q8_0"
    assert store.get(parse_name("smollm2:q8_0")) == result
    assert result.format == "gguf"
    assert result.files[0].filename == "SmolLM2-135M-Instruct.Q8_0.gguf"
    info = inspect(store.weights_path(result))
    assert info.quantization == "Q8_0"
    assert set(info.tensor_types) == {"F32", "Q8_0"}  # every Q4_1 tensor became Q8_0
    assert info.parameters == parent.info["parameters"]
    assert result.size == store.weights_path(result).stat().st_size > parent.size
    (lineage,) = result.parents
    assert (lineage.name, lineage.digest, lineage.relation) == (
        "smollm2",
        parent.weights.digest,
        "quantized",
    )
    assert lineage.license == "apache-2.0" and lineage.source == parent.source
    assert result.license == "apache-2.0" and result.license_sources == {"parent": "apache-2.0"}
    # Its bytes exist only in this store: its source is the parent, never the parent's file.
    assert result.source.kind is RefKind.NAME
    assert (result.source.uri, result.source.revision) == ("smollm2", parent.weights.digest)
    assert result.parameters == parent.parameters  # the default sampling parameters
    assert result.scans[result.weights.digest].verdict == "clean"
    details = result.info["quantize"]
    assert details["type"] == "Q8_0" and details["from"] == "Q4_1"
    assert details["requantized"] is True and details["imatrix"] is None
    assert _leftovers(store) == []
    assert _blobs(store) == {parent.weights.digest, result.weights.digest}


@pytest.mark.slow
def test_q8_0_runs_and_answers_as_its_parent_does(parent: Manifest, store: Store, settings) -> None:
    result = quantize(parent, store=store, settings=settings, qtype="Q8_0")
    # Q4_1 → Q8_0 changes the numbers a little, so long greedy continuations may part ways
    # (measured: "Once upon a time" gives "New Haven" from one and "Nova Haven" from the
    # other); where the model is sure, both answer alike.
    prompts = ("1, 2, 3, 4,", "The capital of France is")
    quantized = _texts(result, store, settings, *prompts)
    original = _texts(parent, store, settings, *prompts)
    assert quantized[0] == original[0]
    assert "Paris" in quantized[1] and "Paris" in original[1]


@pytest.mark.slow
def test_a_named_q4_0_runs(parent: Manifest, store: Store, settings) -> None:
    result = quantize(parent, store=store, settings=settings, qtype="Q4_0", name="tiny")
    assert result.display_name == "tiny"  # tag latest
    assert inspect(store.weights_path(result)).quantization == "Q4_0"
    assert result.size < parent.size  # Q4_0 drops Q4_1's per-block minimum
    assert _texts(result, store, settings, "Once upon a time")[0].strip()


@pytest.mark.slow
def test_quantizing_again_gives_the_same_bytes_once(parent: Manifest, store: Store, settings):
    first = quantize(parent, store=store, settings=settings, qtype="Q4_0")
    one_thread = settings.model_copy(update={"threads": 1})
    second = quantize(parent, store=store, settings=one_thread, qtype="Q4_0")
    # llama.cpp's output is deterministic, whatever the number of threads.
    assert second.weights.digest == first.weights.digest
    assert _blobs(store) == {parent.weights.digest, first.weights.digest}
    assert [m.display_name for m in store.list()] == ["smollm2", "smollm2:q4_0"]


def test_a_name_in_use_is_not_overwritten(store: Store, settings) -> None:
    # A model whose name already says q8_0: its Q8_0 would take its own name.
    mine = pull(EMBEDDED_REF, store=store, settings=settings, name="mine:q8_0")
    before = _blobs(store)
    with pytest.raises(NameClash, match="--name OTHER"):
        quantize(mine, store=store, settings=settings, qtype="Q8_0")
    assert store.get(parse_name("mine:q8_0")) == mine and _blobs(store) == before


@pytest.mark.slow
def test_the_license_verdict_carries_the_parents_terms(parent: Manifest, store: Store, settings):
    result = quantize(parent, store=store, settings=settings, qtype="Q4_0")
    verdict = check_model(result, store=store, use="commercial")
    assert verdict.license == "apache-2.0" and verdict.verdict == "conditional"
    assert any("derived (quantized) from smollm2" in reason for reason in verdict.reasons)
    assert verdict.obligations  # Apache's notice obligations travel with the weights
    store.remove(parse_name("smollm2"))  # the parent gone: the lineage's record still judges
    assert check_model(result, store=store, use="commercial").verdict == "conditional"


# --- failures leave the store as it was ----------------------------------------------------------


def test_a_type_that_needs_an_imatrix_is_refused_without_one(parent, store, settings) -> None:
    before = _blobs(store)
    with pytest.raises(QuantizationError, match="needs an importance matrix.*--imatrix FILE"):
        quantize(parent, store=store, settings=settings, qtype="IQ2_XXS")
    assert _blobs(store) == before and _leftovers(store) == []


def test_invalid_weights_fail_in_llama_cpp_and_store_nothing(parent, store, settings) -> None:
    path = store.weights_path(parent)
    header = read_gguf_header(path)
    tensor = next(t for t in header.tensors if t.name == "blk.0.attn_q.weight")
    os.chmod(path, 0o644)
    with path.open("r+b") as blob:  # the first Q4_1 block's scale becomes NaN (f16 0x7e00)
        blob.seek(header.data_offset + tensor.offset)
        blob.write(b"\x00\x7e")
    # owl's scan reads headers, not weights: llama.cpp's check of every row finds it.
    with pytest.raises(QuantizationError) as caught:
        quantize(parent, store=store, settings=settings, qtype="Q8_0")
    message = str(caught.value)
    assert message.startswith(
        "llama.cpp could not quantize 'smollm2' to Q8_0: "
        "tensor 'blk.0.attn_q.weight' has invalid data. Nothing was stored"
    )
    assert "owl verify smollm2" in message
    assert _blobs(store) == {parent.weights.digest} and _leftovers(store) == []
    assert store.find(parse_name("smollm2:q8_0")) is None


def test_a_truncated_source_is_refused_before_llama_cpp(parent, store, settings) -> None:
    path = store.weights_path(parent)
    os.chmod(path, 0o644)
    os.truncate(path, path.stat().st_size // 2)  # its stored scan verdict still says clean
    with pytest.raises(QuantizationError, match="stored file of 'smollm2' is damaged.*truncated"):
        quantize(parent, store=store, settings=settings, qtype="Q8_0")
    assert _blobs(store) == {parent.weights.digest} and _leftovers(store) == []


def test_too_little_disk_is_refused_before_quantizing(parent, store, settings, monkeypatch):
    usage = shutil.disk_usage(store.home)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=50_000_000))
    with pytest.raises(InsufficientSpace, match="quantizing smollm2 to Q8_0 needs"):
        quantize(parent, store=store, settings=settings, qtype="Q8_0")
    assert _blobs(store) == {parent.weights.digest} and _leftovers(store) == []


def test_a_model_that_is_not_gguf_is_refused(parent: Manifest, store: Store, settings) -> None:
    other = parent.model_copy(update={"format": "safetensors"})
    with pytest.raises(QuantizationError, match="owl convert smollm2"):
        quantize(other, store=store, settings=settings, qtype="Q8_0")


# --- importance matrices -----------------------------------------------------------------------


def test_an_imatrix_for_another_model_is_refused(parent, store, settings, tmp_path) -> None:
    path = write_gguf_imatrix(tmp_path / "other.gguf", SUMS, COUNTS)  # 3 columns: not SmolLM2
    with pytest.raises(QuantizationError, match="made for another model"):
        quantize(parent, store=store, settings=settings, qtype="Q2_K_S", imatrix=path)
    assert _leftovers(store) == []


def uniform_imatrix(model: Path, path: Path) -> Path:
    """Every column of every matrix alike: a valid imatrix that carries no information."""
    tensors = [t for t in read_gguf_header(model).tensors if len(t.shape) >= 2]
    sums = {t.name: [[1.0] * t.shape[0]] for t in tensors}
    return write_gguf_imatrix(path, sums, {t.name: [1.0] for t in tensors})


@pytest.mark.slow
def test_q2_k_s_is_made_with_an_imatrix(parent, store, settings, tmp_path) -> None:
    with pytest.raises(QuantizationError, match="needs an importance matrix"):
        quantize(parent, store=store, settings=settings, qtype="Q2_K_S")
    path = uniform_imatrix(store.weights_path(parent), tmp_path / "smollm2.imatrix.gguf")
    result = quantize(parent, store=store, settings=settings, qtype="Q2_K_S", imatrix=path)
    record = result.info["quantize"]["imatrix"]
    assert record["file"] == "smollm2.imatrix.gguf"
    assert record["digest"] == load_imatrix(path).digest and record["chunks"] == 7
    assert "Q2_K" in result.info["quantize"]["tensor_types"]
    # The GGUF says so itself, with the keys llama-quantize writes.
    fields = gguf.GGUFReader(store.weights_path(result)).fields
    assert fields["quantize.imatrix.file"].contents() == "smollm2.imatrix.gguf"
    assert fields["quantize.imatrix.entries_count"].contents() == record["entries"]
    assert fields["quantize.imatrix.dataset"].contents() == "calibration.txt"
    assert _texts(result, store, settings, "Once upon a time")[0].strip()
