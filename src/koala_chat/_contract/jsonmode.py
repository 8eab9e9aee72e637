"""JSON mode, emulated: the instruction, the extraction and the validation.

Koala's models answer in text only (docs/protocol.md, "Response"), so
`response_format` is done on our side: an instruction asks the model for one
JSON value, `extract_json` finds it in the reply (inside code fences or prose),
and `validation.validate` holds it to the schema, which `schemas.check_schema`
checked when the request came. Pure: no I/O. `jsonschema` is imported on first
use, so a server that never sees JSON mode never pays for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final, cast

from ..errors import UsageError
from ..messages import JSONValue
from .schemas import SchemaProblem, check_schema
from .validation import validate

__all__ = [
    "RESPONSE_FORMAT_SCHEMA",
    "JSONFormat",
    "extract_json",
    "json_schema_format",
    "parse_response_format",
    "validate",
]

Schema = dict[str, JSONValue]

#: Fenced code blocks (```json ... ```), the usual wrapping of a model's JSON.
_FENCE: Final = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)
#: How many places a JSON value could start at are tried, so that a long prose
#: reply full of braces costs a bounded amount of work.
_MAX_STARTS: Final = 64


#: The JSON Schema of `response_format`, for the OpenAPI document.
RESPONSE_FORMAT_SCHEMA: Final[Schema] = {
    "type": "object",
    "properties": {
        "type": {"enum": ["text", "json_object", "json_schema"]},
        "json_schema": {
            "type": "object",
            "properties": {
                "name": {"type": ["string", "null"]},
                "description": {"type": ["string", "null"]},
                "schema": {"type": ["object", "boolean"]},
                "strict": {"type": ["boolean", "null"]},
            },
        },
    },
    "required": ["type"],
    "if": {"properties": {"type": {"const": "json_schema"}}},
    "then": {"required": ["type", "json_schema"]},
}


@dataclass(frozen=True, slots=True)
class JSONFormat:
    """A checked `response_format` asking for JSON: a name and maybe a schema."""

    name: str = "json_object"
    schema: Schema | None = None
    description: str = ""

    def instruction(self) -> str:
        """Return the system message that asks the model for this JSON."""
        text = (
            "Answer with one JSON object and nothing else: no prose before or "
            "after it, no code fences."
        )
        if self.description:
            text += f" It is {self.description}"
        if self.schema is not None:
            text += (
                f" The object (named {self.name!r}) must validate against this "
                f"JSON Schema: {_dumps(self.schema)}"
            )
        return text


def parse_response_format(name: str, value: JSONValue) -> JSONFormat | None:
    """Check a `response_format`; return the JSON it asks for (None: plain text).

    The schema kept is a plain JSON copy of the one given (`check_schema`).

    Raises:
        UsageError: an unknown type, or a `json_schema` without a usable schema
            (see `schemas.check_schema`).
    """
    if not isinstance(value, Mapping):
        raise UsageError(f"{name}: must be an object")
    kind = value.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise UsageError(
            f"{name}.type: must be 'text', 'json_object' or 'json_schema', not {kind!r}"
        )
    spec = value.get("json_schema")
    plain = None if kind == "text" else JSONFormat()
    if kind != "json_schema" and "json_schema" not in value:
        return plain
    if not isinstance(spec, Mapping):
        raise UsageError(f"{name}.json_schema: must be an object")
    if kind != "json_schema":
        # As RESPONSE_FORMAT_SCHEMA says: a `json_schema` beside another type
        # is not used, but it must still have the shape of one.
        _check_members(f"{name}.json_schema", spec)
        if "schema" in spec and not isinstance(spec["schema"], dict | bool):
            raise UsageError(f"{name}.json_schema.schema: must be an object")
        return plain
    return json_schema_format(f"{name}.json_schema", spec)


def json_schema_format(name: str, spec: Mapping[str, JSONValue]) -> JSONFormat:
    """Check the JSON Schema format `spec` (name, description, schema, strict).

    It is `response_format.json_schema`, or the Responses API's `text.format`
    (which holds the same members beside its `type`); `name` is its path.

    Raises:
        UsageError: a member of the wrong type, or a schema that cannot be
            used (see `schemas.check_schema`).
    """
    _check_members(name, spec)
    try:
        checked = check_schema(spec.get("schema", {"type": "object"}))
    except SchemaProblem as exc:
        raise UsageError(f"{name}.schema: {exc}") from exc
    return JSONFormat(
        name=spec.get("name") or "response",
        schema=cast(Schema, checked.schema),
        description=spec.get("description") or "",
    )


def _check_members(name: str, spec: Mapping[str, JSONValue]) -> None:
    """Check the types of `spec`'s members (not its schema's content).

    Raises:
        UsageError: a member of the wrong type.
    """
    # As the schema above says: what is given has its type, null is absent.
    for key, kind, label in _SPEC_FIELDS:
        if spec.get(key) is not None and not isinstance(spec[key], kind):
            raise UsageError(f"{name}.{key}: must be {label}")


_SPEC_FIELDS: Final = (
    ("name", str, "a string"),
    ("description", str, "a string"),
    ("strict", bool, "true or false"),
)


def extract_json(text: str) -> tuple[str, JSONValue] | None:
    """Return the first JSON object or array in a reply, as text and value.

    Tried in order: the whole reply; each fenced code block; each place where
    an object or array starts, read as far as it parses. The text returned is
    always valid JSON (RFC 8259: no `NaN`, no `Infinity`). None: there is none.
    """
    for candidate in _candidates(text):
        found = _decode_at_start(candidate.strip())
        if found is not None:
            return found
    return None


def _candidates(text: str) -> Iterator[str]:
    yield text
    for match in _FENCE.finditer(text):
        yield match.group(1)
    starts = 0
    for index, char in enumerate(text):
        if char in "{[":
            yield text[index:]
            starts += 1
            if starts >= _MAX_STARTS:
                return


def _decode_at_start(text: str) -> tuple[str, JSONValue] | None:
    if not text.startswith(("{", "[")):
        return None
    try:
        value, end = _DECODER.raw_decode(text)
    except (ValueError, RecursionError):
        return None
    return text[:end], value


def _refuse_constant(name: str) -> JSONValue:
    # Python's json reads NaN and Infinity, which are not JSON (RFC 8259,
    # section 6); a reply that uses them has no JSON here.
    raise ValueError(f"{name} is not JSON")


_DECODER: Final = json.JSONDecoder(parse_constant=_refuse_constant)


def _dumps(value: JSONValue) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
