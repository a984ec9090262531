"""Pulls over http(s) against a real loopback server: resume, digests, refusals, races."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from owl.errors import DigestMismatch, DownloadError, ModelFormatError, NameClash, SourceNotFound
from owl.pull import pull
from owl.pull.sources.http import download
from owl.store import RefKind, Store
from tests.support.fileserver import FileServer, Request
from tests.support.tiny_gguf import write_tiny_gguf

BUNDLED_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def sha256_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def url_key(url: str) -> str:
    """The key owl's http source files a download without #sha256= under."""
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def header(request: Request, name: str) -> str | None:
    return next((v for k, v in request.headers.items() if k.lower() == name.lower()), None)


def partials(store: Store) -> list[Path]:
    """Download temp files and the validators (partial-*.json) that guard their resumption."""
    return sorted(store.blobs.root.glob("partial-*"))


def assert_nothing_stored(store: Store) -> None:
    assert store.blobs.digests() == set()
    assert partials(store) == []
    assert store.list() == []


@pytest.fixture(scope="module")
def bundled_digest(bundled_gguf: Path) -> str:
    return sha256_of(bundled_gguf)


@pytest.fixture
def server():
    with FileServer() as running:
        yield running


@pytest.mark.slow
def test_pull_stores_the_file_under_its_sha256(
    server, bundled_gguf, bundled_digest, store, settings
):
    server.add("/models/" + BUNDLED_NAME, bundled_gguf)
    url = server.url("/models/" + BUNDLED_NAME)
    calls: list[tuple[int, int | None]] = []

    def progress(done: int, total: int | None) -> None:
        calls.append((done, total))

    manifest = pull(url, store=store, settings=settings, progress=progress)

    size = bundled_gguf.stat().st_size
    assert manifest.name == "smollm2-135m-instruct.q4_1"
    assert manifest.format == "gguf"
    assert manifest.files[0].digest == bundled_digest
    assert manifest.files[0].size == size
    assert manifest.files[0].filename == BUNDLED_NAME
    assert manifest.source.kind is RefKind.URL and manifest.source.uri == url
    assert manifest.info["architecture"] == "llama"
    blob = store.blobs.path(bundled_digest)
    assert blob.read_bytes() == bundled_gguf.read_bytes()
    assert partials(store) == []
    assert store.find(manifest.model_name) == manifest
    done = [d for d, _ in calls]
    assert len(calls) > 1 and done == sorted(set(done)), "progress must only increase"
    assert done[-1] == size
    assert {total for _, total in calls} == {size}


@pytest.mark.slow
def test_interrupted_download_keeps_its_partial_file_and_the_next_one_resumes(
    server, bundled_gguf, bundled_digest, store
):
    server.add("/m.gguf", bundled_gguf, drop_after=40_000_000, drops=1)
    url = server.url("/m.gguf")

    with pytest.raises(DownloadError) as caught:
        download(url, blobs=store.blobs, retries=0)
    assert "run the same `owl pull` again" in str(caught.value)
    partial = store.blobs.partial(url_key(url))
    assert partials(store) == [partial, partial.with_name(partial.name + ".json")]
    kept = partial.stat().st_size
    assert 0 < kept <= 40_000_000
    assert store.blobs.digests() == set(), "no blob from an incomplete download"

    digest = download(url, blobs=store.blobs, retries=0)

    assert digest == bundled_digest
    first, second = server.gets("/m.gguf")
    assert header(first, "Range") is None
    assert header(second, "Range") == f"bytes={kept}-"
    assert header(second, "If-Range") == server.files["/m.gguf"].etag
    assert store.blobs.path(digest).read_bytes() == bundled_gguf.read_bytes()
    assert partials(store) == [], "the partial file and its validator are gone"


