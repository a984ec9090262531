"""A loopback server that answers like the Hugging Face Hub, for pulls from `hf:` references.

huggingface_hub asks `HEAD {endpoint}/{repo}/resolve/{revision}/{file}` for the commit
(X-Repo-Commit), the LFS sha256 (X-Linked-Etag) and the size, then GETs the same URL; a
missing repository, revision or file is a 404 with X-Error-Code. The file list of a
repository comes from `GET {endpoint}/api/models/{repo}/tree/{revision}`, that of one of its
folders from `…/tree/{revision}/{path, percent-encoded}`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from owl.config import Settings, load_settings
from owl.store import Store
from tests.support.fileserver import FileServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TAG_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def sha256_hex(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git_oid(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def assert_nothing_stored(store: Store) -> None:
    assert store.blobs.digests() == set()
    assert sorted(store.blobs.root.glob("partial-*")) == []
    assert store.list() == []


def isolate_hf_cache(monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's Hugging Face cache (under the HF_HOME that owl_env set), online.

    huggingface_hub reads HF_HOME once, when it is first imported; without this, every test
    after the first would share that first test's cache.
    """
    from huggingface_hub import constants

    cache = Path(os.environ["HF_HOME"]) / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return cache


@dataclass
class Hub:
    server: FileServer
    files: Path

    def add_file(
        self,
        repo: str,
        filename: str,
        data: Path,
        *,
        revision: str = "main",
        commit: str = COMMIT,
        etag: str | None = None,
    ) -> str:
        """Serve `data` as `filename` of `repo` at `revision`; returns its sha256 hex."""
        sha = sha256_hex(data)
        self.server.add(
            f"/{repo}/resolve/{revision}/{filename}",
            data,
            headers={
                "X-Repo-Commit": commit,
                "X-Linked-Etag": f'"{etag or sha}"',
                "X-Linked-Size": str(data.stat().st_size),
            },
        )
        return sha

    def add_tree(
        self,
        repo: str,
        names: list[str],
        *,
        revision: str = "main",
        path: str = "",
        folders: tuple[str, ...] = (),
    ) -> None:
        """List `names` (repository paths) and `folders` as the tree of `path` ("": the top)."""
        entries = [
            {"type": "file", "path": name, "size": 1, "oid": git_oid(name)} for name in names
        ] + [{"type": "directory", "path": name, "oid": git_oid(name)} for name in folders]
        where = f"/{quote(path, safe='')}" if path else ""
        self.server.add_json(
            f"/api/models/{repo}/tree/{revision}{where}", json.dumps(entries).encode()
        )

    def add_repo(
        self,
        repo: str,
        files: dict[str, bytes],
        *,
        revision: str = "main",
        commit: str = COMMIT,
        path: str = "",
        folders: tuple[str, ...] = (),
    ) -> dict[str, str]:
        """Serve `files` ({repository path: bytes}) of `repo` and list them, with `folders`,
        as the tree of `path` (the top of the repository: every file); {path: sha256 hex}."""
        shas = {}
        for name, data in files.items():
            local = self.files / repo / revision / name
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(data)
            shas[name] = self.add_file(repo, name, local, revision=revision, commit=commit)
        self.add_tree(repo, list(files), revision=revision, path=path, folders=folders)
        return shas

    def settings(self, monkeypatch: pytest.MonkeyPatch) -> Settings:
        monkeypatch.setenv("HF_ENDPOINT", self.server.base)
        return load_settings()

    def paths(self, method: str) -> list[str]:
        return [req.path for req in self.server.requests if req.method == method]


def offline_settings(monkeypatch: pytest.MonkeyPatch, home: Path) -> Settings:
    """Settings for a fresh OWL_HOME with HF_HUB_OFFLINE=1 (the HF cache stays the same)."""
    monkeypatch.setenv("OWL_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = load_settings()
    assert config.hf_offline
    return config
