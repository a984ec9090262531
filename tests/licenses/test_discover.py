"""Finding a model's license: GGUF metadata, model cards, the catalog, and disagreement."""

from __future__ import annotations

from pathlib import Path

import pytest

from owl.formats import inspect
from owl.licenses import (
    find_license,
    license_from_card,
    license_from_catalog,
    license_from_gguf,
    resolve_license,
)
from owl.licenses.discover import identify
from owl.pull import check_model
from owl.store import FileEntry, Manifest, RefKind, Source, Store

FALCON_CARD = """---
language:
- en
license: unknown
extra_gated_prompt: You agree to the [Falcon-180B TII license](https://huggingface.co/spaces/tiiuae/falcon-180b-license/blob/main/LICENSE.txt)
  and [acceptable use policy](https://huggingface.co/spaces/tiiuae/falcon-180b-license/blob/main/ACCEPTABLE_USE_POLICY.txt).
---

# Falcon-180B
"""


def _gguf_with_license(path: Path, license: str) -> Path:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("licensed")
    writer.add_license(license)
    writer.add_context_length(64)
    writer.add_embedding_length(8)
    writer.add_block_count(1)
    writer.add_head_count(2)
    writer.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_the_bundled_model_says_apache(bundled_gguf: Path) -> None:
    assert license_from_gguf(inspect(bundled_gguf).metadata) == "apache-2.0"


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"general.license": "Apache-2.0"}, "apache-2.0"),
        ({"general.license": "llama3_1"}, "llama3.1"),
        ({"general.license": "other", "general.license.name": "qwen"}, "qwen"),
        (
            {
                "general.license": "other",
                "general.license.link": "https://ai.google.dev/gemma/terms",
            },
            "gemma",
        ),
        ({"general.license": "Acme-Model-License"}, "acme-model-license"),
        ({"general.license": "other", "general.license.name": "Acme License"}, "acme license"),
        ({"general.license": "other"}, "other"),
        ({"general.license": 3}, None),
        ({}, None),
    ],
)
def test_license_from_gguf(metadata: dict, expected: str | None) -> None:
    assert license_from_gguf(metadata) == expected


@pytest.mark.parametrize(
    ("card", "expected"),
    [
        ("---\nlicense: llama3.1\n---\n# Model\n", "llama3.1"),
        (
            "---\nlicense: other\nlicense_name: qwen-research\nlicense_link: LICENSE\n---\n",
            "qwen-research",
        ),
        (
            "---\nlicense: other\nlicense_link: https://www.llama.com/llama3_2/license/\n---\n",
            "llama3.2",
        ),
        ("---\nlicense: other\nlicense_name: my-terms\n---\n", "my-terms"),
        ("---\nlicense:\n- apache-2.0\n- cc-by-nc-4.0\n---\n", "cc-by-nc-4.0"),
        (FALCON_CARD, "falcon-180b-tii-license-1.0"),
        ("# A card without front matter\nlicense: mit\n", None),
        ("---\nlicense: [apache-2.0\n---\n", None),
        ("---\n- a list\n---\n", None),
    ],
)
def test_license_from_card(card: str, expected: str | None) -> None:
    assert license_from_card(card) == expected


def test_identify_prefers_a_known_license_over_its_hints() -> None:
    assert identify("mit", name="qwen") == "mit"
    assert identify(None, name=None) is None
    assert identify("unknown", links=["https://huggingface.co/spaces/bigscience/license"]) == (
        "bigscience-bloom-rail-1.0"
    )


def test_resolve_takes_the_stricter_and_says_so() -> None:
    license, notes = resolve_license({"gguf": "apache-2.0", "card": "llama3.1", "catalog": None})
    assert license == "llama3.1"
    assert notes == [
        "license sources disagree (gguf says apache-2.0, card says llama3.1): "
        "taking the stricter, llama3.1"
    ]
    assert resolve_license({"gguf": "mit", "card": "cc-by-nc-4.0"})[0] == "cc-by-nc-4.0"


def test_resolve_counts_unrecognised_terms_strictest() -> None:
    assert resolve_license({"gguf": "apache-2.0", "card": "acme-terms"})[0] == "acme-terms"


def test_resolve_lets_the_user_decide_and_notes_it() -> None:
    license, notes = resolve_license({"card": "other", "user": "qwen"})
    assert license == "qwen"
    assert notes == [
        "license sources disagree (card says other, user says qwen): using qwen, as set"
    ]


def test_resolve_when_sources_agree_or_are_silent() -> None:
    assert resolve_license({"gguf": "Apache-2.0", "card": "apache-2.0"}) == ("apache-2.0", [])
    assert resolve_license({"gguf": None, "card": ""}) == (None, [])


def test_license_from_catalog() -> None:
    from owl.catalog import entries

    entry = next(item for item in entries() if item.license != "other")
    assert license_from_catalog(entry.name) == identify(entry.license)
    assert license_from_catalog("no-such-model-in-the-catalog") is None


def test_gguf_and_card_disagree(tmp_path: Path, store: Store) -> None:
    path = _gguf_with_license(tmp_path / "model.gguf", "apache-2.0")
    card = "---\nlicense: llama3.1\nbase_model: meta-llama/Llama-3.1-8B\n---\n# A Llama fine-tune\n"
    license, sources, notes = find_license(gguf_metadata=inspect(path).metadata, card_text=card)
    assert (license, sources) == ("llama3.1", {"gguf": "apache-2.0", "card": "llama3.1"})
    assert "disagree" in notes[0]
    manifest = Manifest(
        name="finetune",
        format="gguf",
        files=[FileEntry(filename=path.name, digest="sha256:" + "a" * 64, size=1)],
        source=Source(kind=RefKind.FILE, uri=str(path)),
        license=license,
        license_sources=sources,
    )
    store.save(manifest)
    verdict = check_model(manifest, store=store, use="commercial")
    assert (verdict.license, verdict.verdict) == ("llama3.1", "conditional")
    assert "gguf says apache-2.0, card says llama3.1" in verdict.reasons[0]
    assert any("Built with Llama" in line for line in verdict.obligations)
