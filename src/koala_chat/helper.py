"""Small helpers with the names gpt4free providers use."""

from __future__ import annotations

import secrets
import string
from typing import Final

__all__ = ["get_random_string"]

_ALPHABET: Final = string.ascii_lowercase + string.digits
#: Random bytes below this bound map onto the alphabet evenly (seven each).
_EVEN: Final = len(_ALPHABET) * (256 // len(_ALPHABET))
#: Each byte below `_EVEN` to its character; the bytes above it are dropped.
_TABLE: Final = bytes(ord(_ALPHABET[b % len(_ALPHABET)]) for b in range(256))
_UNEVEN: Final = bytes(range(_EVEN, 256))


def get_random_string(length: int = 10) -> str:
    """Return `length` random lowercase letters and digits, from `secrets`.

    Random bytes, each read as one character: the few that would make some
    characters likelier (252 and above) are dropped and more are drawn. A
    `Visitor-ID` is drawn for every request, so this stays one read of the
    system's random source and one pass in C.
    """
    drawn = b""
    while len(drawn) < length:
        more = secrets.token_bytes(length - len(drawn) + 4)
        drawn += more.translate(_TABLE, _UNEVEN)
    return drawn[:length].decode("ascii")
