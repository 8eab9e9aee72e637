"""Secrets out of text: the one scrubber of every message we build.

An upstream that echoes the request's headers quotes the API key back in
whatever spelling its framework chose: as it was, lower- or upper-cased, inside
a JSON string with some characters as `\\u002d` (or `\\/`), percent-encoded,
as an HTML character reference, inside a `Basic` credential or any other
base64 text, or cut short where an excerpt ends. `Scrubber` masks a secret in
all of those spellings, mixed freely character by character (a JSON-escaped
`-` next to a percent-encoded `/`), and with `credentials` also whatever
follows `Bearer`, `Basic` or an `Authorization:` header name, so that an
encoding it does not know still loses the key where it stands as a credential.

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
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Final

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
_ELLIPSES: Final = ("...", "…")
# HTML's named references of the characters a key may hold.
_NAMED: Final = {
    "&": ("amp",),
    "<": ("lt",),
    ">": ("gt",),
    '"': ("quot",),
    "'": ("apos",),
    "/": ("sol",),
    "+": ("plus",),
    "=": ("equals",),
    ".": ("period",),
    "_": ("lowbar", "UnderBar"),
    "-": ("hyphen", "dash"),
    "~": ("tilde",),
}
_ESCAPED_BY_SLASH: Final = frozenset("/\"'\\")


class Scrubber:
    """A function from text to text with each secret masked in every spelling.

    Example:
        >>> scrub = Scrubber(["sk-Koala-4711"])
        >>> scrub('{"auth": "Bearer SK\\\\u002dKOALA-4711"}')
        '{"auth": "Bearer ***"}'
    """

    __slots__ = ("_credentials", "_cut", "_patterns")

    def __init__(
        self, secrets: Iterable[str], *, credentials: bool = False, words: bool = False
    ) -> None:
        """Mask `secrets` (empty ones are ignored).

        `credentials` also masks the token after an auth scheme and the value
        of an `Authorization` header, whatever they are; `words` masks a short
        secret only where it is not part of a longer word.
        """
        ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._patterns = tuple(_pattern(secret, words) for secret in ordered)
        self._cut = tuple(s.casefold() for s in ordered if len(s) >= MIN_SPELLED)
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
        return bool(self._patterns) or self._credentials

    def __call__(self, text: str) -> str:
        """Return `text` with every secret replaced by `MASK`."""
        for pattern in self._patterns:
            text = pattern.sub(MASK, text)
        if self._credentials:
            text = _SCHEME_TOKEN.sub(rf"\1{MASK}", text)
            text = _HEADER_VALUE.sub(rf"\1{MASK}", text)
        return self._mask_cut(text)

    def found(self, text: str) -> bool:
        """Tell whether `text` holds anything this scrubber would mask."""
        return self(text) != text

    def _mask_cut(self, text: str) -> str:
        """Mask the start of a secret where the text (or an excerpt) ends."""
        if not self._cut:
            return text
        for ellipsis in ("", *_ELLIPSES):
            if ellipsis and not text.endswith(ellipsis):
                continue
            head = text[: len(text) - len(ellipsis)]
            folded = head.casefold()
            for secret in self._cut:
                for size in range(min(len(secret), len(head)), _MIN_CUT - 1, -1):
                    if folded.endswith(secret[:size]):
                        return head[: len(head) - size] + MASK + ellipsis
        return text


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
    """Return the credentials in `headers`: each `Authorization` value, whole
    and without its scheme (`Bearer abc` gives `Bearer abc` and `abc`)."""
    found: set[str] = set()
    for name in _CREDENTIAL_HEADERS:
        value = (headers.get(name) if headers is not None else None) or ""
        value = value.strip()
        if not value:
            continue
        found.add(value)
        scheme, _, token = value.partition(" ")
        token = token.strip()
        if token:
            found.add(token)
            if scheme.lower() == "basic":
                found.update(_basic_parts(token))
    return found


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


@lru_cache(maxsize=64)
def _pattern(secret: str, words: bool) -> re.Pattern[str]:
    """Return the regular expression of `secret` in each spelling we know."""
    if len(secret) < MIN_SPELLED:
        literal = re.escape(secret)
        return re.compile(rf"(?<![^\W_]){literal}(?![^\W_])" if words else literal)
    forms = [_spelled(secret, any_case=True)]
    forms.append(_spelled(secret.encode("utf-8").hex(), any_case=True))
    for text in _base64_forms(secret):
        forms.append(_spelled(text, any_case=False))
    return re.compile("|".join(forms))


def _base64_forms(secret: str) -> list[str]:
    """Return the runs of base64 text that only `secret` determines.

    The secret may start at any of the 3 byte offsets of a base64 group (in a
    `Basic` credential it follows `user:`); for each, in the standard and the
    URL-safe alphabet, the characters whose 6 bits all come from the secret.
    Its lower- and upper-cased forms too, as they may have been encoded.
    """
    runs: set[str] = set()
    for variant in {secret, secret.lower(), secret.upper()}:
        data = variant.encode("utf-8")
        for offset in range(3):
            encoded = base64.b64encode(bytes(offset) + data + bytes(3)).decode()
            first = -(-8 * offset // 6)
            last = (8 * (offset + len(data))) // 6
            run = encoded[first:last]
            if len(run) >= MIN_SPELLED:
                runs.add(run)
                runs.add(run.replace("+", "-").replace("/", "_"))
    return sorted(runs, key=len, reverse=True)


def _spelled(text: str, *, any_case: bool) -> str:
    """Return the regular expression of `text`, each character in any spelling."""
    return "".join(_char(char, any_case) for char in text)


@lru_cache(maxsize=1024)
def _char(char: str, any_case: bool) -> str:
    """Return the regular expression of one character in every spelling."""
    variants = {char}
    if any_case:
        variants |= {v for v in (char.lower(), char.upper()) if len(v) == 1}
    literals = sorted(variants)
    choices = [
        "\\\\+" if char == "\\" else "[" + "".join(map(re.escape, literals)) + "]"
    ]
    for variant in literals:
        choices.extend(_escapes(variant))
    return "(?:" + "|".join(choices) + ")"


def _escapes(char: str) -> list[str]:
    """Return the escaped spellings of `char`: JSON, Python, URL and HTML."""
    code = ord(char)
    found = [rf"&#0*{code};", rf"&#[xX]0*{_hex(code)};"]
    found.extend(f"&{name};" for name in _NAMED.get(char, ()))
    if char in _ESCAPED_BY_SLASH:
        found.append("\\\\+" + re.escape(char))
    if code <= 0xFFFF:
        found.append(rf"\\+u{_hex(code, 4)}")
    else:
        high, low = divmod(code - 0x10000, 0x400)
        found.append(rf"\\+u{_hex(0xD800 + high, 4)}\\+u{_hex(0xDC00 + low, 4)}")
        found.append(rf"\\+U{_hex(code, 8)}")
    data = char.encode("utf-8")
    found.append("".join(rf"%(?:25)*{_hex(byte, 2)}" for byte in data))
    found.append("".join(rf"\\+x{_hex(byte, 2)}" for byte in data))
    if code <= 0xFF and len(data) > 1:
        found.append(rf"\\+x{_hex(code, 2)}")
    return found


def _hex(number: int, width: int = 1) -> str:
    """Return `number` in hexadecimal as a pattern that takes either case."""
    digits = f"{number:0{width}x}"
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in digits)
