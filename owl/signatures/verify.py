"""Check a model's files against its signature, and the signature against whom the user trusts.

Two questions, kept apart. Do the files match what was signed? That is asked of every model
that carries a model.sig, key or no key: a changed, added or removed file is refused, with
its name. Was it signed by someone the user trusts? That needs the user's trust (a public
key, a certificate chain, a Sigstore identity) and model-signing's verifiers (owl[sign]).
The files are compared by the sha256 digests the pull already computed: nothing is hashed
twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from owl.errors import SignatureInvalid, SignatureRequired
from owl.signatures.bundle import GIT_PATHS, SIGNATURE_FILE, Claims, SignedFile, read_claims
from owl.store.blobs import sha256_file
from owl.store.manifest import SignatureRecord


@dataclass(frozen=True)
class Trust:
    """Whom a pull trusts to have signed the model, and whether it must be signed at all."""

    public_key: Path | None = None  # PEM, an elliptic-curve key (model-signing's key mode)
    certificate_chain: tuple[Path, ...] = field(default_factory=tuple)
    identity: str | None = None  # Sigstore: the signer's identity (an email, a workflow URL)
    issuer: str | None = None  # Sigstore: the OIDC issuer that vouched for the identity
    require: bool = False

    def __post_init__(self) -> None:
        modes = [
            self.public_key is not None,
            bool(self.certificate_chain),
            self.identity is not None,
        ]
        if sum(modes) > 1:
            raise SignatureInvalid(
                "name one signer to trust: --public-key, --certificate-chain or --identity"
            )
        if (self.identity is None) != (self.issuer is None):
            raise SignatureInvalid("--identity and --issuer go together (a Sigstore signer)")
        if self.require and not any(modes):
            raise SignatureRequired(
                "--require-signature needs the signer to trust: --public-key PEM, "
                "--certificate-chain PEM, or --identity ID --issuer URL"
            )

    @property
    def given(self) -> bool:
        return (
            self.public_key is not None or bool(self.certificate_chain) or self.identity is not None
        )


NO_TRUST = Trust()


def require_signed(trust: Trust, *, where: str) -> None:
    """Refuse an unsigned model when the pull asked for a signed one."""
    if trust.require:
        raise SignatureRequired(
            f"{where} has no signature ({SIGNATURE_FILE}), and --require-signature was given: "
            "nothing was stored. Ask its publisher for a signed copy, or pull it without "
            "--require-signature"
        )


def verify_signature(
    signature: Path,
    digests: Mapping[str, str],
    *,
    trust: Trust = NO_TRUST,
    whole: bool = True,
    name: str | None = None,
) -> SignatureRecord:
    """Check the files `digests` ({path in the model: "sha256:<hex>"}) against `signature`.

    `whole`: the files are the whole signed model (a folder), so a file the signature does
    not name is an added file; otherwise they are part of it (one file of a signed
    repository), and each must be among the signed files. Raises SignatureInvalid naming
    every file that differs, or the signer that does not match `trust`. `name` is the
    signature's file name when `signature` is a store blob.
    """
    name = name or signature.name
    claims = read_claims(signature, name=name)
    if trust.given:
        claims = _verified(signature, claims, trust, name=name)
    _compare(claims, digests, whole=whole, where=name)
    return SignatureRecord(
        file=name,
        method=claims.method,
        signer=claims.signer,
        issuer=claims.issuer,
        verified=trust.given,
        files=len(claims.files),
    )


def verify_folder(folder: Path, *, trust: Trust = NO_TRUST) -> SignatureRecord:
    """Check the model folder `folder` against its model.sig, every file hashed once (as a
    pull does): what `owl sign`'s output looks like to whoever pulls it."""
    digests = {
        path.relative_to(folder).as_posix(): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != SIGNATURE_FILE
    }
    return verify_signature(folder / SIGNATURE_FILE, digests, trust=trust, whole=True)


def _verified(signature: Path, claims: Claims, trust: Trust, *, name: str) -> Claims:
    """The claims as model-signing's verifier for `trust` read them, once it checked them."""
    try:
        from owl.signatures.crypto import verified_files
    except ImportError:
        raise SignatureInvalid(
            "checking who signed a model needs model-signing: pip install 'owl[sign]'"
        ) from None
    files, signer, issuer = verified_files(signature, trust, name=name)
    if sorted(files, key=lambda f: f.name) != sorted(claims.files, key=lambda f: f.name):
        raise SignatureInvalid(f"{name} lists other files than it signed")
    return Claims(
        method="sigstore" if trust.identity else claims.method,
        signer=signer or claims.signer,
        issuer=issuer or claims.issuer,
        serialization=claims.serialization,
        files=files,
    )


def _compare(claims: Claims, digests: Mapping[str, str], *, whole: bool, where: str) -> None:
    method = claims.serialization.get("method")
    if method != "files":
        raise SignatureInvalid(
            f"{where} signs the model as {method!r}; owl checks file-by-file signatures "
            "(model-signing's default, `model_signing sign` without --shard)"
        )
    signed = {item.name: item for item in claims.files}
    ours = {name: digest for name, digest in digests.items() if not _left_out(name, claims)}
    problems = [_changed(signed[name], digest) for name, digest in ours.items() if name in signed]
    problems = [problem for problem in problems if problem]
    unknown = sorted(set(ours) - set(signed))
    if unknown:
        problems.append(
            ("added since it was signed: " if whole else "not among the signed files: ")
            + ", ".join(unknown)
        )
    # owl stores a folder's top-level files; signed files in sub-folders are not pulled, so
    # they are not asked for (each file owl does store is still checked).
    removed = sorted(name for name in set(signed) - set(ours) if "/" not in name)
    if whole and removed:
        problems.append("removed since it was signed: " + ", ".join(removed))
    if problems:
        raise SignatureInvalid(
            f"the model's files do not match {where}, so nothing was stored: "
            + "; ".join(problems)
            + ". Pull it again from its publisher, or ask them to sign it again"
        )


def _left_out(name: str, claims: Claims) -> bool:
    """Whether model-signing left `name` out of the hashed model (so owl must, too)."""
    parts = PurePosixPath(name).parts
    if name == SIGNATURE_FILE or (parts and parts[0] in GIT_PATHS):
        return True
    return any(
        name == ignored or name.startswith(ignored.rstrip("/") + "/") for ignored in claims.ignored
    )


def _changed(item: SignedFile, digest: str) -> str | None:
    algorithm, _, value = digest.partition(":")
    if item.algorithm != algorithm:
        return f"{item.name} was signed with a {item.algorithm} digest; owl checks sha256"
    if item.digest != value:
        return f"{item.name} changed since it was signed"
    return None
