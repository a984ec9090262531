"""owl sign and owl pull --require-signature as a user runs them (the real console script):
key mode end to end, certificate mode with a CA made here, the signer in show and the BOM,
and every refusal as one line with exit 1."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from owl.signatures import read_claims
from tests.support.cli import owl
from tests.support.signing import KeyPair, write_key_pair, write_model_folder


def test_sign_then_pull_requiring_the_signature(
    tmp_path: Path, owl_env: Path, keys: KeyPair
) -> None:
    folder = write_model_folder(tmp_path / "tiny")
    signed = owl(owl_env, "sign", str(folder), "--key", str(keys.private))
    assert signed.returncode == 0, signed.stderr
    assert "signed 3 files" in signed.stdout and (folder / "model.sig").is_file()
    pulled = owl(
        owl_env, "pull", str(folder), "--require-signature", "--public-key", str(keys.public)
    )
    assert pulled.returncode == 0, pulled.stderr
    assert "(verified, 3 files)" in pulled.stdout
    shown = json.loads(owl(owl_env, "show", "tiny", "--json").stdout)
    assert shown["signature"]["verified"] is True
    assert shown["signature"]["signer"] == read_claims(folder / "model.sig").signer
    bom = json.loads(owl(owl_env, "bom", "tiny").stdout)
    (component,) = [c for c in bom["components"] if c["name"] == "tiny"]
    properties = {p["name"]: p["value"] for p in component["properties"]}
    assert properties["owl:signature:signer"] == shown["signature"]["signer"]
    assert properties["owl:signature:verified"] == "true"


def test_cli_refusals_are_one_line(
    tmp_path: Path, owl_env: Path, keys: KeyPair, other_keys: KeyPair
) -> None:
    folder = write_model_folder(tmp_path / "tiny")
    unsigned = owl(
        owl_env, "pull", str(folder), "--require-signature", "--public-key", str(keys.public)
    )
    assert unsigned.returncode == 1 and "has no signature" in unsigned.stderr
    assert "Traceback" not in unsigned.stderr
    owl(owl_env, "sign", str(folder), "--key", str(keys.private))
    stranger = owl(owl_env, "pull", str(folder), "--public-key", str(other_keys.public))
    assert stranger.returncode == 1 and "not signed by the signer you trust" in stranger.stderr
    no_signer = owl(owl_env, "pull", str(folder), "--require-signature")
    assert no_signer.returncode == 1 and "--public-key PEM" in no_signer.stderr
    not_a_key = tmp_path / "junk.pem"
    not_a_key.write_text("not a key")
    bad_key = owl(owl_env, "sign", str(folder), "--key", str(not_a_key))
    assert bad_key.returncode == 1 and "cannot sign with" in bad_key.stderr
    assert "Traceback" not in bad_key.stderr
    listed = json.loads(owl(owl_env, "list", "--json").stdout)
    assert "tiny" not in [model["name"] for model in listed]


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return write_key_pair(tmp_path / "keys", "publisher")


@pytest.fixture
def other_keys(tmp_path: Path) -> KeyPair:
    return write_key_pair(tmp_path / "keys", "stranger")


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    )  # fmt: skip
    return builder.sign(issuer_key, hashes.SHA256())


def _write_ca(folder: Path, name: str) -> tuple[Path, object]:
    key = ec.generate_private_key(ec.SECP256R1())
    path = folder / f"{name}.crt"
    path.write_bytes(
        _certificate(name, key, name, key, ca=True).public_bytes(serialization.Encoding.PEM)
    )
    return path, key


@pytest.fixture
def certificate_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A folder signed by a leaf certificate of a CA made here; the CA's certificate."""
    ca_path, ca_key = _write_ca(tmp_path, "Owl Test CA")
    leaf = write_key_pair(tmp_path, "leaf")
    leaf_key = serialization.load_pem_private_key(leaf.private.read_bytes(), None)
    leaf_certificate = tmp_path / "leaf.crt"
    leaf_certificate.write_bytes(
        _certificate("Model Publisher", leaf_key, "Owl Test CA", ca_key, ca=False).public_bytes(
            serialization.Encoding.PEM
        )
    )
    folder = write_model_folder(tmp_path / "tiny")
    signed = owl(
        tmp_path, "sign", str(folder), "--key", str(leaf.private),
        "--certificate", str(leaf_certificate), "--certificate-chain", str(ca_path),
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    return folder, ca_path


def test_certificate_mode(
    tmp_path: Path, owl_env: Path, certificate_signed: tuple[Path, Path]
) -> None:
    folder, ca = certificate_signed
    pulled = owl(
        owl_env, "pull", str(folder), "--require-signature", "--certificate-chain", str(ca)
    )
    assert pulled.returncode == 0, pulled.stderr
    shown = json.loads(owl(owl_env, "show", "tiny", "--json").stdout)["signature"]
    assert (shown["method"], shown["signer"], shown["verified"]) == (
        "certificate",
        "CN=Model Publisher",
        True,
    )
    other_ca, _ = _write_ca(tmp_path, "Some Other CA")
    copy = Path(shutil.copytree(folder, tmp_path / "again" / "tiny2"))
    refused = owl(owl_env, "pull", str(copy), "--certificate-chain", str(other_ca))
    assert refused.returncode == 1 and "not signed by the signer you trust" in refused.stderr
