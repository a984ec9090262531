"""The catalog: its data file, search, parameter sizes and the refs `owl pull` uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from owl.catalog import (
    CatalogEntry,
    CatalogError,
    Modality,
    entries,
    find,
    load,
    parse_params,
    search,
)
from owl.store.aliases import find_alias
from owl.store.ref import RefKind, parse_name, parse_ref

# Every model the issue names, mapped to the catalog families that stand for it.
REQUIRED_FAMILIES = {
    "LLaMA 3": {"Llama 3"},
    "LLaMA 3.1": {"Llama 3.1"},
    "Falcon": {"Falcon"},
    "Mistral 7B": {"Mistral"},
    "Mixtral 8x7B": {"Mixtral"},
    "Pythia": {"Pythia"},
    "GPT-NeoX": {"GPT-NeoX"},
    "GPT-J": {"GPT-J"},
    "GPT-Neo": {"GPT-Neo"},
    "OPT": {"OPT"},
    "BLOOM": {"BLOOM"},
    "RedPajama-INCITE": {"RedPajama-INCITE"},
    "Yi": {"Yi"},
    "Gemma": {"Gemma", "Gemma 2"},
    "Qwen": {"Qwen2.5"},
    "IBM Granite": {"Granite"},
    "DeepSeek-R1": {"DeepSeek-R1"},
    "SmolLM2": {"SmolLM2"},
    "LLaVA": {"LLaVA"},
    "OpenFlamingo": {"OpenFlamingo"},
    "Kosmos-2": {"Kosmos-2"},
    "InstructBLIP": {"InstructBLIP"},
    "Stable Diffusion": {"Stable Diffusion"},
    "DeepFloyd IF": {"DeepFloyd IF"},
    "OpenCLIP": {"OpenCLIP"},
    "DINOv2": {"DINOv2"},
    "Whisper": {"Whisper"},
    "wav2vec 2.0": {"wav2vec 2.0"},
    "MusicGen": {"MusicGen"},
    "Bark": {"Bark"},
    "Riffusion": {"Riffusion"},
}

# Sizes and versions the issue names one by one.
REQUIRED_ENTRIES = [
    "falcon-7b-instruct",
    "falcon-40b-instruct",
    "falcon-180b-chat",
    "mistral-7b-instruct-v0.2",
    "mixtral-8x7b-instruct-v0.1",
    "stable-diffusion-1.5",
    "stable-diffusion-2.1",
    "stable-diffusion-xl-base-1.0",
    "smollm2-135m-instruct",
]


def test_every_model_named_in_the_issue_is_in_the_catalog() -> None:
    families = {entry.family for entry in entries()}
    missing = [name for name, wanted in REQUIRED_FAMILIES.items() if not wanted & families]
    assert not missing
    assert all(find(name) is not None for name in REQUIRED_ENTRIES)


def test_every_entry_is_valid() -> None:
    for entry in entries():
        assert str(parse_name(entry.name)) == entry.name
        assert entry.modality in set(Modality)
        assert entry.license and entry.repos and entry.size_label
        assert entry.nominal_parameters > 0
        if entry.license == "other":
            assert entry.license_name or entry.note, entry.name
        ref = entry.pull_ref()
        if ref is not None:
            assert parse_ref(ref).kind in (RefKind.HF, RefKind.NAME), entry.name


def test_names_are_unique_and_there_are_many() -> None:
    names = [entry.name for entry in entries()]
    assert len(names) == len(set(names))
    assert len(names) >= len(REQUIRED_FAMILIES)


def test_every_modality_has_models() -> None:
    assert {entry.modality for entry in entries()} == set(Modality)


def test_the_embedded_smollm2_is_an_alias_owl_knows() -> None:
    entry = find("smollm2-135m-instruct")
    assert entry is not None and entry.alias == "smollm2"
    assert entry.pull_ref() == "smollm2"
    for entry in entries():
        if entry.alias:
            assert find_alias(parse_name(entry.alias)) is not None, entry.name


def test_licenses_the_issue_cares_about() -> None:
    expected = {
        "llama3.1-8b-instruct": "llama3.1",
        "llama3-8b-instruct": "llama3",
        "gemma-2-9b-it": "gemma",
        "bloom-560m": "bigscience-bloom-rail-1.0",
        "musicgen-small": "cc-by-nc-4.0",
        "deepseek-r1": "mit",
        "yi-34b-chat": "apache-2.0",
        "stable-diffusion-xl-base-1.0": "openrail++",
        "qwen2.5-3b-instruct": "qwen-research",
        "falcon-180b-chat": "falcon-180b-tii-license-1.0",
    }
    assert {name: find(name).license_label for name in expected} == expected
    assert find("llama3.1-8b-instruct").gated and find("gemma-2-2b-it").gated
    assert not find("qwen2.5-7b-instruct").gated


def test_find_ignores_case_and_knows_what_it_does_not_know() -> None:
    assert find("  Llama3.1-8B-Instruct ").name == "llama3.1-8b-instruct"
    assert find("no-such-model") is None


def test_search_needs_every_word() -> None:
    names = {entry.name for entry in search("LLAMA 8b")}
    assert {"llama3-8b-instruct", "llama3.1-8b-instruct", "deepseek-r1-distill-llama-8b"} <= names
    assert all(
        "8b" in entry.haystack() and "llama" in entry.haystack() for entry in search("llama 8b")
    )
    assert search("qwen whisper") == []
    assert len(search()) == len(entries()) == len(search("   "))


def test_search_matches_organisation_architecture_and_task() -> None:
    assert {entry.family for entry in search("eleutherai")} == {
        "Pythia",
        "GPT-NeoX",
        "GPT-J",
        "GPT-Neo",
    }
    assert all(entry.architecture == "gpt_neox" for entry in search("gpt_neox"))
    assert {entry.family for entry in search("text-to-image")} == {
        "Stable Diffusion",
        "DeepFloyd IF",
    }


def test_search_by_modality() -> None:
    audio = search(modality="audio")
    assert audio and all(entry.modality is Modality.AUDIO for entry in audio)
    assert {"whisper-tiny", "musicgen-small", "bark"} <= {entry.name for entry in audio}
    assert search(modality="VISION") == search(modality=Modality.VISION)
    with pytest.raises(ValueError, match="unknown modality 'smell'"):
        search(modality="smell")


def test_search_by_license_id_or_name() -> None:
    apache = search(license="apache-2.0")
    assert apache and all(entry.license == "apache-2.0" for entry in apache)
    assert {entry.name for entry in search(license="Qwen-Research")} == {
        "qwen2.5-3b-instruct",
        "qwen2.5-vl-3b-instruct",
    }
    assert {entry.name for entry in search(license="LLAMA3.1")} >= {"llama3.1-8b-instruct"}
    assert search(license="no-such-license") == []


def test_max_params_compares_the_nominal_size_exactly() -> None:
    # Llama 3.1 8B has 8.03B parameters but is an "8B" model: --max-params 8B lists it.
    eight = {entry.name for entry in search(max_params=parse_params("8B"))}
    assert {"llama3.1-8b-instruct", "granite-3.1-8b-instruct"} <= eight
    assert "gemma-2-9b-it" not in eight
    assert find("llama3.1-8b-instruct").parameters > 8e9
    below = {entry.name for entry in search(max_params=parse_params("7.9B"))}
    assert "llama3.1-8b-instruct" not in below and "mistral-7b-instruct-v0.2" in below
    assert all(entry.nominal_parameters <= 1e9 for entry in search(max_params=1e9))


def test_filters_combine() -> None:
    found = search("whisper", modality="audio", license="mit", max_params=500e6)
    assert [entry.name for entry in found] == ["whisper-tiny", "whisper-base", "whisper-small"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("8B", 8e9),
        ("135M", 135e6),
        ("1.5b", 1.5e9),
        ("7e9", 7e9),
        ("500k", 5e5),
        ("1T", 1e12),
        (" 46.7 B ", 46.7e9),
        ("0.5B", 0.5e9),
        (".5b", 0.5e9),
        ("1e3M", 1e9),
        ("1234", 1234.0),
        (8e9, 8e9),
    ],
)
def test_parse_params(text: str | float, value: float) -> None:
    assert parse_params(text) == pytest.approx(value)


@pytest.mark.parametrize(
    "junk", ["", "   ", "lots", "8X", "8BB", "B8", "-1B", "0", "0B", "inf", "nan", "1e999", "8 B B"]
)
def test_parse_params_refuses_junk(junk: str) -> None:
    with pytest.raises(ValueError, match="invalid parameter count"):
        parse_params(junk)


def _entry(**fields: object) -> CatalogEntry:
    base = {
        "name": "some-model",
        "family": "Some",
        "display_name": "Some Model",
        "organisation": "Someone",
        "size_label": "1B",
        "modality": "text",
        "task": "chat",
        "architecture": "llama",
        "license": "apache-2.0",
        "repos": ["Someone/Some-Model"],
    }
    return CatalogEntry.model_validate({**base, **fields})


@pytest.mark.parametrize(
    ("fields", "ref"),
    [
        ({"alias": "smollm2", "gguf_repo": "Org/Ignored-GGUF"}, "smollm2"),
        (
            {"gguf_repo": "Org/Some-GGUF", "gguf_file": "some.Q4_K_M.gguf"},
            "hf:Org/Some-GGUF/some.Q4_K_M.gguf",
        ),
        ({"gguf_repo": "Org/Some-GGUF"}, "hf:Org/Some-GGUF"),
        ({"pull": "hf:Org/Some-CT2"}, "hf:Org/Some-CT2"),
        ({}, None),
    ],
)
def test_pull_ref(fields: dict, ref: str | None) -> None:
    assert _entry(**fields).pull_ref() == ref


def test_pull_refs_of_real_entries() -> None:
    assert find("llama3.1-8b-instruct").pull_ref() == (
        "hf:bartowski/Meta-Llama-3.1-8B-Instruct-GGUF/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf"
    )
    assert find("qwen2.5-72b-instruct").pull_ref() == "hf:bartowski/Qwen2.5-72B-Instruct-GGUF"
    assert find("stable-diffusion-xl-base-1.0").pull_ref() is None
    assert find("wav2vec2-base-960h").pull_ref() == "hf:facebook/wav2vec2-base-960h"


def test_speech_entries_pull_folders_owl_runs() -> None:
    # Whisper comes as faster-whisper's CTranslate2 conversion, not OpenAI's transformers repo.
    for size in ("tiny", "base", "small", "medium", "large-v3"):
        entry = find(f"whisper-{size}")
        assert entry.pull_ref() == f"hf:Systran/faster-whisper-{size}"
        assert entry.repos[0] == f"openai/whisper-{size}"  # the publisher's own stays first
        assert entry.license == "mit"
    turbo = find("whisper-large-v3-turbo").pull_ref()
    assert turbo == "hf:mobiuslabsgmbh/faster-whisper-large-v3-turbo"
    voices = {
        "en_us-lessac-medium": ("en/en_US/lessac/medium", "lessac-blizzard-2013"),
        "en_us-amy-medium": ("en/en_US/amy/medium", "mimic3-voices"),
        "en_gb-alan-medium": ("en/en_GB/alan/medium", "mimic3-voices-apope"),
        "de_de-thorsten-medium": ("de/de_DE/thorsten/medium", "cc0-1.0"),
    }
    for name, (folder, license) in voices.items():
        entry = find(name)
        ref = parse_ref(entry.pull_ref())
        assert (ref.kind, ref.repo_id, ref.filename) == (RefKind.HF, "rhasspy/piper-voices", folder)
        assert entry.license_label == license and entry.task == "text-to-speech"
        assert entry.modality is Modality.AUDIO and entry.family == "Piper"
    # A voice's store name is its file's stem, as a pull of its folder names it.
    assert find("en_US-lessac-medium") is find("en_us-lessac-medium")


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "Some Model"},
        {"name": "some-model:q4"},
        {"name": "../escape"},
        {"modality": "smell"},
        {"license": ""},
        {"license": "Apache 2.0"},
        {"license": "other"},
        {"size_label": "big"},
        {"parameters": -1},
        {"repos": []},
        {"repos": ["not a repo"]},
        {"gguf_file": "model.gguf"},
        {"gguf_repo": "Org/R", "gguf_file": "../model.gguf"},
        {"gguf_repo": "Org/R", "gguf_file": "model.bin"},
        {"alias": "Not An Alias"},
        {"pull": "https://host/model.gguf"},
        {"pull": "hf:Org/Repo@main"},
        {"pull": "hf:Org/Repo", "gguf_repo": "Org/Repo-GGUF"},
        {"family": " "},
        {"typo_field": 1},
    ],
)
def test_invalid_entries_are_refused(fields: dict) -> None:
    with pytest.raises(ValueError):
        _entry(**fields)


def test_entries_are_immutable() -> None:
    entry = find("bark")
    with pytest.raises(ValueError):
        entry.license = "mit"  # type: ignore[misc]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """
