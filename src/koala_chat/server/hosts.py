"""Host names as `koala serve` compares them: parsed, normalised, loopback or not.

Standard library only: the settings check `--allowed-host` and `--host` with it
before aiohttp is imported.
"""

from __future__ import annotations

import ipaddress
from typing import Final

__all__ = ["ANY_HOST", "check_allowed_host", "is_loopback", "split_host"]

#: The `--allowed-host` value that accepts any Host (only with an API key).
ANY_HOST: Final = "*"

#: What a host name or address is made of (RFC 3986, section 3.2.2, without
#: the percent-encoding and sub-delimiters no real host name uses).
_HOST_CHARACTERS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._:")


def is_loopback(host: str) -> bool:
    """Tell whether `host` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_host(authority: str) -> tuple[str, int | None] | None:
    """Return the host (lower case, no brackets, no final dot) and port of `authority`.

    `authority` is a Host header or the part of an origin after `://`:
    `name`, `name:port`, `1.2.3.4:port`, `[::1]:port`. Returns None when it is
    none of these (an empty name, a bad port, an IPv6 address without brackets).
    """
    if authority.startswith("["):
        name, bracket, rest = authority[1:].partition("]")
        if not bracket or not _is_ipv6(name) or rest[:1] not in ("", ":"):
            return None
    else:
        name, colon, port = authority.partition(":")
        rest = colon + port
    name = name.lower().removesuffix(".")
    if not name or not set(name) <= _HOST_CHARACTERS:
        return None
    if not rest:
        return name, None
    port = rest[1:]
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        return None
    return name, int(port)


def check_allowed_host(value: str) -> str:
    """Return the `--allowed-host` value `value`, normalised (`split_host`).

    Raises:
        ValueError: `value` is not a host name or address on its own (a port,
            a scheme or a path is not part of it).
    """
    if value == ANY_HOST:
        return value
    parsed = split_host(value if ":" not in value or value[0] == "[" else f"[{value}]")
    if parsed is None or parsed[1] is not None:
        raise ValueError(
            f"an allowed host is a name or address without port, not {value!r}"
        )
    return parsed[0]


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False
