"""owl sign: sign a local model folder (OpenSSF model signature, model.sig); and how a
stored model's signature is shown by pull and show."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from owl.errors import SigningError
from owl.store.manifest import SignatureRecord

console = Console()


def sign_command(
    folder: Annotated[Path, typer.Argument(help="The model folder to sign.")],
    key: Annotated[
        Path | None, typer.Option("--key", help="Your private key (PEM, elliptic curve).")
    ] = None,
    password: Annotated[
        str | None, typer.Option("--password", help="The key's password, if it has one.")
    ] = None,
    certificate: Annotated[
        Path | None,
        typer.Option("--certificate", help="Sign as this certificate's holder (with --key)."),
    ] = None,
    certificate_chain: Annotated[
        list[Path] | None,
        typer.Option("--certificate-chain", help="The certificates above --certificate."),
    ] = None,
    sigstore: Annotated[
        bool,
        typer.Option("--sigstore", help="Sign keyless with Sigstore (needs a network, a login)."),
    ] = False,
) -> None:
    """Sign every file of FOLDER into FOLDER/model.sig; `owl pull FOLDER --require-signature
    --public-key PUB` then checks it (OpenSSF model-signing, compatible with its CLI)."""
    if not folder.is_dir():
        raise SigningError(f"{folder} is not a folder; owl signs a model folder")
    if sigstore == (key is not None):
        raise SigningError("sign with --key PEM (and --certificate), or with --sigstore")
    try:
        from owl.signatures.crypto import sign_folder
    except ImportError:
        raise SigningError("signing needs model-signing: pip install 'owl[sign]'") from None
    try:
        output = sign_folder(
            folder,
            private_key=key,
            signing_certificate=certificate,
            certificate_chain=tuple(certificate_chain or ()),
            sigstore=sigstore,
            password=password,
        )
    except (ValueError, TypeError) as err:  # what cryptography says of a key it cannot use
        raise SigningError(
            f"cannot sign with {key}: {str(err)[:200]} (owl signs with an elliptic-curve "
            "private key in PEM: `openssl ecparam -name prime256v1 -genkey -noout -out key.pem`)"
        ) from None
    except OSError as err:
        raise SigningError(f"cannot sign {folder}: {err}") from None
    from owl.signatures import read_claims

    claims = read_claims(output)  # the signer as the signature names it: the key's hint
    console.print(f"signed {len(claims.files)} files of {folder} into {output} ({claims.signer})")


def signature_cell(record: SignatureRecord | None) -> str:
    """'key sha256:… (verified, 5 files)', or what a model without a checked signer is."""
    if record is None:
        return "unsigned"
    issuer = f" via {record.issuer}" if record.issuer else ""
    if record.verified:
        return f"{record.signer}{issuer} (verified, {record.files} files)"
    return (
        f"{record.signer}{issuer} (files match {record.file}; signer not checked: pull with "
        "--public-key, --certificate-chain or --identity to check it)"
    )


def register(app: typer.Typer) -> None:
    app.command("sign")(sign_command)
