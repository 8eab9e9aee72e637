"""Secrets out of text: the one scrubber of every message we build.

An upstream that echoes the request's headers quotes the API key back in
whatever spelling its framework chose: as it was, lower- or upper-cased, inside
a JSON string with some characters as `\\u002d` (or `\\/`), percent-encoded,
as an HTML character reference, inside a `Basic` credential or any other
base64 text, as hex, or cut short where an excerpt ends. `Scrubber` masks a
secret in all of those spellings, mixed freely character by character (a
JSON-escaped `-` next to a percent-encoded `/`: see `koala_chat._spellings`),
and with `credentials` also whatever follows `Bearer`, `Basic` or an
`Authorization:` header name, so that an encoding it does not know still
loses the key where it stands as a credential.

A secret shorter than `MIN_SPELLED` characters is masked only as it is: its
other spellings would match ordinary words (with `words`, only where it is not
part of a longer word). Masking a stretch too long hides nothing secret.

`scrub_error` applies a scrubber to an exception of ours in place: its
message, its text attributes and the chain of exceptions it holds.

Nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from ._spellings import FAMILIES, Decoded, fold, masked

__all__ = ["MASK", "MIN_SPELLED", "Scrubber", "scrub_error", "sent_credentials"]

MASK: Final = "***"
#: The shortest secret whose other spellings (case, escapes, base64) are masked.
MIN_SPELLED: Final = 8
#: The shortest start of a secret masked where an excerpt cuts it off.
_MIN_CUT: Final = 4
#: The headers whose values are credentials.
_CREDENTIAL_HEADERS: Final = ("Authorization", "Proxy-Authorization")

# A separator between an auth scheme and its token, in any of the spellings.
_GAP = r"(?:\s|\+|%(?:25)*20|\\+u0020|\\+x20|&#0*32;|&#[xX]0*20;|&nbsp;)+"
_SCHEME_TOKEN: Final = re.compile(
    rf"(?i)(\b(?:bearer{_GAP})|\bbasic{_GAP}(?=[A-Za-z0-9+/=_%-]{{8}}))"
    r"([^\s\"'<>,;&)(\]\[{}|`]+)"
)
_HEADER_VALUE: Final = re.compile(
    r"(?i)(\b(?:proxy-)?authorization\\*[\"']?\s*[:=]\s*\\*[\"']?)"
    r"([^\"'\\\r\n<>,;&{}]+)"
)
#: How an excerpt ends where it was cut: a piece of an escape, an ellipsis,
#: the closing quote of a repr.
_CUT_END: Final = re.compile(
    r"(?P<partial>\\+(?:u[0-9a-f]{0,3}|x[0-9a-f]?)?|%(?:25)*[0-9a-f]?|&#?x?[0-9a-z]{0,7})?"
    r"(?:\.\.\.|…)?[\"']?\Z"
)
#: How many levels of one-level escapes are undone in turn.
_LEVELS: Final = 3
#: The ways text is read before a secret is looked for in it: as it is (a
#: secret may hold what reads as an escape), each family of escapes alone,
#: all of them mixed; one level of each, or every level at once.
_READINGS: Final = (
    ("", False),
    *((family, nested) for family in (*FAMILIES, FAMILIES) for nested in (False, True)),
)


@dataclass(frozen=True, slots=True)
class _Needles:
    """What a long secret looks like once decoded: folded text and exact runs."""

    #: Matched in any letter case: the secret itself and its hex forms.
    folded: tuple[str, ...]
    #: Matched as they are: the base64 runs only the secret determines.
    exact: tuple[str, ...]


class Scrubber:
    """A function from text to text with each secret masked in every spelling.

    Example:
        >>> scrub = Scrubber(["sk-Koala-4711"])
        >>> scrub('{"auth": "Bearer SK\\\\u002dKOALA%2d4711"}')
        '{"auth": "Bearer ***"}'
    """

    __slots__ = ("_credentials", "_long", "_short")

    def __init__(
        self, secrets: Iterable[str], *, credentials: bool = False, words: bool = False
    ) -> None:
        """Mask `secrets` (empty ones are ignored).

        `credentials` also masks the token after an auth scheme and the value
        of an `Authorization` header, whatever they are; `words` masks a short
        secret only where it is not part of a longer word.
        """
        unique = {s for s in secrets if s}
        self._long = tuple(_needles(s) for s in sorted(unique) if len(s) >= MIN_SPELLED)
        short = sorted(
            (s for s in unique if len(s) < MIN_SPELLED), key=len, reverse=True
        )
        alternatives = "|".join(map(re.escape, short))
        if short and words:
            alternatives = rf"(?<![^\W_])(?:{alternatives})(?![^\W_])"
        self._short = re.compile(alternatives) if short else None
        self._credentials = credentials

    @classmethod
    def for_headers(
        cls, headers: Mapping[str, str] | None, others: Iterable[str] = ()
    ) -> Scrubber:
        """Mask the credentials sent in `headers` (see `sent_credentials`) and
        `others`, with `credentials` on when any was sent."""
        sent = sent_credentials(headers)
        return cls(sent | set(others), credentials=bool(sent))

    def __bool__(self) -> bool:
        """Tell whether there is anything to mask."""
        return bool(self._long) or self._short is not None or self._credentials

    def __call__(self, text: str) -> str:
        """Return `text` with every secret replaced by `MASK`."""
        if self._long:
            # As it is first: a secret may itself hold what reads as an escape.
            for families, nested in _READINGS:
                level: Decoded | None = Decoded(text, families, nested=nested)
                spans: list[tuple[int, int]] = []
                for _ in range(1 if nested else _LEVELS):
                    if level is None:
                        break
                    spans += (level.span(*span) for span in self._spans(level))
                    level = level.deeper()
                text = masked(text, spans, MASK)
        if self._short is not None:
            text = self._short.sub(MASK, text)
        if self._credentials:
            text = _SCHEME_TOKEN.sub(rf"\1{MASK}", text)
            text = _HEADER_VALUE.sub(rf"\1{MASK}", text)
        return text

    def found(self, text: str) -> bool:
        """Tell whether `text` holds anything this scrubber would mask."""
        return self(text) != text

    def _spans(self, decoded: Decoded) -> Iterator[tuple[int, int]]:
        """Yield the decoded spans of every secret, and of one cut off at the end."""
        for needles in self._long:
            for needle in needles.folded:
                yield from decoded.find(needle, any_case=True)
            for needle in needles.exact:
                yield from decoded.find(needle, any_case=False)
        yield from _cut_off(decoded, [needles.folded[0] for needles in self._long])


def _cut_off(decoded: Decoded, secrets: list[str]) -> Iterator[tuple[int, int]]:
    """Yield the span of a secret's start where the text (or an excerpt) ends.

    An excerpt may end in an ellipsis (and the quote of a repr), and may have
    cut an escape in two: the start of a secret before those is masked, the
    piece of an escape with it. A piece that still decodes (`&#1`, an HTML
    reference without its last digits and `;`) is one wrong character after
    the secret's start: that start is masked too, with the character.
    """
    folded = decoded.folded
    match = _CUT_END.search(folded)
    end = match.start() if match else len(folded)
    cut = end + len(match["partial"] or "") if match else end
    for stop in (end, end - 1):
        for secret in secrets:
            for size in range(min(len(secret), stop), _MIN_CUT - 1, -1):
                if folded.startswith(secret[:size], stop - size):
                    yield stop - size, cut
                    return


@lru_cache(maxsize=64)
def _needles(secret: str) -> _Needles:
    """Return what `secret` looks like decoded: itself, as hex, as base64."""
    cased = sorted({secret, secret.lower(), secret.upper()})
    hexes = {variant.encode("utf-8").hex() for variant in cased}
    # A secret that holds what reads as an escape (`%41`) reads so decoded too.
    itself = {fold(Decoded(secret).chars)} - {fold(secret)}
    return _Needles(
        (fold(secret), *sorted(itself | hexes)), tuple(_base64_forms(cased))
    )


def _base64_forms(variants: Iterable[str]) -> list[str]:
    """Return the runs of base64 text that only a secret determines.

    The secret may start at any of the 3 byte offsets of a base64 group (in a
    `Basic` credential it follows `user:`); for each, in the standard and the
    URL-safe alphabet, the characters whose 6 bits all come from the secret.
    Of each of `variants` (the secret lower- and upper-cased too, as it may
    have been encoded so).
    """
    runs: set[str] = set()
    for variant in variants:
        data = variant.encode("utf-8")
        for offset in range(3):
            encoded = base64.b64encode(bytes(offset) + data + bytes(3)).decode()
            first = -(-8 * offset // 6)
            last = (8 * (offset + len(data))) // 6
            run = encoded[first:last]
            if len(run) >= MIN_SPELLED:
                runs.add(run)
                runs.add(run.replace("+", "-").replace("/", "_"))
    return sorted(runs)


def scrub_error(error: BaseException, scrub: Scrubber) -> None:
    """Scrub `error` in place: its `args`, its text attributes, its chain.

    Its `str`, `repr` and pickle come from those. Along `__cause__` and
    `__context__`, an exception whose text still holds a secret after its
    own text was scrubbed is cut off the chain (a traceback would print it).
    """
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        _scrub_state(link, scrub)
        nxt = link.__cause__ or link.__context__
        if nxt is not None and scrub.found(_exception_text(nxt)):
            _scrub_state(nxt, scrub)
            if scrub.found(_exception_text(nxt)):
                link.__cause__ = link.__context__ = None
                link.__suppress_context__ = True
                return
        link = nxt


def _scrub_state(error: BaseException, scrub: Scrubber) -> None:
    """Scrub the text in `error.args` and in its instance attributes."""
    error.args = tuple(
        scrub(arg) if isinstance(arg, str) else arg for arg in error.args
    )
    for name, value in vars(error).items():
        if isinstance(value, str):
            setattr(error, name, scrub(value))


def _exception_text(error: BaseException) -> str:
    """Return what a traceback or a log may print of `error`."""
    try:
        return f"{error} {error!r} {error.args!r}"
    except Exception:  # a broken __str__ of somebody else's: print nothing
        return ""


def sent_credentials(headers: Mapping[str, str] | None) -> set[str]:
    """Return the credentials in `headers`: the token of each `Authorization`
    value (`Bearer abc` gives `abc`), or the whole value if it has no scheme;
    of a `Basic` token, the user and password it encodes too."""
    found: set[str] = set()
    for name in _CREDENTIAL_HEADERS:
        value = (headers.get(name) if headers is not None else None) or ""
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if not token:
            found.add(scheme)
            continue
        found.add(token)
        if scheme.lower() == "basic":
            found.update(_basic_parts(token))
    return found - {""}


def _basic_parts(token: str) -> set[str]:
    """Return the user and the password of a `Basic` token, where it decodes."""
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return set()
    user, _, password = decoded.partition(":")
    return {part for part in (decoded, password) if part} | (
        {user} if password else set()
    )
