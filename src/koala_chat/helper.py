"""Small helpers with the names gpt4free providers use."""

from __future__ import annotations

import secrets
import string

__all__ = ["get_random_string"]

_ALPHABET = string.ascii_lowercase + string.digits


def get_random_string(length: int = 10) -> str:
    """Return `length` random lowercase letters and digits, from `secrets`.

    One random number below 36**length, written in base 36: as uniform as
    drawing each character, with one read of the system's random source
    instead of one per character (a `Visitor-ID` is drawn for every request).
    """
    number = secrets.randbelow(len(_ALPHABET) ** length) if length > 0 else 0
    characters = []
    for _ in range(length):
        number, digit = divmod(number, len(_ALPHABET))
        characters.append(_ALPHABET[digit])
    return "".join(characters)
