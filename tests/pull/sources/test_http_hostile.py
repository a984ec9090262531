"""Pulls from hosts that misbehave or that a server must not reach, and damaged blobs restored.

Real servers on 127.0.0.1 (tests/support/fileserver.py, and raw sockets for hosts that never
answer); the real bundled SmolLM2 through its package source.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from owl.errors import DownloadError, InvalidModelName, SourceNotAllowed
from owl.pull import pull
from owl.pull.sources.addresses import IPAddress, address_kind, public_only
from owl.pull.sources.http import MAX_REDIRECTS, NO_ANSWER_TRIES, _redirect_target, download
from owl.scan.policy import require_loadable, scan_manifest, verdict_of
from owl.store import Manifest, Store
from owl.store.blobs import sha256_file
from owl.store.verify import verify
from tests.support.fileserver import FileServer
from tests.support.tiny_gguf import write_tiny_gguf


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as running:
        yield running


@pytest.fixture
def other_server() -> Iterator[FileServer]:
    with FileServer() as running:
        yield running


def port_of(server: FileServer) -> int:
    return int(server.base.rsplit(":", 1)[1])


def only_ports(*ports: int):
    """An address policy that lets these loopback ports through, as if they were public."""
    return lambda address, port: port in ports or public_only(address, port)


def accepted_connections(listener: socket.socket) -> int:
    """How many connections the kernel completed for a listener that never accepted one."""
    listener.setblocking(False)
    count = 0
    while True:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


def nothing_kept(store: Store) -> bool:
    return not list(store.blobs.root.glob("partial-*")) and store.blobs.digests() == set()


# --- redirects ----------------------------------------------------------------------------------


def test_a_url_that_redirects_to_itself_is_a_download_error(server, store, settings):
    server.add_error("/loop.gguf", 302, {"Location": "/loop.gguf"})

    with pytest.raises(DownloadError) as caught:
        pull(server.url("/loop.gguf"), store=store, settings=settings)

    assert "redirects in a loop" in str(caught.value)
    assert (caught.value.http_status, caught.value.code) == (502, "download_failed")
    assert len(server.gets("/loop.gguf")) == MAX_REDIRECTS + 1, "bounded, and not retried"
    assert nothing_kept(store) and store.list() == []


def test_redirects_that_never_end_are_a_download_error(server, store):
    for hop in range(MAX_REDIRECTS + 1):
        server.add_error(f"/hop{hop}", 302, {"Location": f"/hop{hop + 1}"})

    with pytest.raises(DownloadError, match=f"more than {MAX_REDIRECTS} times"):
        download(server.url("/hop0"), blobs=store.blobs)
    assert server.gets(f"/hop{MAX_REDIRECTS + 1}") == []


@pytest.mark.parametrize(
    ("location", "says"),
    [
        ("file:///etc/passwd", r"not an http\(s\) URL"),
        ("gopher://127.0.0.1/x", r"not an http\(s\) URL"),
        ("http://[::1/x.gguf", "not a valid URL"),
    ],
)
def test_a_redirect_to_something_not_http_is_refused_at_once(server, store, location, says):
    server.add_error("/m.gguf", 301, {"Location": location})

    with pytest.raises(DownloadError, match=says):
        download(server.url("/m.gguf"), blobs=store.blobs)
    assert len(server.gets("/m.gguf")) == 1, "nothing to retry"
    assert nothing_kept(store)


def test_a_redirect_from_https_to_plain_http_is_refused() -> None:
    # No TLS server on loopback here: the redirect rule itself, on httpx's own objects.
    request = httpx.Request("GET", "https://mirror.example/m.gguf")
    downgrade = httpx.Response(302, headers={"location": "http://mirror.example/m.gguf"})
    downgrade.request = request
    with pytest.raises(DownloadError, match="plain http"):
        _redirect_target(downgrade)
    upgrade = httpx.Response(302, headers={"location": "https://cdn.example/m.gguf"})
    upgrade.request = request
    assert str(_redirect_target(upgrade)) == "https://cdn.example/m.gguf"


def test_a_redirect_to_another_host_is_followed(server, other_server, store, settings, tmp_path):
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    other_server.add("/real/tiny.gguf", model)
    server.add_error("/tiny.gguf", 307, {"Location": other_server.url("/real/tiny.gguf")})

    manifest = pull(server.url("/tiny.gguf"), store=store, settings=settings)

    assert manifest.weights.digest == sha256_file(model)
    assert len(server.gets("/tiny.gguf")) == len(other_server.gets("/real/tiny.gguf")) == 1


# --- hosts that do not answer ---------------------------------------------------------------------


def test_a_host_that_accepts_and_never_answers_is_tried_twice_then_a_download_error(store):
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:  # never accepts
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/m.gguf"

        with pytest.raises(DownloadError) as caught:
            download(url, blobs=store.blobs, retries=3, read_timeout=0.2, connect_timeout=2)

        assert "no answer" in str(caught.value) and "ReadTimeout" in str(caught.value)
        assert accepted_connections(listener) == NO_ANSWER_TRIES == 2, "not 1 + retries"
    assert nothing_kept(store)


@pytest.fixture
def stalling_server() -> Iterator[tuple[str, int]]:
    """A host that sends its headers and the first 1000 of 5000 bytes, then nothing."""
    release = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(
                b'HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nETag: "v1"\r\n\r\n' + b"x" * 1000
            )
            release.wait()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/m.gguf", 1000
    release.set()
    thread.join(timeout=10)
    listener.close()


def test_a_stalled_body_is_a_download_error_that_keeps_what_came(stalling_server, store):
    url, sent = stalling_server

    with pytest.raises(DownloadError) as caught:
        download(url, blobs=store.blobs, retries=0, read_timeout=0.2)

    assert f"stopped after {sent:,} bytes" in str(caught.value)
    assert "resume" in str(caught.value)
    key = hashlib.sha256(url.encode()).hexdigest()[:32]
    assert store.blobs.partial(key).stat().st_size == sent
    assert store.blobs.digests() == set()


def test_a_body_that_does_not_decode_is_a_download_error(server, store, tmp_path):
    server.add(
        "/m.gguf", write_tiny_gguf(tmp_path / "tiny.gguf"), headers={"Content-Encoding": "gzip"}
    )

    with pytest.raises(DownloadError, match="DecodingError"):
        download(server.url("/m.gguf"), blobs=store.blobs)
    assert len(server.gets("/m.gguf")) == 1
    assert nothing_kept(store)


@pytest.mark.parametrize("url", ["http://xn--/m.gguf", "https://a..b/m.gguf"])
def test_a_url_httpx_cannot_send_is_an_invalid_name(store, url):
    with pytest.raises(InvalidModelName, match="not a valid URL"):
        download(url, blobs=store.blobs)


# --- private addresses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_address_kinds(address: str, kind: str | None):
    parsed: IPAddress = ipaddress.ip_address(address)
    assert address_kind(parsed) == kind
    assert public_only(parsed, 443) is (kind is None)


def test_a_loopback_url_is_refused_before_any_request(server, store, settings, tmp_path):
    server.add("/tiny.gguf", write_tiny_gguf(tmp_path / "tiny.gguf"))

    for url in (server.url("/tiny.gguf"), f"http://localhost:{port_of(server)}/tiny.gguf"):
        with pytest.raises(SourceNotAllowed) as caught:
            pull(url, store=store, settings=settings, allow_private=False)
        message = str(caught.value)
        assert "loopback" in message and "OWL_ALLOWED_SOURCES=private" in message
        assert (caught.value.http_status, caught.value.code) == (403, "source_not_allowed")

    assert server.requests == [], "nothing was sent to the refused host"
    assert nothing_kept(store) and store.list() == []
    # The CLI's default: its own loopback mirror is fine.
    assert pull(server.url("/tiny.gguf"), store=store, settings=settings).name == "tiny"


def test_a_redirect_to_a_refused_host_is_refused(server, other_server, store, tmp_path):
    other_server.add("/secret.gguf", write_tiny_gguf(tmp_path / "tiny.gguf"))
    server.add_error("/m.gguf", 302, {"Location": other_server.url("/secret.gguf")})

    with pytest.raises(SourceNotAllowed) as caught:
        download(
            server.url("/m.gguf"),
            blobs=store.blobs,
            allow_private=False,
            address_policy=only_ports(port_of(server)),
        )

    assert "redirect to" in str(caught.value) and "loopback" in str(caught.value)
    assert len(server.gets("/m.gguf")) == 1
    assert other_server.requests == [], "the redirect target was never contacted"
    assert nothing_kept(store)

    # Both allowed: the same redirect is followed.
    both = only_ports(port_of(server), port_of(other_server))
    digest = download(
        server.url("/m.gguf"), blobs=store.blobs, allow_private=False, address_policy=both
    )
    assert digest == sha256_file(tmp_path / "tiny.gguf")


def test_the_address_connected_to_is_checked_too(server, store, tmp_path):
    """DNS rebinding: a name that resolves to an allowed address when checked and to a
    refused one when connected. The policy stands for the resolver here: it says yes the first
    time (the check before connecting) and no after (the address the connection reached)."""
    server.add("/tiny.gguf", write_tiny_gguf(tmp_path / "tiny.gguf"))
    answers = iter([True])

    def rebinding(address: IPAddress, port: int) -> bool:
        return next(answers, False)

    with pytest.raises(SourceNotAllowed, match="connected to 127.0.0.1"):
        download(
            server.url("/tiny.gguf"),
            blobs=store.blobs,
            allow_private=False,
            address_policy=rebinding,
        )
    assert nothing_kept(store)


# --- damaged blobs ----------------------------------------------------------------------------


def truncate(path: Path, size: int) -> None:
    os.chmod(path, 0o644)  # blobs are read-only; the damage comes from outside owl
    os.truncate(path, size)


def assert_restored(store: Store, manifest: Manifest) -> None:
    for entry in manifest.files:
        blob = store.blobs.path(entry.digest)
        assert blob.stat().st_size == entry.size
        assert sha256_file(blob) == entry.digest
    assert verdict_of(manifest) == "clean"
    require_loadable(manifest, store=store)  # the gate `owl run` and `owl serve` pass


@pytest.mark.slow
def test_a_truncated_bundled_model_is_restored_by_pulling_it(store, settings):
    original = pull("smollm2", store=store, settings=settings)
    truncate(store.blobs.path(original.weights.digest), original.weights.size // 2)

    restored = pull("smollm2", store=store, settings=settings)

    assert restored.files == original.files
    assert_restored(store, restored)
    assert store.blobs.digests() == {original.weights.digest}


@pytest.mark.slow
def test_after_verify_and_scan_the_next_pull_restores_and_rescans(store, settings):
    original = pull("smollm2", store=store, settings=settings)
    blob = store.blobs.path(original.weights.digest)
    os.chmod(blob, 0o644)
    with blob.open("r+b") as handle:  # same size: only a re-hash finds it
        handle.seek(original.weights.size // 2)
        handle.write(b"\xff" * 16)
    (check,) = verify([original], store=store)
    assert check.status == "corrupt" and not store.blobs.has(original.weights.digest)
    _, scanned = scan_manifest(original, store=store)  # `owl scan smollm2`: of a missing blob
    assert verdict_of(scanned) == "unverified"

    restored = pull("smollm2", store=store, settings=settings)

    assert restored.files == original.files
    assert_restored(store, restored)
    assert store.find(restored.model_name) == restored


def test_a_truncated_download_is_fetched_again_by_name_and_by_url(
    server, store, settings, tmp_path
):
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    server.add("/tiny.gguf", model)
    pinned = server.url(f"/tiny.gguf#sha256={sha256_file(model).removeprefix('sha256:')}")
    original = pull(pinned, store=store, settings=settings)
    blob = store.blobs.path(original.weights.digest)

    truncate(blob, 100)
    by_name = pull("tiny", store=store, settings=settings)
    assert len(server.gets("/tiny.gguf")) == 2
    assert_restored(store, by_name)

    # A pinned URL would find its digest "already stored" and keep the truncated copy.
    truncate(blob, 100)
    by_url = pull(pinned, store=store, settings=settings)
    assert len(server.gets("/tiny.gguf")) == 3
    assert_restored(store, by_url)


def test_a_truncated_blob_is_replaced_when_another_model_brings_the_same_bytes(
    store, settings, tmp_path
):
    first = pull(str(write_tiny_gguf(tmp_path / "a" / "tiny.gguf")), store=store, settings=settings)
    truncate(store.blobs.path(first.weights.digest), 100)
    copy = tmp_path / "b" / "same.gguf"
    copy.parent.mkdir()
    copy.write_bytes((tmp_path / "a" / "tiny.gguf").read_bytes())

    second = pull(str(copy), store=store, settings=settings)

    assert second.weights.digest == first.weights.digest
    assert_restored(store, second)
    assert_restored(store, first)
