"""owl.scan.advisories: the shipped advisory file, OWL_ADVISORIES, runtime and model matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from owl.config import Settings
from owl.errors import ConfigError
from owl.pull import pull
from owl.scan.advisories import (
    Advisories,
    advisories_for,
    check_runtime,
    doctor,
    installed_version,
    load_advisories,
    model_advisories,
)
from owl.scan.findings import ExitCode
from owl.store import Store
from owl.store.manifest import Parent, Source
from owl.store.ref import RefKind

ZEROS = "sha256:" + "0" * 64


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _model_advisory(path: Path, *, digest: str = ZEROS, repo: str = "hf:Evil/Model") -> Path:
    return _write(
        path,
        f"""
[[model]]
id = "TEST-0001"
summary = "a test's malicious model"
digests = ["{digest}"]
repositories = ["{repo}"]
""",
    )


@pytest.mark.parametrize(
    ("advisory", "affected", "fixed"),
    [
        ("CVE-2024-34359", "0.2.71", "0.2.72"),
        ("CVE-2025-32434", "2.5.1", "2.6.0"),
        ("CVE-2024-56201", "3.1.4", "3.1.5"),
        ("CVE-2024-56326", "3.1.4", "3.1.5"),
        ("CVE-2025-27516", "3.1.5", "3.1.6"),
        ("CVE-2023-6730", "4.35.2", "4.36.0"),
        ("CVE-2024-3568", "4.37.2", "4.38.0"),
    ],
)
def test_the_shipped_advisories_cover_the_versions_they_name(
    advisory: str, affected: str, fixed: str
) -> None:
    shipped = {item.id: item for item in load_advisories().runtime}
    assert shipped[advisory].affects(affected)
    assert not shipped[advisory].affects(fixed)
    assert shipped[advisory].affects(affected + "rc1")  # a pre-release of an affected one


def test_every_shipped_advisory_names_its_report_and_a_fix() -> None:
    shipped = load_advisories()
    ids = [item.id for item in [*shipped.runtime, *shipped.model]]
    assert len(ids) == len(set(ids))
    assert all(item.url and item.url.startswith("https://") for item in shipped.runtime)
    assert all(item.fix.startswith("pip install") for item in shipped.runtime)
    assert {"llama-cpp-python", "jinja2", "torch", "transformers", "gguf"} <= set(shipped.watch)


def test_the_runtime_is_read_from_metadata_and_matched(tmp_path: Path) -> None:
    extra = _write(
        tmp_path / "extra.toml",
        """
[[runtime]]
id = "TEST-JINJA"
package = "Jinja2"
affected = ">=0"
severity = "high"
summary = "every jinja2"
fix = "nothing"

[[runtime]]
id = "TEST-ABSENT"
package = "owl-no-such-distribution"
affected = ">=0"
severity = "low"
summary = "not installed"
fix = "nothing"
""",
    )
    checks = {check.package: check for check in check_runtime(load_advisories(extra))}
    jinja = checks["jinja2"]
    assert jinja.version == installed_version("jinja2") is not None
    assert [item.id for item in jinja.advisories] == ["TEST-JINJA"]  # 3.1.6: no shipped one
    assert checks["owl-no-such-distribution"].version is None
    assert checks["owl-no-such-distribution"].advisories == []
    assert "gguf" in checks  # watched, with no advisory of its own


def test_an_extra_file_adds_entries_and_replaces_one_with_the_same_id(tmp_path: Path) -> None:
    extra = _write(
        tmp_path / "extra.toml",
        """
[[runtime]]
id = "CVE-2025-27516"
package = "jinja2"
affected = "<0"
severity = "low"
summary = "judged not to apply here"
fix = "-"
""",
    )
    merged = load_advisories(extra)
    ours = [item for item in merged.runtime if item.id == "CVE-2025-27516"]
    assert len(ours) == 1 and not ours[0].affects("3.1.5")
    assert len(merged.runtime) == len(load_advisories().runtime)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[[runtime]\n", "not valid TOML"),
        ('[[model]]\nid = "X"\nsummary = "s"\ndigests = ["sha256:abc"]\n', "model.0.digests"),
        ('[[model]]\nid = "X"\nsummary = "s"\nrepositories = ["Org/Name"]\n', "hf:ORG/NAME"),
        (
            '[[runtime]]\nid = "X"\npackage = "p"\naffected = "three"\nseverity = "low"\n'
            'summary = "s"\nfix = "f"\n',
            "not a version range",
        ),
        ('[[model]]\nid = "X"\nsummary = "s"\nhash = "sha256:0"\n', "model.0.hash"),
    ],
)
def test_a_broken_extra_file_is_one_clear_error(tmp_path: Path, text: str, words: str) -> None:
    extra = _write(tmp_path / "mine.toml", text)
    with pytest.raises(ConfigError) as refused:
        load_advisories(extra)
    message = str(refused.value)
    assert words in message and "OWL_ADVISORIES" in message and str(extra) in message


def test_a_missing_extra_file_names_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OWL_ADVISORIES", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match="OWL_ADVISORIES names .*absent.toml, which does not"):
        advisories_for(Settings())


def test_models_match_by_digest_repository_and_lineage(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    manifest = pull("smollm2", store=store, settings=settings)
    assert model_advisories(manifest, load_advisories()) == []
    by_digest = load_advisories(
        _model_advisory(tmp_path / "a.toml", digest=manifest.weights.digest)
    )
    assert [item.id for item in model_advisories(manifest, by_digest)] == ["TEST-0001"]

    from_hub = manifest.model_copy(
        update={"source": Source(kind=RefKind.HF, uri="hf:evil/MODEL/model.gguf")}
    )
    by_repo = load_advisories(_model_advisory(tmp_path / "b.toml"))
    assert [item.id for item in model_advisories(from_hub, by_repo)] == ["TEST-0001"]
    other_repo = from_hub.model_copy(
        update={"source": Source(kind=RefKind.HF, uri="hf:Evil/Model2/model.gguf")}
    )
    assert model_advisories(other_repo, by_repo) == []

    # A model owl quantized from a malicious one: its parent's digest still matches.
    child = manifest.model_copy(
        update={
            "files": [],
            "parents": [Parent(name="smollm2", digest=ZEROS, relation="quantized")],
        }
    )
    assert [item.id for item in model_advisories(child, by_repo)] == ["TEST-0001"]


def test_doctor_reports_every_stored_model(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    manifest = pull("smollm2", store=store, settings=settings)
    clean = doctor(store, Advisories())
    assert clean.exit_code == ExitCode.CLEAN and clean.summary()["verdict"] == "clean"
    assert [check.model for check in clean.models] == ["smollm2"]

    advised = load_advisories(_model_advisory(tmp_path / "a.toml", digest=manifest.weights.digest))
    report = doctor(store, advised)
    assert report.exit_code == ExitCode.UNSAFE
    summary = report.summary()
    assert summary["verdict"] == "affected"
    assert summary["models"][0]["advisories"][0]["id"] == "TEST-0001"
