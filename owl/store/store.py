"""The store: blobs plus manifests under one OWL_HOME."""

from __future__ import annotations

import difflib
import json
import logging
import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from owl.errors import ModelNotFound, StoreCorrupted
from owl.formats import ModelInfo, inspect
from owl.formats.folders import read_folder
from owl.store.blobs import BlobStore
from owl.store.manifest import FileEntry, Manifest, ScanRecord
from owl.store.ref import ModelName
from owl.store.snapshots import materialise, remove_snapshot, snapshot_path

log = logging.getLogger("owl.store")


class Store:
    """Models by name in `home`: manifests naming content-addressed blobs."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.blobs = BlobStore(home / "blobs")
        self.manifest_dir = home / "manifests"
        self.manifest_dir.mkdir(parents=True, exist_ok=True)

    def _manifest_path(self, name: ModelName) -> Path:
        # ModelName is validated: neither part can hold a separator or '..'.
        return self.manifest_dir / name.name / f"{name.tag}.json"

    def _read(self, path: Path) -> Manifest:
        try:
            return Manifest.model_validate_json(path.read_bytes())
        except (OSError, ValidationError, ValueError) as err:
            raise StoreCorrupted(
                f"manifest {path} is unreadable ({type(err).__name__}); "
                f"delete it and pull the model again"
            ) from err

    def find(self, name: ModelName) -> Manifest | None:
        """The manifest of `name`, or None when no such model is stored."""
        path = self._manifest_path(name)
        return self._read(path) if path.is_file() else None

    def get(self, name: ModelName) -> Manifest:
        """The manifest of `name`; ModelNotFound (with close matches) when absent."""
        manifest = self.find(name)
        if manifest is None:
            raise ModelNotFound(self.not_found_message(name))
        return manifest

    def not_found_message(self, name: ModelName) -> str:
        known = [manifest.display_name for manifest in self.list()]
        close = difflib.get_close_matches(str(name), known, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return (
            f"model '{name}' is not in the store; `owl list` shows the stored models, and "
            "`owl pull ./model.gguf | ./model-folder | https://host/model.gguf | "
            "hf:Org/Repo/file.gguf` adds one."
            f"{hint}"
        )

    def list(self) -> list[Manifest]:
        """Every stored model, sorted by name; an unreadable manifest is skipped with a warning.

        One damaged file must not hide every other model (or stop `owl rm` of the others).
        """
        manifests = []
        for path in sorted(self.manifest_dir.glob("*/*.json")):
            try:
                manifests.append(self._read(path))
            except StoreCorrupted as err:
                log.warning("%s", err)
        return sorted(manifests, key=lambda manifest: manifest.display_name)

    def save(self, manifest: Manifest) -> None:
        """Write a manifest atomically (temp file, then rename)."""
        path = self._manifest_path(manifest.model_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(manifest.model_dump(mode="json"), indent=2).encode()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(payload)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def remove(self, name: ModelName) -> Manifest:
        """Delete a model's manifest, then those of its blobs no other model uses."""
        manifest = self.get(name)
        path = self._manifest_path(name)
        path.unlink()
        try:
            path.parent.rmdir()
        except OSError:
            pass  # other tags of this name remain
        # Only this model's own blobs: a blob that a concurrent pull has just committed
        # but not yet named in a manifest must survive.
        remaining = self.list()
        if manifest.is_folder and not any(
            snapshot_path(self.home, other) == snapshot_path(self.home, manifest)
            for other in remaining
        ):
            remove_snapshot(self.home, manifest)
        used = {entry.digest for other in remaining for entry in other.files}
        for digest in {entry.digest for entry in manifest.files} - used:
            self.blobs.remove(digest)
        return manifest

    def damaged(self, manifest: Manifest) -> list[FileEntry]:
        """The files whose blob is missing or not the size the manifest records (truncated):
        what a pull must fetch again. A stat each, so that every pull can afford it."""
        return [
            entry for entry in manifest.files if not self.blobs.intact(entry.digest, entry.size)
        ]

    def discard_damaged(self, manifest: Manifest) -> bool:
        """Remove the model's blobs of the wrong size (their bytes are not their digest's), so
        that a fetch stores whole ones in their place; whether any file was missing or damaged.

        Without this, a source that finds the digest already stored (a pinned URL) would keep
        the truncated copy.
        """
        damaged = self.damaged(manifest)
        for entry in damaged:
            path = self.blobs.path(entry.digest)
            if path.is_file():
                log.warning(
                    "%s: %s is damaged (%s bytes, %s expected); fetching it again",
                    manifest.display_name,
                    entry.filename,
                    f"{path.stat().st_size:,}",
                    f"{entry.size:,}",
                )
                self.blobs.remove(entry.digest)
        return bool(damaged)

    def weights_path(self, manifest: Manifest) -> Path:
        """The path of the file the engine loads; StoreCorrupted if its blob is gone."""
        return self.blobs.require(manifest.weights.digest)

    def projector_path(self, manifest: Manifest) -> Path | None:
        """A vision model's projector GGUF (llama.cpp's mmproj: the file role "projector"),
        None for a model without one; StoreCorrupted if its blob is gone."""
        entry = manifest.projector
        return None if entry is None else self.blobs.require(entry.digest)

    def model_dir(self, manifest: Manifest) -> Path:
        """A folder holding the model's files under their own names (links to the blobs).

        For folder formats (Hugging Face safetensors): what a loader or converter reads.
        Built on first use under OWL_HOME/snapshots and rebuilt when stale; StoreCorrupted
        if a blob is gone.
        """
        blobs = {entry.filename: self.blobs.require(entry.digest) for entry in manifest.files}
        return materialise(self.home, manifest, blobs)

    def read_info(self, manifest: Manifest) -> ModelInfo:
        """Read a stored model's files into a ModelInfo (owl.formats), wherever they are."""
        if manifest.is_folder:
            stored = {entry.filename: self.blobs.require(entry.digest) for entry in manifest.files}
            where = f"model '{manifest.display_name}'"
            return read_folder(stored, format=manifest.format, where=where)
        return inspect(self.weights_path(manifest))

    def used_digests(self) -> set[str]:
        """Every digest some manifest names."""
        return {entry.digest for manifest in self.list() for entry in manifest.files}

    def scan_record(self, digest: str, scanner: str) -> ScanRecord | None:
        """A verdict some manifest already holds for these bytes, made by this scanner."""
        for manifest in self.list():
            record = manifest.scans.get(digest)
            if record is not None and record.scanner == scanner:
                return record
        return None
