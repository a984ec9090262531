"""An AI bill of materials: the store's models as a CycloneDX 1.6 ML-BOM (JSON).

One `machine-learning-model` component per model: its files' sha256 hashes, license
(SPDX id, or the license's name and URL where SPDX has none), supplier, where it came
from, what it was derived from (pedigree ancestors) and owl's scan verdict (properties).
Built with cyclonedx-python-lib, which also validates it against the schema.
"""

from __future__ import annotations

from collections.abc import Iterable

from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType, Pedigree
from cyclonedx.model.contact import OrganizationalEntity
from cyclonedx.model.license import DisjunctiveLicense
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from owl import __version__
from owl.store.manifest import FileEntry, Manifest, Parent, Source
from owl.store.ref import RefKind

_HUB = "https://huggingface.co"


def _hashes(files: Iterable[FileEntry]) -> list[HashType]:
    return [
        HashType(alg=HashAlgorithm.SHA_256, content=entry.digest.removeprefix("sha256:"))
        for entry in files
    ]


def _license(license_id: str | None) -> list[DisjunctiveLicense]:
    if not license_id:
        return []
    from owl.licenses import terms

    known = terms(license_id)
    if known is not None and not known.spdx.startswith("LicenseRef-"):
        return [DisjunctiveLicense(id=known.spdx)]
    url = XsUri(known.url) if known is not None and known.url else None
    return [DisjunctiveLicense(name=known.name if known else license_id, url=url)]


def _hub_repo(source: Source) -> str | None:
    if source.kind is not RefKind.HF:
        return None
    parts = source.uri.removeprefix("hf:").split("/")
    return "/".join(parts[:2]) if len(parts) >= 2 else None


def _supplier(manifest: Manifest) -> OrganizationalEntity | None:
    from owl.catalog import find

    entry = find(manifest.name)
    if entry is not None and entry.organisation:
        return OrganizationalEntity(name=entry.organisation)
    repo = _hub_repo(manifest.source)
    if repo is not None:
        return OrganizationalEntity(name=repo.split("/")[0], urls=[XsUri(f"{_HUB}/{repo}")])
    return None


def _purl(source: Source) -> PackageURL | None:
    repo = _hub_repo(source)
    if repo is not None:
        namespace, name = repo.split("/")
        return PackageURL(
            type="huggingface", namespace=namespace, name=name, version=source.revision
        )
    if source.kind is RefKind.PACKAGE:
        distribution = source.uri.removeprefix("package:").split("/")[0]
        return PackageURL(type="pypi", name=distribution, version=source.revision)
    return None


def _distribution(source: Source) -> list[ExternalReference]:
    repo = _hub_repo(source)
    url = f"{_HUB}/{repo}" if repo else source.uri if source.kind is RefKind.URL else None
    if url is None:
        return []
    return [ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(url))]


def _ancestor(parent: Parent) -> Component:
    return Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=parent.name,
        bom_ref=f"owl-parent:{parent.name}@{parent.digest}",
        hashes=_hashes([FileEntry(filename=parent.name, digest=parent.digest, size=0)]),
        licenses=_license(parent.license),
        properties=[Property(name="owl:lineage:relation", value=parent.relation)],
    )


def _scan_properties(manifest: Manifest) -> list[Property]:
    from owl.scan.policy import verdict_of

    properties = [
        Property(
            name="owl:scan:verdict",
            value=verdict_of(manifest) if manifest.scans else "not scanned",
        )
    ]
    scanners = sorted({record.scanner for record in manifest.scans.values()})
    properties += [Property(name="owl:scan:scanner", value=scanner) for scanner in scanners]
    properties += [
        Property(name=f"owl:license:{where}", value=found)
        for where, found in sorted(manifest.license_sources.items())
    ]
    return properties + _signature_properties(manifest)


def _signature_properties(manifest: Manifest) -> list[Property]:
    """Who signed the model (OpenSSF model signature), and whether owl checked that signer."""
    record = manifest.signature
    if record is None:
        return [Property(name="owl:signature", value="unsigned")]
    properties = [
        Property(name="owl:signature:method", value=record.method),
        Property(name="owl:signature:signer", value=record.signer),
        Property(name="owl:signature:verified", value=str(record.verified).lower()),
    ]
    if record.issuer:
        properties.append(Property(name="owl:signature:issuer", value=record.issuer))
    return properties


def model_component(manifest: Manifest) -> Component:
    """The CycloneDX component for one stored model."""
    files = [
        Component(
            type=ComponentType.FILE,
            name=entry.filename,
            bom_ref=f"owl-file:{manifest.display_name}/{entry.filename}",
            hashes=_hashes([entry]),
        )
        for entry in manifest.files
    ]
    pedigree = (
        Pedigree(ancestors=[_ancestor(parent) for parent in manifest.parents])
        if manifest.parents
        else None
    )
    return Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=manifest.name,
        version=manifest.tag,
        bom_ref=f"owl:{manifest.display_name}@{manifest.weights.digest}",
        description=manifest.info.get("name") or None,
        supplier=_supplier(manifest),
        hashes=_hashes([manifest.weights]),
        licenses=_license(manifest.license),
        purl=_purl(manifest.source),
        external_references=_distribution(manifest.source),
        pedigree=pedigree,
        components=files,
        properties=[
            Property(name="owl:format", value=manifest.format),
            Property(name="owl:source", value=manifest.source.uri),
            *_scan_properties(manifest),
        ],
    )


def build_bom(manifests: Iterable[Manifest]) -> Bom:
    """A BOM listing `manifests`, made by owl."""
    bom = Bom()
    bom.metadata.tools.components.add(
        Component(type=ComponentType.APPLICATION, name="owl", version=__version__)
    )
    for manifest in manifests:
        bom.components.add(model_component(manifest))
    return bom


def bom_json(manifests: Iterable[Manifest]) -> str:
    """The CycloneDX 1.6 JSON document for `manifests`."""
    return JsonV1Dot6(build_bom(manifests)).output_as_string(indent=2)
