"""Model folders rebuilt from blobs: `OWL_HOME/snapshots/sha256-<listing>/<file name>`.

A folder-format model (config.json, *.safetensors, tokenizer files) is loaded from a folder,
but the store keeps each file once, by digest. A snapshot is a folder of links named by the
manifest's file names, pointing at the blobs (a name with a sub-folder, a diffusers
component's "unet/config.json", is a link in a real sub-folder). It is keyed by the digest of
the file listing (the same files under two names share one), built in a temp folder and
renamed into place, so a loader never sees half of one; a snapshot whose links no longer
match is rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from owl.errors import StoreCorrupted
from owl.formats.folders import is_model_path
from owl.store.manifest import FileEntry, Manifest

SNAPSHOTS = "snapshots"


def listing_digest(entries: list[FileEntry]) -> str:
    """`sha256:` of "<hex>  <file name>\\n" per file, sorted by name (`sha256sum *` style)."""
    listing = "".join(
        f"{entry.digest.removeprefix('sha256:')}  {entry.filename}\n"
        for entry in sorted(entries, key=lambda entry: entry.filename)
    )
    return "sha256:" + hashlib.sha256(listing.encode()).hexdigest()


def snapshot_path(home: Path, manifest: Manifest) -> Path:
    """Where the snapshot of `manifest` lives (whether or not it is built)."""
    return home / SNAPSHOTS / listing_digest(manifest.files).replace(":", "-")


def _check_names(manifest: Manifest) -> None:
    names = [entry.filename for entry in manifest.files]
    bad = [name for name in names if not is_model_path(name)]
    # Each name once, also where case does not count (macOS, Windows), and no file where
    # another name needs a folder.
    folded = {name.casefold() for name in names}
    folders = {name.split("/")[0].casefold() for name in names if "/" in name}
    if bad or len(folded) != len(names) or folders & folded:
        raise StoreCorrupted(
            f"the manifest of '{manifest.display_name}' names files that cannot be a folder "
            f"({', '.join(map(repr, bad[:3])) or 'a name twice'}); "
            f"`owl rm {manifest.display_name}` and pull it again"
        )


def _present(folder: Path) -> set[str]:
    """The names in a snapshot folder, those in its sub-folders as "sub/name"."""
    names = set()
    for path in folder.iterdir():
        if path.is_dir() and not path.is_symlink():
            names.update(f"{path.name}/{child.name}" for child in path.iterdir())
        else:
            names.add(path.name)
    return names


def _complete(folder: Path, blobs: dict[str, Path]) -> bool:
    if not folder.is_dir():
        return False
    if _present(folder) != set(blobs):
        return False
    for name, blob in blobs.items():
        try:
            if not os.path.samefile(folder / name, blob):
                return False
        except OSError:  # a dangling link: its blob was removed
            return False
    return True


def _link(blob: Path, dest: Path) -> None:
    # Symlinks where the file system has them; hard links (same disk) or copies otherwise.
    dest.parent.mkdir(exist_ok=True)
    try:
        os.symlink(blob, dest)
        return
    except OSError:
        pass
    try:
        os.link(blob, dest)
    except OSError:
        shutil.copyfile(blob, dest)


def materialise(home: Path, manifest: Manifest, blobs: dict[str, Path]) -> Path:
    """The snapshot folder of `manifest`, built from `blobs` ({file name: blob path}) if needed."""
    _check_names(manifest)
    target = snapshot_path(home, manifest)
    if _complete(target, blobs):
        return target
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    try:
        for name, blob in blobs.items():
            _link(blob, work / name)
        if target.exists():  # stale: moved aside first, as a folder cannot be replaced whole
            aside = root / f".stale-{uuid.uuid4().hex}"
            try:
                os.replace(target, aside)
            except FileNotFoundError:
                pass  # another process moved it already
            shutil.rmtree(aside, ignore_errors=True)
        try:
            os.replace(work, target)
        except OSError:
            if not _complete(target, blobs):  # not another process's identical snapshot
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def remove_snapshot(home: Path, manifest: Manifest) -> None:
    """Delete the snapshot of `manifest` (its links only; the blobs stay)."""
    target = snapshot_path(home, manifest)
    if target.is_dir():
        aside = target.parent / f".stale-{uuid.uuid4().hex}"
        try:
            os.replace(target, aside)
        except OSError:
            return
        shutil.rmtree(aside, ignore_errors=True)
