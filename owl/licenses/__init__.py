"""Know what you may do with a model: license terms (terms.toml), verdicts, discovery.

check("llama3.1", use="commercial", monthly_users=1_000)   → LicenseVerdict
check_lineage(lineage, use="hosted")                      → with license sources, lineage
terms("Apache-2.0").spdx                                   → "Apache-2.0"
"""

from owl.licenses.check import LicenseVerdict, check, strictness
from owl.licenses.discover import (
    find_license,
    license_from_card,
    license_from_catalog,
    license_from_gguf,
    resolve_license,
)
from owl.licenses.lineage import Ancestor, Lineage, check_lineage
from owl.licenses.terms import (
    LicenseTerms,
    Obligation,
    OutputTraining,
    Use,
    all_terms,
    normalize_license,
    terms,
)

__all__ = [
    "Ancestor",
    "LicenseTerms",
    "LicenseVerdict",
    "Lineage",
    "Obligation",
    "OutputTraining",
    "Use",
    "all_terms",
    "check",
    "check_lineage",
    "find_license",
    "license_from_card",
    "license_from_catalog",
    "license_from_gguf",
    "normalize_license",
    "resolve_license",
    "strictness",
    "terms",
]