@pytest.mark.slow
def test_a_dropped_connection_resumes_within_one_pull(
    server, bundled_gguf, bundled_digest, store, settings
):
    server.add("/m.gguf", bundled_gguf, drop_after=30_000_000, drops=1)

    manifest = pull(server.url("/m.gguf"), store=store, settings=settings)

    assert manifest.files[0].digest == bundled_digest
    gets = server.gets("/m.gguf")
    assert len(gets) == 2
    assert (header(gets[1], "Range") or "").startswith("bytes=")
    assert int(header(gets[1], "Range").removeprefix("bytes=").rstrip("-")) > 0
    assert store.blobs.digests() == {bundled_digest}
    assert partials(store) == []


@pytest.mark.slow
def test_a_pull_that_gives_up_says_so_and_the_same_pull_resumes(
    server, bundled_gguf, bundled_digest, store, settings
):
    # More drops than the default retries: the first pull gives up with its partial file kept.
    server.add("/m.gguf", bundled_gguf, drop_after=8_000_000, drops=4)
    url = server.url("/m.gguf")

    with pytest.raises(DownloadError) as caught:
        pull(url, store=store, settings=settings)
    assert "owl pull" in str(caught.value) and "resume" in str(caught.value)
    assert store.list() == [] and store.blobs.digests() == set()
    kept = store.blobs.partial(url_key(url)).stat().st_size
    assert kept > 8_000_000, "each retry resumed from the bytes already kept"

    manifest = pull(url, store=store, settings=settings)

    assert manifest.files[0].digest == bundled_digest
    assert header(server.gets("/m.gguf")[-1], "Range") == f"bytes={kept}-"
    assert [m.files[0].digest for m in store.list()] == [bundled_digest]


@pytest.mark.slow
def test_a_file_that_changed_on_the_server_is_downloaded_again_whole(
    server, bundled_gguf, store, tmp_path
):
    server.add("/m.gguf", bundled_gguf, drop_after=20_000_000, drops=1)
    url = server.url("/m.gguf")
    with pytest.raises(DownloadError):
        download(url, blobs=store.blobs, retries=0)
    old_etag = server.files["/m.gguf"].etag

    # A new version of the same size that differs inside the part already downloaded:
    # appending its tail to the old prefix would give a file that is neither.
    changed = bytearray(bundled_gguf.read_bytes())
    changed[1000:1016] = b"\xff" * 16
    new_file = tmp_path / "new.gguf"
    new_file.write_bytes(changed)
    server.add("/m.gguf", new_file)
    assert server.files["/m.gguf"].etag != old_etag

    digest = download(url, blobs=store.blobs, retries=0)

    retry = server.gets("/m.gguf")[-1]
    assert header(retry, "If-Range") == old_etag
    assert header(retry, "Range") is not None
    assert digest == sha256_of(new_file)
    assert store.blobs.path(digest).read_bytes() == bytes(changed)
    assert store.blobs.digests() == {digest}


@pytest.mark.slow
def test_a_server_without_range_support_restarts_from_zero(
    server, bundled_gguf, bundled_digest, store
):
    server.add("/m.gguf", bundled_gguf, drop_after=20_000_000, drops=1, supports_range=False)

    digest = download(server.url("/m.gguf"), blobs=store.blobs)

    assert digest == bundled_digest
    assert len(server.gets("/m.gguf")) == 2
    assert store.blobs.path(digest).stat().st_size == bundled_gguf.stat().st_size


@pytest.mark.slow
def test_a_wrong_sha256_in_the_url_stores_nothing(
    server, bundled_gguf, bundled_digest, store, settings
):
    server.add("/m.gguf", bundled_gguf)
    wrong = "0123456789abcdef" * 4

    with pytest.raises(DigestMismatch) as caught:
        pull(server.url(f"/m.gguf#sha256={wrong}"), store=store, settings=settings)

    message = str(caught.value)
    assert f"sha256:{wrong}" in message
    assert bundled_digest in message
    assert_nothing_stored(store)


