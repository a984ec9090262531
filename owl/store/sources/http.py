"""http(s) downloads: resumable (HTTP Range), hashed while written, verified before use.

The temp file `blobs/partial-<key>` survives an interruption; the next pull of the same
URL sends `Range: bytes=<size>-` with `If-Range` (the ETag or Last-Modified seen before),
so a file that changed on the server restarts from zero instead of mixing two versions.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import httpx

from owl import __version__
from owl.config import Settings
from owl.errors import DownloadError, SourceNotFound
from owl.store.blobs import BlobStore, HashingWriter, Progress, ensure_free_space, hex_of
from owl.store.ref import ModelRef
from owl.store.sources import Fetched

RETRIES = 3
RETRY_PAUSE = 0.5
TIMEOUT = httpx.Timeout(30.0, read=120.0)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _Incomplete(Exception):
    """The body ended before its announced length: resumable."""


def _validator_path(partial: Path) -> Path:
    return partial.with_name(partial.name + ".json")


def _load_validator(partial: Path) -> str | None:
    try:
        return json.loads(_validator_path(partial).read_text())["validator"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save_validator(partial: Path, response: httpx.Response) -> None:
    validator = response.headers.get("etag") or response.headers.get("last-modified")
    if validator and not validator.startswith("W/"):  # weak ETags cannot guard a Range
        _validator_path(partial).write_text(json.dumps({"validator": validator}))


def _total_size(response: httpx.Response, offset: int) -> int | None:
    if response.status_code == 206:
        match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        return int(match[3]) if match and match[3] != "*" else None
    length = response.headers.get("content-length")
    return int(length) + offset if length and length.isdigit() else None


def _download_once(
    client: httpx.Client,
    url: str,
    writer: HashingWriter,
    progress: Progress | None,
    blobs_root: Path,
) -> None:
    headers = {}
    if writer.size:
        headers["Range"] = f"bytes={writer.size}-"
        validator = _load_validator(writer.path)
        if validator:
            headers["If-Range"] = validator
    with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 416 and writer.size:
            # Our partial file is not a prefix of what the server has now: start over.
            writer.restart()
            raise _Incomplete("the server's file changed; restarting")
        if response.status_code == 404:
            raise SourceNotFound(f"{url}: not found (HTTP 404); check the URL")
        if response.status_code >= 400:
            raise DownloadError(
                f"{url}: the server answered HTTP {response.status_code}; "
                "check the URL, or try again later"
            )
        if response.status_code == 206:
            match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
            if not match or int(match[1]) != writer.size:
                writer.restart()
                raise _Incomplete("the server sent an unexpected range; restarting")
        elif writer.size:
            writer.restart()  # a 200 to a Range request: the whole file again
        total = _total_size(response, writer.size)
        if total is not None and writer.size == 0:
            ensure_free_space(blobs_root, total, source=url)
        _save_validator(writer.path, response)
        # No chunk size: httpx would buffer up to a whole chunk and lose it if the link drops.
        for block in response.iter_bytes():
            writer.write(block)
            if progress:
                progress(writer.size, total)
        if total is not None and writer.size != total:
            raise _Incomplete(f"got {writer.size:,} of {total:,} bytes")


def _close_failed(writer: HashingWriter) -> None:
    """Close a failed attempt's temp file; keep it only if it holds bytes to resume from.

    An empty one (a 404, a host that cannot be reached) would otherwise stay in the blob
    folder for good: nothing resumes it, and garbage collection only knows blobs.
    """
    writer.close()
    if writer.size == 0:
        writer.path.unlink(missing_ok=True)
        _validator_path(writer.path).unlink(missing_ok=True)


def download(
    url: str,
    *,
    blobs: BlobStore,
    expected: str | None = None,
    progress: Progress | None = None,
    retries: int = RETRIES,
) -> str:
    """Download `url` into the blob store and return its digest.

    Resumes a partial download left by an earlier attempt; retries `retries` times within
    this call. Raises DigestMismatch (and keeps nothing) when `expected` does not match.
    """
    key = hex_of(expected) if expected else hashlib.sha256(url.encode()).hexdigest()[:32]
    with blobs.lock(key):
        if expected and blobs.has(expected):
            return expected
        partial = blobs.partial(key)
        headers = {"User-Agent": f"owl/{__version__}", "Accept-Encoding": "identity"}
        with httpx.Client(follow_redirects=True, timeout=TIMEOUT, headers=headers) as client:
            for attempt in range(retries + 1):
                writer = HashingWriter(partial)
                try:
                    _download_once(client, url, writer, progress, blobs.root)
                except (httpx.TransportError, _Incomplete) as err:
                    _close_failed(writer)
                    if attempt == retries:
                        raise DownloadError(
                            f"download of {url} stopped after {writer.size:,} bytes ({err}); "
                            "run the same `owl pull` again to resume"
                        ) from err
                    time.sleep(RETRY_PAUSE * (attempt + 1))  # a flaky link often needs a moment
                    continue
                except BaseException:
                    _close_failed(writer)
                    raise
                _validator_path(partial).unlink(missing_ok=True)
                return blobs.commit(writer, expected=expected, source=url)
    raise AssertionError("unreachable")


def fetch(
    ref: ModelRef, *, blobs: BlobStore, settings: Settings, progress: Progress | None = None
) -> Fetched:
    """Download the URL's file into the blob store."""
    assert ref.url is not None
    digest = download(ref.url, blobs=blobs, expected=ref.digest, progress=progress)
    size = blobs.path(digest).stat().st_size
    filename = Path(httpx.URL(ref.url).path).name
    return Fetched(digest=digest, size=size, filename=filename, uri=ref.raw)
