"""The OpenAPI components of `koala serve`, generated from their declarations.

Nothing here is a second description of a shape. A reply's schema is
generated from its `msgspec.Struct` (`koala_chat._contract.types`, and the
formats' own structs) by `msgspec.json.schema_components`, then corrected in
one respect: `required` names the members that are always sent, as the
encoding decides (docs/reply-shape.md). A request's schema is generated from
its format's parameter table (`koala_chat._contract.params`); the error
body's from `failures.ErrorResponse`. What stays written here is the frame
around them: the event of a stream.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator, Mapping
from typing import Final

import msgspec

from .._contract.params import PARAMETERS, Parameter, Treatment
from .._contract.types import ChatCompletion, ChatCompletionChunk, ModelList
from ..messages import JSONValue
from .failures import ErrorResponse

__all__ = [
    "ERROR_REF",
    "JSON_MEDIA_TYPE",
    "chat_components",
    "event_schema",
    "ref",
    "reply_components",
    "request_schema",
]

#: The media type of a JSON body, in the OpenAPI documents' `content`.
JSON_MEDIA_TYPE: Final = "application/json"
_TEMPLATE: Final = "#/components/schemas/{name}"
#: The class of every struct class (msgspec's metaclass).
_STRUCT_CLASS: Final = type(msgspec.Struct)
#: The default factories whose empty value `omit_defaults` leaves out.
_EMPTY_FACTORIES: Final = (list, dict, set, frozenset, tuple, bytearray)


def ref(name: str) -> dict[str, JSONValue]:
    """Return a reference to the component schema `name`."""
    return {"$ref": _TEMPLATE.format(name=name)}


ERROR_REF: Final = ref("ErrorResponse")


def chat_components() -> dict[str, JSONValue]:
    """Return the components of chat completions and the model list.

    Also the error body, which every route refers to (`ERROR_REF`).
    """
    return {
        "ChatRequest": request_schema(
            PARAMETERS,
            unknown=(
                "refused as unknown when the server runs with --strict (which "
                "also refuses the ignored names that are not OpenAI's)"
            ),
        ),
        **reply_components(ChatCompletion, ChatCompletionChunk, ModelList),
        "ChunkEvent": event_schema(
            {"anyOf": [ref("ChatCompletionChunk"), ERROR_REF]},
            named=False,
            description=(
                "One event: a chunk, an error that ended the stream, or the "
                "last one, `[DONE]`."
            ),
        ),
        **reply_components(ErrorResponse),
    }


def reply_components(*types: type[msgspec.Struct]) -> dict[str, JSONValue]:
    """Return the schemas of `types` and of the structs they hold, by name.

    Each is msgspec's, with `required` naming every member that is sent
    whatever its value, no `default` (a reply has none: it is sent), and no
    null for a member that is left out rather than sent as null.
    """
    _, components = msgspec.json.schema_components(types, ref_template=_TEMPLATE)
    for cls in _structs(types):
        schema = components[cls.__name__]
        schema.pop("title", None)
        omits = cls.__struct_config__.omit_defaults
        members = schema["properties"]
        for field in msgspec.structs.fields(cls):
            member = members[field.encode_name]
            member.pop("default", None)
            if omits and field.default is None:
                members[field.encode_name] = _not_null(member)
        schema["required"] = [
            field.encode_name
            for field in msgspec.structs.fields(cls)
            if not omits or not _omittable(field)
        ]
    return components


def _not_null(member: dict[str, JSONValue]) -> dict[str, JSONValue]:
    """Return the schema `member` without its null alternative."""
    choices = [c for c in member.get("anyOf", ()) if c != {"type": "null"}]
    if len(choices) != 1:
        return {**member, "anyOf": choices} if choices else member
    rest = {key: value for key, value in member.items() if key != "anyOf"}
    return {**rest, **choices[0]}


def _structs(types: tuple[type[msgspec.Struct], ...]) -> Iterator[type[msgspec.Struct]]:
    """Yield `types` and every struct their fields hold, each once."""
    seen: set[type] = set()
    pending: list[object] = list(types)
    while pending:
        kind = pending.pop()
        if isinstance(kind, _STRUCT_CLASS):
            if kind in seen:
                continue
            seen.add(kind)
            yield kind
            pending.extend(field.type for field in msgspec.structs.fields(kind))
        else:
            pending.extend(typing.get_args(kind))


def _omittable(field: msgspec.structs.FieldInfo) -> bool:
    """Tell whether `omit_defaults` may leave `field` out (docs/reply-shape.md)."""
    if field.default is not msgspec.NODEFAULT:
        return True
    return field.default_factory in _EMPTY_FACTORIES


def request_schema(table: Mapping[str, Parameter], *, unknown: str) -> JSONValue:
    """Return the schema of a request body read with the parameter `table`.

    `unknown` says what happens to a parameter the table does not name
    under --strict.
    """
    treatments = "; ".join(
        f"{treatment.value}: "
        + ", ".join(f"`{p.name}`" for p in table.values() if p.treatment is treatment)
        for treatment in Treatment
        if any(p.treatment is treatment for p in table.values())
    )
    return {
        "type": "object",
        "properties": {name: p.json_schema() for name, p in table.items()},
        "required": [name for name, p in table.items() if p.missing],
        "description": (
            f"The parameters, by treatment ({treatments}). Any other parameter "
            f"is ignored and named in the X-Koala-Ignored-Params header, or "
            f"{unknown}; null counts as absent."
        ),
    }


def event_schema(
    data: JSONValue, *, named: bool, description: str | None = None
) -> dict[str, JSONValue]:
    """Return the schema of one event of a stream whose data is `data` JSON.

    OpenAPI before 3.2 describes an event stream by the schema of each event.
    A `named` stream's events have an `event:` line; the others end with
    `data: [DONE]`.
    """
    content: JSONValue = {"contentMediaType": JSON_MEDIA_TYPE, "contentSchema": data}
    if not named:
        content = {"if": {"const": "[DONE]"}, "then": True, "else": content}
    properties: dict[str, JSONValue] = {"data": content}
    if named:
        properties["event"] = {"type": "string"}
    schema: dict[str, JSONValue] = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
    }
    if description is not None:
        schema["description"] = description
    return schema
