"""A caller's value: shown in an error message briefly and never failing, and
the checks of the numbers every option layer takes (counts, seconds).

Python refuses to print an integer of over 4,300 digits (a ValueError raised
while the message of our own error is built), and a long one tells the reader
nothing; an object's repr may be anything.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Final

from .errors import UsageError

__all__ = ["check_time_limit", "seconds", "shown", "whole_number"]

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


def whole_number(
    kwargs: Mapping[str, Any], name: str, default: int, *, minimum: int = 0
) -> int:
    """Return the option `name` of `kwargs` (else `default`), a count.

    Raises:
        UsageError: not a whole number of at least `minimum`.
    """
    value = kwargs.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UsageError(
            f"{name} must be a whole number >= {minimum}, not {shown(value)}"
        )
    return value


def seconds(kwargs: Mapping[str, Any], name: str, default: float) -> float:
    """Return the option `name` of `kwargs` (else `default`), in seconds.

    Raises:
        UsageError: not a finite number of at least 0.
    """
    value = kwargs.get(name, default)
    # `not value >= 0` also refuses NaN, which every comparison answers False;
    # the upper bound, an integer too large for a float.
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not 0 <= value <= sys.float_info.max
    ):
        raise UsageError(f"{name} must be a number of seconds >= 0, not {shown(value)}")
    return float(value)


def check_time_limit(name: str, value: object) -> None:
    """Refuse `value` unless it is a time limit: seconds more than 0, or None.

    `name` is the limit's (connect, idle, total). aiohttp rounds limits up
    with `math.ceil`, where infinity overflows, and a deadline is a float: so
    must the limit be.

    Raises:
        UsageError: it is not.
    """
    if value is not None and (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not 0 < value <= sys.float_info.max
    ):
        raise UsageError(
            f"{name} timeout must be a positive number of seconds "
            f"(None for no limit), not {shown(value)}"
        )
