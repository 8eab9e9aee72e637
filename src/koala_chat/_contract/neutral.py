"""The neutral values of a refused parameter: those that ask for nothing.

A parameter Koala cannot honour (`n`, `logprobs`, ...) is still accepted with
a value that asks for nothing (`n: 1`, `logprobs: false`), compared as JSON
(`same_json`). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import msgspec

from ..messages import JSONValue

__all__ = ["NONE", "Neutral", "only", "same_json"]

Schema = dict[str, JSONValue]


@dataclass(frozen=True, slots=True)
class Neutral:
    """The values of a refused parameter that ask for nothing, and their schema."""

    accepts: Callable[[JSONValue], bool]
    schema: Schema | None
    advice: str


def same_json(value: JSONValue, neutral: JSONValue) -> bool:
    """Tell whether two JSON values are equal as JSON: `1.0` is 1, `true` is not."""
    if isinstance(value, bool) or isinstance(neutral, bool):
        return value is neutral
    if isinstance(neutral, list):
        return (
            isinstance(value, list)
            and len(value) == len(neutral)
            and all(map(same_json, value, neutral))
        )
    if isinstance(neutral, dict):
        return (
            isinstance(value, dict)
            and value.keys() == neutral.keys()
            and all(same_json(value[key], neutral[key]) for key in neutral)
        )
    return type(value) in (int, float, str) and value == neutral


def only(*values: JSONValue) -> Neutral:
    """Return the neutral values `values`: nothing else is accepted."""
    shown = " or ".join(msgspec.json.encode(value).decode() for value in values)
    return Neutral(
        lambda value: any(same_json(value, neutral) for neutral in values),
        {"const": values[0]} if len(values) == 1 else {"enum": list(values)},
        f"; send {shown} or leave it out",
    )


#: No value is neutral: any value asks for what Koala cannot give.
NONE: Final = Neutral(lambda value: False, None, "")