@pytest.mark.slow
def test_the_right_sha256_in_the_url_is_accepted_and_not_downloaded_twice(
    server, bundled_gguf, bundled_digest, store, settings
):
    server.add("/m.gguf", bundled_gguf)
    url = server.url(f"/m.gguf#sha256={bundled_digest.removeprefix('sha256:')}")

    manifest = pull(url, store=store, settings=settings)
    assert manifest.files[0].digest == bundled_digest
    assert manifest.name == "m"
    assert len(server.gets("/m.gguf")) == 1

    again = pull(url, store=store, settings=settings, name="m-again")

    assert again.files[0].digest == bundled_digest
    assert len(server.gets("/m.gguf")) == 1, "a pinned blob already stored is not fetched again"
    assert store.blobs.digests() == {bundled_digest}


def test_http_404_is_source_not_found(server, store, settings):
    with pytest.raises(SourceNotFound) as caught:
        pull(server.url("/nope/model.gguf"), store=store, settings=settings)
    assert "404" in str(caught.value)
    assert_nothing_stored(store)


def test_a_file_that_is_not_a_model_is_refused_and_not_kept(server, store, settings, tmp_path):
    text = tmp_path / "readme.gguf"
    text.write_text("<html>Please log in to download this file</html>\n" * 100)
    server.add("/readme.gguf", text)

    with pytest.raises(ModelFormatError):
        pull(server.url("/readme.gguf"), store=store, settings=settings)

    assert_nothing_stored(store)


def test_a_truncated_gguf_is_refused_and_not_kept(server, bundled_gguf, store, settings, tmp_path):
    with bundled_gguf.open("rb") as whole:
        head = whole.read(1 << 20)
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(head)
    server.add("/cut.gguf", truncated)

    with pytest.raises(ModelFormatError) as caught:
        pull(server.url("/cut.gguf"), store=store, settings=settings)

    assert "cut.gguf" in str(caught.value) or "truncated" in str(caught.value)
    assert_nothing_stored(store)


@pytest.mark.slow
def test_two_pulls_of_one_url_at_once_both_succeed_with_one_blob(
    server, bundled_gguf, bundled_digest, store, settings
):
    server.add("/m.gguf", bundled_gguf)
    url = server.url("/m.gguf")
    results: list[object] = []
    start = threading.Barrier(2)

    def worker() -> None:
        start.wait()
        try:
            results.append(pull(url, store=store, settings=settings, name="twin"))
        except Exception as err:  # collected and asserted on below
            results.append(err)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert len(results) == 2
    assert all(not isinstance(result, Exception) for result in results), results
    assert {result.files[0].digest for result in results} == {bundled_digest}
    assert store.blobs.digests() == {bundled_digest}
    assert partials(store) == []
    (manifest,) = store.list()
    assert manifest.name == "twin" and manifest.files[0].digest == bundled_digest
    assert store.blobs.path(bundled_digest).stat().st_size == bundled_gguf.stat().st_size


def test_a_different_source_for_an_existing_name_is_a_clash(server, store, settings, tmp_path):
    first = write_tiny_gguf(tmp_path / "a" / "model.gguf", rows=32)
    second = write_tiny_gguf(tmp_path / "b" / "model.gguf", rows=64)
    server.add("/a/model.gguf", first)
    server.add("/b/model.gguf", second)
    original = pull(server.url("/a/model.gguf"), store=store, settings=settings)
    assert original.name == "model"

    # The same URL again is the same model, not a clash.
    assert pull(server.url("/a/model.gguf"), store=store, settings=settings).files == original.files

    with pytest.raises(NameClash) as caught:
        pull(server.url("/b/model.gguf"), store=store, settings=settings)
    assert "--name" in str(caught.value) and "'model'" in str(caught.value)
    assert server.gets("/b/model.gguf") == [], "a clash is found before downloading"
    assert store.find(original.model_name).files == original.files

    other = pull(server.url("/b/model.gguf"), store=store, settings=settings, name="other")

    assert other.name == "other"
    assert other.files[0].digest == sha256_of(second) != original.files[0].digest
    assert sorted(m.name for m in store.list()) == ["model", "other"]
