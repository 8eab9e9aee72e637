"""How a caller's value is shown in an error message: briefly, and never failing.

Python refuses to print an integer of over 4,300 digits (a ValueError raised
while the message of our own error is built), and a long one tells the reader
nothing; an object's repr may be anything.
"""

from __future__ import annotations

from typing import Final

__all__ = ["shown"]

_LONGEST: Final = 60


def shown(value: object) -> str:
    """Return a short repr of `value` for an error message."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > 64:
            return f"an integer of {value.bit_length()} bits"
        return repr(value)
    if isinstance(value, float | str | bytes | bool) or value is None:
        text = repr(value)
        return text if len(text) <= _LONGEST else text[: _LONGEST - 3] + "..."
    return f"a {type(value).__name__}"
