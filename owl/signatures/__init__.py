"""Model signatures (OpenSSF model-signing): check a model's files against its model.sig on
pull, and sign a local model folder.

    record = verify_signature(folder / "model.sig", digests, trust=Trust(public_key=pem))
    sign_folder(folder, private_key=key)   # owl.signatures.crypto, needs owl[sign]
"""

from owl.signatures.bundle import SIGNATURE_FILE, Claims, read_claims
from owl.signatures.verify import (
    NO_TRUST,
    Trust,
    require_signed,
    verify_folder,
    verify_signature,
)

__all__ = [
    "NO_TRUST",
    "SIGNATURE_FILE",
    "Claims",
    "Trust",
    "read_claims",
    "require_signed",
    "verify_folder",
    "verify_signature",
]
