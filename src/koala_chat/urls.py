"""URLs as we show and accept them: passwords redacted, endpoints checked.

No aiohttp here, so that the command line can check and show URLs without
loading the HTTP stack.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from .errors import UsageError

__all__ = ["check_endpoint", "redact_url"]


def redact_url(url: object) -> str:
    """Return `url` as text with any password replaced by `***`."""
    text = str(url)
    try:
        parts = urlsplit(text)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return text
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{user}:***@{host}" + (f":{port}" if port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_endpoint(url: object) -> str:
    """Return `url` if it is an http(s) URL with a host.

    Raises:
        UsageError: it is not; the message shows it without its password.
    """
    if isinstance(url, str):
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if parts and parts.scheme in ("http", "https") and parts.hostname:
            return url
    raise UsageError(
        f"the API endpoint must be an http(s) URL, not {redact_url(url)!r}"
    )
