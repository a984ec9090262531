"""An OpenSSF model signature (model.sig) read as data: what it claims, checked by nobody yet.

model-signing writes a Sigstore bundle (JSON): a DSSE envelope whose payload is an in-toto
statement listing every signed file with its digest, and verification material (a public
key's hint, a certificate chain, or a Sigstore certificate). owl reads the claimed file list
itself, so that a model's files are compared with what was signed even when the user named
no key, and so that the comparison uses the digests the pull already computed (the files
are hashed once). Whether the signature is genuine is owl.signatures.verify's business.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from owl.errors import SignatureInvalid

SIGNATURE_FILE = "model.sig"  # model-signing's default, left out of the signed files
MAX_SIGNATURE_BYTES = 16 * 1024 * 1024  # a signature lists digests: megabytes, never more
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
# model-signing leaves these out of the hashed model unless told otherwise (its CLI's
# --ignore-git-paths default), so a verifier must leave them out too.
GIT_PATHS = frozenset({".git", ".gitattributes", ".github", ".gitignore"})


@dataclass(frozen=True)
class SignedFile:
    name: str  # the path inside the model, "/"-separated
    algorithm: str  # sha256 | blake2 | blake3
    digest: str  # hex


@dataclass(frozen=True)
class Claims:
    """What a signature says: the signed files, how they were hashed, and by whom."""

    method: str  # key | certificate | sigstore
    signer: str  # the key's hint, the certificate's subject, the Sigstore identity
    issuer: str | None
    serialization: dict[str, Any]
    files: tuple[SignedFile, ...]

    @property
    def ignored(self) -> frozenset[str]:
        return frozenset(str(path) for path in self.serialization.get("ignore_paths") or ())


def read_claims(path: Path, *, name: str | None = None) -> Claims:
    """The claims of the signature file at `path` (known as `name`); SignatureInvalid when
    it is not one."""
    where = name or path.name
    if path.stat().st_size > MAX_SIGNATURE_BYTES:
        raise SignatureInvalid(f"{where} is over {MAX_SIGNATURE_BYTES >> 20} MiB: not a signature")
    try:
        bundle = json.loads(path.read_bytes())
        envelope = bundle["dsseEnvelope"]
        if envelope.get("payloadType") != PAYLOAD_TYPE:
            raise ValueError(f"its payload is {envelope.get('payloadType')!r}, not in-toto")
        statement = json.loads(base64.b64decode(envelope["payload"], validate=True))
        files = _signed_files(statement)
        method, signer, issuer = _signer(bundle["verificationMaterial"])
        serialization = dict(statement["predicate"]["serialization"])
    except SignatureInvalid:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as err:
        raise SignatureInvalid(
            f"{where} is not an OpenSSF model signature ({_describe(err)}); sign the model "
            "again with `owl sign` or model-signing"
        ) from None
    return Claims(method, signer, issuer, serialization, files)


def _signed_files(statement: dict[str, Any]) -> tuple[SignedFile, ...]:
    if statement.get("_type") != STATEMENT_TYPE:
        raise ValueError(f"its statement is {statement.get('_type')!r}")
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise ValueError(
            f"its predicate is {statement.get('predicateType')!r}; owl reads {PREDICATE_TYPE}"
        )
    (subject,) = statement["subject"]
    files = tuple(
        SignedFile(str(item["name"]), str(item["algorithm"]), str(item["digest"]).lower())
        for item in statement["predicate"]["resources"]
    )
    # The subject's digest is a sha256 over the files' digests, in order: a statement whose
    # list was edited after the fact does not add up (model-signing checks the same).
    root = hashlib.sha256(b"".join(bytes.fromhex(item.digest) for item in files)).hexdigest()
    if root != subject["digest"]["sha256"]:
        raise ValueError("its file list does not add up to its subject's digest")
    if len({item.name for item in files}) != len(files):
        raise ValueError("it lists a file twice")
    return files


def _signer(material: dict[str, Any]) -> tuple[str, str, str | None]:
    if "publicKey" in material:
        hint = (material["publicKey"] or {}).get("hint")
        return "key", f"key sha256:{hint}" if hint else "a key (no hint recorded)", None
    if "x509CertificateChain" in material:
        chain = material["x509CertificateChain"]["certificates"]
        return "certificate", _subject(base64.b64decode(chain[0]["rawBytes"])), None
    if "certificate" in material:
        identity, issuer = _sigstore_identity(base64.b64decode(material["certificate"]["rawBytes"]))
        return "sigstore", identity, issuer
    raise ValueError("it names no key, certificate chain or Sigstore certificate")


def _subject(der: bytes) -> str:
    try:
        from cryptography import x509
    except ImportError:  # without owl[sign]: the files are still checked, the signer unnamed
        return "a certificate (pip install 'owl[sign]' to read it)"

    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def _sigstore_identity(der: bytes) -> tuple[str, str | None]:
    """A Fulcio certificate's identity (its SAN) and OIDC issuer (Fulcio's extension)."""
    try:
        from cryptography import x509
    except ImportError:
        return "a Sigstore certificate (pip install 'owl[sign]' to read it)", None

    certificate = x509.load_der_x509_certificate(der)
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        identity = str(next(iter(names.value)).value)
    except (x509.ExtensionNotFound, StopIteration):
        identity = certificate.subject.rfc4514_string()
    issuer = None
    for extension in certificate.extensions:
        # 1.3.6.1.4.1.57264.1.8 (DER-encoded UTF8String) supersedes .1.1 (raw bytes).
        if extension.oid.dotted_string in ("1.3.6.1.4.1.57264.1.8", "1.3.6.1.4.1.57264.1.1"):
            raw = getattr(extension.value, "value", b"")
            issuer = (
                raw[2:].decode(errors="replace")
                if raw[:1] == b"\x0c"
                else raw.decode(errors="replace")
            )
    return identity, issuer


def _describe(err: BaseException) -> str:
    if isinstance(err, KeyError):
        return f"it has no {err.args[0]!r}"
    text = str(err) or type(err).__name__
    return text[:200]
