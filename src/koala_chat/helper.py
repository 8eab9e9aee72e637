"""Small helpers with the names gpt4free providers use."""

from __future__ import annotations

import secrets
import string

__all__ = ["get_random_string"]

_ALPHABET = string.ascii_lowercase + string.digits


def get_random_string(length: int = 10) -> str:
    """Return `length` random lowercase letters and digits, from `secrets`."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))
