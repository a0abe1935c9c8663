"""Texts given as URLs (a Kili asset's `content`, a Label Studio text object with valueType="url"), fetched safely.

Only http and https; only from the platform's own address (host and port, as the platform's URL gives them) or a
host of `[security] allowed_content_hosts`; redirects followed by hand, each hop checked again, at most
`MAX_REDIRECTS`; at most `max_content_bytes` read, all within `content_timeout_seconds`. The platform's session (its
credentials) is used on the platform's address only; an allowed other host is asked without credentials.

What the policy refuses, an answer over the cap and a text that is not UTF-8 raise `ContentError`: the connector
counts it as a skip of that asset (`fetch_or_skip`), and the rest of the pull goes on. Connection errors, timeouts,
429 and 5xx are requests' own errors, tried again by the one retry policy (`connectors.retry`) before the skip.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from connectors.base import SkipLog
from connectors.errors import PlatformUnavailable
from connectors.retry import is_transient_http, with_retries
from connectors.settings import SecuritySettings, host_entry

__all__ = ["Address", "ContentError", "ContentPolicy", "Session", "address", "fetch_or_skip", "fetch_text"]

MAX_REDIRECTS = 3
CHUNK_BYTES = 64 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}
FIX = "Fix: add it to [security] allowed_content_hosts if it is trusted"


class ContentError(Exception):
    """A text URL not fetched, or its answer not used; `reason` is the skip reason (it names the problem and the
    fix; the connector adds the place)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Session(Protocol):
    """What fetches from the platform with its credentials: a `requests.Session`, Kili's `http_client`."""

    # The keywords `fetch_text` passes, named: requests' stubs type each keyword of `Session.get`, which a
    # `**kwargs: Any` here would not match.
    def get(self, url: str, *, stream: bool, allow_redirects: bool, timeout: float) -> requests.Response: ...


