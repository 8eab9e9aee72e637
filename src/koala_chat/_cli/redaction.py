"""Secrets out of every line the command prints.

`redact_url` hides the password of a URL we print ourselves. An error can also
quote a URL the way another library parsed it, cut at a `#`, `/` or `?` that
the user's password holds, percent-decoded, or inside a `repr`. So the command
line also removes every secret it was given, in each of those forms, from each
error line, note and JSON report it prints: the password of the endpoint and of
the proxy, and the API key (from `--api-key-file` or `KOALA_API_KEY`). The
masking itself is `koala_chat._secrets.Scrubber`'s, the library's one
scrubber: a secret of 8 characters or more in any letter case and escaping,
a shorter one as it is and only where it is not part of a longer word.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit

from .._secrets import MASK, Scrubber
from ..defaults import API_KEY_VARIABLE, ENDPOINT_VARIABLE
from ..errors import UsageError
from .exits import one_line

__all__ = ["MASK", "Redactor", "report_error", "url_secrets"]


def url_secrets(url: str) -> set[str]:
    """Return the forms the password of `url` may take in a message.

    Where the user info ends is ambiguous when the password holds `@`, `#`,
    `/` or `?`, so every reading is taken: what follows the first `:` of the
    user info up to each `@`, and each piece between those characters (a
    parser that stops at a `#` quotes only the piece before it). Masking a
    stretch too long hides nothing secret.
    """
    passwords: set[str] = set()
    try:
        strict = urlsplit(url).password
    except ValueError:
        strict = None
    if strict:
        passwords.add(strict)
    _, scheme_end, rest = url.partition("://")
    rest = rest if scheme_end else url
    for match in re.finditer("@", rest):
        _, colon, password = rest[: match.start()].partition(":")
        if colon and password:
            passwords.add(password)
            passwords.update(re.split("[@#/?]", password))
    forms: set[str] = set()
    for password in passwords:
        for form in (password, unquote(password)):
            forms.update((form, quote(form, safe=""), repr(form)[1:-1]))
    return {form for form in forms if form}


class Redactor:
    """A function from text to text with every known secret masked.

    Example:
        >>> redact = Redactor.from_values(["http://me:p#ss@proxy:3128"])
        >>> redact("invalid URL http://me:p#ss@proxy:3128")
        'invalid URL http://me:***@proxy:3128'
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        # The longest first, so that a secret holding another is masked whole;
        # a short one only where it is not part of a longer word, so that a
        # password `p` leaves "Port" alone.
        self._scrub = Scrubber(secrets, words=True)

    @classmethod
    def from_values(
        cls, urls: Iterable[object], keys: Iterable[object] = ()
    ) -> Redactor:
        """Mask the passwords of `urls` and the `keys` themselves (non-strings
        and None are skipped)."""
        secrets = {key for key in keys if isinstance(key, str)}
        for url in urls:
            if isinstance(url, str):
                secrets |= url_secrets(url)
        return cls(secrets)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Redactor:
        """Mask the secrets of a command's options and of its environment."""
        urls = [
            getattr(args, "endpoint", None),
            getattr(args, "proxy", None),
            os.environ.get(ENDPOINT_VARIABLE),
        ]
        keys = [getattr(args, "api_key", None), os.environ.get(API_KEY_VARIABLE)]
        keys.append(_key_of_file(getattr(args, "api_key_file", None)))
        return cls.from_values(urls, [key.strip() for key in keys if key])

    def __call__(self, text: str) -> str:
        """Return `text` with every secret replaced by `MASK`."""
        return self._scrub(text)


def _key_of_file(path: object) -> str | None:
    """Return the key of `--api-key-file`, or None if it cannot be read now."""
    if not isinstance(path, str):
        return None
    from .._args import read_key_file

    try:
        return read_key_file(path)
    except (UsageError, OSError):
        return None  # the error being reported is then likely about this file


def report_error(exc: BaseException, args: argparse.Namespace) -> None:
    """Write `exc` as `koala: error: ...`, one line on stderr (with --debug, its
    traceback before), every secret of `args` masked."""
    redact = Redactor.from_args(args)
    if getattr(args, "debug", False):
        import traceback

        sys.stderr.write(redact("".join(traceback.format_exception(exc))))
    from .hints import Situation

    situation = Situation.from_args(args)
    sys.stderr.write(
        redact(f"koala: error: {one_line(exc, situation=situation)}") + "\n"
    )
    sys.stderr.flush()
