"""Which hosts a download may reach: a server-side pull refuses private and loopback addresses.

A server that fetches whatever URL a request names can be made to reach the machine it runs on
and its private network (an admin port on 127.0.0.1, a cloud metadata service on
169.254.169.254), and the errors it reports back tell the caller which internal ports exist.
So a pull made for a request checks every host before connecting to it: the first URL's and
every redirect's (owl follows redirects itself, one hop at a time, for this).

Resolving a name and then connecting is open to DNS rebinding (the name answers a public
address to the check and a private one to the connection), so the address the connection
actually reached is checked as well, before a byte of the body is read. Through a proxy that
address is the proxy's, which the operator chose: then only the resolved addresses are checked.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.request
from collections.abc import Callable

import httpx

from owl.errors import DownloadError, SourceNotAllowed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (address, port) -> whether a download may connect there.
AddressPolicy = Callable[[IPAddress, int], bool]

OPT_IN = "OWL_ALLOWED_SOURCES=private"


def address_kind(address: IPAddress) -> str | None:
    """Why `address` is not a public one ("loopback", "private", …), or None when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    # Most specific first: Python counts loopback, link-local and reserved as private too.
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("non-public", not address.is_global),  # e.g. 100.64.0.0/10, carrier-grade NAT
    )
    return next((kind for kind, matches in checks if matches), None)


def public_only(address: IPAddress, port: int) -> bool:
    """The policy of a server-side pull: public addresses only, on any port."""
    return address_kind(address) is None


def _port_of(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def _refusal(address: IPAddress, *, where: str, verb: str) -> SourceNotAllowed:
    kind = address_kind(address)
    what = f"a {kind} address" if kind else "an address this server's policy refuses"
    return SourceNotAllowed(
        f"{where} {verb} {address}, {what}; this server does not pull from private, "
        f"loopback or link-local addresses: pull from a public host, or start the server "
        f"with {OPT_IN} to allow them"
    )


def check_host(url: httpx.URL, *, policy: AddressPolicy, where: str) -> None:
    """Refuse `url` (SourceNotAllowed) when any address its host resolves to is refused.

    Every address counts, not only the first: the connection may use any of them.
    `where` names the host in messages ("host.example of URL", "its redirect to URL").
    """
    host = url.raw_host.decode("ascii")
    port = _port_of(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise DownloadError(f"cannot resolve {where} ({err}); check the URL") from err
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if not policy(address, port):
            raise _refusal(address, where=where, verb="resolves to")


def _proxied(url: httpx.URL) -> bool:
    """Whether httpx sends a request for `url` through a proxy from the environment."""
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(url.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass_environment(url.host, proxies)


def check_peer(response: httpx.Response, *, policy: AddressPolicy, where: str) -> None:
    """Refuse a response whose connection reached a refused address (DNS rebinding)."""
    if _proxied(response.url):
        return
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if not peer:
        return  # a transport that does not say: the resolved addresses were checked
    address = ipaddress.ip_address(peer[0])
    if not policy(address, int(peer[1])):
        raise _refusal(address, where=where, verb="connected to")