@dataclass(frozen=True)
class Address:
    host: str  # lower case; an IPv6 address without its brackets
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def address(url: str) -> Address:
    """Where `url` points; ContentError for a URL that is never fetched (not http(s), no host, a bad port)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ContentError(f"content URL refused: scheme {scheme or 'none'!r}, only http and https are fetched."
                           " Fix: give the text inline or at an http(s) URL")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise ContentError("content URL refused: its port is not valid. Fix: correct the URL") from None
    if not parts.hostname:
        raise ContentError("content URL refused: it names no host. Fix: correct the URL")
    return Address(parts.hostname.lower(), port)


def internal_kind(host: str) -> str | None:
    """What makes `host` an internal address, without asking DNS ("loopback", "link-local", "private", ...); None
    for a public address and for any name but localhost."""
    if host == "localhost" or host.endswith(".localhost"):
        return "loopback"
    try:
        return ip_kind(ipaddress.ip_address(host))
    except ValueError:
        return None


def ip_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for kind in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "non-public"


@dataclass(frozen=True)
class ContentPolicy:
    """Where texts may be fetched from, how much of them and for how long: the platform's address and the
    `[security]` settings."""

    platform: Address
    allowed: tuple[tuple[str, int | None], ...] = ()  # (host or "*.domain", port or None: any)
    max_bytes: int = 1_048_576
    timeout: float = 30.0

    @classmethod
    def of(cls, platform_url: str, security: SecuritySettings) -> ContentPolicy:
        return cls(address(platform_url), tuple(host_entry(h) for h in security.allowed_content_hosts),
                   security.max_content_bytes, security.content_timeout_seconds)

    def check(self, url: str, redirected: bool = False) -> Address:
        """Where `url` points, if texts may be fetched from there; ContentError (naming the address) otherwise."""
        target = address(url)
        if target == self.platform:
            return target
        for host, port in self.allowed:
            if port is not None and port != target.port:
                continue
            if host == target.host:
                return target
            if host.startswith("*.") and target.host.endswith(host[1:]):
                self._public(target)
                return target
        what = f"{'a redirect to ' if redirected else ''}{target}"
        kind = internal_kind(target.host)
        if kind:
            raise ContentError(f"content URL refused: {what} is {_a(kind)} address, not the platform's"
                               f" ({self.platform}). {FIX}")
        raise ContentError(f"content URL refused: {what} is not the platform's address ({self.platform}). {FIX}")

    def _public(self, target: Address) -> None:
        """A wildcard entry vouches for public addresses only: a name under it must not resolve to an internal
        one (a DNS record of the domain pointing at a private service)."""
        try:
            found = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise requests.ConnectionError(f"{target.host} does not resolve ({exc})") from None
        for *_, sockaddr in found:
            kind = ip_kind(ipaddress.ip_address(sockaddr[0]))
            if kind:
                raise ContentError(f"content URL refused: {target.host} resolves to {sockaddr[0]}, {_a(kind)} address"
                                   " (a wildcard entry of [security] allowed_content_hosts trusts public addresses"
                                   " only). Fix: list the host itself if it is trusted")


def _a(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def fetch_text(url: str, session: Session, policy: ContentPolicy) -> str:
    """The UTF-8 text at `url`, fetched under `policy` (see the module docstring): `session` on the platform's
    address, plain requests elsewhere. ContentError for what the policy refuses, an answer over the cap or not
    UTF-8; requests' errors (connection, timeout, HTTP status) as they are, for the caller's retry policy."""
    deadline = time.monotonic() + policy.timeout
    for hop in range(MAX_REDIRECTS + 1):
        target = policy.check(url, redirected=hop > 0)
        get = session.get if target == policy.platform else requests.get
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise requests.Timeout(f"no answer within {policy.timeout:g} s ([security] content_timeout_seconds)")
        response = get(url, stream=True, allow_redirects=False, timeout=remaining)
        try:
            if response.is_redirect:
                url = urljoin(url, response.headers["location"])
                continue
            response.raise_for_status()
            body = _read(response, policy, deadline)
        finally:
            response.close()
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise ContentError("text is not valid UTF-8") from None
    raise ContentError(f"content URL refused: more than {MAX_REDIRECTS} redirects. Fix: give the final URL")


def _read(response: requests.Response, policy: ContentPolicy, deadline: float) -> bytes:
    """The body, streamed: at most `policy.max_bytes` (decompressed), read before `deadline`."""
    too_large = ContentError(f"text is larger than [security] max_content_bytes ({policy.max_bytes} bytes)."
                             " Fix: raise max_content_bytes if such texts are expected")
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > policy.max_bytes:
        raise too_large
    body = bytearray()
    try:
        while chunk := response.raw.read1(CHUNK_BYTES, decode_content=True):
            body += chunk
            if len(body) > policy.max_bytes:
                raise too_large
            if time.monotonic() > deadline:
                raise requests.Timeout(f"the answer took longer than {policy.timeout:g} s ([security]"
                                       " content_timeout_seconds)")
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.ReadTimeout(str(exc)) from None
    except urllib3.exceptions.DecodeError:
        raise ContentError("text could not be downloaded: its Content-Encoding does not decode") from None
    except urllib3.exceptions.HTTPError as exc:  # the connection broke mid-answer
        raise requests.ConnectionError(str(exc)) from None
    return bytes(body)


def fetch_or_skip(url: str, session: Session, policy: ContentPolicy, skipped: SkipLog, place: str,
                  where: str) -> str | None:
    """The text at `url`, or None once the skip of `place` is counted with its reason. Connection errors, timeouts,
    429 and 5xx are tried again first (`where` names the platform in the retry log); the pull goes on either way."""
    fetch = with_retries(fetch_text, where, is_transient_http, what=f"fetching the text of {place}")
    try:
        return fetch(url, session, policy)
    except ContentError as exc:
        skipped.skip(exc.reason, place)
    except Exception as exc:  # noqa: BLE001 - one unreadable asset must not stop the pull
        skipped.skip(f"text could not be downloaded ({_failure(exc)})", place)
    return None


def _failure(exc: BaseException) -> str:
    if isinstance(exc, PlatformUnavailable) and exc.__cause__ is not None:
        return f"{_failure(exc.__cause__)}, also after retries"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__
