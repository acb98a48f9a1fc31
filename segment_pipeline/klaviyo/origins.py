"""Where the API key may go: the configured base URL's origin (scheme, host, port) and nowhere else.

The client sends `Authorization: Klaviyo-API-Key ...` with every request, so every request must go to the
host the user configured (KLAVIYO_BASE_URL). Three things could send it elsewhere, and each is closed here or
in the client: a `links.next` naming another host (followed only on the same origin), a redirect (never
followed), and a base URL over plain http to another machine (refused: http is allowed only to a loopback
address, where the bundled simulator runs, since anyone on the path could read the key).
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

import httpx

from .errors import KlaviyoConfigError, shown

_DEFAULT_PORTS = {"http": 80, "https": 443}


class Origin(NamedTuple):
    """Scheme, host and port of a URL: two URLs with the same origin reach the same server."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = _DEFAULT_PORTS.get(self.scheme) == self.port
        return f"{self.scheme}://{host}" if default else f"{self.scheme}://{host}:{self.port}"


def origin_of(url: str | httpx.URL) -> Origin | None:
    """The origin of an absolute http(s) URL; `None` for anything else (relative, another scheme, unparseable)."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    scheme = parsed.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parsed.host:
        return None
    return Origin(scheme, parsed.host.lower(), parsed.port or _DEFAULT_PORTS[scheme])


def is_loopback(host: str) -> bool:
    """Whether a host name is this machine: `localhost` or a loopback address (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def checked_base_url(
    url: str, variable: str = "KLAVIYO_BASE_URL", suggestion: str = "https://a.klaviyo.com (Klaviyo's API)"
) -> str:
    """The base URL without a trailing slash, or KlaviyoConfigError saying what is wrong with it.

    It must be an absolute http(s) URL with a host and no user name, password, query or fragment; plain http
    only to a loopback address.
    """
    text = (url or "").strip().rstrip("/")
    # a user name or password before the host must never reach a log
    display = shown(text) if "@" not in text else "(a URL with '@', not shown)"
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError):
        parsed = None
    origin = origin_of(parsed) if parsed is not None else None
    if parsed is None or origin is None:
        raise KlaviyoConfigError(
            f"{variable}={display} is not an http(s) URL with a host: set it to {suggestion}, or to the address "
            "of the bundled simulator"
        )
    if parsed.userinfo:
        # never echo it: it may be a password
        raise KlaviyoConfigError(
            f"{variable} holds a user name or password before the host: remove it (the API key is sent in a "
            "header, never in the URL)"
        )
    if parsed.query or parsed.fragment:
        raise KlaviyoConfigError(
            f"{variable}={display} has a query or fragment: give only the scheme, host, port and path prefix"
        )
    if origin.scheme == "http" and not is_loopback(origin.host):
        raise KlaviyoConfigError(
            f"{variable}={display} would send the API key unencrypted to {origin.host}: use https:// (plain "
            "http is allowed only to a loopback address such as 127.0.0.1, where the bundled simulator runs)"
        )
    return text
