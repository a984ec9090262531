"""Pulling signed model folders: a model-signing signature made here with a real key is
checked on pull; a changed byte, an added file, a removed file, a stranger's key and an
unsigned model under --require-signature are refused, each naming what is wrong, and
nothing is stored."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from owl.config import Settings
from owl.errors import SignatureInvalid, SignatureRequired
from owl.pull import pull
from owl.signatures import SIGNATURE_FILE, Trust
from owl.signatures.crypto import key_hint, sign_folder
from owl.store import Store
from tests.support.signing import KeyPair, write_model_folder
from tests.support.tiny_gguf import write_tiny_gguf


def blob_count(store: Store) -> int:
    return len(list((store.home / "blobs").glob("sha256-*")))


def test_a_signed_folder_pulls_with_its_signer_recorded(
    signed_folder: Path, keys: KeyPair, store: Store, settings: Settings
) -> None:
    trust = Trust(public_key=keys.public, require=True)
    manifest = pull(str(signed_folder), store=store, settings=settings, trust=trust)
    record = manifest.signature
    assert record is not None
    assert (record.method, record.verified, record.files) == ("key", True, 3)
    assert record.signer == key_hint(keys.public)
    assert store.find(manifest.model_name).signature == record  # kept in the manifest


def test_without_a_key_the_files_are_still_checked_but_the_signer_is_not(
    signed_folder: Path, store: Store, settings: Settings
) -> None:
    manifest = pull(str(signed_folder), store=store, settings=settings)
    assert manifest.signature is not None and not manifest.signature.verified
    assert manifest.signature.signer.startswith("key sha256:")


def _tamper_change(folder: Path) -> str:
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one byte of the last tensor
    weights.write_bytes(bytes(data))
    return "model.safetensors changed since it was signed"


def _tamper_add(folder: Path) -> str:
    (folder / "generation_config.json").write_text("{}")
    return "added since it was signed: generation_config.json"


def _tamper_remove(folder: Path) -> str:
    (folder / "tokenizer_config.json").unlink()
    return "removed since it was signed: tokenizer_config.json"


@pytest.mark.parametrize("tamper", [_tamper_change, _tamper_add, _tamper_remove])
@pytest.mark.parametrize("with_key", [True, False])
def test_a_tampered_folder_is_refused_naming_the_file(
    signed_folder: Path, keys: KeyPair, store: Store, settings: Settings, tamper, with_key: bool
) -> None:
    words = tamper(signed_folder)
    trust = Trust(public_key=keys.public) if with_key else Trust()
    with pytest.raises(SignatureInvalid, match=words):
        pull(str(signed_folder), store=store, settings=settings, trust=trust)
    assert store.list() == [] and blob_count(store) == 0  # nothing was stored


def test_a_stranger_key_is_refused(
    signed_folder: Path, other_keys: KeyPair, store: Store, settings: Settings
) -> None:
    with pytest.raises(SignatureInvalid, match="not signed by the signer you trust"):
        pull(
            str(signed_folder),
            store=store,
            settings=settings,
            trust=Trust(public_key=other_keys.public),
        )
    assert store.list() == []


def test_an_edited_file_list_in_the_signature_is_refused(
    signed_folder: Path, store: Store, settings: Settings
) -> None:
    """Without a key the statement is not authenticated, but it must still add up: a list
    edited to match tampered weights no longer matches the statement's own subject digest."""
    path = signed_folder / SIGNATURE_FILE
    bundle = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "00" * 32
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    path.write_text(json.dumps(bundle))
    with pytest.raises(SignatureInvalid, match="does not add up"):
        pull(str(signed_folder), store=store, settings=settings)


@pytest.mark.parametrize("content", [b"", b"not json", b"{}", b'{"dsseEnvelope": 3}', b"\xff" * 64])
def test_a_signature_file_that_is_not_one_is_refused(
    signed_folder: Path, store: Store, settings: Settings, content: bytes
) -> None:
    (signed_folder / SIGNATURE_FILE).write_bytes(content)
    with pytest.raises(SignatureInvalid, match="is not an OpenSSF model signature"):
        pull(str(signed_folder), store=store, settings=settings)
    assert store.list() == []


def test_an_unsigned_model_is_refused_when_a_signature_is_required(
    tmp_path: Path, keys: KeyPair, store: Store, settings: Settings
) -> None:
    folder = write_model_folder(tmp_path / "unsigned")
    with pytest.raises(SignatureRequired, match="has no signature"):
        pull(
            str(folder),
            store=store,
            settings=settings,
            trust=Trust(public_key=keys.public, require=True),
        )
    assert store.list() == [] and blob_count(store) == 0
    assert pull(str(folder), store=store, settings=settings).signature is None  # not required


def test_a_stored_unverified_model_is_not_passed_off_as_verified(
    signed_folder: Path, keys: KeyPair, store: Store, settings: Settings
) -> None:
    pull(str(signed_folder), store=store, settings=settings)  # no key: signer not checked
    with pytest.raises(SignatureRequired, match="without a verified signature"):
        pull(
            "tiny",
            store=store,
            settings=settings,
            trust=Trust(public_key=keys.public, require=True),
        )


def test_a_single_file_is_checked_against_the_repository_signature(
    tmp_path: Path, keys: KeyPair, store: Store, settings: Settings
) -> None:
    """One file of a signed repository (--signature): it must be among the signed files,
    with the signed digest; the repository's other files are not asked for."""
    repo = tmp_path / "repo"
    repo.mkdir()
    write_tiny_gguf(repo / "tiny-q8.gguf", rows=4)
    write_tiny_gguf(repo / "tiny-f16.gguf", rows=8)
    sign_folder(repo, private_key=keys.private)
    trust = Trust(public_key=keys.public, require=True)
    signature = repo / SIGNATURE_FILE
    manifest = pull(
        str(repo / "tiny-q8.gguf"), store=store, settings=settings, trust=trust, signature=signature
    )
    assert manifest.signature is not None and manifest.signature.verified
    stray = write_tiny_gguf(tmp_path / "stray.gguf", rows=2)
    with pytest.raises(SignatureInvalid, match="not among the signed files: stray.gguf"):
        pull(str(stray), store=store, settings=settings, trust=trust, signature=signature)
    assert [m.name for m in store.list()] == ["tiny-q8"]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"require": True}, "needs the signer to trust"),
        ({"identity": "me@example.com"}, "go together"),
        ({"public_key": Path("k.pub"), "identity": "a", "issuer": "b"}, "name one signer"),
    ],
)
def test_trust_that_cannot_be_checked_is_refused_up_front(kwargs: dict, words: str) -> None:
    with pytest.raises((SignatureInvalid, SignatureRequired), match=words):
        Trust(**kwargs)
