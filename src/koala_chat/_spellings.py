"""Text as it reads once its escapes are undone, each character tied to its span.

An echoed key may come back with any of its characters escaped, and the
escapes mixed: `Sk\\u002dKoala%2Fx&#43;y`. `Decoded(text, families)` undoes
one level of each escape of those families, character by character, and
remembers which stretch of `text` each decoded character came from, so that a
secret found in the decoded text (`find`) can be masked in the raw one
(`mask`). One family at a time reads text that escapes one way (an HTML page
whose `%` is a plain character); all of them at once reads a mix:

- JSON and JavaScript: `\\uXXXX` (surrogate pairs too), `\\/`, `\\"`, `\\\\`;
  with `nested`, a run of backslashes before an escape as all its levels
  (JSON inside a JSON string);
- Python: `\\xNN` (a run of them as one UTF-8 character), `\\UXXXXXXXX`;
- URLs: `%NN` in either case (a run as one UTF-8 character); with `nested`,
  `%25NN` (encoded twice) as well;
- HTML: `&#NN;`, `&#xNN;` and the named references of HTML5.

Pure: no I/O. Base64 and hex are left to the caller, who knows what to look
for: they are runs of plain characters in the decoded text.
"""

from __future__ import annotations

import bisect
import html.entities
import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Final

__all__ = ["FAMILIES", "Decoded", "fold", "masked"]

_HEX: Final = "[0-9a-fA-F]"


#: The families of escapes, by letter: backslash (JSON, JavaScript, Python),
#: percent (URLs), HTML.
FAMILIES: Final = "bph"


@lru_cache(maxsize=16)
def _units(families: str, nested: bool) -> re.Pattern[str]:
    """Return the pattern of one escape of `families` (see `FAMILIES`).

    `nested`: a run of backslashes before an escape is one level per
    backslash (JSON inside a JSON string), and `%2541` is `A` encoded twice;
    otherwise `\\\\` is one backslash, as a JSON parser reads it.
    """
    slashes = r"\\+" if nested else r"\\"
    percent = "%(?:25)*" if nested else "%"
    parts: list[str] = []
    if "b" in families:
        parts += [
            rf"{slashes}u(?P<hi>[dD][89abAB]{_HEX}{{2}})"
            rf"{slashes}u(?P<lo>[dD][c-fC-F]{_HEX}{{2}})",
            rf"{slashes}u(?P<u>{_HEX}{{4}})",
            rf"{slashes}U(?P<U>{_HEX}{{8}})",
            rf"(?P<xu>{slashes}x[c-fC-F]{_HEX}(?:{slashes}x[89abAB]{_HEX}){{1,3}})",
            rf"{slashes}x(?P<x>{_HEX}{{2}})",
            rf"{slashes}(?P<q>[/\"'\\])",
        ]
    if "p" in families:
        parts += [
            rf"(?P<pu>{percent}[c-fC-F]{_HEX}(?:{percent}[89abAB]{_HEX}){{1,3}})",
            rf"{percent}(?P<p>[0-7]{_HEX})",
        ]
    if "h" in families:
        parts += [
            r"&\#0*(?P<d>[0-9]{1,7});?",
            rf"&\#[xX]0*(?P<h>{_HEX}{{1,6}});?",
            r"&(?P<n>[A-Za-z][A-Za-z0-9]{1,31};)",
        ]
    return re.compile("|".join(parts))


#: A quick test that `text` holds no escape at all.
_ANY_ESCAPE: Final = re.compile(r"[\\%&]")
_BYTE: Final = re.compile(rf"(?:%(?:25)*|\\+x)({_HEX}{{2}})")