["tiny-model"]
family = "Tiny"
display_name = "Tiny"
organisation = "Someone"
size_label = "1M"
modality = "text"
task = "chat"
architecture = "llama"
license = "mit"
repos = ["Someone/Tiny"]
"""


def test_load_reads_a_data_file(tmp_path: Path) -> None:
    [entry] = load(_write(tmp_path, GOOD))
    assert entry.name == "tiny-model" and entry.nominal_parameters == 1e6 and not entry.gated


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace('modality = "text"', 'modality = "smell"'), r"\[tiny-model\].*modality"),
        (GOOD.replace('["tiny-model"]', '["Tiny Model"]'), r"\[Tiny Model\].*name"),
        (GOOD + 'colour = "blue"\n', r"\[tiny-model\].*colour"),
        (GOOD.replace('repos = ["Someone/Tiny"]', ""), r"\[tiny-model\].*repos"),
        (GOOD + "[oops\n", "cannot read the catalog"),
        ('tiny = "not a table"\n', r"\[tiny\] must be a table"),
    ],
)
def test_a_broken_data_file_names_the_entry(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        load(_write(tmp_path, text))


def test_a_missing_data_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read the catalog"):
        load(tmp_path / "absent.toml")


def test_vision_entries_name_their_projector_in_their_gguf_repository() -> None:
    vision = {entry.name: entry for entry in entries() if entry.mmproj_file}
    assert set(vision) >= {
        "smolvlm-256m-instruct",
        "smolvlm-500m-instruct",
        "qwen2.5-vl-3b-instruct",
        "qwen2.5-vl-7b-instruct",
        "gemma-3-4b-it",
        "llava-1.5-7b",
    }
    for entry in vision.values():
        assert entry.gguf_repo and entry.gguf_file, entry.name
        assert "mmproj" in entry.mmproj_file.lower(), entry.name
        assert entry.modality == "multimodal" and entry.task == "image-text-to-text"
    assert find("smolvlm-256m-instruct").pull_ref() == (
        "hf:ggml-org/SmolVLM-256M-Instruct-GGUF/SmolVLM-256M-Instruct-Q8_0.gguf"
    )
    assert find("gemma-3-4b-it").license == "gemma" and find("gemma-3-4b-it").gated
    assert find("qwen2.5-vl-3b-instruct").license_label == "qwen-research"
    assert find("qwen2.5-vl-7b-instruct").license == "apache-2.0"


def test_an_mmproj_file_needs_its_gguf_repository() -> None:
    with pytest.raises(ValueError, match="mmproj_file needs a gguf_repo"):
        _entry(mmproj_file="mmproj-x-f16.gguf")
