"""URLs as we show and accept them: passwords redacted, endpoints checked.

No aiohttp here, so that the command line can check and show URLs without
loading the HTTP stack.

`redact_url` cannot leak: it works on the text, not on a parse that a password
holding `#`, `/`, `?` or `@` would fool. `url_problem` finds what would make
aiohttp refuse a URL (and show it, password and all, in its message) or send
the request elsewhere than the URL seems to say, so that endpoints and proxies
are refused before any request.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final
from urllib.parse import unquote, urlsplit

from .errors import UsageError

__all__ = ["check_endpoint", "redact_url", "url_problem"]

_AUTHORITY_ENDS: Final = "/?#"


def redact_url(url: object) -> str:
    """Return `url` as text with any password replaced by `***`.

    The user information is what lies between `//` and the last `@` of the
    URL. When that `@` is inside the authority (before any `/`, `?` or `#`),
    the user name stays and the password goes (`http://user:***@host/`). A
    user name alone may be a token, and a URL whose last `@` is past the
    authority is ambiguous (a password holding `/`, or an `@` in the path):
    then everything from `//` to the last `@` goes (`http://***@host/`).
    """
    text = str(url)
    at = text.rfind("@")
    if at < 0:
        return text
    start = text.find("//")
    start = start + 2 if 0 <= start < at else 0
    end = len(text)
    for char in _AUTHORITY_ENDS:
        found = text.find(char, start)
        if 0 <= found < end:
            end = found
    if at < end:
        user, colon, _ = text[start:at].partition(":")
        if colon:
            return f"{text[:start]}{user}:***{text[at:]}"
    # No password, or an ambiguous URL: a lone user name may be a token.
    return f"{text[:start]}***{text[at:]}"


@lru_cache(maxsize=256)
def url_problem(url: str) -> str:
    """Return what keeps `url` from being a complete URL with a host, or "".

    Complete: no white space or control character, a host, a port (if any)
    from 1 to 65535, and user information that parses: a `#`, `/`, `?` or `@`
    in a user name or password must be percent-encoded, or the URL would go
    somewhere else than it seems to (and show a piece of the password there).
    The scheme is the caller's to check.

    The answers are kept for the last 256 URLs: a provider checks its
    endpoint and proxy on every request, and they rarely change.
    """
    if not url.isprintable() or " " in url:
        return "it holds white space or a control character"
    if "\\" in url:
        # WHATWG URL parsers (yarl among them) read it as "/": percent-encode it.
        return "it holds a backslash; percent-encode it (%5C)"
    try:
        parts = urlsplit(url)
    except ValueError:
        # Its message may quote the user information: it is not passed on.
        return "it cannot be parsed as a URL"
    start = url.find("//")
    if start < 0 or not parts.hostname:
        return "it has no host"
    ends = (url.find(char, start + 2) for char in _AUTHORITY_ENDS)
    end = min((found for found in ends if found >= 0), default=len(url))
    if "@" in url[end:]:
        return (
            "an '@' after the host; percent-encode '#', '/', '?' and '@' in a "
            "user name or password (%23, %2F, %3F, %40)"
        )
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return "the port must be a number from 1 to 65535"
    if not _yarl_accepts(url):
        return "the URL cannot be parsed (check the host and the user information)"
    userinfo = url[start + 2 : end].rpartition("@")[0]
    if parts.scheme.lower() in ("http", "https") and not _latin1(unquote(userinfo)):
        # RFC 7617, section 2.1: aiohttp sends HTTP basic credentials in
        # ISO-8859-1 and fails on anything else.
        return "HTTP basic credentials must be ISO-8859-1 (Latin-1) text"
    return ""


def _yarl_accepts(url: str) -> bool:
    """Tell whether yarl, which aiohttp uses, parses `url` (its host included)."""
    # Imported here: the command line checks URLs without the HTTP stack.
    import yarl

    try:
        parsed = yarl.URL(url)
        return bool(parsed.host)
    except (ValueError, TypeError):
        # UnicodeError (a host that IDNA refuses) is a ValueError.
        return False


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def check_endpoint(url: object) -> str:
    """Return `url` if it is a complete http(s) URL with a host (`url_problem`).

    Raises:
        UsageError: it is not; the message shows it without its password and
            says why.
    """
    if isinstance(url, str):
        scheme = url.partition(":")[0].lower()
        problem = (
            url_problem(url)
            if scheme in ("http", "https")
            else "the scheme must be http or https"
        )
        if not problem:
            return url
        reason = f": {problem}"
    else:
        reason = ""
    raise UsageError(
        f"the API endpoint must be an http(s) URL, not {redact_url(url)!r}{reason}"
    )
