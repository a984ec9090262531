"""http(s) downloads: resumable (HTTP Range), hashed while written, verified before use.

The temp file `blobs/partial-<key>` survives an interruption; the next pull of the same
URL sends `Range: bytes=<size>-` with `If-Range` (the ETag or Last-Modified seen before),
so a file that changed on the server restarts from zero instead of mixing two versions.

Redirects are followed here, one hop at a time, so that a pull made for a server's client
can check each host it reaches (owl.pull.sources.addresses) and a loop ends as a
DownloadError that says so. Every failure of the transfer is a DownloadError (or
SourceNotFound, SourceNotAllowed): no httpx exception leaves this module.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from owl import __version__
from owl.config import Settings
from owl.errors import DownloadError, InvalidModelName, SourceNotFound
from owl.pull.sources import Fetched
from owl.pull.sources.addresses import AddressPolicy, check_host, check_peer, public_only
from owl.store.blobs import BlobStore, HashingWriter, Progress, ensure_free_space, hex_of
from owl.store.ref import ModelRef

RETRIES = 3
RETRY_PAUSE = 0.5
# Short on purpose: a pull holds a thread (a server's, for /api/pull) for as long as a host
# keeps it waiting. 10 s is ample to open a connection to any live host; 30 s without a
# byte means a stalled transfer, which the next attempt resumes (HTTP Range) rather than
# waits out. Progress of a slow but live link is unaffected: the read timeout is per read.
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
# A host that accepts and never answers (or cannot be reached in time) is tried twice, not
# 1 + RETRIES times: waiting on it again and again only holds the thread longer.
NO_ANSWER_TRIES = 2
MAX_REDIRECTS = 10
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _Incomplete(Exception):
    """The body ended before its announced length: resumable."""


class _NoAnswer(Exception):
    """No response at all: the connection could not be opened in time, or no status line
    came back within the read timeout."""


def _sendable(url: httpx.URL) -> httpx.URL:
    """`url`, once every part httpx and the resolver will read is known to parse.

    httpx parses some parts only when they are used (an IDNA host such as `xn--`), which
    would raise UnicodeError in the middle of a download; this raises ValueError first.
    """
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("not an http(s) URL with a host")
    url.raw_host.decode("ascii").encode("idna")  # what the resolver will be given
    if url.port is not None and not 0 < url.port < 65536:
        raise ValueError(f"port {url.port} is not 1 to 65535")
    return url


def _parse_url(url: str) -> httpx.URL:
    """The URL as httpx will send it; InvalidModelName when it cannot be one."""
    try:
        return _sendable(httpx.URL(url))
    except (httpx.InvalidURL, ValueError) as err:  # UnicodeError is a ValueError
        raise InvalidModelName(f"{url!r} is not a valid URL ({err}); check it") from err


def _redirect_target(response: httpx.Response) -> httpx.URL:
    """Where a redirect points; DownloadError when that is no http(s) URL."""
    location = response.headers["location"]
    try:
        target = response.url.join(location)
    except (httpx.InvalidURL, ValueError) as err:
        raise DownloadError(
            f"{response.url} redirects to {location[:200]!r}, which is not a valid URL; "
            "check the URL"
        ) from err
    if target.scheme not in ("http", "https"):
        raise DownloadError(
            f"{response.url} redirects to {str(target)[:200]}, which is not an http(s) URL; "
            "owl follows redirects to http and https only. Check the URL"
        )
    if response.url.scheme == "https" and target.scheme == "http":
        # What https promised would be lost on the way, and a server's pull would get
        # around the "insecure" consent that plain http needs.
        raise DownloadError(
            f"{response.url} redirects to plain http ({str(target)[:200]}), where the bytes "
            "could be altered on the way; owl does not follow that. Pull the http URL itself "
            "if you trust the network"
        )
    try:
        return _sendable(target)
    except ValueError as err:
        raise DownloadError(
            f"{response.url} redirects to {str(target)[:200]}, which is not a valid URL "
            f"({err}); check the URL"
        ) from err


def _check_redirect(response: httpx.Response) -> None:
    # A response hook: httpx parses a redirect's Location even when it does not follow it,
    # and a bad one would surface as a RemoteProtocolError, retried as if the link dropped.
    if response.is_redirect:
        _redirect_target(response)


@contextmanager
def _open(
    client: httpx.Client, url: str, *, headers: dict[str, str], policy: AddressPolicy | None
) -> Iterator[httpx.Response]:
    """GET `url`, following redirects; with a `policy`, every host is checked on the way."""
    current = httpx.URL(url)
    visited: set[str] = set()
    for hop in range(MAX_REDIRECTS + 1):
        where = f"the host of {url}" if hop == 0 else f"{url}'s redirect to {current}"
        if policy is not None:
            check_host(current, policy=policy, where=where)
        visited.add(str(current))
        with ExitStack() as stack:
            try:
                response = stack.enter_context(client.stream("GET", current, headers=headers))
            except (httpx.ConnectTimeout, httpx.ReadTimeout) as err:
                raise _NoAnswer(f"{current.host} did not answer: {type(err).__name__}") from err
            if policy is not None:
                check_peer(response, policy=policy, where=where)
            if not response.is_redirect:
                yield response
                return
            target = _redirect_target(response)
        current = target
    what = (
        f"redirects in a loop ({MAX_REDIRECTS} redirects, back to {current})"
        if str(current) in visited
        else f"redirects more than {MAX_REDIRECTS} times (last to {current})"
    )
    raise DownloadError(
        f"{url} {what}; check the URL, or download the file another way and pull the file"
    )


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
    policy: AddressPolicy | None,
) -> None:
    headers = {}
    if writer.size:
        headers["Range"] = f"bytes={writer.size}-"
        validator = _load_validator(writer.path)
        if validator:
            headers["If-Range"] = validator
    with _open(client, url, headers=headers, policy=policy) as response:
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


def _gave_up(url: str, kept: int, err: Exception) -> DownloadError:
    if kept == 0:  # nothing to resume from: a host that refuses, a name that does not resolve
        return DownloadError(
            f"download of {url} failed ({err}); check the URL and the connection, then pull again"
        )
    return DownloadError(
        f"download of {url} stopped after {kept:,} bytes ({err}); "
        "run the same `owl pull` again to resume"
    )


def download(
    url: str,
    *,
    blobs: BlobStore,
    expected: str | None = None,
    progress: Progress | None = None,
    retries: int = RETRIES,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    read_timeout: float = READ_TIMEOUT_S,
    allow_private: bool = True,
    address_policy: AddressPolicy = public_only,
) -> str:
    """Download `url` into the blob store and return its digest.

    Resumes a partial download left by an earlier attempt; retries `retries` times within
    this call (a host that does not answer at all: once). Raises DigestMismatch (and keeps
    nothing) when `expected` does not match, DownloadError for any failure of the transfer.

    With `allow_private=False` (a pull a server makes for a client) every host the download
    reaches, redirects included, must pass `address_policy` (public addresses only), else
    SourceNotAllowed is raised before anything is requested from it.
    """
    parsed = _parse_url(url)
    policy = None if allow_private else address_policy
    key = hex_of(expected) if expected else hashlib.sha256(url.encode()).hexdigest()[:32]
    timeout = httpx.Timeout(
        connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
    )
    with blobs.lock(key):
        if expected and blobs.has(expected):
            return expected
        partial = blobs.partial(key)
        headers = {"User-Agent": f"owl/{__version__}", "Accept-Encoding": "identity"}
        unanswered = 0
        with httpx.Client(
            follow_redirects=False,
            timeout=timeout,
            headers=headers,
            event_hooks={"response": [_check_redirect]},
        ) as client:
            for attempt in range(retries + 1):
                writer = HashingWriter(partial)
                try:
                    _download_once(client, str(parsed), writer, progress, blobs.root, policy)
                except _NoAnswer as err:
                    _close_failed(writer)
                    unanswered += 1
                    if unanswered >= NO_ANSWER_TRIES or attempt == retries:
                        raise DownloadError(
                            f"{url}: no answer ({err}; waited {connect_timeout:g} s to "
                            f"connect, {read_timeout:g} s for a reply, {unanswered} tries); "
                            "check the URL and that the host is up, then pull again"
                        ) from err
                except httpx.UnsupportedProtocol as err:  # not worth retrying
                    _close_failed(writer)
                    raise DownloadError(f"{url}: {err}; check the URL") from err
                except (httpx.TransportError, _Incomplete) as err:
                    _close_failed(writer)
                    if attempt == retries:
                        raise _gave_up(url, writer.size, err) from err
                except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as err:
                    # e.g. a body that does not decode: nothing of it is worth resuming
                    writer.restart()
                    _close_failed(writer)
                    raise DownloadError(
                        f"download of {url} failed ({type(err).__name__}: {err}); check the "
                        "URL, or try again later"
                    ) from err
                except BaseException:
                    _close_failed(writer)
                    raise
                else:
                    _validator_path(partial).unlink(missing_ok=True)
                    return blobs.commit(writer, expected=expected, source=url)
                time.sleep(RETRY_PAUSE * (attempt + 1))  # a flaky link often needs a moment
    raise AssertionError("unreachable")


def fetch(
    ref: ModelRef,
    *,
    blobs: BlobStore,
    settings: Settings,
    progress: Progress | None = None,
    allow_private: bool = True,
) -> Fetched:
    """Download the URL's file into the blob store (`allow_private`: see download)."""
    assert ref.url is not None
    digest = download(
        ref.url,
        blobs=blobs,
        expected=ref.digest,
        progress=progress,
        allow_private=allow_private,
    )
    size = blobs.path(digest).stat().st_size
    filename = Path(httpx.URL(ref.url).path).name
    return Fetched(digest=digest, size=size, filename=filename, uri=ref.raw)