def fold(text: str) -> str:
    """Return `text` lower-cased character by character, its length kept."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


class Decoded:
    """`text` with one level of escapes undone (`chars`), and where each came from.

    `chars` is the decoded text and `folded` the same lower-cased (of the
    same length); `span(start, end)` is the stretch of the raw text that
    decoded characters `start` to `end` came from. `deeper()` undoes the next
    level (a JSON string inside a JSON string), its spans still in the raw
    text.
    """

    __slots__ = (
        "_decoded",
        "_families",
        "_parent",
        "_raw",
        "_raw_end",
        "chars",
        "folded",
        "text",
    )

    def __init__(
        self,
        text: str,
        families: str = FAMILIES,
        *,
        nested: bool = False,
        parent: Decoded | None = None,
    ) -> None:
        """Decode one level of `text`'s escapes of `families` (see `_units`
        for `nested`); with no families, leave it as it is. `parent` is the
        reading `text` is the decoded text of."""
        self.text = text
        self._families = families
        self._parent = parent
        # Segments: decoded start, raw start, raw end (-1 for a plain stretch).
        self._decoded: list[int] = [0]
        self._raw: list[int] = [0]
        self._raw_end: list[int] = [-1]
        if not families or _ANY_ESCAPE.search(text) is None:
            self.chars = text
        else:
            self.chars = "".join(self._pieces(text, _units(families, nested)))
        self.folded = fold(self.chars)

    def _pieces(self, text: str, units: re.Pattern[str]) -> Iterator[str]:
        size = last = 0
        for match in units.finditer(text):
            char = _unit(match)
            if char is None:
                continue
            if match.start() > last:
                yield text[last : match.start()]
                size += match.start() - last
            self._segment(size, match.start(), match.end())
            yield char
            size += 1
            last = match.end()
            self._segment(size, last, -1)
        yield text[last:]

    def _segment(self, decoded: int, raw: int, raw_end: int) -> None:
        if self._decoded[-1] == decoded:
            # An empty plain stretch between two escapes: replaced.
            self._raw[-1], self._raw_end[-1] = raw, raw_end
            return
        self._decoded.append(decoded)
        self._raw.append(raw)
        self._raw_end.append(raw_end)

    def deeper(self) -> Decoded | None:
        """Return the next level of one-level escapes, or None if this level
        undid none (nothing deeper to read)."""
        if self.chars == self.text:
            return None
        return Decoded(self.chars, self._families, parent=self)

    @property
    def root(self) -> str:
        """The raw text: that of the first level."""
        return self.text if self._parent is None else self._parent.root

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Return the raw stretch of decoded characters `start` to `end`."""
        span = self._raw_start(start), self._raw_stop(end - 1)
        return span if self._parent is None else self._parent.span(*span)

    def _raw_start(self, index: int) -> int:
        k = bisect.bisect_right(self._decoded, index) - 1
        if self._raw_end[k] >= 0:
            return self._raw[k]
        return self._raw[k] + index - self._decoded[k]

    def _raw_stop(self, index: int) -> int:
        k = bisect.bisect_right(self._decoded, index) - 1
        if self._raw_end[k] >= 0:
            return self._raw_end[k]
        return self._raw[k] + index - self._decoded[k] + 1

    def find(self, needle: str, *, any_case: bool) -> Iterator[tuple[int, int]]:
        """Yield the decoded spans where `needle` occurs (folded when `any_case`)."""
        haystack = self.folded if any_case else self.chars
        wanted = fold(needle) if any_case else needle
        start = haystack.find(wanted)
        while start >= 0 and wanted:
            yield start, start + len(wanted)
            start = haystack.find(wanted, start + 1)

    def mask(self, spans: Iterable[tuple[int, int]], mask: str) -> str:
        """Return the raw text with the raw stretch of each decoded span masked."""
        return masked(self.root, [self.span(start, end) for start, end in spans], mask)


def masked(text: str, spans: list[tuple[int, int]], mask: str) -> str:
    """Return `text` with each of its `spans` (joined where they overlap) masked."""
    if not spans:
        return text
    pieces: list[str] = []
    last = 0
    for start, end in _merged(sorted(spans)):
        pieces += [text[last:start], mask]
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def _merged(spans: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Yield sorted `spans` with the overlapping ones joined."""
    start, end = spans[0]
    for next_start, next_end in spans[1:]:
        if next_start <= end:
            end = max(end, next_end)
            continue
        yield start, end
        start, end = next_start, next_end
    yield start, end


def _unit(match: re.Match[str]) -> str | None:
    """Return the one character an escape stands for, or None if it is none."""
    group = match.lastgroup
    value = match[group] if group else ""
    try:
        if group == "hi":
            high, low = int(match["hi"], 16), int(match["lo"], 16)
            return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
        if group in ("u", "U", "h"):
            return chr(int(value, 16))
        if group in ("p", "x"):
            return chr(int(value, 16))
        if group == "d":
            return chr(int(value))
        if group == "q":
            return value
        if group in ("pu", "xu"):
            data = bytes(int(byte, 16) for byte in _BYTE.findall(value))
            decoded = data.decode("utf-8")
            return decoded if len(decoded) == 1 else None
        named = html.entities.html5.get(value)
        return named if named is not None and len(named) == 1 else None
    except (ValueError, OverflowError, UnicodeDecodeError):
        return None
