"""What a recorder removes before an exchange reaches a cassette.

Pure. A cassette never holds a header of the request, and of the response only
those in `KEPT_HEADERS` (no `Set-Cookie`, no `Date`). Everything that is
written, the conversation, the kept headers' values and the body, is scrubbed
of (docs/protocol.md, "Cassettes"):

- the request's credentials, in every spelling an echoing server could use
  (`koala_chat._secrets.Scrubber`): its `Authorization` and
  `Proxy-Authorization`, any header whose name says it holds a key, the values
  of its cookies and of the response's `Set-Cookie`, and whatever follows
  `Bearer` or an `Authorization:` name;
- the values of JSON fields named like a key (`"api_key": "..."`, `apiKey`,
  `token`, `secret`, `password`);
- whatever the caller's own patterns (`--scrub REGEX`) match.

Each becomes `***`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from multidict import MultiMapping

from .._secrets import MASK, Scrubber, sent_credentials

__all__ = ["KEPT_HEADERS", "ExchangeScrubber", "compile_patterns"]

KEPT_HEADERS: Final = frozenset(
    {
        "allow",
        "cache-control",
        "cf-mitigated",
        "cf-ray",
        "content-encoding",
        "content-language",
        "content-type",
        "location",
        "request-id",
        "retry-after",
        "www-authenticate",
        "x-request-id",
    }
)
"""The response headers a cassette keeps (lower case): those a client reads."""

# A request header whose name says it carries a key (`X-Api-Key`, `Api-Token`).
_KEY_HEADER: Final = re.compile(r"(?i)(?:^|-)(?:api-?key|token|secret)$")
# The string value of a JSON field named like a key, in JSON as it is or inside
# a JSON string (its quotes escaped): up to the next quote, escaped or not.
_KEY_FIELD: Final = re.compile(
    r"(?i)(\\*\"(?:api[_-]?key|access[_-]?token|token|secret|password)\\*\""
    r"\s*:\s*\\*\")[^\"\n]*?(?=\\*\")"
)


def compile_patterns(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    """Return the compiled `--scrub` patterns.

    Raises:
        re.error: a pattern does not compile.
    """
    return [re.compile(pattern) for pattern in patterns]


class ExchangeScrubber:
    """Scrub one exchange: built from its request's and response's headers.

    Example:
        >>> scrub = ExchangeScrubber({"Authorization": "Bearer sk-Koala-4711"})
        >>> scrub.text('{"echo": "sk-koala-4711"}')
        '{"echo": "***"}'
    """

    def __init__(
        self,
        request_headers: Mapping[str, str],
        response_headers: MultiMapping[str] | None = None,
        patterns: Sequence[re.Pattern[str]] = (),
    ) -> None:
        secrets = set(_cookie_values(request_headers.get("Cookie", "")))
        secrets.update(
            value.strip()
            for name, value in request_headers.items()
            if _KEY_HEADER.search(name)
        )
        if response_headers is not None:
            for value in response_headers.getall("Set-Cookie", ()):
                secrets.update(_cookie_values(value.partition(";")[0]))
        secrets |= sent_credentials(request_headers)
        self._keys = Scrubber(secrets, credentials=True, words=True)
        self._patterns = (_KEY_FIELD, *patterns)

    def text(self, text: str) -> str:
        """Return `text` scrubbed."""
        text = self._keys(text)
        text = _KEY_FIELD.sub(rf"\1{MASK}", text)
        for pattern in self._patterns[1:]:
            text = pattern.sub(MASK, text)
        return text

    def found(self, text: str) -> bool:
        """Tell whether `text` holds anything to scrub."""
        return self.text(text) != text

    def headers(self, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Return the kept headers of a response, their values scrubbed."""
        return [
            (str(name), self.text(value))
            for name, value in headers
            if name.lower() in KEPT_HEADERS
        ]

    def chunks(self, chunks: Sequence[bytes]) -> list[bytes]:
        """Return the body's chunks scrubbed, split as they were where possible.

        Each chunk is scrubbed on its own. Where that differs from the whole
        body scrubbed (a secret cut in two by a chunk boundary), the body
        becomes one chunk, scrubbed whole: the split is lost, never a secret
        kept.
        """
        whole = b"".join(chunks)
        cleaned = self._bytes(whole)
        if cleaned == whole:
            return list(chunks)
        scrubbed = [self._bytes(chunk) for chunk in chunks]
        return scrubbed if b"".join(scrubbed) == cleaned else [cleaned]

    def _bytes(self, data: bytes) -> bytes:
        """Scrub bytes as UTF-8 text, or byte for byte where they are not UTF-8."""
        try:
            return self.text(data.decode()).encode()
        except UnicodeDecodeError:
            return self.text(data.decode("latin-1")).encode("latin-1")


def _text(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _cookie_values(header: str) -> Iterable[str]:
    """Yield the values of a `Cookie` header (`a=1; b=2`), or of one cookie."""
    for part in header.split(";"):
        _, equals, value = part.partition("=")
        value = value.strip().strip('"')
        if equals and value:
            yield value
