"""The checks of request parameters: each a function and a JSON Schema fragment.

`params.py` declares every parameter once, in its table, with one of these
checks; the OpenAPI document is generated from the same fragments. A check
takes the parameter's name and its value (never null) and returns what the
request keeps of it. Every error is a `UsageError` whose message starts with
the parameter's name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Final, TypeGuard, cast

from .. import defaults
from .._values import shown
from ..errors import UsageError
from ..messages import JSONValue, replace_surrogates

__all__ = [
    "BOOLEAN",
    "MAX_STOP_LENGTH",
    "MAX_STOP_SEQUENCES",
    "OBJECT",
    "POSITIVE",
    "PROTOCOL",
    "STOP_SCHEMA",
    "STREAM_OPTIONS_SCHEMA",
    "STRING",
    "WHOLE",
    "Check",
    "Schema",
    "include_usage_of",
    "is_whole",
    "kind_of",
    "model_name",
    "number_between",
    "of_type",
    "positive_whole",
    "protocol_name",
    "stop_sequences",
]

#: The most stop sequences a request may give (the OpenAI API's limit).
MAX_STOP_SEQUENCES: Final = 4
#: The longest stop sequence, in characters. Stop sequences are markers a few
#: characters long ("\n\n", "</answer>"); the bound keeps the text held back
#: while a sequence might be starting (`cutting.py`) small.
MAX_STOP_LENGTH: Final = 1000

Schema = dict[str, JSONValue]
#: Check a value (never null) of the parameter `name`; return what the request
#: keeps of it. Raises UsageError.
Check = Callable[[str, JSONValue], object]


def kind_of(value: JSONValue) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def is_whole(value: JSONValue) -> TypeGuard[int | float]:
    """Tell whether `value` is a whole number; 2.0 is one, as JSON Schema says.

    JSON has one number type (RFC 8259, section 6), so `2.0` is the same number
    as `2`; `true` (a subclass of int in Python) is not a number.
    """
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) and not isinstance(value, bool)


def of_type(kind: type, words: str, schema: Schema) -> tuple[Check, Schema]:
    """Return the check and schema of a value of one JSON type, kept as is."""

    def check(name: str, value: JSONValue) -> JSONValue:
        if not (is_whole(value) if kind is int else isinstance(value, kind)):
            raise UsageError(f"{name}: must be {words}, not {kind_of(value)}")
        return value

    return check, schema


STRING: Final = of_type(str, "a string", {"type": "string"})
BOOLEAN: Final = of_type(bool, "true or false", {"type": "boolean"})
WHOLE: Final = of_type(int, "a whole number", {"type": "integer"})
OBJECT: Final = of_type(dict, "an object", {"type": "object"})


def number_between(low: int, high: int) -> tuple[Check, Schema]:
    def check(name: str, value: JSONValue) -> JSONValue:
        # The range is compared first: an integer too large for a float makes
        # `math.isfinite` raise, and a comparison with NaN is always False.
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not low <= value <= high
            or not math.isfinite(value)
        ):
            raise UsageError(
                f"{name}: must be a number from {low:g} to {high:g}, not {shown(value)}"
            )
        return value

    return check, {"type": "number", "minimum": low, "maximum": high}


def positive_whole(name: str, value: JSONValue) -> int:
    if not is_whole(value) or value < 1:
        raise UsageError(f"{name}: must be a whole number >= 1, not {shown(value)}")
    return int(value)


POSITIVE: Final = (positive_whole, {"type": "integer", "minimum": 1})


def model_name(name: str, value: JSONValue) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{name}: must be a string, not {kind_of(value)}")
    return value


def stop_sequences(name: str, value: JSONValue) -> tuple[str, ...]:
    sequences = [value] if isinstance(value, str) else value
    if not isinstance(sequences, list) or not all(
        isinstance(item, str) for item in sequences
    ):
        raise UsageError(f"{name}: must be a string or a list of strings")
    if len(sequences) > MAX_STOP_SEQUENCES:
        raise UsageError(
            f"{name}: at most {MAX_STOP_SEQUENCES} sequences, not {len(sequences)}"
        )
    for item in sequences:
        if len(cast(str, item)) > MAX_STOP_LENGTH:
            raise UsageError(
                f"{name}: a stop sequence may be at most {MAX_STOP_LENGTH} "
                f"characters long, not {len(cast(str, item))}"
            )
    return tuple(
        dict.fromkeys(replace_surrogates(cast(str, item)) for item in sequences if item)
    )


STOP_SCHEMA: Final[Schema] = {
    "anyOf": [
        {"type": "string", "maxLength": MAX_STOP_LENGTH},
        {
            "type": "array",
            "items": {"type": "string", "maxLength": MAX_STOP_LENGTH},
            "maxItems": MAX_STOP_SEQUENCES,
        },
    ]
}


def protocol_name(name: str, value: JSONValue) -> str:
    if value not in defaults.PROTOCOLS:
        raise UsageError(f"{name}: must be one of {', '.join(defaults.PROTOCOLS)}")
    return cast(str, value)


#: The dialects a request may choose (docs/protocol.md, "Choosing a dialect").
PROTOCOL: Final = (protocol_name, {"enum": list(defaults.PROTOCOLS)})


def include_usage_of(name: str, value: JSONValue) -> bool:
    """Return `include_usage` of the `stream_options` object `value`."""
    if not isinstance(value, Mapping):
        raise UsageError(f"{name}: must be an object, not {kind_of(value)}")
    for key in value:
        if key != "include_usage":
            raise UsageError(f"{name}.{key}: unknown option")
    flag = value.get("include_usage")
    if flag is None:
        return False
    return cast(bool, BOOLEAN[0](f"{name}.include_usage", flag))


STREAM_OPTIONS_SCHEMA: Final[Schema] = {
    "type": "object",
    "properties": {"include_usage": {"type": ["boolean", "null"]}},
    "required": [],
    "additionalProperties": False,
}
