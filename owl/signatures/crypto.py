"""model-signing's verifiers and signers, behind the few calls owl makes (owl[sign]).

model-signing's public API verifies by hashing the model folder itself; owl already holds
every file's sha256 from the pull, so it asks the verifier of each mode only for the signed
file list it checked, and compares digests itself (owl.signatures.verify). Those verifier
classes live in model_signing._signing: the version is pinned (pyproject.toml) and the
tests sign and verify real models with it, so a change there fails the suite, not a user.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import exceptions as crypto_errors
from cryptography.hazmat.primitives import serialization
from model_signing import hashing, signing
from model_signing._signing import sign_certificate, sign_ec_key, sign_sigstore, sign_sigstore_pb
from OpenSSL import crypto as openssl
from sigstore import errors as sigstore_errors

from owl.errors import SignatureInvalid
from owl.signatures.bundle import SIGNATURE_FILE, SignedFile

if TYPE_CHECKING:
    from owl.signatures.verify import Trust

# What model-signing's verifiers raise on a signature that does not hold.
_REFUSALS = (
    ValueError,
    KeyError,
    TypeError,
    IndexError,  # a bundle without signatures or certificates
    crypto_errors.InvalidSignature,
    crypto_errors.InvalidKey,
    openssl.X509StoreContextError,  # a certificate chain that does not lead to a trusted root
)


def verified_files(
    signature: Path, trust: Trust, *, name: str
) -> tuple[tuple[SignedFile, ...], str | None, str | None]:
    """The signed files, once `signature` is checked against `trust`; the signer and issuer
    as owl records them. SignatureInvalid when the signature is not by that signer."""
    try:
        if trust.identity is not None:
            verifier = sign_sigstore.Verifier(identity=trust.identity, oidc_issuer=trust.issuer)
            bundle = sign_sigstore.Signature.read(signature)
            signer, issuer = trust.identity, trust.issuer
        elif trust.public_key is not None:
            verifier = sign_ec_key.Verifier(trust.public_key)
            bundle = sign_sigstore_pb.Signature.read(signature)
            signer, issuer = key_hint(trust.public_key), None
        else:
            verifier = sign_certificate.Verifier(list(trust.certificate_chain))
            bundle = sign_sigstore_pb.Signature.read(signature)
            signer, issuer = None, None
        # The key verifier prints a warning for older bundles; owl's record says enough.
        with contextlib.redirect_stdout(io.StringIO()):
            manifest = verifier.verify(bundle)
    except _REFUSALS as err:
        raise SignatureInvalid(
            f"{name} is not signed by the signer you trust ({_describe(trust)}): "
            f"{str(err)[:200] or type(err).__name__}. Nothing was stored"
        ) from None
    except OSError as err:  # an unreadable key
        raise SignatureInvalid(f"cannot check {name}: {err}") from None
    except sigstore_errors.Error as err:  # Sigstore's trust root or servers out of reach
        raise SignatureInvalid(
            f"cannot check {name} with Sigstore ({type(err).__name__}: {str(err)[:200]}); "
            "Sigstore needs its servers: check the network, or verify with a key "
            "(--public-key) or a certificate chain (--certificate-chain)"
        ) from None
    files = tuple(
        SignedFile(str(item.identifier), item.digest.algorithm, item.digest.digest_hex)
        for item in manifest.resource_descriptors()
    )
    return files, signer, issuer


def key_hint(public_key: Path) -> str:
    """How a key is named in a signature and in owl's records: sha256 of its PEM form."""
    key = serialization.load_pem_public_key(public_key.read_bytes())
    pem = key.public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    return f"key sha256:{hashlib.sha256(pem).hexdigest()}"


def sign_folder(
    folder: Path,
    *,
    private_key: Path | None = None,
    signing_certificate: Path | None = None,
    certificate_chain: tuple[Path, ...] = (),
    sigstore: bool = False,
    password: str | None = None,
) -> Path:
    """Sign every file of `folder` (but git files and the signature) into folder/model.sig."""
    output = folder / SIGNATURE_FILE
    config = signing.Config().set_hashing_config(
        hashing.Config().set_ignored_paths(paths=[output], ignore_git_paths=True)
    )
    if sigstore:
        config = config.use_sigstore_signer()
    elif signing_certificate is not None:
        assert private_key is not None
        config = config.use_certificate_signer(
            private_key=private_key,
            signing_certificate=signing_certificate,
            certificate_chain=list(certificate_chain),
        )
    else:
        assert private_key is not None
        config = config.use_elliptic_key_signer(private_key=private_key, password=password)
    config.sign(folder, output)
    return output


def _describe(trust: Trust) -> str:
    if trust.identity is not None:
        return f"{trust.identity} via {trust.issuer}"
    if trust.public_key is not None:
        return str(trust.public_key)
    return "the certificate chain " + ", ".join(str(path) for path in trust.certificate_chain)


__all__ = ["key_hint", "sign_folder", "verified_files"]
